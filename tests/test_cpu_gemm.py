"""CPU (C++) linear and mlp against the float64 reference, under every ISA variant this machine runs, plus the
packed-weight cache, torch.compile/export, opcheck and argument errors."""
import gc

import pytest
import torch

import levit_kernels as lk
from levit import config
from levit_kernels import backends, reference
from levit_kernels._debug import poisoned_outputs
from levit_kernels.backends import cpu
from levit_kernels.bench.timing import torch_threads
from support.threads import run_threads
from tests.conftest import abs64, assert_close_to_reference

_ok, _why = backends.availability("cpu")
pytestmark = pytest.mark.skipif(not _ok, reason=f"CPU backend unavailable: {_why}")

ISAS = ("scalar", "avx2", "avx512", "neon")


def _levit_shapes():
    """(tokens, C_in, C_out) of every Linear of the five variants at batch 1 (levit.config), and (tokens, C, hidden)
    of every MLP."""
    linears, mlps = set(), set()
    for name in config.MODEL_NAMES:
        for block in config.op_shapes(name):
            if block.kind == "mlp":
                mlps.add((block.tokens, block.channels, block.hidden))
            elif block.kind == "attention":
                linears |= {(block.tokens, *io) for io in block.linears.values()}
            else:  # shrink: kv on every key token; q and proj on the subsampled query grid
                io = block.linears
                linears |= {(block.keys, *io["kv"]), (block.queries, *io["q"]), (block.queries, *io["proj"])}
        head = config.head_shape(name)
        linears.add((1, head.channels, head.num_classes))
    return sorted(linears), sorted(mlps)


LEVIT_LINEARS, LEVIT_MLPS = _levit_shapes()
# EfficientFormer's MLPs at batch 1 (efficientformer-facts): (tokens, C, hidden = 4C) of its four stages (L1 widths;
# L3/L7 widen the same 56²/28²/14²/7² grids).
EFFICIENTFORMER_MLPS = [(56 * 56, 48, 192), (28 * 28, 96, 384), (14 * 14, 224, 896), (7 * 7, 448, 1792)]
ACTIVATIONS = reference.ACTIVATIONS
# The portable variant is ~100x slower; its row loop is the same code, so fewer rows (still several row tiles
# and a remainder) keep the suite quick.
SCALAR_MAX_TOKENS = 13


@pytest.fixture(params=ISAS)
def isa(request):
    name = request.param
    if not cpu.isa_supported(name):
        pytest.skip(f"ISA {name} is not supported by this CPU/build (best here: {cpu.supported_isas()[-1]})")
    with cpu.force_isa(name):
        yield name


def _tokens(isa, n):
    return min(n, SCALAR_MAX_TOKENS) if isa == "scalar" else n


def _weights(gen, c_out, c_in):
    return torch.randn(c_out, c_in, generator=gen) / max(c_in, 1) ** 0.5, torch.randn(c_out, generator=gen)


def _f64(*ts):
    return [None if t is None else t.double() for t in ts]


def _linear_terms(x, w, b):
    """|b| + Σ|w·x| per output: the magnitude of the terms a product sums; one float32 rounding of each moves the
    output that much times eps, however far the sum cancels below it."""
    return reference.linear(*abs64(x, w, b), None, None)


def _max_terms(t, res=None):
    """Error scale of an epilogue: the activation's slope is at most 1.5 (hardswish), so |act(y)| errs like |y|;
    the residual adds its own magnitude. One float32 output rounding after ``out = act(y) + res`` near 0 costs
    eps·(|y| + |res|), not eps·|out| (CI: 1 element, gelu + residual, 1.19e-5 > 1e-5 relative to |out|)."""
    if res is not None:
        t = t + res.double().abs()
    return t.max().item() if t.numel() else 0.0


def _check_linear(x, w, b, act, res, what):
    with poisoned_outputs():
        out = lk.linear(x, w, b, act, res, backend="cpu")
    ref = reference.linear(*_f64(x, w, b), act, *_f64(res))
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert_close_to_reference(out, ref, torch.float32, what, scale=_max_terms(_linear_terms(x, w, b), res))
    return out


def _check_mlp(x, w1, b1, w2, b2, act, residual, what):
    with poisoned_outputs():
        out = lk.mlp(x, w1, b1, w2, b2, act, residual, backend="cpu")
    ref = reference.mlp(*_f64(x, w1, b1, w2, b2), act, residual)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # The hidden activations' errors reach the output through |w2|: terms = |w2|·(|w1|·|x| + |b1|) + |b2|.
    terms = reference.linear(_linear_terms(x, w1, b1), *abs64(w2, b2), None, None)
    assert_close_to_reference(out, ref, torch.float32, what, scale=_max_terms(terms, x if residual else None))
    return out


@pytest.mark.parametrize("tokens,c_in,c_out", LEVIT_LINEARS)
def test_linear_levit_shapes(isa, gen, tokens, c_in, c_out):
    x = torch.randn(1, _tokens(isa, tokens), c_in, generator=gen)
    w, b = _weights(gen, c_out, c_in)
    res = torch.randn(x.shape[:-1] + (c_out,), generator=gen)
    _check_linear(x, w, b, None, None, f"linear {c_in}->{c_out}")
    for act in ACTIVATIONS:
        _check_linear(x, w, b, act, res, f"linear {c_in}->{c_out} + {act} + residual")


@pytest.mark.parametrize("tokens,c,hidden", LEVIT_MLPS + EFFICIENTFORMER_MLPS)
def test_mlp_model_shapes(isa, gen, tokens, c, hidden):
    x = torch.randn(1, _tokens(isa, tokens), c, generator=gen)
    w1, b1 = _weights(gen, hidden, c)
    w2, b2 = _weights(gen, c, hidden)
    for act in ACTIVATIONS:
        _check_mlp(x, w1, b1, w2, b2, act, True, f"mlp C={c} hidden={hidden} act={act}")


@pytest.mark.parametrize("tokens,c,hidden", EFFICIENTFORMER_MLPS)
def test_linear_efficientformer_shapes(isa, gen, tokens, c, hidden):
    """Each MLP GEMM alone: fc1 with its GELU, fc2 with the residual."""
    x = torch.randn(1, _tokens(isa, tokens), c, generator=gen)
    w1, b1 = _weights(gen, hidden, c)
    w2, b2 = _weights(gen, c, hidden)
    for act in ACTIVATIONS:
        hidden_x = _check_linear(x, w1, b1, act, None, f"fc1 {c}->{hidden} + {act}")
    _check_linear(hidden_x, w2, b2, None, x, f"fc2 {hidden}->{c} + residual")


EPILOGUES = [(bias, act, res) for bias in (True, False) for act in ACTIVATIONS for res in (False, True)]


@pytest.mark.parametrize("lead", [(1,), (7,), (197,), (2, 7), (0,)], ids=str)
@pytest.mark.parametrize("c_in,c_out", [(1, 1), (3, 17), (17, 3), (100, 100), (17, 300), (2100, 37), (0, 5)])
def test_linear_odd_shapes(isa, gen, lead, c_in, c_out):
    """Widths off the vector width and tile, K beyond one K block (2048), K = 0, no tokens; every epilogue."""
    x = torch.randn(*lead, c_in, generator=gen)
    w, b = _weights(gen, c_out, c_in)
    res = torch.randn(*lead, c_out, generator=gen)
    for bias, act, with_res in EPILOGUES:
        _check_linear(x, w, b if bias else None, act, res if with_res else None,
                      f"linear {lead}x{c_in}->{c_out} bias={bias} act={act} residual={with_res}")


@pytest.mark.parametrize("lead", [(1,), (7,), (197,), (2, 7)], ids=str)
@pytest.mark.parametrize("c,hidden,c_out", [(1, 2, 1), (3, 6, 3), (17, 34, 17), (100, 200, 100), (300, 600, 300),
                                            (17, 37, 5), (17, 2100, 17)])
def test_mlp_odd_shapes(isa, gen, lead, c, hidden, c_out):
    x = torch.randn(*lead, c, generator=gen)
    w1, b1 = _weights(gen, hidden, c)
    w2, b2 = _weights(gen, c_out, hidden)
    for act in ACTIVATIONS:
        for residual in ((False, True) if c_out == c else (False,)):
            _check_mlp(x, w1, b1, w2, b2, act, residual, f"mlp {lead}x{c}->{hidden}->{c_out} act={act} res={residual}")


def _non_contiguous(gen, lead, c):
    """Views of x the kernels cannot read as unit-stride rows directly, or with unusual row strides."""
    base = torch.randn(*lead, 2 * c, generator=gen)
    yield "every other channel", base[..., ::2]
    yield "channel slice (row stride 2C)", base[..., c:]
    yield "transposed", torch.randn(c, *lead, generator=gen).movedim(0, -1)
    yield "expanded rows (stride 0)", torch.randn(1, c, generator=gen).expand(*lead, c)


@pytest.mark.parametrize("c_in,c_out", [(17, 40), (64, 100)])
def test_linear_non_contiguous(isa, gen, c_in, c_out):
    w, b = _weights(gen, c_out, c_in)
    for name, x in _non_contiguous(gen, (3, 7), c_in):
        res = torch.randn(c_out, 3, 7, generator=gen).movedim(0, -1)
        _check_linear(x, w, b, "hardswish", res, f"linear, x {name}, transposed residual")
    wt = torch.randn(c_in, c_out, generator=gen).t()  # non-contiguous weight: packed through its strides
    _check_linear(torch.randn(5, c_in, generator=gen), wt, b, None, None, "linear, transposed weight")


def test_mlp_non_contiguous(isa, gen):
    c = 24
    w1, b1 = _weights(gen, 2 * c, c)
    w2, b2 = _weights(gen, c, 2 * c)
    for name, x in _non_contiguous(gen, (3, 7), c):
        _check_mlp(x, w1, b1, w2, b2, "hardswish", True, f"mlp, x {name}")


@pytest.mark.parametrize("tokens", [1, 5, 40, 200])
def test_thread_count_does_not_change_results(gen, tokens):
    """Row tiles / column blocks per thread change with the thread count; every element's sum order must not."""
    x = torch.randn(tokens, 72, generator=gen)
    w, b = _weights(gen, 100, 72)
    w2, b2 = _weights(gen, 72, 100)
    outs = []
    for threads in (1, 2, 3):
        with torch_threads(threads), poisoned_outputs():
            outs.append((lk.linear(x, w, b, "hardswish", backend="cpu"), lk.mlp(x, w, b, w2, b2, backend="cpu")))
    for lin, mlp in outs[1:]:
        assert torch.equal(lin, outs[0][0]) and torch.equal(mlp, outs[0][1])
    assert_close_to_reference(outs[0][0], reference.linear(*_f64(x, w, b), "hardswish"), torch.float32, "linear")
    assert_close_to_reference(outs[0][1], reference.mlp(*_f64(x, w, b, w2, b2)), torch.float32, "mlp")


# ---- packed-weight cache -------------------------------------------------------------------------------------


def test_cache_sees_in_place_weight_updates(gen):
    x = torch.randn(9, 20, generator=gen)
    w, b = _weights(gen, 30, 20)
    w2, b2 = _weights(gen, 20, 30)
    _check_linear(x, w, b, None, None, "first call")
    _check_mlp(x, w, b, w2, b2, "hardswish", True, "first mlp call")
    w.mul_(-2.0)  # in-place: bumps w._version
    _check_linear(x, w, b, None, None, "after w.mul_")
    _check_mlp(x, w, b, w2, b2, "hardswish", True, "mlp after w.mul_")
    w[3].copy_(torch.randn(20, generator=gen))  # through a view: shares the version counter
    w2.copy_(torch.randn(20, 30, generator=gen))
    _check_linear(x, w, b, None, None, "after a row of w was overwritten through a view")
    _check_mlp(x, w, b, w2, b2, "hardswish", True, "mlp after w2.copy_")
    param = torch.nn.Parameter(w.clone())
    _check_linear(x, param, b, None, None, "parameter")
    with torch.no_grad():
        param.add_(1.0)
    _check_linear(x, param, b, None, None, "parameter after add_ under no_grad")


def test_cache_packs_once_and_releases_dead_weights(gen):
    cpu.gemm.clear_cache()
    x = torch.randn(4, 16, generator=gen)
    w, b = _weights(gen, 8, 16)
    for _ in range(3):
        lk.linear(x, w, b, backend="cpu")
    assert cpu.gemm.cache_entries() == 1
    others = [_weights(gen, 8, 16)[0] for _ in range(5)]
    for o in others:
        lk.linear(x, o, b, backend="cpu")
    assert cpu.gemm.cache_entries() == 6
    del others, o
    gc.collect()
    assert cpu.gemm.cache_entries() == 1, "entries of dead weights must be dropped"
    del w
    gc.collect()
    assert cpu.gemm.cache_entries() == 0


def test_cache_inference_tensors_are_packed_per_call(gen):
    x = torch.randn(4, 16, generator=gen)
    with torch.inference_mode():
        w, b = _weights(gen, 8, 16)
        _check_linear(x, w, b, None, None, "inference weight")
        w.add_(1.0)  # inference tensors have no version counter to notice this by
        _check_linear(x, w, b, None, None, "inference weight after add_")


def test_cache_concurrent_first_use(gen):
    cpu.gemm.clear_cache()
    x = torch.randn(50, 64, generator=gen)
    w, b = _weights(gen, 96, 64)
    w2, b2 = _weights(gen, 64, 96)
    results = [None] * 8

    def worker(i):
        with poisoned_outputs():
            results[i] = (lk.linear(x, w, b, "hardswish", backend="cpu"), lk.mlp(x, w, b, w2, b2, backend="cpu"))

    run_threads(worker, 8)
    for lin, mlp in results[1:]:
        assert torch.equal(lin, results[0][0]) and torch.equal(mlp, results[0][1])
    assert cpu.gemm.cache_entries() == 2
    _check_linear(x, w, b, "hardswish", None, "after the concurrent calls")


# ---- explicitly packed weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lead,c,c_out", [((2, 7), 24, 40), ((197,), 17, 100), ((5,), 300, 3)], ids=str)
def test_packed_ops_match_the_cached_ops(isa, gen, lead, c, c_out):
    x = torch.randn(*lead, c, generator=gen)
    w, b = _weights(gen, c_out, c)
    w2, b2 = _weights(gen, c, c_out)
    res = torch.randn(*lead, c_out, generator=gen)
    pw, pw2 = cpu.gemm.pack_weight(w), cpu.gemm.pack_weight(w2)
    nr = torch.ops.levit_kernels.gemm_panel_width()
    assert pw.shape == ((c_out + nr - 1) // nr, c, nr)
    with poisoned_outputs():
        lin = cpu.gemm.linear_packed(x, pw, c_out, b, "hardswish", res)
        lin_nobias = cpu.gemm.linear_packed(x, pw, c_out)
        mlp = cpu.gemm.mlp_packed(x, pw, b, pw2, b2)
    assert torch.equal(lin, lk.linear(x, w, b, "hardswish", res, backend="cpu"))
    assert torch.equal(lin_nobias, lk.linear(x, w, None, backend="cpu"))
    assert torch.equal(mlp, lk.mlp(x, w, b, w2, b2, backend="cpu"))
    assert_close_to_reference(mlp, reference.mlp(*_f64(x, w, b, w2, b2)), torch.float32, "mlp_packed")


def test_packed_weight_errors(gen):
    x, w, b, w2, b2 = _sample_args(gen)
    ops = torch.ops.levit_kernels
    isas = [i for i in cpu.supported_isas() if i != "scalar"]
    if isas:
        with cpu.force_isa(isas[-1]):
            pw = cpu.gemm.pack_weight(w)
        with cpu.force_isa("scalar"), pytest.raises(ValueError, match="pack the weight again"):
            ops.linear_packed(x, pw, 40, b, None, None)
    pw = cpu.gemm.pack_weight(w)
    too_wide = 40 + pw.shape[2]  # one panel more than pw holds
    with pytest.raises(ValueError, match=rf"argument 'packed_weight' must be the packed form of a \({too_wide}, 24\)"):
        ops.linear_packed(x, pw, too_wide, None, None, None)
    with pytest.raises(ValueError, match="argument 'packed_w2' must be the packed form of a"):
        ops.mlp_packed(x, pw, b, pw, b2, None, True)
    with pytest.raises(ValueError, match="must be contiguous"):
        ops.linear_packed(x, torch.cat([pw, pw], 1)[:, ::2], 40, None, None, None)
    with pytest.raises(TypeError, match="float32 only, got tensors of dtype torch.float64"):
        cpu.gemm.pack_weight(w.double())


# ---- tracing, op checks, errors ---------------------------------------------------------------------------------


def _sample_args(gen):
    x = torch.randn(2, 7, 24, generator=gen)
    w, b = _weights(gen, 40, 24)
    w2, b2 = _weights(gen, 24, 40)
    return x, w, b, w2, b2


def test_torch_compile_fullgraph(gen):
    """Through the backend functions (the public ops' backend lookup is not traceable yet: it imports modules)."""
    x, w, b, w2, b2 = _sample_args(gen)
    res = torch.randn(2, 7, 40, generator=gen)

    pw, pw2 = cpu.gemm.pack_weight(w), cpu.gemm.pack_weight(w2)

    def block(x, res):
        y = cpu.linear(x, w, b, "hardswish", res)
        z = cpu.linear(x, w, None, None, None)
        packed = cpu.gemm.linear_packed(x, pw, 40, b) + cpu.gemm.mlp_packed(x, pw, b, pw2, b2)[..., :1]
        return y + z, cpu.mlp(x, w, b, w2, b2, "hardswish", True), packed

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    for got, want in zip(compiled(x, res), block(x, res)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_torch_export(gen):
    x, w, b, w2, b2 = _sample_args(gen)

    class Block(torch.nn.Module):
        def forward(self, x):
            return cpu.mlp(cpu.linear(x, w, b, "hardswish", None), w2, b2, w, b, None, False)

    program = torch.export.export(Block(), (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"levit_kernels.linear.default", "levit_kernels.mlp.default"} <= targets, targets
    torch.testing.assert_close(program.module()(x), Block()(x), rtol=0, atol=0)


def test_opcheck(gen):
    x, w, b, w2, b2 = _sample_args(gen)
    res = torch.randn(2, 7, 40, generator=gen)
    for args in [(x, w, b, "hardswish", res), (x, w, None, None, None), (x[0, :, :5], w[:, :5], b, None, None)]:
        torch.library.opcheck(torch.ops.levit_kernels.linear.default, args)
    for args in [(x, w, b, w2, b2, "hardswish", True), (x[0], w, b, w2[:10], b2[:10], None, False)]:
        torch.library.opcheck(torch.ops.levit_kernels.mlp.default, args)
    pw, pw2 = cpu.gemm.pack_weight(w), cpu.gemm.pack_weight(w2)
    torch.library.opcheck(torch.ops.levit_kernels.gemm_pack.default, (w,))
    torch.library.opcheck(torch.ops.levit_kernels.linear_packed.default, (x, pw, 40, b, "hardswish", res))
    torch.library.opcheck(torch.ops.levit_kernels.mlp_packed.default, (x, pw, b, pw2, b2, "hardswish", True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_non_float32_raises_type_error(gen, dtype):
    x, w, b, w2, b2 = (t.to(dtype) for t in _sample_args(gen))
    with pytest.raises(TypeError, match=f"float32 only, got tensors of dtype {dtype}"):
        lk.linear(x, w, b, backend="cpu")
    with pytest.raises(TypeError, match=f"float32 only, got tensors of dtype {dtype}"):
        lk.mlp(x, w, b, w2, b2, backend="cpu")


def test_custom_op_checks_its_arguments(gen):
    """The registered ops are callable directly (torch.ops), so they check what the Python layer already checked."""
    x, w, b, w2, b2 = _sample_args(gen)
    ops = torch.ops.levit_kernels
    with pytest.raises(TypeError, match="argument 'weight' must be float32, got Double"):
        ops.linear(x, w.double(), b, None, None)
    with pytest.raises(ValueError, match=r"argument 'weight' must be of size 24 in dim 1 \(channels of x\)"):
        ops.linear(x, w[:, :5], b, None, None)
    with pytest.raises(ValueError,
                       match="argument 'activation' must be None, 'hardswish', 'gelu' or 'relu', got 'silu'"):
        ops.linear(x, w, b, "silu", None)
    with pytest.raises(ValueError, match="argument 'residual' must be of the output's shape"):
        ops.linear(x, w, b, None, x)
    with pytest.raises(ValueError, match=r"argument 'b2' must be of size 24 in dim 0 \(output width = channels"):
        ops.mlp(x, w, b, w2[:10], b2[:10], None, True)
    with pytest.raises(ValueError, match=r"argument 'w1' must be of size 24 in dim 0 \(hidden width = b1"):
        ops.mlp(x, w, b2, w2, b2, None, True)


def test_fma_peak_measurement_runs(isa):
    """The benchmarks' yardstick (levit_kernels._C.fma_peak_gflops) runs under every ISA; its value is checked for
    sanity only (speed belongs to the benchmarks)."""
    from levit_kernels import _C

    for threads in (1, 2):
        gflops = _C.fma_peak_gflops(threads)
        assert 0.0 < gflops < float("inf"), f"{isa}, {threads} thread(s): {gflops}"
