"""Load LeViT checkpoints in any of the public layouts, strictly.

Layouts, detected by their keys (a ``{"model": sd}`` or ``{"state_dict": sd}`` wrapper is unwrapped first):

- ``official``: facebookresearch/LeViT, ``patch_embed.*``, ``blocks.*`` (flat, in the same order as ours),
  ``head.l.*``; every attention also stores ``attention_bias_idxs``, which is checked against
  :func:`levit_kernels.reference.attention_bias_index` and then dropped;
- ``timm``: timm ``levit_*``, ``stem.conv1.linear.*``, ``stages.S.blocks.J.attn.*`` / ``.mlp.*``,
  ``stages.S.downsample.attn_downsample.*`` / ``.mlp.*``, ``head.linear.*``;
- ``timm_conv``: timm ``levit_conv_*``, the same keys with every Linear weight stored as a (out, in, 1, 1) conv;
- ``native``: this package's own ``state_dict()``.

Every tensor is renamed to our key, and the result must fit the model exactly: any missing, unexpected or
mis-shaped key raises :class:`CheckpointError` naming them (and the variant the checkpoint fits, when one does).
Only ``num_batches_tracked`` may be absent (older checkpoints; it does not affect inference).

Other input sizes: a checkpoint's attention bias tables are over its own grids (R×R: 14, 7, 4 for a 224 LeViT). In a
model of another ``img_size`` each table is resampled to the model's grid (Rh×Rw) by
:func:`levit_kernels.reference.resample_bias_table` — viewed as (H, R, R) over the offsets and interpolated
bicubically, align_corners=False — and one logging notice (logger ``levit.checkpoint``) names the grids. A table is
resampled only when its size differs: at the checkpoint's own size every tensor loads as stored. The checkpoint's
tables must be square (every public checkpoint's are); its stored ``attention_bias_idxs`` are checked against the
index of the checkpoint's grid.

Other families' layouts live in their own modules (``levit/checkpoint_<family>.py``; EfficientFormer:
:mod:`levit.checkpoint_efficientformer`), which :func:`register_family` their loader and layout detector and reuse
the machinery here (:func:`convert_state_dict`, :func:`first_fitting`, :func:`finish_load`, :func:`require_layout`),
so every family reports problems the same way; :func:`load_checkpoint` dispatches by model class.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union

import torch

from levit.config import MODEL_NAMES, AttentionShape, MLPShape, ShrinkAttentionShape, grid_text
from levit.model import LeViT
from levit_kernels.reference import attention_bias_index, grid_points, resample_bias_table

_LOG = logging.getLogger(__name__)

LAYOUTS = ("native", "official", "timm", "timm_conv")
# The submodule holding the weight, per unit kind and key scheme (BatchNorms are called "bn" everywhere).
_WEIGHT_NAME = {
    "native": {"conv": "conv", "linear": "linear", "head": "linear"},
    "official": {"conv": "c", "linear": "c", "head": "l"},
    "timm": {"conv": "linear", "linear": "linear", "head": "linear"},
}
_MAX_LISTED = 12


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the offending keys and shapes."""


@dataclass(frozen=True)
class _Unit:
    """One Conv/Linear+BN, head or bias table of the model, with its key prefix in every scheme."""

    kind: str  # "conv", "linear", "head" or "bias"
    prefixes: dict  # scheme → prefix ("native", "official", "timm")
    grid: tuple = ()  # (resolution, stride) of a bias table


def _units(model: LeViT) -> list[_Unit]:
    units = [_Unit("conv", {"native": f"stem.conv{i}.", "official": f"patch_embed.{2 * (i - 1)}.",
                            "timm": f"stem.conv{i}."}) for i in range(1, 5)]

    def add(kind, native, official, timm, grid=()):
        units.append(_Unit(kind, {"native": native, "official": official, "timm": timm}, grid))

    in_stage = 0
    for i, shape in enumerate(model.block_shapes):
        s = shape.stage
        if isinstance(shape, ShrinkAttentionShape):
            in_stage = 0
            n, o, t = f"blocks.{i}.", f"blocks.{i}.", f"stages.{s}.downsample.attn_downsample."
            add("linear", n + "kv.", o + "kv.", t + "kv.")
            add("linear", n + "q.", o + "q.1.", t + "q.ln.")
            add("linear", n + "proj.", o + "proj.1.", t + "proj.ln.")
            add("bias", n, o, t, (shape.resolution, shape.stride))
        elif isinstance(shape, AttentionShape):
            n, o, t = f"blocks.{i}.body.", f"blocks.{i}.m.", f"stages.{s}.blocks.{in_stage}.attn."
            add("linear", n + "qkv.", o + "qkv.", t + "qkv.")
            add("linear", n + "proj.", o + "proj.1.", t + "proj.ln.")
            add("bias", n, o, t, (shape.resolution, shape.stride))
        elif isinstance(shape, MLPShape):
            after_shrink = isinstance(model.block_shapes[i - 1], ShrinkAttentionShape)
            t = f"stages.{s}.downsample.mlp." if after_shrink else f"stages.{s}.blocks.{in_stage}.mlp."
            n, o = f"blocks.{i}.body.", f"blocks.{i}.m."
            add("linear", n + "fc1.", o + "0.", t + "ln1.")
            add("linear", n + "fc2.", o + "2.", t + "ln2.")
            in_stage += 0 if after_shrink else 1
    heads = ["head"] + (["head_dist"] if model.head_dist is not None else [])
    for head in heads:
        add("head", f"{head}.", f"{head}.", f"{head}.")
    return units


def _rename(unit: _Unit, rest: str, src: str, dst: str) -> str:
    """Key ``rest`` under ``unit`` in scheme ``src`` → the full key in scheme ``dst``."""
    if unit.kind != "bias":
        module, _, leaf = rest.partition(".")
        if module == _WEIGHT_NAME[src][unit.kind]:
            rest = f"{_WEIGHT_NAME[dst][unit.kind]}.{leaf}"
    return unit.prefixes[dst] + rest


def key_map(model: LeViT, scheme: str) -> dict[str, str]:
    """{key in ``scheme`` ("official" or "timm") → our key} for every tensor of ``model``'s state dict."""
    units = _units(model)
    mapping = {}
    for key in model.state_dict():
        unit = max((u for u in units if key.startswith(u.prefixes["native"])
                    and (u.kind != "bias" or key[len(u.prefixes["native"]):] == "attention_biases")),
                   key=lambda u: len(u.prefixes["native"]))
        mapping[_rename(unit, key[len(unit.prefixes["native"]):], "native", scheme)] = key
    return mapping


def _bias_index_keys(model: LeViT, scheme: str) -> dict[str, tuple]:
    """{key of a stored ``attention_bias_idxs`` in ``scheme`` → (resolution, stride)}."""
    return {u.prefixes[scheme] + "attention_bias_idxs": u.grid for u in _units(model) if u.kind == "bias"}


def unwrap(checkpoint: Mapping) -> Mapping:
    for wrapper in ("model", "state_dict"):
        if isinstance(checkpoint.get(wrapper), Mapping):
            return checkpoint[wrapper]
    return checkpoint


def _levit_layout(state_dict: Mapping) -> Optional[str]:
    """Which of :data:`LAYOUTS` ``state_dict`` is in, or None when it is no LeViT checkpoint."""
    keys = set(state_dict)
    if "patch_embed.0.c.weight" in keys:
        return "official"
    if "stem.conv1.conv.weight" in keys and not any(k.startswith("stages.") for k in keys):  # EfficientFormer's has
        return "native"
    if "stem.conv1.linear.weight" in keys:
        qkv = state_dict.get("stages.0.blocks.0.attn.qkv.linear.weight")
        return "timm_conv" if isinstance(qkv, torch.Tensor) and qkv.dim() == 4 else "timm"
    return None


def detect_layout(state_dict: Mapping) -> str:
    """Which of :data:`LAYOUTS` ``state_dict`` (already unwrapped) is in, from its keys."""
    return require_layout(state_dict, _levit_layout, LeViT,
                          "the keys of an official LeViT, timm levit_*, timm levit_conv_* or levit state dict (e.g. "
                          "'patch_embed.0.c.weight', 'stem.conv1.linear.weight')")


def require_layout(state_dict: Mapping, layout_of, model_type: type, expected: str) -> str:
    """``layout_of(state_dict)``, or a CheckpointError saying what was ``expected``, what came, and whose
    checkpoint it is when another family's."""
    layout = layout_of(state_dict)
    if layout is not None:
        return layout
    keys = set(state_dict)
    sample = ", ".join(sorted(keys)[:6])
    raise CheckpointError(f"unrecognised checkpoint layout{other_family_hint(state_dict, model_type)}: expected "
                          f"{expected}; got {len(keys)} keys such as {sample}")


def _listed(items: list[str]) -> str:
    more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def square_side(n: int) -> Optional[int]:
    """R when n = R², else None."""
    r = math.isqrt(n) if n > 0 else 0
    return r if r * r == n else None


def _stored_index_grid(value: torch.Tensor, grid) -> tuple:
    """The key grid a stored (Nq, Nk) ``attention_bias_idxs`` is over: the model's when the sizes agree, else the
    square one of Nk keys (a checkpoint of another size; its tables get resampled)."""
    if value.dim() == 2 and value.shape[1] != grid_points(grid):
        side = square_side(value.shape[1])
        return grid if side is None else side
    return grid


def bias_grids(model) -> dict[str, object]:
    """{our key of each ``attention_biases`` → the model's key grid (R or (Rh, Rw))}, for any family."""
    return {f"{name}.attention_biases": m.resolution for name, m in model.named_modules()
            if isinstance(getattr(m, "attention_biases", None), torch.Tensor) and hasattr(m, "resolution")}


def _resampled(value: torch.Tensor, want_shape: tuple, grid) -> Optional[tuple]:
    """(table, source side) when ``value`` is an (H, R²) bias table of another grid than ``grid`` that resamples
    to ``want_shape``, else None."""
    side = square_side(value.shape[1]) if value.dim() == 2 else None
    if side is None or len(want_shape) != 2 or value.shape[0] != want_shape[0]:
        return None
    return resample_bias_table(value, side, grid), side


def convert_state_dict(state_dict: Mapping, mapping: Mapping[str, str], expected: Mapping[str, torch.Tensor],
                       index_keys: Mapping[str, tuple], adapt=None, grids: Optional[Mapping[str, object]] = None,
                       resampled: Optional[list] = None) -> tuple[dict, list[str]]:
    """Rename ``state_dict`` by ``mapping`` ({their key → our key}) and check it against ``expected`` (our state
    dict); returns (converted, problems), each problem naming keys and shapes. Stored ``attention_bias_idxs`` keys
    (``index_keys``: key → (resolution, stride)) are checked against the |dy|·R+|dx| index and dropped.
    ``adapt(value, want_shape)`` may reshape a stored tensor first (timm_conv's 1×1 convs). Bias tables of other
    grids than the model's (``grids``: our key → grid, :func:`bias_grids`) are resampled, each recorded in
    ``resampled`` as (our key, checkpoint side, model grid). Used by every family's loader (levit/checkpoint_*.py),
    so all report problems the same way."""
    converted, seen, unexpected, misshaped, bad_index = {}, set(), [], [], []
    grids = grids or {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            misshaped.append(f"{key}: not a tensor ({type(value).__name__})")
            continue
        if key in index_keys:
            grid, stride = index_keys[key]
            want = attention_bias_index(_stored_index_grid(value, grid), stride)
            if tuple(value.shape) != tuple(want.shape) or not torch.equal(value.cpu().long(), want):
                bad_index.append(f"{key} {tuple(value.shape)} (expected |dy|·R+|dx| over {tuple(want.shape)})")
            continue
        ours = mapping.get(key)
        if ours is None:
            unexpected.append(f"{key} {tuple(value.shape)}")
            continue
        seen.add(ours)
        want_shape, stored_shape = tuple(expected[ours].shape), tuple(value.shape)
        if adapt is not None:
            value = adapt(value, want_shape)
        if tuple(value.shape) != want_shape and ours in grids:
            table = _resampled(value, want_shape, grids[ours])
            if table is not None:
                value = table[0]
                if resampled is not None:
                    resampled.append((ours, table[1], grids[ours]))
        if tuple(value.shape) != want_shape:
            misshaped.append(f"{key}: checkpoint {stored_shape} vs model {want_shape}")
            continue
        converted[ours] = value
    reverse = {ours: theirs for theirs, ours in mapping.items()}
    missing = [f"{reverse[k]} {tuple(v.shape)}" for k, v in expected.items()
               if k not in seen and not k.endswith("num_batches_tracked")]
    problems = []
    for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped),
                        ("wrong attention_bias_idxs", bad_index)):
        if items:
            problems.append(f"{len(items)} {what} key(s): {_listed(items)}")
    return converted, problems


def _linear_from_conv(value: torch.Tensor, want_shape: tuple) -> torch.Tensor:
    """A Linear stored as a (out, in, 1, 1) conv (timm levit_conv_*) → (out, in)."""
    if value.dim() == 4 and len(want_shape) == 2 and tuple(value.shape[2:]) == (1, 1):
        return value[:, :, 0, 0]
    return value


def _convert(state_dict: Mapping, layout: str, model: LeViT, resampled: Optional[list] = None
             ) -> tuple[dict, list[str]]:
    """Rename ``state_dict`` to our keys; returns (converted, problems), problems naming keys and shapes."""
    scheme = "timm" if layout == "timm_conv" else layout
    expected = model.state_dict()
    mapping = {k: k for k in expected} if scheme == "native" else key_map(model, scheme)
    return convert_state_dict(state_dict, mapping, expected, _bias_index_keys(model, scheme),
                              _linear_from_conv if layout == "timm_conv" else None, bias_grids(model), resampled)


def describe(model) -> str:
    dist = "with" if model.head_dist is not None else "without"
    return f"{model.name} ({model.num_classes} classes, {dist} distillation head, img_size {model.img_size})"


def first_fitting(state_dict: Mapping, layout: str, builders, convert) -> str:
    """:func:`describe` of the first model ``builders`` make (on the meta device, so no memory is spent) that
    ``state_dict`` fits under ``convert(state_dict, layout, model)``, or ''."""
    for build in builders:
        with torch.device("meta"):
            candidate = build()
        if not convert(state_dict, layout, candidate)[1]:
            return describe(candidate)
    return ""


def _fitting_variant(state_dict: Mapping, layout: str, model: LeViT) -> str:
    """The variant the checkpoint does fit, or ''."""
    heads = [k for k in ("head.l.weight", "head.linear.weight") if k in state_dict]
    if not heads:
        return ""
    num_classes = state_dict[heads[0]].shape[0]
    distillation = any(k.startswith("head_dist.") for k in state_dict)
    return first_fitting(state_dict, layout, [lambda n=name: LeViT(n, num_classes, distillation, model.img_size)
                                              for name in MODEL_NAMES], _convert)


def read_checkpoint(path: Union[str, os.PathLike]) -> Mapping:
    """Tensors of a ``.pth``/``.pt`` (loaded with ``weights_only=True``) or ``.safetensors`` file, on CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from None
        reader = lambda: load_file(path, device="cpu")  # noqa: E731
    else:
        def reader():
            # Training checkpoints of timm's CheckpointSaver (the official T2T-ViT ones) also pickle the run's
            # argparse.Namespace; it holds plain values, so allowing it keeps the load weights-only.
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return reader()
    except Exception as exc:  # garbage, truncation, pickled code: torch's message is pages long, ours one line
        detail = str(exc).strip().split("\n")[0].split(". ")[0]
        raise CheckpointError(f"{path}: not a readable checkpoint (expected a .pth/.pt state dict saved by "
                              f"torch.save, or .safetensors): {type(exc).__name__}"
                              + (f": {detail}" if detail else "")) from exc


def report_resampled(model, resampled: list) -> None:
    """One logging notice naming the grids the bias tables were resampled between (none when nothing was)."""
    if not resampled:
        return
    pairs = list(dict.fromkeys(f"{s}×{s} → {grid_text(g)}" for _, s, g in resampled))
    _LOG.warning("%s: resampled %d attention bias table(s) of the checkpoint to the model's img_size %s "
                 "(bicubic, align_corners=False): grids %s", model.name, len(resampled), grid_text(model.img_size),
                 ", ".join(pairs))


def finish_load(model, layout: str, converted: dict, problems: list[str], fitting, resampled: list = ()) -> object:
    """Load ``converted`` into ``model`` strictly, or raise :class:`CheckpointError` listing ``problems`` with the
    variant ``fitting()`` names (a :func:`first_fitting` result) as a hint; nothing is loaded unless all fits.
    ``resampled`` (from :func:`convert_state_dict`) is reported once, after the load."""
    if problems:
        fits = fitting()
        hint = f"; the checkpoint fits {fits}" if fits else ""
        raise CheckpointError(f"{layout} checkpoint does not fit {describe(model)}{hint}: " + "; ".join(problems))
    current = model.state_dict()
    for key, value in current.items():  # only num_batches_tracked may be absent (see convert_state_dict)
        converted.setdefault(key, value)
    model.load_state_dict(converted, strict=True)
    report_resampled(model, list(resampled))
    return model


def _load_levit(model: LeViT, checkpoint: Mapping) -> LeViT:
    state_dict = unwrap(checkpoint)
    layout = detect_layout(state_dict)
    resampled: list = []
    converted, problems = _convert(state_dict, layout, model, resampled)
    return finish_load(model, layout, converted, problems, lambda: _fitting_variant(state_dict, layout, model),
                       resampled)


# Model class → (loader(model, the checkpoint's mapping as read: each family unwraps its own wrappers),
# layout_of(state dict) → layout name or None), one per family.
# The other families' modules (levit/checkpoint_<family>.py, imported by levit/__init__.py) register theirs.
_FAMILIES: dict[type, tuple] = {LeViT: (_load_levit, _levit_layout)}


def register_family(model_type: type, loader, layout_of) -> None:
    """Make :func:`load_checkpoint` hand ``model_type`` models to ``loader``; ``layout_of`` names the family's
    checkpoints in the other families' "unrecognised layout" errors."""
    _FAMILIES[model_type] = (loader, layout_of)


def other_family_hint(state_dict: Mapping, model_type: type) -> str:
    """' (the keys are <Family>'s, <layout> layout: ...)' when another family's checkpoint came, else ''."""
    for family, (_, layout_of) in _FAMILIES.items():
        layout = None if family is model_type else layout_of(state_dict)
        if layout is not None:
            return f" (the keys are {family.__name__}'s, {layout} layout: load it into a levit.{family.__name__})"
    return ""


def as_mapping(checkpoint) -> Mapping:
    """The tensors of a checkpoint path (:func:`read_checkpoint`) or the given mapping; anything else raises."""
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(checkpoint)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"load_checkpoint: argument 'checkpoint' must be a path or a state dict, "
                        f"got {type(checkpoint).__name__}")
    return checkpoint


def load_checkpoint(model, checkpoint):
    """Load ``checkpoint`` (a path or a state dict, in any layout of the model's family: :data:`LAYOUTS` for LeViT)
    into ``model``; returns the model.

    Raises :class:`CheckpointError` (a ValueError) naming every missing, unexpected or mis-shaped key, wrong
    ``attention_bias_idxs``, and the variant the checkpoint belongs to when it fits another one. Nothing is
    loaded unless everything fits.
    """
    loader = next((f for t, (f, _) in _FAMILIES.items() if isinstance(model, t)), None)
    if loader is None:
        kinds = " or ".join(f"levit.{t.__name__}" for t in _FAMILIES)
        raise TypeError(f"load_checkpoint: argument 'model' must be a {kinds}, got {type(model).__name__}")
    if getattr(model, "fused", False):
        raise CheckpointError(f"load_checkpoint: {model.name} is fused (its BatchNorms are folded); load the "
                              f"checkpoint before fuse()")
    return loader(model, as_mapping(checkpoint))
