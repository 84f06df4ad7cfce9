"""layer_norm and pool_mixer (EfficientFormer's Meta3D LayerNorm and Meta4D token mixer) on every kernel target —
cpu under each ISA this CPU runs, triton (interpreted without a GPU) — against the float64 reference: the
EfficientFormer L1/L3/L7 and T2T-ViT shapes, odd shapes, strided inputs, poisoned outputs, fresh seeds, NaN/inf
patterns like the reference's. Then the CPU ops' thread-count independence and opcheck/torch.compile. (Bad input:
tests/test_bad_input.py.)
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from support import targets

targets.interpret_triton()  # before any Triton kernel is built

import levit_kernels as lk  # noqa: E402
from conftest import assert_close_to_reference  # noqa: E402
from levit_kernels import backends  # noqa: E402
from levit_kernels.bench.timing import torch_threads  # noqa: E402
from support import op_cases  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Op:
    op: str  # the public op's name (all targets.run_poisoned and op_cases.reference64 read)


LAYER_NORM, POOL_MIXER = Op("layer_norm"), Op("pool_mixer")

# EfficientFormer's Meta4D stages (map side, width) for L1 / L3 / L7.
POOL_STAGES = {"l1": [(56, 48), (28, 96), (14, 224), (7, 448)], "l3": [(56, 64), (28, 128), (14, 320), (7, 512)],
               "l7": [(56, 96), (28, 192), (14, 384), (7, 768)]}
POOL_SHAPES = sorted({shape for stages in POOL_STAGES.values() for shape in stages})
# LayerNorm rows: EfficientFormer's Meta3D blocks (49 tokens of 448 / 512 / 768), T2T-ViT's token-to-token layers
# (3136 tokens of 147 = 3·7·7 and of 64, 784 of 576 = 64·3·3) and its ViT backbone (197 tokens of 384).
NORM_SHAPES = [(2, 49, 448), (2, 49, 512), (2, 49, 768), (1, 3136, 147), (1, 3136, 64), (1, 784, 576),
               (1, 197, 384)]


@pytest.fixture(params=targets.KERNEL_TARGETS)
def target(request):
    with targets.use(request.param) as t:
        yield t


def randn(gen, *shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)


def run(target, case: Op, args, kwargs=None):
    """(poisoned-output result on the target, float64 reference of the same values)."""
    kwargs = kwargs or {}
    return targets.run_poisoned(target, case, args, kwargs), op_cases.reference64(case, args, kwargs)


def layer_norm_scale(x, weight, eps) -> float:
    """The output magnitude an fp32 rounding of x's terms can move, as the error contract's ``scale``:
    max|x| / sqrt(var + eps) per row (× max|weight|). A well-spread row gives about max|ref|; a row of two nearly
    equal values is ill-conditioned (measured: C = 2, eps = 1e-6, seed 368935313 gave 1.3e-5 against max|ref|
    while the float64 result itself moves by that much under one-ulp changes of x), and is judged against it."""
    x = x.detach().cpu().double()
    if x.numel() == 0:
        return 0.0
    rows = x.reshape(-1, x.shape[-1])
    cond = rows.abs().amax(dim=1) / torch.sqrt(rows.var(dim=1, unbiased=False) + eps)
    w = 1.0 if weight is None else float(weight.detach().abs().max().cpu()) if weight.numel() else 1.0
    return float(cond.max()) * w


def check(target, case: Op, args, kwargs=None, what=""):
    out, ref = run(target, case, args, kwargs)
    x = args[0]
    assert out.dtype == x.dtype and out.device == x.device and out.shape == ref.shape, what
    scale = layer_norm_scale(x, args[1], (kwargs or {}).get("eps", 1e-5)) if case.op == "layer_norm" else 0.0
    assert_close_to_reference(out.cpu(), ref, x.dtype, f"{case.op} {what}", scale=scale)
    return out


def assert_same_special_pattern(out, ref, dtype, what):
    out = out.cpu()
    assert torch.equal(out.isnan(), ref.isnan()), f"{what}: NaN pattern differs from the reference"
    assert torch.equal(out.isposinf(), ref.isposinf()), f"{what}: +inf pattern differs from the reference"
    assert torch.equal(out.isneginf(), ref.isneginf()), f"{what}: -inf pattern differs from the reference"
    finite = ref.isfinite()
    assert_close_to_reference(out[finite], ref[finite], dtype, f"{what}, finite elements")


# ---- pool_mixer -------------------------------------------------------------------------------------------------


# The Triton interpreter runs a program's every op in numpy (~1 min per 56² map on a shared 2-core machine): there,
# one image, and the low-precision run only where the map is at most this many values.
INTERPRETED_LOWP_MAX = 100_000


def _model_shape_dtypes(target, numel):
    dtypes = targets.dtypes_of(target)
    return dtypes[:1] if target.interpreted and numel > INTERPRETED_LOWP_MAX else dtypes


@pytest.mark.parametrize("side,c", POOL_SHAPES, ids=lambda v: str(v))
def test_pool_mixer_efficientformer_shapes(target, gen, side, c):
    batch = 1 if target.interpreted else 2
    for dtype in _model_shape_dtypes(target, side * side * c):
        x = randn(gen, batch, side, side, c, dtype=dtype, device=target.device)
        ls = randn(gen, c, dtype=dtype, device=target.device)
        check(target, POOL_MIXER, [x, ls, 3], what=f"{side}x{side}x{c} {dtype}")


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (5, 7), (1, 9), (8, 1), (3, 3)], ids=str)
def test_pool_mixer_odd_shapes(target, gen, h, w):
    """Maps smaller than, equal to and around the window; widths off the vector widths; windows 1, 3, 5, 7."""
    for c in (1, 3, 17):
        for pool_size in (1, 3, 5, 7):
            x = randn(gen, 2, h, w, c, device=target.device)
            check(target, POOL_MIXER, [x, randn(gen, c, device=target.device), pool_size],
                  what=f"{h}x{w}x{c} pool {pool_size}")


def _channels_last_views(gen, b, h, w, c, device):
    """(name, view) of (B, H, W, C) maps in layouts other than a contiguous channels-last tensor."""
    yield "permuted NCHW (channel stride H·W: copied)", randn(gen, b, c, h, w, device=device).permute(0, 2, 3, 1)
    nchw_cl = randn(gen, b, c, h, w, device=device).contiguous(memory_format=torch.channels_last)
    yield "permuted channels_last NCHW (read in place)", nchw_cl.permute(0, 2, 3, 1)
    yield "channel slice (pixel stride C + 5)", randn(gen, b, h, w, c + 5, device=device)[..., 2:c + 2]
    yield "every other column, rows 1..H", randn(gen, b, h + 2, 2 * w, c, device=device)[:, 1:h + 1, ::2]
    yield "batch-transposed", randn(gen, h, b, w, c, device=device).transpose(0, 1)
    yield "expanded batch (stride 0)", randn(gen, 1, h, w, c, device=device).expand(b, h, w, c)


@pytest.mark.parametrize("h,w,c", [(7, 7, 48), (5, 6, 17)], ids=str)
def test_pool_mixer_strided_inputs(target, gen, h, w, c):
    for name, x in _channels_last_views(gen, 2, h, w, c, target.device):
        ls = randn(gen, 2 * c, device=target.device)[::2]  # a strided layer scale too
        check(target, POOL_MIXER, [x, ls, 3], what=name)


SPECIALS = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}


def plant(t: torch.Tensor, value: float, gen: torch.Generator, count: int):
    """Sets ``count`` random elements of t to value."""
    for _ in range(count):
        flat = int(torch.randint(0, t.numel(), (1,), generator=gen))
        t[tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), t.shape))] = value


def test_pool_mixer_nan_and_inf_give_the_reference_pattern(target, gen):
    non_finite = 0
    for label, value in SPECIALS.items():
        for operand in ("x", "layer_scale"):
            x, ls = randn(gen, 2, 5, 6, 19), randn(gen, 19)
            plant(x if operand == "x" else ls, value, gen, count=int(torch.randint(1, 3, (1,), generator=gen)))
            if label == "-inf" and operand == "x":
                x[1, 2, 3, 4], x[1, 3, 3, 4] = math.inf, -math.inf  # +inf and -inf in one window: NaN sums
            args = [x.to(target.device), ls.to(target.device), 3]
            out, ref = run(target, POOL_MIXER, args)
            assert_same_special_pattern(out, ref, torch.float32, f"pool_mixer: {label} in '{operand}'")
            non_finite += int(not ref.isfinite().all())
    assert non_finite == 2 * len(SPECIALS), "a planted value did not reach the output: the test would prove nothing"


# ---- layer_norm -------------------------------------------------------------------------------------------------


AFFINES = [(False, False), (True, True), (True, False), (False, True)]


def _affine(gen, c, with_weight, with_bias, dtype, device):
    return (randn(gen, c, dtype=dtype, device=device) if with_weight else None,
            randn(gen, c, dtype=dtype, device=device) if with_bias else None)


@pytest.mark.parametrize("shape", NORM_SHAPES, ids=str)
def test_layer_norm_model_shapes(target, gen, shape):
    if target.interpreted:  # rows are independent: the width is what a shape tests; 197 rows keep several tiles
        shape = (shape[0], min(shape[1], 197), shape[2])
    for dtype in targets.dtypes_of(target):
        x = (randn(gen, *shape) * 3 + 0.5).to(dtype=dtype, device=target.device)
        for with_weight, with_bias in AFFINES[:2]:
            w, b = _affine(gen, shape[-1], with_weight, with_bias, dtype, target.device)
            check(target, LAYER_NORM, [x, w, b], what=f"{shape} {dtype} affine={with_weight}")


@pytest.mark.parametrize("lead", [(), (0,), (5,), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("c", [1, 2, 3, 17, 100])
def test_layer_norm_odd_shapes(target, gen, lead, c):
    """Widths off the vector widths (C = 1: every output is the bias), no rows, no or several leading dims; weight
    and bias each optional; other eps."""
    x = randn(gen, *lead, c, device=target.device)
    for with_weight, with_bias in AFFINES:
        w, b = _affine(gen, c, with_weight, with_bias, torch.float32, target.device)
        check(target, LAYER_NORM, [x, w, b], what=f"{lead}x{c} weight={with_weight} bias={with_bias}")
    for eps in (1e-6, 0.1):
        check(target, LAYER_NORM, [x, None, None], {"eps": eps}, what=f"{lead}x{c} eps={eps}")


def _row_views(gen, lead, c, device):
    base = randn(gen, *lead, 2 * c, device=device)
    yield "channel slice (row stride 2C)", base[..., c:]
    yield "every other channel", base[..., ::2]
    yield "transposed", randn(gen, c, *lead, device=device).movedim(0, -1)
    yield "expanded rows (stride 0)", randn(gen, 1, c, device=device).expand(*lead, c)
    yield "every other token", randn(gen, lead[0], 2 * lead[1], c, device=device)[:, ::2]


@pytest.mark.parametrize("c", [17, 448])
def test_layer_norm_strided_inputs(target, gen, c):
    for name, x in _row_views(gen, (3, 7), c, target.device):
        w, b = _affine(gen, 2 * c, True, True, torch.float32, target.device)
        check(target, LAYER_NORM, [x, w[::2], b[1::2]], what=f"x {name}, strided weight and bias")


def test_layer_norm_large_mean_against_spread(target, gen):
    """Rows of 1000 ± 1: a one-pass variance (E[x²] − mean²) would cancel to noise; the reference does not."""
    x = (1000 + randn(gen, 4, 49, 384)).to(target.device)
    check(target, LAYER_NORM, [x, None, None], what="1000 ± 1")


def test_layer_norm_nan_and_inf_give_the_reference_pattern(target, gen):
    non_finite = 0
    for label, value in SPECIALS.items():
        for operand in ("x", "weight", "bias"):
            x = randn(gen, 6, 37)
            w, b = randn(gen, 37), randn(gen, 37)
            plant({"x": x, "weight": w, "bias": b}[operand], value, gen, count=2)
            args = [t.to(target.device) for t in (x, w, b)]
            out, ref = run(target, LAYER_NORM, args)
            assert_same_special_pattern(out, ref, torch.float32, f"layer_norm: {label} in '{operand}'")
            non_finite += int(not ref.isfinite().all())
    assert non_finite == 3 * len(SPECIALS), "a planted value did not reach the output: the test would prove nothing"


# ---- CPU op specifics -------------------------------------------------------------------------------------------

_cpu_ok, _cpu_why = backends.availability("cpu")
needs_cpu = pytest.mark.skipif(not _cpu_ok, reason=f"CPU backend unavailable: {_cpu_why}")


@needs_cpu
@pytest.mark.parametrize("batch", [1, 3])
def test_cpu_thread_count_does_not_change_results(gen, batch):
    """The pool's bands of rows and the LayerNorm's row ranges change with the thread count; no element's
    summation order may."""
    x, ls = randn(gen, batch, 14, 14, 40), randn(gen, 40)
    rows = randn(gen, batch, 49, 200)
    outs = []
    for threads in (1, 2, 3):
        with torch_threads(threads):
            outs.append((lk.pool_mixer(x, ls, backend="cpu"), lk.layer_norm(rows, backend="cpu")))
    for pool, norm in outs[1:]:
        assert torch.equal(pool, outs[0][0]) and torch.equal(norm, outs[0][1])


@needs_cpu
def test_cpu_opcheck_and_compile(gen):
    from levit_kernels.backends import cpu

    x, ls, w, b = randn(gen, 2, 5, 6, 24), randn(gen, 24), randn(gen, 24), randn(gen, 24)
    torch.library.opcheck(torch.ops.levit_kernels.pool_mixer.default, (x, ls, 3))
    torch.library.opcheck(torch.ops.levit_kernels.pool_mixer.default, (x.permute(0, 2, 1, 3), ls, 5))
    torch.library.opcheck(torch.ops.levit_kernels.layer_norm.default, (x, w, b, 1e-5))
    torch.library.opcheck(torch.ops.levit_kernels.layer_norm.default, (x[..., :7], None, None, 1e-6))

    def block(x):
        y = cpu.pool_mixer(x, ls, 3)
        return cpu.layer_norm(y.reshape(2, 30, 24), w, b, 1e-5)

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    torch.testing.assert_close(compiled(x), block(x), rtol=0, atol=0)


@needs_cpu
@pytest.mark.parametrize("op", ["layer_norm", "pool_mixer"])
def test_cpu_refuses_other_dtypes(op):
    x = torch.randn(2, 3, 4, 8, dtype=torch.float64)
    args = (x, None, None) if op == "layer_norm" else (x, torch.ones(8, dtype=torch.float64))
    with pytest.raises(TypeError, match=f"{op}: backend 'cpu' computes in float32 only, got .*float64"):
        getattr(lk, op)(*args, backend="cpu")
