"""This project's T2T-ViT (``levit.T2TViT``, both token-layer kinds): ``tokens_to_token`` (``soft_split0..2``
nn.Unfold, ``attention1``/``attention2`` token layers, ``project``), ``cls_token``, ``pos_embed``, ``blocks`` (pre-LN
ViT blocks: ``norm1``, ``attn.qkv``/``attn.proj``, ``norm2``, ``mlp.fc1``/``mlp.fc2``), ``norm`` and ``head`` on the
class token. Its MLPs apply GELU by construction (``levit.t2t_vit.ACTIVATION``; they hold no activation module).

- soft splits 0 and 1 → :class:`UnfoldSpec`; soft split 2 with ``project`` → one convolution (see ``_vit``);
- a performer token layer (``kqv``, ``w``) → :class:`PerformerSpec` (LayerNorm affines folded into kqv and the
  MLP's first Linear); a transformer one (``attn.qkv``) → :class:`SoftmaxAttentionSpec` with its one head, its
  input-width scale and the v residual, then a LayerNorm'd :class:`MLPSpec`;
- every backbone block → a softmax attention (residual = the block's input) and an MLP; the head reads the class
  token, the final norm's affine folded into it.
"""
from __future__ import annotations

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.families import _vit
from levit_kernels.optimize.specs import BlockSpec, ModelDescription, PerformerSpec, SoftmaxAttentionSpec, Tap, fail

NAME = "levit.T2TViT"
STRUCTURE = "tokens_to_token, cls_token, pos_embed, blocks, norm, head"
TOKEN_LAYER = "a TokenPerformer (kqv, w, proj, norm1, norm2, mlp) or a TokenTransformer (norm1, attn, norm2, mlp)"


def matches(model: nn.Module) -> bool:
    return r.has(model, "tokens_to_token", "cls_token", "pos_embed", "blocks", "norm", "head")


def _mlp_linears(mlp, where: str):
    linears = getattr(mlp, "linears", None)
    if not (isinstance(linears, tuple) and len(linears) == 2 and all(isinstance(m, nn.Linear) for m in linears)):
        fail(where, "this project's T2T-ViT MLP (two Linears, GELU between)", mlp)
    names = getattr(mlp, "names", ("fc1", "fc2"))
    return [r.plain_projection(m, f"{where}.{n}") for m, n in zip(linears, names)]


def _ln_mlp(layer, where: str, tap: Tap):
    """``x + fc2(gelu(fc1(norm2(x))))`` of a block or token layer, norm2's affine folded into fc1."""
    mlp = r.child(layer, "mlp", where, "an MLP")
    fc1, fc2 = _mlp_linears(mlp, f"{where}.mlp")
    fc1, eps = fold.layernorm_before(r.child(layer, "norm2", where, "a LayerNorm"), fc1, f"{where}.norm2")
    return r.mlp(f"{where}.mlp", fc1, fc2, tap, "gelu", eps)


def _attention(attn, norm, where: str, heads: int, residual: str, tap: Tap) -> SoftmaxAttentionSpec:
    qkv = r.plain_projection(r.child(attn, "qkv", where, "a qkv Linear"), f"{where}.qkv")
    qkv, eps = fold.layernorm_before(norm, qkv, f"{where}.norm")
    proj = r.plain_projection(r.child(attn, "proj", where, "a proj Linear"), f"{where}.proj")
    scale = getattr(attn, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        fail(f"{where}.scale", "a positive float", repr(scale))
    width = qkv.weight.shape[0]
    if width % (3 * heads):
        fail(f"{where}.qkv", f"3 × heads ({heads}) × head_dim output features", f"{width}")
    head_dim = width // (3 * heads)
    r.check_in(proj, heads * head_dim, f"heads {heads} × head_dim {head_dim}")
    return SoftmaxAttentionSpec(where, qkv, proj, heads, head_dim, head_dim, float(scale), tap, eps, residual)


def _performer(layer, where: str) -> PerformerSpec:
    w = getattr(layer, "w", None)
    kqv = r.plain_projection(r.child(layer, "kqv", where, "a kqv Linear"), f"{where}.kqv")
    kqv, eps1 = fold.layernorm_before(r.child(layer, "norm1", where, "a LayerNorm"), kqv, f"{where}.norm1")
    dim = kqv.weight.shape[0] // 3
    if kqv.weight.shape[0] != 3 * dim or not hasattr(w, "shape") or w.dim() != 2 or w.shape[1] != dim:
        fail(f"{where}.w", f"an (m, {dim}) random-feature matrix beside a kqv of 3·{dim} outputs",
             f"w {tuple(getattr(w, 'shape', ()))}, kqv {kqv.weight.shape[0]} outputs")
    eps = getattr(layer, "eps", None)
    if isinstance(eps, bool) or not isinstance(eps, float) or eps < 0:
        fail(f"{where}.eps", "the linear attention's non-negative float eps", repr(eps))
    proj = r.plain_projection(r.child(layer, "proj", where, "a proj Linear"), f"{where}.proj")
    r.check_in(proj, dim, "the width of v")
    r.check_out(proj, dim, "the width of v, for the residual add")
    mlp = _ln_mlp(layer, where, Tap(layer.mlp))
    return PerformerSpec(where, kqv, w.detach().to(fold.F64), eps, proj, mlp.fc1, mlp.fc2, eps1, mlp.norm_eps,
                         Tap(layer.mlp))


def _token_layer(layer, where: str) -> list[BlockSpec]:
    if r.has(layer, "kqv", "w"):
        return [_performer(layer, where)]
    if r.has(layer, "attn", "norm1", "norm2", "mlp"):
        attn = layer.attn
        spec = _attention(attn, layer.norm1, f"{where}.attn", 1, "v", Tap(attn))
        return [spec, _ln_mlp(layer, where, Tap(layer.mlp))]
    fail(where, TOKEN_LAYER, layer)


def _tokens_to_token(t2t, side: int) -> list[BlockSpec]:
    where = "tokens_to_token"
    splits = [r.child(t2t, f"soft_split{i}", where, "an nn.Unfold") for i in range(3)]
    layers = [r.child(t2t, f"attention{i}", where, TOKEN_LAYER) for i in (1, 2)]
    specs: list[BlockSpec] = []
    channels = None
    for i, (split, layer) in enumerate(zip(splits, layers)):
        spec = _vit.unfold(split, f"{where}.soft_split{i}", side, Tap(layer, of_input=True))
        specs += [spec, *_token_layer(layer, f"{where}.attention{i + 1}")]
        side, channels = spec.out_side(), specs[-1].fc2.weight.shape[0]
    specs.append(_vit.unfold_projection(splits[2], getattr(t2t, "project", None), f"{where}.soft_split2+project",
                                        side, channels, Tap(t2t)))
    return specs


def describe(model: nn.Module) -> ModelDescription:
    side = getattr(model, "img_size", None)
    r.positive_int(side, "img_size", "model")
    blocks = r.child(model, "blocks", "", "a ModuleList of blocks")
    if len(blocks) == 0:
        fail("blocks", "at least one block", "none")
    specs = _tokens_to_token(r.child(model, "tokens_to_token", "", "a T2T module"), side)
    width = specs[-1].conv.weight.shape[0]
    tokens = specs[-1].conv.out_side(specs[-1].side) ** 2
    specs.append(_vit.class_tokens(model.cls_token, model.pos_embed, "tokens", tokens, width,
                                   Tap(blocks[0], of_input=True)))
    for i, block in enumerate(blocks):
        where = f"blocks.{i}"
        attn = r.child(block, "attn", where, "an Attention")
        heads = r.positive_int(getattr(attn, "heads", None), "heads", f"{where}.attn")
        specs += [_attention(attn, r.child(block, "norm1", where, "a LayerNorm"), f"{where}.attn", heads, "input",
                             Tap(attn)),
                  _ln_mlp(block, where, Tap(block.mlp))]
    head = _vit.head(model.norm, r.classifier(model.head, "head"), "cls")
    first = specs[1]
    kind = "performer" if first.kind == "performer" else "transformer"
    patch = specs[0].kernel ** 2
    in_width = (first.kqv if kind == "performer" else first.qkv).weight.shape[1]
    if in_width % patch:
        fail(first.where, f"an input width of channels × {patch} (the first soft split's patch)", f"{in_width}")
    return _vit.describe_chain(f"T2T-ViT ({kind} token layers)", in_width // patch, side,
                               Tap(model.tokens_to_token.soft_split0, of_input=True), specs, head)
