"""Load T2T-ViT checkpoints (official yitu-opensource/T2T-ViT layout) strictly; ``levit.load_checkpoint`` hands
T2T-ViT models here.

:class:`levit.t2t_vit.T2TViT` has the official module tree, so the official keys (``tokens_to_token.attention1.*``,
``tokens_to_token.project.*``, ``blocks.N.*``, ``cls_token``, ``pos_embed``, ``norm.*``, ``head.*``) are ours. The
official training script (timm's CheckpointSaver) saves ``{"state_dict": ..., "state_dict_ema": ..., "optimizer":
..., "args": Namespace, ...}`` and evaluates, and reports its accuracies, with the EMA weights: those are taken
when present, then ``state_dict``, then ``model``; a bare state dict loads as it is. A ``module.`` prefix
(DataParallel) is stripped.

Any missing, unexpected or mis-shaped key raises :class:`levit.checkpoint.CheckpointError` naming them, and the
variant (token-layer kind, depth, classes, img_size) the checkpoint fits when it fits one. ``pos_embed`` (the
official models' frozen sinusoid table, but fine-tuned checkpoints may carry a learned one) is loaded too, as the
official ``load_state_dict`` does. Into a model of another ``img_size`` its token rows — an (S/16)² grid — are
resampled to the model's grid bicubically (align_corners=False, as the official transfer-learning code resizes
it), the class token's row kept, and one logging notice (logger ``levit.checkpoint``) names the grids; at the
checkpoint's own size nothing is resampled.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from levit import checkpoint as common
from levit.checkpoint import CheckpointError, _listed, as_mapping, square_side
from levit.t2t_vit import MODEL_NAMES, T2TViT
from levit_kernels.reference import resample_bias_table

# Preferred first: the official script evaluates (and reports) the EMA weights.
WRAPPERS = ("state_dict_ema", "state_dict", "model")
_PREFIX = "module."
# A key only T2T-ViT state dicts have (levit.checkpoint's detection sends such dicts here).
SIGNATURE_KEY = "tokens_to_token.project.weight"


def unwrap(checkpoint: Mapping) -> Mapping:
    for wrapper in WRAPPERS:
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
            break
    if checkpoint and all(isinstance(k, str) and k.startswith(_PREFIX) for k in checkpoint):
        return {k[len(_PREFIX):]: v for k, v in checkpoint.items()}
    return checkpoint


def is_t2t_state_dict(state_dict: Mapping) -> bool:
    return SIGNATURE_KEY in state_dict


def _problems(state_dict: Mapping, model: T2TViT) -> list[str]:
    expected = model.state_dict()
    unexpected, misshaped = [], []
    for key, value in state_dict.items():
        if key not in expected:
            unexpected.append(f"{key} {tuple(value.shape) if isinstance(value, torch.Tensor) else ''}".rstrip())
        elif not isinstance(value, torch.Tensor):
            misshaped.append(f"{key}: not a tensor ({type(value).__name__})")
        elif tuple(value.shape) != tuple(expected[key].shape):
            misshaped.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}")
    missing = [f"{k} {tuple(v.shape)}" for k, v in expected.items() if k not in state_dict]
    return [f"{len(items)} {what} key(s): {_listed(items)}"
            for what, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if items]


def _describe(model: T2TViT) -> str:
    return f"{model.name} ({model.num_classes} classes, img_size {model.img_size})"


def _fitting_variant(state_dict: Mapping) -> str:
    """The variant the checkpoint fits (candidates built on the meta device, so no memory is spent), or ''."""
    head, pos = state_dict.get("head.weight"), state_dict.get("pos_embed")
    if not (isinstance(head, torch.Tensor) and head.dim() == 2 and isinstance(pos, torch.Tensor) and pos.dim() == 3):
        return ""
    side = round((pos.shape[1] - 1) ** 0.5)
    if side < 1 or side * side != pos.shape[1] - 1:
        return ""
    for name in MODEL_NAMES:
        with torch.device("meta"):
            candidate = T2TViT(name, head.shape[0], 16 * side)
        if not _problems(state_dict, candidate):
            return _describe(candidate)
    return ""


def load_checkpoint(model: T2TViT, checkpoint) -> T2TViT:
    """Load ``checkpoint`` (a path or a state dict, possibly wrapped, see the module docstring) into ``model``;
    nothing is loaded unless every key fits. Returns the model."""
    state_dict = unwrap(as_mapping(checkpoint))
    if not is_t2t_state_dict(state_dict):
        sample = ", ".join(sorted(map(str, state_dict))[:6])
        raise CheckpointError(f"unrecognised checkpoint layout for {model.name}: expected the keys of an official "
                              f"T2T-ViT state dict (e.g. '{SIGNATURE_KEY}'), got {len(state_dict)} keys such as "
                              f"{sample}")
    resized = _resized_positions(state_dict, model)
    if resized is not None:
        state_dict = {**state_dict, "pos_embed": resized[0]}
    problems = _problems(state_dict, model)
    if problems:
        fits = _fitting_variant(state_dict)
        hint = f"; the checkpoint fits {fits}" if fits else ""
        raise CheckpointError(f"T2T-ViT checkpoint does not fit {_describe(model)}{hint}: " + "; ".join(problems))
    model.load_state_dict(dict(state_dict), strict=True)
    if resized is not None:
        side, target = resized[1], model.img_size // 16
        common._LOG.warning("%s: resampled the checkpoint's position table to the model's img_size %d (bicubic, "
                            "align_corners=False): token grid %d×%d → %d×%d", model.name, model.img_size, side, side,
                            target, target)
    return model


def _resized_positions(state_dict: Mapping, model: T2TViT):
    """(the checkpoint's pos_embed resampled to the model's token grid, its own grid side) when it is a
    (1, 1 + s², E) table of another grid with the model's width E, else None (left for the shape check)."""
    pos, want = state_dict.get("pos_embed"), model.pos_embed
    if not isinstance(pos, torch.Tensor) or pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[2] != want.shape[2] \
            or pos.shape[1] == want.shape[1]:
        return None
    side = square_side(pos.shape[1] - 1)
    if side is None:
        return None
    # The token rows as an (E, s²) table over the grid, channels as the "heads" of resample_bias_table.
    grid = resample_bias_table(pos[0, 1:].t(), side, model.img_size // 16).t()
    return torch.cat([pos[:, :1], grid.unsqueeze(0).to(pos.dtype)], dim=1), side


def layout_of(state_dict: Mapping):
    """"official" for a T2T-ViT state dict, else None (names T2T-ViT checkpoints in the other families' errors)."""
    return "official" if is_t2t_state_dict(unwrap(state_dict)) else None


common.register_family(T2TViT, load_checkpoint, layout_of)
