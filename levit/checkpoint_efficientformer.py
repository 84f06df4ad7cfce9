"""Load EfficientFormer checkpoints (timm ``efficientformer_l*``, the official snap-research layout, our own),
strictly: the EfficientFormer hook of :func:`levit.load_checkpoint`.

Layouts, detected by their keys (after the ``{"model": sd}`` / ``{"state_dict": sd}`` unwrap):

- ``timm``: ``stem.conv1``/``norm1``/``conv2``/``norm2``, ``stages.S.downsample.conv``/``.norm``,
  ``stages.S.blocks.J.mlp.fc1``/``norm1``/``fc2``/``norm2``, ``...ls1.gamma``, ``...token_mixer.*``, ``norm``,
  ``head``, ``head_dist``;
- ``official``: ``patch_embed.{0,1,3,4}``, ``network.{2S}.J.*`` (stage S's blocks), ``network.{2S-1}.proj``/``.norm``
  (the downsampling into stage S), ``layer_scale_1``/``layer_scale_2``, ``dist_head``;
- ``native``: this package's ``state_dict()``.

Block indices J are the same in all three (the Flatten before the Meta3D blocks takes an index everywhere). Both
public layouts store each attention's ``attention_bias_idxs``: it is checked against the |dy|·R+|dx| index and
dropped (the official code numbers offsets by first appearance, which on a square grid gives the same index).
Problems are reported as for LeViT (:func:`levit.checkpoint.convert_state_dict`), with the variant that fits.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

from levit import checkpoint as common
from levit.checkpoint import CheckpointError
from levit.efficientformer import MODEL_NAMES, EfficientFormer

LAYOUTS = ("native", "timm", "official")

# native → timm: a ConvBN's .conv/.bn are separate modules in timm, named by where they sit.
_NATIVE_TO_TIMM = [
    (r"^stem\.conv(\d)\.conv\.", r"stem.conv\1."),
    (r"^stem\.conv(\d)\.bn\.", r"stem.norm\1."),
    (r"^(stages\.\d+\.downsample)\.bn\.", r"\1.norm."),  # downsample.conv keeps its name
    (r"\.mlp\.fc(\d)\.conv\.", r".mlp.fc\1."),
    (r"\.mlp\.fc(\d)\.bn\.", r".mlp.norm\1."),
]
# timm → official (the inverse of timm's checkpoint_filter_fn).
_TIMM_TO_OFFICIAL = [
    (r"^stem\.conv1\.", "patch_embed.0."),
    (r"^stem\.norm1\.", "patch_embed.1."),
    (r"^stem\.conv2\.", "patch_embed.3."),
    (r"^stem\.norm2\.", "patch_embed.4."),
    (r"^stages\.(\d+)\.downsample\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (r"^stages\.(\d+)\.downsample\.norm\.", lambda m: f"network.{2 * int(m[1]) - 1}.norm."),
    (r"^stages\.(\d+)\.blocks\.", lambda m: f"network.{2 * int(m[1])}."),
    (r"\.ls(\d)\.gamma$", r".layer_scale_\1"),
    (r"^head_dist\.", "dist_head."),
]


def _apply(table, key: str) -> str:
    for pattern, replacement in table:
        key = re.sub(pattern, replacement, key)
    return key


def rename(key: str, scheme: str) -> str:
    """Our key → its name in ``scheme`` ("native", "timm" or "official")."""
    if scheme == "native":
        return key
    timm_key = _apply(_NATIVE_TO_TIMM, key)
    return timm_key if scheme == "timm" else _apply(_TIMM_TO_OFFICIAL, timm_key)


def key_map(model: EfficientFormer, scheme: str) -> dict[str, str]:
    """{key in ``scheme`` → our key} for every tensor of ``model``'s state dict."""
    return {rename(key, scheme): key for key in model.state_dict()}


def bias_index_keys(model: EfficientFormer, scheme: str) -> dict[str, tuple]:
    """{key of a stored ``attention_bias_idxs`` in ``scheme`` → (resolution, stride)} (none in ours)."""
    if scheme == "native":
        return {}
    return {rename(f"{name}.attention_biases", scheme)[:-len("attention_biases")] + "attention_bias_idxs":
            (m.resolution, m.stride)
            for name, m in model.named_modules() if hasattr(m, "attention_biases")}


def layout_of(state_dict: Mapping) -> Optional[str]:
    """Which of :data:`LAYOUTS` ``state_dict`` is in, or None when it is no EfficientFormer checkpoint."""
    keys = set(state_dict)
    if "patch_embed.0.weight" in keys and any(k.startswith("network.") for k in keys):
        return "official"
    if "stem.conv1.weight" in keys and "stem.norm1.weight" in keys:
        return "timm"
    if "stem.conv1.conv.weight" in keys and any(k.startswith("stages.") for k in keys):
        return "native"
    return None


def detect_layout(state_dict: Mapping) -> str:
    """Which of :data:`LAYOUTS` ``state_dict`` (already unwrapped) is in, from its keys."""
    return common.require_layout(state_dict, layout_of, EfficientFormer,
                                 "the keys of a timm efficientformer_*, official EfficientFormer or levit "
                                 "EfficientFormer state dict (e.g. 'stem.conv1.weight', 'patch_embed.0.weight', "
                                 "'stem.conv1.conv.weight')")


def convert(state_dict: Mapping, layout: str, model: EfficientFormer, resampled: Optional[list] = None
            ) -> tuple[dict, list[str]]:
    """Rename ``state_dict`` to our keys; returns (converted, problems), problems naming keys and shapes. Bias
    tables of another grid are resampled (recorded in ``resampled``, see :func:`levit.checkpoint.convert_state_dict`)."""
    return common.convert_state_dict(state_dict, key_map(model, layout), model.state_dict(),
                                     bias_index_keys(model, layout), grids=common.bias_grids(model),
                                     resampled=resampled)


def _fitting_variant(state_dict: Mapping, layout: str, model: EfficientFormer) -> str:
    head = state_dict.get(rename("head.weight", layout))
    if head is None or head.dim() != 2:
        return ""
    distillation = rename("head_dist.weight", layout) in state_dict
    builders = [lambda n=name: EfficientFormer(n, head.shape[0], distillation, model.img_size) for name in MODEL_NAMES]
    return common.first_fitting(state_dict, layout, builders, convert)


def load(model: EfficientFormer, checkpoint: Mapping) -> EfficientFormer:
    """The EfficientFormer loader :func:`levit.load_checkpoint` dispatches to."""
    state_dict = common.unwrap(checkpoint)
    layout = detect_layout(state_dict)
    resampled: list = []
    converted, problems = convert(state_dict, layout, model, resampled)
    return common.finish_load(model, layout, converted, problems,
                              lambda: _fitting_variant(state_dict, layout, model), resampled)


common.register_family(EfficientFormer, load, layout_of)
