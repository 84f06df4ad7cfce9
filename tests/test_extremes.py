"""Extreme values on every kernel backend (cpu under each ISA this CPU runs, triton — interpreted without a GPU),
for LeViT's ops and levit_kernels.attention (the flash op; its masked rows are tests/test_attention.py's):

- large logits (a bias table of ±1e4; q·k far beyond exp's fp32 range of ~88, in fp16 too) stay finite and as
  accurate as fp32 logits of that size allow (tolerances.large_logit_rtol);
- NaN, +inf or -inf planted in any operand give exactly the reference's NaN/±inf pattern, and the finite elements
  still match it;
- rows whose every score is -inf give what the reference (torch.softmax) gives: NaN; rows that see one key only
  return that key's value exactly.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from support import targets

targets.interpret_triton()  # before any Triton kernel is built

from conftest import assert_close_to_reference  # noqa: E402
from levit_kernels import reference, tolerances  # noqa: E402
from support import op_cases  # noqa: E402
from support.op_cases import AttentionCase, FlashCase, GemmCase  # noqa: E402


@pytest.fixture(params=targets.KERNEL_TARGETS)
def target(request):
    with targets.use(request.param) as t:
        yield t


def dtypes_of(target):
    """fp32 everywhere; fp16 on triton (bf16 too on a GPU: the interpreter's bf16 dot is broken)."""
    if target.backend != "triton":
        return [torch.float32]
    return [torch.float32, torch.float16] + ([] if target.interpreted else [torch.bfloat16])


def run(target, case, args, kwargs):
    return targets.run_poisoned(target, case, args, kwargs), op_cases.reference64(case, args, kwargs)


# Small enough for the interpreter; past a 16-wide tile in every attention dim and a 16-row query tile.
ATTENTION = AttentionCase(batch=2, heads=2, resolution=5, stride=1, key_dim=16, value_dim=20)
SHRINK = dataclasses.replace(ATTENTION, stride=2, channels=24)
# The flash op with a full dense bias, Nq ≠ Nk, likewise past the interpreter's 16-wide tiles.
FLASH = FlashCase(batch=2, heads=2, queries=19, keys=37, key_dim=16, value_dim=20, bias="full")
EXTREME_OPS = op_cases.OPS


# ---- large logits -----------------------------------------------------------------------------------------------


def logit_magnitude(q, k, biases, scale) -> float:
    """max over scores of |bias| + scale·Σ_d |q_d·k_d|: the size of the logits before the softmax subtracts the
    row max (the scale of their fp32 rounding error)."""
    q, k, biases = (t.detach().cpu().to(torch.float64) for t in (q, k, biases))
    return (scale * (q.abs() @ k.abs().transpose(-1, -2)).max() + biases.abs().max()).item()


@pytest.mark.parametrize("base", [ATTENTION, SHRINK], ids=lambda c: c.op)
def test_bias_of_plus_minus_1e4_does_not_overflow(target, base, seed):
    for dtype in dtypes_of(target):
        activation = reference.ACTIVATIONS[seed % len(reference.ACTIVATIONS)]  # each run draws one
        case = dataclasses.replace(base, dtype=dtype, seed=seed, activation=activation)
        args, kwargs = op_cases.make_args(case, target.device)
        biases = args[-3]
        signs = torch.randint(0, 2, biases.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        biases.copy_((1e4 * signs + torch.randn(biases.shape, generator=torch.Generator().manual_seed(seed + 1)))
                     .to(biases.dtype))
        out, ref = run(target, case, args, kwargs)
        assert out.isfinite().all(), f"{case.op} {dtype}: non-finite output with a ±1e4 bias table"
        rtol = tolerances.large_logit_rtol(dtype, 1e4 + 100)
        assert_close_to_reference(out, ref, dtype, f"{case.op} {dtype}, bias ±1e4", rtol=rtol)


@pytest.mark.parametrize("qk_scale", [8.0, 30.0])
def test_huge_query_key_products_do_not_overflow(target, qk_scale, seed):
    """Logits in the hundreds to thousands (q·k alone ≫ 88, where e^x overflows fp32): the max must be subtracted
    before exponentiating, in fp32 even for fp16 inputs."""
    for dtype in dtypes_of(target):
        case = dataclasses.replace(ATTENTION, dtype=dtype, seed=seed, qk_scale=qk_scale)
        args, kwargs = op_cases.make_args(case, target.device)
        q, k, biases = args[0], args[1], args[3]
        magnitude = logit_magnitude(q, k, biases, case.key_dim ** -0.5)
        assert magnitude > 200, "the case must produce logits far beyond exp's range"
        out, ref = run(target, case, args, kwargs)
        assert out.isfinite().all(), f"{dtype}: non-finite output with logits up to {magnitude:.0f}"
        rtol = tolerances.large_logit_rtol(dtype, magnitude)
        assert_close_to_reference(out, ref, dtype, f"{dtype}, logits up to {magnitude:.0f}", rtol=rtol)


def test_flash_attention_large_logits_do_not_overflow(target, seed):
    """levit_kernels.attention under a dense bias of ±1e4, then under q·k products in the thousands (no bias):
    finite, and as accurate as fp32 logits of that size allow."""
    for dtype in dtypes_of(target):
        activation = reference.ACTIVATIONS[seed % len(reference.ACTIVATIONS)]
        case = dataclasses.replace(FLASH, dtype=dtype, seed=seed, activation=activation)
        args, kwargs = op_cases.make_args(case, target.device)
        bias = kwargs["bias"]
        gen = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, bias.shape, generator=gen) * 2 - 1
        bias.copy_((1e4 * signs + torch.randn(bias.shape, generator=gen)).to(bias.dtype))
        out, ref = run(target, case, args, kwargs)
        assert out.isfinite().all(), f"attention {dtype}: non-finite output with a ±1e4 bias"
        assert_close_to_reference(out, ref, dtype, f"attention {dtype}, bias ±1e4",
                                  rtol=tolerances.large_logit_rtol(dtype, 1e4 + 100))

        case = dataclasses.replace(FLASH, dtype=dtype, seed=seed, qk_scale=30.0, bias=None)
        args, kwargs = op_cases.make_args(case, target.device)
        q, k = args[0], args[1]
        magnitude = logit_magnitude(q, k, torch.zeros(1), case.key_dim ** -0.5)
        assert magnitude > 200, "the case must produce logits far beyond exp's range"
        out, ref = run(target, case, args, kwargs)
        assert out.isfinite().all(), f"attention {dtype}: non-finite output with logits up to {magnitude:.0f}"
        assert_close_to_reference(out, ref, dtype, f"attention {dtype}, logits up to {magnitude:.0f}",
                                  rtol=tolerances.large_logit_rtol(dtype, magnitude))


# ---- NaN / inf patterns -----------------------------------------------------------------------------------------

SPECIALS = {"nan": float("nan"), "+inf": float("inf"), "-inf": float("-inf")}
# Moderate values: no exp underflows to 0 (where 0·inf = NaN in one precision but not another) and no sum
# overflows in fp16, so the pattern of the reference is the only right one.
CASES = {
    "biased_attention": dataclasses.replace(ATTENTION, qk_scale=0.5, activation="hardswish"),
    "shrink_attention": dataclasses.replace(SHRINK, qk_scale=0.5, activation="hardswish"),
    "linear": GemmCase((2, 9), 20, 40, residual=True, activation="hardswish"),
    "mlp": GemmCase((3, 7), 24, 24, hidden=40, residual=True, activation="hardswish"),
    "attention": dataclasses.replace(FLASH, qk_scale=0.5, activation="hardswish"),
}
OPERANDS = {  # positional tensors of each op, by name
    "biased_attention": ("q", "k", "v", "attention_biases"),
    "shrink_attention": ("x", "q_weight", "q_bias", "k", "v", "attention_biases"),
    "linear": ("x", "weight", "bias"),
    "mlp": ("x", "w1", "b1", "w2", "b2"),
    "attention": ("q", "k", "v"),
}
KEYWORD_OPERANDS = {"linear": ("residual",), "attention": ("bias",)}  # tensors passed by keyword


def plant(t: torch.Tensor, value: float, gen: torch.Generator, count: int):
    """Sets ``count`` random elements of the (possibly strided) tensor t to value."""
    for _ in range(count):
        flat = int(torch.randint(0, t.numel(), (1,), generator=gen))
        t[tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), t.shape))] = value


def assert_same_special_pattern(out, ref, dtype, what):
    assert torch.equal(out.isnan(), ref.isnan()), f"{what}: NaN pattern differs from the reference"
    assert torch.equal(out.isposinf(), ref.isposinf()), f"{what}: +inf pattern differs from the reference"
    assert torch.equal(out.isneginf(), ref.isneginf()), f"{what}: -inf pattern differs from the reference"
    finite = ref.isfinite()
    assert_close_to_reference(out[finite], ref[finite], dtype, f"{what}, finite elements")


@pytest.mark.parametrize("op", EXTREME_OPS)
def test_nan_and_inf_give_the_reference_pattern(target, op, seed):
    gen = torch.Generator().manual_seed(seed)
    operands = OPERANDS[op] + KEYWORD_OPERANDS.get(op, ())
    non_finite = 0
    for i, dtype in enumerate(dtypes_of(target)):
        for j, layout in enumerate(("contiguous", "transposed")):
            # Hardswish, GELU and ReLU in turn (the seed picks where to start): each maps ±inf its own way.
            activation = reference.ACTIVATIONS[1 + (seed + 2 * i + j) % (len(reference.ACTIVATIONS) - 1)]
            case = dataclasses.replace(CASES[op], dtype=dtype, layout=layout, seed=seed, activation=activation)
            for name in operands:
                for label, value in SPECIALS.items():
                    args, kwargs = op_cases.make_args(case, target.device)
                    tensor = kwargs[name] if name in kwargs else args[OPERANDS[op].index(name)]
                    plant(tensor, value, gen, count=int(torch.randint(1, 3, (1,), generator=gen)))
                    out, ref = run(target, case, args, kwargs)
                    assert_same_special_pattern(out, ref, dtype, f"{op} {dtype} {layout}: {label} in '{name}'")
                    non_finite += int(not ref.isfinite().all())
    assert non_finite > 0, "no planted value reached the output: the test would prove nothing"


# ---- fully masked rows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [ATTENTION, SHRINK], ids=lambda c: c.op)
def test_rows_with_every_score_minus_inf_are_nan_like_the_reference(target, base, seed):
    """Head 1's bias table is -inf everywhere: torch.softmax of a row of -inf is NaN, so are those outputs."""
    for dtype in dtypes_of(target):
        case = dataclasses.replace(base, dtype=dtype, seed=seed)
        args, kwargs = op_cases.make_args(case, target.device)
        args[-3][1] = float("-inf")
        out, ref = run(target, case, args, kwargs)
        dv = case.value_dim
        assert ref[..., dv:2 * dv].isnan().all() and ref[..., :dv].isfinite().all()
        assert_same_special_pattern(out, ref, dtype, f"{case.op} {dtype}, head 1 fully masked")


@pytest.mark.parametrize("stride", [1, 2])
def test_rows_that_see_one_key_return_its_value_exactly(target, stride, seed):
    """Bias 0 at offset (0, 0), -inf elsewhere: each query attends only to the key at its own grid point, with
    weight exactly 1, so the output is that key's value, bit for bit."""
    for dtype in dtypes_of(target):
        case = dataclasses.replace(ATTENTION, dtype=dtype, seed=seed, stride=stride)
        args, kwargs = op_cases.make_args(case, target.device)
        biases = args[3]
        biases.fill_(float("-inf"))
        biases[:, 0] = 0.0
        out, ref = run(target, case, args, kwargs)
        v = args[2]
        side = (case.resolution - 1) // stride + 1
        own = v.reshape(case.batch, case.heads, case.resolution, case.resolution, -1)[:, :, ::stride, ::stride]
        expected = own.reshape(case.batch, case.heads, side * side, -1).transpose(1, 2).reshape(out.shape)
        assert torch.equal(ref, expected.to(torch.float64).cpu())
        assert torch.equal(out, expected), f"{dtype} stride {stride}: not exactly the own key's value"
