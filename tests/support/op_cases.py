"""Op cases for the reliability tests (property, extreme-value, concurrency): a frozen dataclass per op holding every
size, layout, dtype and flag of one call plus the seed of its values, :func:`make_args` turning it into the public
op's arguments, and :func:`reference64` computing the float64 reference from exactly those (rounded) values.

Layouts change only where the values live, never the values: "contiguous"; "packed" (attention: q, k, v as views of
one per-token qkv tensor, as LeViT's projection emits them; with stride > 1 only k and v are packed); "transposed"
(the last two dims swapped in memory); "strided" (every other element of a buffer, or a slice of a wider one).
Memory a view does not cover is NaN, so a kernel reading outside its operand poisons its output.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from levit_kernels import ops, reference
from levit_kernels.bench.timing import torch_threads
from levit_kernels.reference import query_grid_side

ATTENTION_LAYOUTS = ("contiguous", "packed", "transposed", "strided")
GEMM_LAYOUTS = ("contiguous", "transposed", "strided")
OPS = ("biased_attention", "shrink_attention", "linear", "mlp", "attention")
# Dense-bias forms of levit_kernels.attention (FlashCase.bias): none, full (B, H, Nq, Nk), one shared by the batch
# (H, Nq, Nk), a per-key padding row (Nk,).
FLASH_BIASES = (None, "full", "heads", "keys")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoftmaxFlags:
    """What every attention case has besides its sizes (keyword-only: they follow each case's positional sizes)."""
    layout: str = "contiguous"
    dtype: torch.dtype = torch.float32
    activation: Optional[str] = None
    scale: Optional[float] = None
    qk_scale: float = 1.0    # std of q and k
    bias_scale: float = 1.0  # std of the bias (table)
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class AttentionCase(SoftmaxFlags):
    batch: int
    heads: int
    resolution: int
    stride: int
    key_dim: int
    value_dim: int
    channels: int = 0        # shrink_attention only: C of x (0: biased_attention)

    @property
    def op(self) -> str:
        return "shrink_attention" if self.channels else "biased_attention"

    @property
    def queries(self) -> int:
        return query_grid_side(self.resolution, self.stride) ** 2

    @property
    def keys(self) -> int:
        return self.resolution ** 2


@dataclasses.dataclass(frozen=True)
class FlashCase(SoftmaxFlags):
    """levit_kernels.attention (softmax attention over any number of keys, the flash kernel): q (B, H, Nq, D),
    k (B, H, Nk, D), v (B, H, Nk, Dv) and an optional dense bias (one of FLASH_BIASES)."""
    batch: int
    heads: int
    queries: int
    keys: int
    key_dim: int
    value_dim: int
    bias: Optional[str] = None
    op = "attention"


@dataclasses.dataclass(frozen=True)
class GemmCase:
    lead: tuple          # leading dims of x
    channels: int        # C
    out_features: int    # linear: C_out; mlp: the output width (= C with a residual)
    hidden: int = 0      # mlp only (0: linear)
    bias: bool = True    # linear only (mlp always has both biases)
    residual: bool = False
    layout: str = "contiguous"
    dtype: torch.dtype = torch.float32
    activation: Optional[str] = None
    x_scale: float = 1.0
    seed: int = 0

    @property
    def op(self) -> str:
        return "mlp" if self.hidden else "linear"


# ---- layouts ----------------------------------------------------------------------------------------------------


def relayout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The values of t in the memory layout ``layout`` ("contiguous", "transposed" or "strided"; "packed" is made
    by :func:`_packed_attention`)."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    # "strided" (and a transposed 1-D tensor): every other element of a NaN buffer along the last dim.
    buf = torch.full((*t.shape[:-1], 2 * t.shape[-1] + 1), float("nan"), dtype=t.dtype, device=t.device)
    view = buf[..., 1::2]
    view.copy_(t)
    return view


def _packed_attention(q, k, v):
    """Views of q, k, v (B, H, N, ·) into one per-token buffer (B, N, H, D + D + Dv), as a qkv projection emits
    them; with fewer queries than keys (stride > 1) k and v share one and q is a slice of a NaN-padded buffer."""
    b, h, nk, d = k.shape
    dv = v.shape[3]
    widths = [d, dv] if q.shape[2] != nk else [d, d, dv]
    buf = torch.empty(b, nk, h, sum(widths), dtype=k.dtype, device=k.device)
    parts = [p.permute(0, 2, 1, 3) for p in buf.split(widths, dim=3)]
    sources = [k, v] if len(widths) == 2 else [q, k, v]
    for part, src in zip(parts, sources):
        part.copy_(src)
    if len(widths) == 3:
        return parts
    qbuf = torch.empty(b, q.shape[2], h, d + 3, dtype=q.dtype, device=q.device).fill_(float("nan"))
    qv = qbuf[..., 1:d + 1].permute(0, 2, 1, 3)
    qv.copy_(q)
    return [qv, *parts]


# ---- arguments --------------------------------------------------------------------------------------------------


def _normal(gen, *shape, std=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * std


def make_args(case, device="cpu"):
    """(positional args, keyword args) of ``levit_kernels.<case.op>`` for ``case``; values drawn from case.seed."""
    gen = torch.Generator().manual_seed(case.seed)
    if isinstance(case, AttentionCase):
        return _attention_args(case, gen, device)
    if isinstance(case, FlashCase):
        return _flash_args(case, gen, device)
    return _gemm_args(case, gen, device)


def _qkv(c, gen, cast):
    """q, k, v of an attention case (c.queries, c.keys, head dims, q/k magnitude), in the case's dtype and device."""
    q = cast(_normal(gen, c.batch, c.heads, c.queries, c.key_dim, std=c.qk_scale))
    k = cast(_normal(gen, c.batch, c.heads, c.keys, c.key_dim, std=c.qk_scale))
    return q, k, cast(_normal(gen, c.batch, c.heads, c.keys, c.value_dim))


def _attention_args(c: AttentionCase, gen, device):
    def cast(t):
        return t.to(dtype=c.dtype, device=device)

    q, k, v = _qkv(c, gen, cast)
    biases = cast(_normal(gen, c.heads, c.keys, std=c.bias_scale))
    if c.layout == "packed":
        q, k, v = _packed_attention(q, k, v)
    else:
        q, k, v, biases = (relayout(t, c.layout) for t in (q, k, v, biases))
    kwargs = {"scale": c.scale, "activation": c.activation}
    if not c.channels:
        return (q, k, v, biases, c.resolution, c.stride), kwargs
    x = cast(_normal(gen, c.batch, c.keys, c.channels))
    q_weight = cast(_normal(gen, c.heads * c.key_dim, c.channels, std=c.qk_scale * c.channels ** -0.5))
    q_bias = cast(_normal(gen, c.heads * c.key_dim, std=0.1 * c.qk_scale))
    gemm_layout = "transposed" if c.layout == "packed" else c.layout
    x, q_weight, q_bias = (relayout(t, gemm_layout) for t in (x, q_weight, q_bias))
    return (x, q_weight, q_bias, k, v, biases, c.resolution, c.stride), kwargs


def _flash_args(c: FlashCase, gen, device):
    def cast(t):
        return t.to(dtype=c.dtype, device=device)

    q, k, v = _qkv(c, gen, cast)
    bias_shape = {None: None, "full": (c.batch, c.heads, c.queries, c.keys), "heads": (c.heads, c.queries, c.keys),
                  "keys": (c.keys,)}[c.bias]
    bias = None if bias_shape is None else cast(_normal(gen, *bias_shape, std=c.bias_scale))
    if c.layout == "packed":
        q, k, v = _packed_attention(q, k, v)
    else:
        q, k, v = (relayout(t, c.layout) for t in (q, k, v))
    if bias is not None:
        bias = relayout(bias, "contiguous" if c.layout == "packed" else c.layout)
    return (q, k, v), {"scale": c.scale, "bias": bias, "activation": c.activation}


def _gemm_args(c: GemmCase, gen, device):
    def cast(t):
        return relayout(t.to(dtype=c.dtype, device=device), c.layout)

    x = cast(_normal(gen, *c.lead, c.channels, std=c.x_scale))
    if not c.hidden:
        weight = cast(_normal(gen, c.out_features, c.channels, std=max(c.channels, 1) ** -0.5))
        bias = cast(_normal(gen, c.out_features)) if c.bias else None
        residual = cast(_normal(gen, *c.lead, c.out_features, std=c.x_scale)) if c.residual else None
        return (x, weight, bias), {"activation": c.activation, "residual": residual}
    w1 = cast(_normal(gen, c.hidden, c.channels, std=max(c.channels, 1) ** -0.5))
    b1 = cast(_normal(gen, c.hidden))
    w2 = cast(_normal(gen, c.out_features, c.hidden, std=c.hidden ** -0.5))
    b2 = cast(_normal(gen, c.out_features))
    return (x, w1, b1, w2, b2), {"activation": c.activation, "residual": c.residual}


def call(case, args, kwargs, backend: str) -> torch.Tensor:
    return getattr(ops, case.op)(*args, **kwargs, backend=backend)


def _f64(value):
    return value.detach().to(torch.float64) if isinstance(value, torch.Tensor) else value


def single_threaded():
    """torch on one intra-op thread inside the block: on tensors this small, waking the thread pool costs ten times
    the arithmetic (measured: 0.4 ms instead of 6 ms of CPU per float64 attention reference)."""
    return torch_threads(1)


def reference64(case, args, kwargs) -> torch.Tensor:
    """The float64 reference of the op on exactly the values in args (on CPU)."""
    args = [_f64(a.cpu() if isinstance(a, torch.Tensor) else a) for a in args]
    kwargs = {k: _f64(v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    with single_threaded():
        return getattr(reference, case.op)(*args, **kwargs)


def magnitude(case, args, kwargs) -> float:
    """The largest sum of |terms| behind any output, which rounding is relative to rather than to the output that
    cancellation can make arbitrarily smaller (x + w2·w1·x with w2·w1 near -1; a near-uniform attention row over
    values of both signs): pass it as max_rel_error's scale. It is the op's last sum on absolute values, with no
    activation after it (|act(h)| <= |h| for every activation in reference.ACTIVATIONS): linear on every operand;
    attention on v (its softmax weights are positive already); mlp on w2, b2, the residual and the activated hidden
    layer |act(x·w1ᵀ + b1)| (kernels may store it in the input dtype, rounding it relative to itself; with no
    activation in the way, |x|·|w1|ᵀ + |b1| instead would exceed it severalfold, e.g. where ReLU/GELU zero half)."""
    args = [_f64(a.cpu() if isinstance(a, torch.Tensor) else a) for a in args]
    activation, residual = kwargs["activation"], kwargs.get("residual")
    with single_threaded():
        if isinstance(case, SoftmaxFlags):
            v = 4 if getattr(case, "channels", 0) else 2
            args[v] = args[v].abs()
            out = getattr(reference, case.op)(*args, **{**kwargs, "activation": None})
        elif case.hidden:
            x, w1, b1, w2, b2 = args
            hidden = reference.linear(x, w1, b1, activation).abs()
            out = reference.linear(hidden, w2.abs(), b2.abs(), None, x.abs() if residual else None)
        else:
            x, weight, bias = (a.abs() if isinstance(a, torch.Tensor) else a for a in args)
            out = reference.linear(x, weight, bias, None, None if residual is None else _f64(residual.cpu()).abs())
    return out.abs().max().item()
