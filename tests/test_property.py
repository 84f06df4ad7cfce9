"""Property tests: every public op on every kernel backend that runs here (cpu under each ISA this CPU runs; triton,
under the interpreter without a GPU) against the float64 reference, on shapes, memory layouts, dtypes, flags,
activations (those of reference.ACTIVATIONS each backend takes) and values drawn by hypothesis, with outputs
poisoned. Errors are relative to the magnitude of the terms behind the outputs (op_cases.magnitude), so the check
is as strict at inputs of 1e-3 as at 1e3: test_wrong_outputs_fail_at_every_magnitude plants wrong outputs to show
it fails. (The reference backend is not a target: it is reference64's own code on the same values, so comparing
the two could not fail.)

Shapes span the issue's ranges (grid side 1-16, stride 1/2, heads 1-16, key dim 8-64, value dim 8-256, batch 1-9)
under a per-call work budget, so large sides come with few heads and small batches; the interpreted triton
backend gets tiny shapes (its per-call cost is tens of milliseconds even then). LEVIT_PROPERTY_EXAMPLES sets the
examples per op and backend (default 500). The seed is fresh per session and printed on failure (rerun with
LEVIT_TEST_SEED=N); hypothesis also prints the falsifying case and a @reproduce_failure blob.
"""
from __future__ import annotations

import dataclasses
import os
import random

import pytest
import torch
from support import targets

targets.interpret_triton()  # before any Triton kernel is built

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import assert_close_to_reference  # noqa: E402
from levit_kernels import reference, tolerances  # noqa: E402
from levit_kernels.reference import query_grid_side  # noqa: E402
from support import op_cases  # noqa: E402
from support.op_cases import AttentionCase, FlashCase, GemmCase  # noqa: E402

EXAMPLES = int(os.environ.get("LEVIT_PROPERTY_EXAMPLES", "500"))
SEED = int(os.environ.get("LEVIT_TEST_SEED", random.SystemRandom().randrange(2**31)))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, print_blob=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a backend's cases may draw: maxima per dim and a budget of multiply-adds per call."""
    side: int
    pairs: int             # batch × heads
    key_dim: tuple
    value_dim: tuple
    channels: int          # shrink: C of x
    tokens: int            # linear/mlp: rows of x
    width: int             # linear/mlp: C, C_out, hidden
    work: int
    dtypes: tuple
    x_scales: tuple        # linear/mlp input magnitudes


CPU_LIMITS = Limits(side=16, pairs=144, key_dim=(8, 64), value_dim=(8, 256), channels=64, tokens=200, width=200,
                    work=1_000_000, dtypes=(torch.float32,), x_scales=(1e-3, 1.0, 1e3))
# Interpreted triton tiles: 16 queries (two tiles per program), linear 16×32×16, mlp hidden slices of 16; these
# limits reach past each tile edge once and no further.
TRITON_LIMITS = Limits(side=5, pairs=3, key_dim=(8, 17), value_dim=(8, 33), channels=17, tokens=17, width=33,
                       work=20_000, dtypes=(torch.float32, torch.float16), x_scales=(1e-3, 1.0, 10.0))
TRITON_GPU_LIMITS = dataclasses.replace(CPU_LIMITS, dtypes=(torch.float32, torch.float16, torch.bfloat16),
                                        x_scales=(1e-3, 1.0, 10.0))
EVERY_LIMITS = (CPU_LIMITS, TRITON_LIMITS, TRITON_GPU_LIMITS)


@pytest.fixture(params=targets.KERNEL_TARGETS)
def target(request):
    request.node.user_properties.append(("seed", SEED))
    with targets.use(request.param) as t:
        yield t


def limits_of(target: targets.Target) -> Limits:
    if target.backend == "triton":
        return TRITON_LIMITS if target.interpreted else TRITON_GPU_LIMITS
    return CPU_LIMITS


# ---- strategies -------------------------------------------------------------------------------------------------


def _at_most(limit: int, low: int, high: int) -> int:
    return max(low, min(high, limit))


def _batch_and_heads(draw, lim: Limits, pair_work: int) -> tuple:
    """(batch, heads) within the work budget, given the multiply-adds of one (batch, head) pair."""
    pairs = _at_most(lim.work // pair_work, 1, lim.pairs)
    heads = draw(st.integers(1, min(16, pairs)))
    return draw(st.integers(1, _at_most(pairs // heads, 1, 9))), heads


def _softmax_draws(draw, lim: Limits, activations: tuple, d: int) -> dict:
    """The keywords both attention strategies draw alike: layout, dtype, activation, scale, q/k magnitude, seed.
    Logits stay within about ±30 (the scale is a factor of D^-1/2): the fp32 tolerance holds for any softmax
    there; far larger logits are tests/test_extremes.py's subject."""
    factor = draw(st.one_of(st.none(), st.floats(0.1, 2.0)))
    return dict(layout=draw(st.sampled_from(op_cases.ATTENTION_LAYOUTS)),
                dtype=draw(st.sampled_from(lim.dtypes)),
                activation=draw(st.sampled_from(activations)),
                scale=None if factor is None else factor * d ** -0.5,
                qk_scale=draw(st.sampled_from((0.1, 1.0, 1.5))),
                seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def attention_cases(draw, lim: Limits, activations: tuple, shrink: bool) -> AttentionCase:
    r = draw(st.integers(1, lim.side))
    stride = draw(st.sampled_from((1, 2)))
    per_key_dim = query_grid_side(r, stride) ** 2 * r * r  # multiply-adds per unit of D + Dv per (batch, head)
    d = draw(st.integers(*lim.key_dim))
    dv = draw(st.integers(lim.value_dim[0], _at_most(lim.work // per_key_dim - d, *lim.value_dim)))
    batch, heads = _batch_and_heads(draw, lim, per_key_dim * (d + dv))
    channels = draw(st.integers(1, lim.channels)) if shrink else 0
    return AttentionCase(batch, heads, r, stride, d, dv, **_softmax_draws(draw, lim, activations, d),
                         bias_scale=draw(st.sampled_from((0.0, 1.0, 4.0))), channels=channels)


@st.composite
def flash_cases(draw, lim: Limits, activations: tuple) -> FlashCase:
    """levit_kernels.attention: up to lim.tokens queries and side² keys (CPU: past the flash kernel's 48-query
    tiles and its 240-key block; interpreted triton: past its 16-wide tiles), every bias form, Nq ≠ Nk."""
    nq = draw(st.integers(1, lim.tokens))
    nk = draw(st.integers(1, lim.side ** 2))
    d = draw(st.integers(*lim.key_dim))
    dv = draw(st.integers(lim.value_dim[0], _at_most(lim.work // (nq * nk) - d, *lim.value_dim)))
    batch, heads = _batch_and_heads(draw, lim, nq * nk * (d + dv))
    return FlashCase(batch, heads, nq, nk, d, dv, **_softmax_draws(draw, lim, activations, d),
                     bias=draw(st.sampled_from(op_cases.FLASH_BIASES)), bias_scale=draw(st.sampled_from((1.0, 4.0))))


@st.composite
def gemm_cases(draw, lim: Limits, activations: tuple, mlp: bool) -> GemmCase:
    lead = tuple(draw(st.lists(st.integers(1, 9), max_size=3)))
    rows = max(1, int(torch.tensor(lead).prod().item()) if lead else 1)
    if rows > lim.tokens:
        lead = (lim.tokens,)
        rows = lim.tokens
    width = _at_most(int((lim.work // rows) ** 0.5), 1, lim.width)
    channels = draw(st.integers(1, width))
    hidden = draw(st.integers(1, width)) if mlp else 0
    residual = draw(st.booleans())
    out = channels if residual and mlp else draw(st.integers(1, width))
    return GemmCase(
        lead, channels, out, hidden,
        bias=draw(st.booleans()),
        residual=residual,
        layout=draw(st.sampled_from(op_cases.GEMM_LAYOUTS)),
        dtype=draw(st.sampled_from(lim.dtypes)),
        activation=draw(st.sampled_from(activations)),
        x_scale=draw(st.sampled_from(lim.x_scales)),
        seed=draw(st.integers(0, 2**32 - 1)))


STRATEGIES = {  # op -> strategy(limits, activations)
    "biased_attention": lambda lim, acts: attention_cases(lim, acts, shrink=False),
    "shrink_attention": lambda lim, acts: attention_cases(lim, acts, shrink=True),
    "linear": lambda lim, acts: gemm_cases(lim, acts, mlp=False),
    "mlp": lambda lim, acts: gemm_cases(lim, acts, mlp=True),
    "attention": flash_cases,
}
PROPERTY_OPS = op_cases.OPS


# ---- the property -----------------------------------------------------------------------------------------------


def check_against_reference(target: targets.Target, case):
    args, kwargs = op_cases.make_args(case, target.device)
    out = targets.run_poisoned(target, case, args, kwargs)
    ref = op_cases.reference64(case, args, kwargs)
    assert out.shape == ref.shape and out.dtype == case.dtype and out.device == args[0].device
    assert_close_to_reference(out, ref, case.dtype, f"{case.op} on {target.backend}, {case}",
                              scale=op_cases.magnitude(case, args, kwargs))


@pytest.mark.parametrize("op", PROPERTY_OPS)
@seed(SEED)
@PROPERTY
@given(data=st.data())
def test_op_matches_float64_reference(target, op, data):
    strategy = STRATEGIES[op](limits_of(target), targets.activations(target, op))
    check_against_reference(target, data.draw(strategy, label="case"))


# ---- the check can fail -----------------------------------------------------------------------------------------


def planted_cases(op: str):
    """op at a LeViT-like size in every dtype, at every input magnitude and with every flag and activation the
    strategies draw (attention: small and large logits, with and without a bias table)."""
    dtypes = sorted({d for lim in EVERY_LIMITS for d in lim.dtypes}, key=str)
    flags = [dict(dtype=d, activation=a) for d in dtypes for a in reference.ACTIVATIONS]
    if op == "attention":
        base = FlashCase(2, 3, 50, 37, 16, 24)
        return [dataclasses.replace(base, qk_scale=qk, bias=bias, seed=i, **f)
                for i, (f, qk, bias) in enumerate((f, qk, bias) for f in flags for qk in (0.1, 1.5)
                                                  for bias in (None, "full"))]
    if op in ("biased_attention", "shrink_attention"):
        base = AttentionCase(2, 4, 7, 1 if op == "biased_attention" else 2, 16, 32,
                             channels=0 if op == "biased_attention" else 32)
        return [dataclasses.replace(base, qk_scale=qk, bias_scale=bias, seed=i, **f)
                for i, (f, qk, bias) in enumerate((f, qk, bias) for f in flags for qk in (0.1, 1.5)
                                                  for bias in (0.0, 4.0))]
    x_scales = sorted({s for lim in EVERY_LIMITS for s in lim.x_scales})
    base = GemmCase((4, 49), 64, 64 if op == "mlp" else 48, hidden=96 if op == "mlp" else 0)
    return [dataclasses.replace(base, x_scale=x, bias=bias, residual=residual, seed=i, **f)
            for i, (f, x, bias, residual) in enumerate(
                (f, x, bias, residual) for f in flags for x in x_scales for bias in (False, True)
                for residual in (False, True)) if bias or op == "linear"]


@pytest.mark.parametrize("op", PROPERTY_OPS)
def test_wrong_outputs_fail_at_every_magnitude(op):
    """An all-zero output and one off by 1% everywhere (10% in bf16, whose tolerance is 1.6%) exceed the tolerance
    in every dtype, at every input magnitude the strategies draw: the error is relative to the operands' terms,
    not to an absolute floor (under max(max|ref|, 1), all-zero fp16 linear outputs passed at x_scale 1e-3)."""
    for case in planted_cases(op):
        args, kwargs = op_cases.make_args(case)
        ref = op_cases.reference64(case, args, kwargs)
        scale = op_cases.magnitude(case, args, kwargs)
        rtol = tolerances.kernel_rtol(case.dtype)
        off = 0.1 if case.dtype == torch.bfloat16 else 0.01
        for what, wrong in (("all zero", torch.zeros_like(ref)), (f"{off:.0%} off", ref * (1 + off))):
            err = tolerances.max_rel_error(wrong.to(case.dtype), ref, scale)
            assert err > rtol, f"{op}, {case}: an output {what} passes ({err:.2e} <= {rtol:.1e})"
