"""Per-op benchmark cases, derived from the LeViT configs (levit.config.op_shapes), and the candidates each is
timed with: the levit-kernels op on a backend (the subject) and the baselines beside it.

A case is one distinct op shape of one variant; ``count`` says how many times a forward pass runs it. Inputs are
random (weights scaled by 1/√fan-in); a case builds a small pool of independent input sets so timing can rotate
them (see :mod:`levit_kernels.bench.timing`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from levit_kernels import ops, reference, tolerances

OPS = ("attention", "shrink", "mlp", "linear", "flash")
# Function implementing each op, by the same name in levit_kernels.ops and levit_kernels.reference ("attention" is
# LeViT's biased attention; "flash" the plain softmax attention over long sequences, levit_kernels.attention).
_REFERENCE_NAME = {"attention": "biased_attention", "shrink": "shrink_attention", "mlp": "mlp", "linear": "linear",
                   "flash": "attention"}
# The ops' fused epilogues as the LeViT model uses them: Hardswish after attention (before proj), after fc1.
ATTENTION_ACTIVATION = "hardswish"


@dataclass(frozen=True)
class OpCase:
    op: str               # one of OPS
    model: str
    block: str            # where in the model, e.g. "s1.attn", "s1.attn.qkv", "head"
    shape: dict           # the op's sizes (see the builders below)
    count: int            # calls per forward pass of the model
    batch: int
    dtype: torch.dtype
    device: str
    threads: int

    @property
    def kind(self) -> str:
        return "op"

    @property
    def flops(self) -> float:
        """FLOPs per call (2 per multiply-add, softmax counted as in levit.flops: one multiply-add per logit)."""
        return 2.0 * self.batch * _MACS[self.op](self.shape)

    @property
    def label(self) -> str:
        return _LABELS[self.op](self.shape)

    def make_inputs(self, gen: torch.Generator) -> tuple:
        """Positional arguments of ``reference.<op>`` / ``ops.<op>`` (before the keyword options)."""
        return _INPUTS[self.op](self.shape, self.batch, gen, self.dtype, self.device)


def _randn(gen, *shape, scale=1.0, dtype=torch.float32, device="cpu"):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype=dtype, device=device)


def _head_views(gen, b, heads, tokens, dims, dtype, device) -> tuple:
    """Per-head (B, heads, tokens, dim) views of one packed (B, tokens, heads·Σdims) projection output: the layout
    the optimized model hands the attention ops (q, k, v read in place from the qkv GEMM's output)."""
    from levit_kernels.optimize.fused import head_views

    packed = _randn(gen, b, tokens, heads * sum(dims), dtype=dtype, device=device)
    return tuple(packed.as_strided((b, *size), strides, offset)
                 for size, strides, offset in head_views(heads, tokens, dims))


def _attention_inputs(s, b, gen, dtype, device):
    r2 = s["R"] ** 2
    nq = reference.query_grid_side(s["R"], s["stride"]) ** 2
    if nq == r2:  # the model's attention blocks: q, k, v from one qkv projection
        q, k, v = _head_views(gen, b, s["H"], r2, (s["D"], s["D"], s["Dv"]), dtype, device)
    else:
        q = _randn(gen, b, s["H"], nq, s["D"], dtype=dtype, device=device)
        k, v = _head_views(gen, b, s["H"], r2, (s["D"], s["Dv"]), dtype, device)
    return q, k, v, _randn(gen, s["H"], r2, dtype=dtype, device=device), s["R"], s["stride"]


def _shrink_inputs(s, b, gen, dtype, device):
    """As the optimized model calls shrink_attention: k, v views of the packed kv projection; on CPU q_weight
    (H·D, C) stored transposed, (C, H·D) row-major, as the cpu backend's model keeps it (FusedShrink.pack), so the
    kernel reads each head's columns in place."""
    r2, hd, c = s["R"] ** 2, s["H"] * s["D"], s["C"]
    x = _randn(gen, b, r2, c, dtype=dtype, device=device)
    if device == "cpu":
        q_weight = _randn(gen, c, hd, scale=c ** -0.5, dtype=dtype, device=device).t()
    else:
        q_weight = _randn(gen, hd, c, scale=c ** -0.5, dtype=dtype, device=device)
    q_bias = _randn(gen, hd, scale=0.1, dtype=dtype, device=device)
    k, v = _head_views(gen, b, s["H"], r2, (s["D"], s["Dv"]), dtype, device)
    return x, q_weight, q_bias, k, v, _randn(gen, s["H"], r2, dtype=dtype, device=device), s["R"], s["stride"]


def _mlp_inputs(s, b, gen, dtype, device):
    c, h = s["C"], s["hidden"]
    return (_randn(gen, b, s["N"], c, dtype=dtype, device=device),
            _randn(gen, h, c, scale=c ** -0.5, dtype=dtype, device=device),
            _randn(gen, h, scale=0.1, dtype=dtype, device=device),
            _randn(gen, c, h, scale=h ** -0.5, dtype=dtype, device=device),
            _randn(gen, c, scale=0.1, dtype=dtype, device=device))


def _linear_inputs(s, b, gen, dtype, device):
    tokens = (b, s["N"]) if s["N"] > 1 else (b,)
    x = _randn(gen, *tokens, s["in"], dtype=dtype, device=device)
    residual = _randn(gen, *tokens, s["out"], dtype=dtype, device=device) if s["residual"] else None
    return (x, _randn(gen, s["out"], s["in"], scale=s["in"] ** -0.5, dtype=dtype, device=device),
            _randn(gen, s["out"], scale=0.1, dtype=dtype, device=device), s["activation"], residual)


def _flash_inputs(s, b, gen, dtype, device):
    return tuple(_randn(gen, b, s["H"], s["N"], dim, dtype=dtype, device=device) for dim in (s["D"], s["D"], s["Dv"]))


def _attention_macs(s):
    from levit.flops import attention_core_macs

    nq = reference.query_grid_side(s["R"], s["stride"]) ** 2
    core = attention_core_macs(s["H"], nq, s["R"] ** 2, s["D"], s["Dv"])
    return core + (nq * s["C"] * s["H"] * s["D"] if "C" in s else 0)  # shrink: the fused q projection


_LABELS = {
    "attention": lambda s: f"H{s['H']} N{s['N']} D{s['D']} Dv{s['Dv']}",
    "shrink": lambda s: f"H{s['H']} C{s['C']} N{s['R'] ** 2}→{s['Nq']} D{s['D']} Dv{s['Dv']}",
    "mlp": lambda s: f"N{s['N']} {s['C']}→{s['hidden']}→{s['C']}",
    "linear": lambda s: f"N{s['N']} {s['in']}→{s['out']}" + (" +res" if s["residual"] else ""),
    "flash": lambda s: f"H{s['H']} N{s['N']} D{s['D']} Dv{s['Dv']}",
}
_INPUTS = {"attention": _attention_inputs, "shrink": _shrink_inputs, "mlp": _mlp_inputs, "linear": _linear_inputs,
           "flash": _flash_inputs}


def _flash_macs(s):
    from levit.flops import attention_core_macs

    return attention_core_macs(s["H"], s["N"], s["N"], s["D"], s["Dv"])


_MACS = {"attention": _attention_macs, "shrink": _attention_macs, "flash": _flash_macs,
         "mlp": lambda s: 2 * s["N"] * s["C"] * s["hidden"],
         "linear": lambda s: s["N"] * s["in"] * s["out"]}


def _block_ops(block) -> list[tuple[str, str, dict]]:
    """(op, block suffix, shape) for every fused op one levit.config block shape runs."""
    if block.kind == "attention":
        (qkv_in, qkv_out), (proj_in, proj_out) = block.linears["qkv"], block.linears["proj"]
        n = block.tokens
        return [("attention", "attn", {"H": block.heads, "N": n, "D": block.key_dim, "Dv": block.value_dim,
                                       "R": block.resolution, "stride": block.stride}),
                ("linear", "attn.qkv", {"N": n, "in": qkv_in, "out": qkv_out, "activation": None,
                                        "residual": False}),
                ("linear", "attn.proj", {"N": n, "in": proj_in, "out": proj_out, "activation": None,
                                         "residual": True})]
    if block.kind == "shrink":
        (kv_in, kv_out), (proj_in, proj_out) = block.linears["kv"], block.linears["proj"]
        return [("shrink", "shrink", {"H": block.heads, "C": block.in_channels, "Nq": block.queries,
                                      "D": block.key_dim, "Dv": block.value_dim, "R": block.resolution,
                                      "stride": block.stride}),
                ("linear", "shrink.kv", {"N": block.keys, "in": kv_in, "out": kv_out, "activation": None,
                                         "residual": False}),
                ("linear", "shrink.proj", {"N": block.queries, "in": proj_in, "out": proj_out,
                                           "activation": None, "residual": False})]
    if block.kind == "mlp":
        return [("mlp", "mlp", {"N": block.tokens, "C": block.channels, "hidden": block.hidden})]
    raise ValueError(f"unknown block kind {block.kind!r}")


def op_cases(model, ops_wanted, batch: int, dtype: torch.dtype, device: str, threads: int,
             img_size: int = 224) -> list[OpCase]:
    """Distinct op shapes of ``model`` (a variant name or a levit.config.LeViTSpec), in forward order."""
    from levit import config

    name = model if isinstance(model, str) else model.name
    head = config.head_shape(model)
    occurrences = [(op, f"s{block.stage}.{suffix}", shape)
                   for block in config.op_shapes(model, img_size) for op, suffix, shape in _block_ops(block)]
    occurrences.append(("linear", "head", {"N": 1, "in": head.channels, "out": head.num_classes,
                                           "activation": None, "residual": False}))
    distinct: dict[tuple, list] = {}  # (op, shape) -> [first block, shape, count]
    for op, block, shape in occurrences:
        if op in ops_wanted:
            distinct.setdefault((op, tuple(shape.items())), [block, shape, 0])[2] += 1
    return [OpCase(op, name, block, shape, count, batch, dtype, device, threads)
            for (op, _), (block, shape, count) in distinct.items()]


# T2T-ViT's softmax attention (levit_kernels.attention) at the shapes of issue 12, each at its own batch whatever
# the preset's: the first token layer (N = 3136, one head, D = 64, batch 2), the second (N = 784, batch 2) and the
# backbone (N = 197 with the cls token, 6 heads of 64, batch 16). (block, shape, batch).
FLASH_SHAPES = (
    ("t2t.token1", {"H": 1, "N": 3136, "D": 64, "Dv": 64}, 2),
    ("t2t.token2", {"H": 1, "N": 784, "D": 64, "Dv": 64}, 2),
    ("t2t.backbone", {"H": 6, "N": 197, "D": 64, "Dv": 64}, 16),
)
FLASH_MODEL = "t2t_vit_t_14"


def flash_cases(dtype: torch.dtype, device: str, threads: int) -> list[OpCase]:
    """The "flash" op cases (FLASH_SHAPES): not derived from a LeViT config, so added once per run."""
    return [OpCase("flash", FLASH_MODEL, block, shape, 1, batch, dtype, device, threads)
            for block, shape, batch in FLASH_SHAPES]


# ---- candidates: what each case is timed with ----------------------------------------------------------------

@dataclass
class CandidateSpec:
    """A named implementation of a case: ``build()`` returns the callable taking the case's inputs, or raises
    :class:`Unavailable` with the reason."""
    name: str
    build: Callable[[], Callable]
    role: str = "baseline"   # "subject" or "baseline"


class Unavailable(Exception):
    """A candidate that cannot run here; the message says why (it is reported, not fatal)."""


@dataclass
class CaseSetup:
    """What a case is timed with, and how its outputs are checked: ``reference(inputs)`` gives the float64 truth;
    ``tolerance(name, errors)`` the allowed max relative error of candidate ``name`` (``errors``: those measured
    so far, by candidate); ``compared(output)`` the part of an output that is checked against the reference."""
    specs: list
    reference: Callable
    tolerance: Callable[[str, dict], float]
    compared: Callable = lambda out: out


def _op_options(case: OpCase) -> dict:
    if case.op == "flash":
        return {}
    if case.op in ("attention", "shrink"):
        return {"scale": None, "activation": ATTENTION_ACTIVATION}
    if case.op == "mlp":
        return {"activation": "hardswish", "residual": True}
    return {}


def _bound(fn, case: OpCase, **extra):
    options = {**_op_options(case), **extra}
    return lambda *args: fn(*args, **options)


def _compiled_reference(case: OpCase) -> Callable:
    """torch.compile of the eager reference. For attention the bias index is built outside the compiled graph
    (as the eager reference caches it) so that the graph gathers the bias but does not rebuild the index."""
    if case.op not in ("attention", "shrink"):
        return torch.compile(_bound(getattr(reference, _REFERENCE_NAME[case.op]), case), dynamic=False)
    idx = reference.attention_bias_index(case.shape["R"], case.shape["stride"], case.device)

    def attention(q, k, v, attention_biases, resolution, stride):
        return reference.biased_attention(q, k, v, attention_biases, resolution, stride,
                                          activation=ATTENTION_ACTIVATION, gathered_bias=attention_biases[:, idx])

    return torch.compile(_with_shrink_queries(attention, case), dynamic=False)


def _attention_tail(out: torch.Tensor) -> torch.Tensor:
    """(B, H, Nq, Dv) → (B, Nq, H·Dv), then LeViT's Hardswish: the layout and epilogue of the fused op."""
    b, h, nq, dv = out.shape
    return F.hardswish(out.transpose(1, 2).reshape(b, nq, h * dv))


def _with_shrink_queries(attention: Callable, case: OpCase) -> Callable:
    """An attention(q, k, v, table, R, stride) as a shrink_attention: project the subsampled tokens to q first."""
    if case.op == "attention":
        return attention

    def shrink(x, q_weight, q_bias, k, v, attention_biases, resolution, stride):
        b, heads, key_dim = x.shape[0], k.shape[1], k.shape[-1]
        xs = reference.subsample_tokens(x, resolution, stride)
        # contiguous: flex_attention's lowering wants q as a 4-D buffer, not a view of the 2-D GEMM output
        q = F.linear(xs, q_weight, q_bias).reshape(b, -1, heads, key_dim).transpose(1, 2).contiguous()
        return attention(q, k, v, attention_biases, resolution, stride)

    return shrink


def _sdpa(case: OpCase) -> Callable:
    """F.scaled_dot_product_attention with the bias materialized as a dense (H, Nq, Nk) float mask, gathered once
    per bias table (as a model caches it), not per call."""
    masks: dict[int, torch.Tensor] = {}

    def attention(q, k, v, attention_biases, resolution, stride):
        mask = masks.get(attention_biases.data_ptr())
        if mask is None:
            mask = masks[attention_biases.data_ptr()] = reference.gather_attention_bias(
                attention_biases, resolution, stride)
        return _attention_tail(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    return _with_shrink_queries(attention, case)


def _token_major(out: torch.Tensor) -> torch.Tensor:
    """(B, H, Nq, Dv) → (B, Nq, H·Dv), the layout of levit_kernels.attention."""
    b, h, nq, dv = out.shape
    return out.transpose(1, 2).reshape(b, nq, h * dv)


def _flash_sdpa(case: OpCase) -> Callable:
    """F.scaled_dot_product_attention (on CPU its flash kernel), output brought to the op's token-major layout."""
    return lambda q, k, v: _token_major(F.scaled_dot_product_attention(q, k, v))


def _flash_flex(case: OpCase) -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(lambda q, k, v: _token_major(flex_attention(q, k, v)), dynamic=False)


def _flex(case: OpCase) -> Callable:
    """Compiled FlexAttention whose score_mod adds ``table[h, idx[q, k]]``: the bias gathered inside the kernel."""
    from torch.nn.attention.flex_attention import flex_attention

    s = case.shape
    idx = reference.attention_bias_index(s["R"], s["stride"], case.device)
    # Below 128 queries flex picks its decoding kernel, which does not take this layout; force the main one.
    options = {"FORCE_USE_FLEX_ATTENTION": True} if idx.shape[0] < 128 else None

    def attention(q, k, v, attention_biases, resolution, stride):
        def add_bias(score, b, h, q_idx, kv_idx):
            return score + attention_biases[h, idx[q_idx, kv_idx]]

        return _attention_tail(flex_attention(q, k, v, score_mod=add_bias, kernel_options=options))

    return torch.compile(_with_shrink_queries(attention, case), dynamic=False)


def _float64_reference(case: OpCase) -> Callable:
    eager = _bound(getattr(reference, _REFERENCE_NAME[case.op]), case)

    def run(*args):
        return eager(*[a.to(torch.float64) if isinstance(a, torch.Tensor) else a for a in args])
    return run


def _op_tolerance(case: OpCase, backend: str) -> Callable[[str, dict], float]:
    def tolerance(name, errors):
        if name.startswith("levit_kernels") and backend == "triton" and case.device == "cuda" \
                and case.dtype == torch.float32:
            return tolerances.TRITON_TF32_RTOL
        return tolerances.kernel_rtol(case.dtype)
    return tolerance


def op_candidates(case: OpCase, backend: str, baselines: Optional[set] = None) -> CaseSetup:
    """The subject (``levit_kernels[backend]``) then every baseline that applies to the case's device/op."""
    public = getattr(ops, _REFERENCE_NAME[case.op])
    eager = getattr(reference, _REFERENCE_NAME[case.op])
    specs = [CandidateSpec(f"levit_kernels[{backend}]", lambda: _bound(public, case, backend=backend), "subject"),
             CandidateSpec("eager", lambda: _bound(eager, case)),
             CandidateSpec("compile", lambda: _compiled_reference(case))]
    if case.device == "cuda" and case.op in ("attention", "shrink"):
        specs += [CandidateSpec("sdpa", lambda: _sdpa(case)), CandidateSpec("flex", lambda: _flex(case))]
    if case.op == "flash":
        specs.append(CandidateSpec("sdpa", lambda: _flash_sdpa(case)))
        if case.device == "cuda":
            specs.append(CandidateSpec("flex", lambda: _flash_flex(case)))
    specs = [s for s in specs if s.role == "subject" or baselines is None or s.name in baselines]
    return CaseSetup(specs, _float64_reference(case), _op_tolerance(case, backend))


def pool_size(set_bytes: int, device: str, cache_bytes: int) -> int:
    """Input sets to rotate: enough to spill the last-level cache twice over on CPU (2–8 sets); on GPU the timer
    flushes L2 itself, so 2 (1 when a set is over 1 GiB)."""
    if device == "cuda":
        return 1 if set_bytes > 2**30 else 2
    return max(2, min(8, math.ceil(2 * cache_bytes / max(set_bytes, 1))))


def tensor_bytes(args) -> int:
    return sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor))
