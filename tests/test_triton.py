"""backend="triton" against the float64 reference at small LeViT-like and odd shapes.

Without a CUDA GPU this module turns on the Triton interpreter (TRITON_INTERPRET=1, process-wide, at collection,
before any Triton kernel is built) and runs the kernels on CPU tensors, as the property, extreme-value and
concurrency suites (tests/support/targets.interpret_triton) and test_optimize_triton.py do; a test that needs triton
unavailable therefore runs in a subprocess (test_optimize.py). With a GPU the same tests run natively on CUDA
tensors.
The interpreter's bf16 tl.dot is broken (triton issue 11584), so bf16 runs on GPU only; every GPU-only dot-shape
rule is asserted by the launchers themselves (see _runtime.assert_dot_shape).
"""
import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import levit_kernels  # noqa: E402
from conftest import assert_close_to_reference  # noqa: E402
from levit_kernels import _debug  # noqa: E402
from support import triton_cases as cases  # noqa: E402

AVAILABLE, WHY = levit_kernels.availability("triton")
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"triton backend unavailable: {WHY}")

if AVAILABLE:
    from levit_kernels.backends.triton import _runtime
    INTERPRETED = _runtime.interpreting()
else:
    INTERPRETED = False
DEVICE = "cpu" if INTERPRETED else "cuda"
BF16 = pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    INTERPRETED, reason="the Triton interpreter's bf16 tl.dot is broken (triton issue 11584): bf16 is GPU-only"))
DTYPES = [torch.float32, torch.float16, BF16]


def run_poisoned(fn, *args, **kwargs):
    with _debug.poisoned_outputs():
        return fn(*args, **kwargs)


# (B, H, R, stride, D, Dv, packed qkv, activation): LeViT-like first, then odd shapes.
ATTENTION_CASES = [
    (2, 3, 4, 1, 16, 32, True, "hardswish"),   # R=4 stage: several (batch, head) pairs packed per program
    (2, 2, 7, 1, 32, 64, True, None),          # R=7 stage
    (1, 2, 14, 2, 32, 64, False, "hardswish"),  # stride 2 over the 14×14 grid
    (1, 2, 4, 1, 64, 64, False, None),         # key dim 64 (timm's d64 variants)
    (3, 2, 1, 1, 8, 16, False, "hardswish"),   # R=1, D=8 (padded to the 16 tl.dot needs on GPU)
    (3, 1, 3, 1, 8, 24, True, None),           # R=3, Dv not a power of two
    (1, 2, 5, 2, 16, 20, True, "hardswish"),   # R=5 stride 2, odd Dv
    (2, 8, 7, 1, 32, 128, False, "gelu"),      # EfficientFormer's Meta3D attention (8 heads, D=32, Dv=128, N=49)
    (1, 2, 5, 1, 16, 20, True, "relu"),        # R=5, odd Dv
    (3, 1, 3, 1, 8, 24, False, "gelu"),        # R=3, Dv not a power of two
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=lambda c: "B{}H{}R{}s{}D{}Dv{}{}{}".format(
    *c[:6], "-packed" if c[6] else "", f"-{c[7]}" if c[7] else ""))
def test_biased_attention(case, dtype, gen):
    b, h, r, stride, d, dv, packed, activation = case
    q, k, v, biases = cases.attention_inputs(gen, b, h, r, stride, d, dv, dtype, DEVICE, packed)
    out = run_poisoned(levit_kernels.biased_attention, q, k, v, biases, r, stride, activation=activation,
                       backend="triton")
    assert out.dtype == dtype and out.device == q.device
    assert_close_to_reference(out, cases.attention_reference(q, k, v, biases, r, stride, activation), dtype)


# (B, H, R, stride, C, D, Dv, packed, activation)
SHRINK_CASES = [
    (2, 3, 7, 2, 48, 16, 64, True, "hardswish"),   # LeViT's second shrink (7 → 4), narrowed
    (1, 2, 14, 2, 64, 32, 128, False, None),       # first shrink (14 → 7)
    (3, 2, 5, 2, 20, 8, 24, True, "hardswish"),    # odd: R=5, D=8, C and Dv not powers of two
    (2, 1, 6, 3, 24, 16, 20, False, None),         # stride 3
    (1, 2, 1, 2, 16, 16, 16, False, "hardswish"),  # R=1
    (3, 2, 5, 2, 20, 8, 24, True, "gelu"),         # the odd case with GELU
    (2, 1, 6, 3, 24, 16, 20, False, "relu"),       # stride 3 with ReLU
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SHRINK_CASES, ids=lambda c: "B{}H{}R{}s{}C{}D{}Dv{}{}{}".format(
    *c[:7], "-packed" if c[7] else "", f"-{c[8]}" if c[8] else ""))
def test_shrink_attention(case, dtype, gen):
    b, h, r, stride, c, d, dv, packed, activation = case
    x, q_weight, q_bias, k, v, biases = cases.shrink_inputs(gen, b, h, r, stride, c, d, dv, dtype, DEVICE, packed)
    out = run_poisoned(levit_kernels.shrink_attention, x, q_weight, q_bias, k, v, biases, r, stride,
                       activation=activation, backend="triton")
    assert out.dtype == dtype
    ref = cases.shrink_reference(x, q_weight, q_bias, k, v, biases, r, stride, activation)
    assert_close_to_reference(out, ref, dtype)


# (leading shape, C, C_out, bias, activation, residual)
LINEAR_CASES = [
    ((2, 16), 32, 64, True, "hardswish", False),   # LeViT-like projection with its Hardswish
    ((2, 7), 40, 24, True, None, True),            # odd widths, residual
    ((3, 5), 33, 70, False, "hardswish", True),    # no bias
    ((17,), 16, 8, False, None, False),            # plain GEMM, output narrower than a tile
    ((), 24, 20, True, "hardswish", True),         # a single 1-D token
    ((2, 49), 48, 192, True, "gelu", False),       # EfficientFormer-L1 stage-1 fc1 (C=48 → 4C), 49 tokens
    ((3, 5), 33, 70, False, "gelu", True),         # odd widths, GELU, residual
    ((2, 7), 40, 24, True, "relu", True),          # odd widths, ReLU, residual
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: "x{}C{}N{}{}{}{}".format(
    list(c[0]), c[1], c[2], "-bias" if c[3] else "", f"-{c[4]}" if c[4] else "", "-res" if c[5] else ""))
def test_linear(case, dtype, gen):
    lead, c, n, has_bias, activation, has_res = case
    x, weight, bias, residual = cases.linear_inputs(gen, lead, c, n, dtype, DEVICE, has_bias, has_res)
    out = run_poisoned(levit_kernels.linear, x, weight, bias, activation, residual, backend="triton")
    assert out.shape == (*lead, n) and out.dtype == dtype
    assert_close_to_reference(out, cases.linear_reference(x, weight, bias, activation, residual), dtype)


# (leading shape, C, hidden, C_out, activation, residual)
MLP_CASES = [
    ((2, 16), 32, 64, 32, "hardswish", True),   # LeViT's C → 2C → C with the residual
    ((3, 7), 40, 80, 40, "hardswish", True),    # odd width: partial K chunks, two output tiles
    ((5,), 24, 36, 24, None, False),            # no activation, no residual
    ((2, 3), 16, 48, 20, "hardswish", False),   # C_out ≠ C (no residual possible)
    ((49,), 48, 192, 48, "gelu", True),         # EfficientFormer-L1 stage-1 MLP (C → 4C → C, GELU), 49 tokens
    ((3, 7), 40, 80, 40, "gelu", True),         # odd width with GELU
    ((2, 3), 16, 48, 20, "relu", False),        # ReLU, C_out ≠ C
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MLP_CASES, ids=lambda c: "x{}C{}H{}N{}{}{}".format(
    list(c[0]), *c[1:4], f"-{c[4]}" if c[4] else "", "-res" if c[5] else ""))
def test_mlp(case, dtype, gen):
    lead, c, hidden, c_out, activation, residual = case
    x, w1, b1, w2, b2 = cases.mlp_inputs(gen, lead, c, hidden, c_out, dtype, DEVICE)
    out = run_poisoned(levit_kernels.mlp, x, w1, b1, w2, b2, activation, residual, backend="triton")
    assert out.shape == (*lead, c_out) and out.dtype == dtype
    assert_close_to_reference(out, cases.mlp_reference(x, w1, b1, w2, b2, activation, residual), dtype)


def test_strided_operands(gen):
    """Transposed weights and a column-sliced x: every operand is read through its strides."""
    dtype = torch.float32
    x = cases.randn(gen, 3, 9, 40, dtype=dtype, device=DEVICE)[..., 4:36]
    w1 = cases.randn(gen, 32, 64, dtype=dtype, device=DEVICE, scale=32 ** -0.5).t()
    b1 = cases.randn(gen, 64, 2, dtype=dtype, device=DEVICE)[:, 1]
    w2 = cases.randn(gen, 64, 32, dtype=dtype, device=DEVICE, scale=64 ** -0.5).t()
    b2 = cases.randn(gen, 32, dtype=dtype, device=DEVICE)
    out = run_poisoned(levit_kernels.mlp, x, w1, b1, w2, b2, backend="triton")
    assert_close_to_reference(out, cases.mlp_reference(x, w1, b1, w2, b2, "hardswish", True), dtype, "mlp")
    residual = cases.randn(gen, 3, 64, 9, dtype=dtype, device=DEVICE).transpose(1, 2)
    out = run_poisoned(levit_kernels.linear, x, w1, b1, "hardswish", residual, backend="triton")
    assert_close_to_reference(out, cases.linear_reference(x, w1, b1, "hardswish", residual), dtype, "linear")


def test_empty_batch():
    q, k, v, biases = cases.attention_inputs(torch.Generator().manual_seed(0), 0, 2, 4, 1, 16, 32, torch.float32,
                                             DEVICE)
    out = levit_kernels.biased_attention(q, k, v, biases, 4, backend="triton")
    assert out.shape == (0, 16, 64)
    x = torch.zeros(0, 7, 16, device=DEVICE)
    assert levit_kernels.linear(x, torch.ones(8, 16, device=DEVICE), None, backend="triton").shape == (0, 7, 8)


def test_float64_is_refused_by_name():
    x = torch.zeros(2, 8, dtype=torch.float64, device=DEVICE)
    with pytest.raises(TypeError, match=r"linear: backend 'triton' takes float32, float16 or bfloat16.*float64"):
        levit_kernels.linear(x, torch.zeros(4, 8, dtype=torch.float64, device=DEVICE), None, backend="triton")


def test_dot_shape_rule_is_enforced():
    """The interpreter accepts tl.dot sides below 16; the launchers must not rely on that."""
    _runtime.assert_dot_shape("k", 16, 32, 64)
    for bad in ((16, 16, 8), (8, 16, 16), (16, 24, 16)):
        with pytest.raises(AssertionError, match="must be a power of two >= 16"):
            _runtime.assert_dot_shape("k", *bad)
    assert [_runtime.block(n) for n in (1, 8, 16, 17, 49, 196)] == [16, 16, 16, 32, 64, 256]


def test_gpu_configs_meet_the_dot_rule_at_every_levit_shape():
    """Every GPU autotune candidate, at every LeViT shape and the odd test shapes, passes the GPU tl.dot rule."""
    from levit_kernels.backends.triton import biased, gemm, shrink

    gemm.check_dots("linear", gemm.GPU_LINEAR_CONFIGS)
    gemm.check_dots("mlp", gemm.GPU_MLP_CONFIGS)
    shapes = [s for _, s in cases.unique(cases.levit_attention_shapes) + cases.unique(cases.levit_shrink_shapes)]
    shapes += [cases.AttentionShape(r, s, h, d, dv, 16) for _, h, r, s, d, dv, _, _ in ATTENTION_CASES]
    shapes += [cases.AttentionShape(r, s, h, d, dv, c) for _, h, r, s, c, d, dv, _, _ in SHRINK_CASES]
    for s in shapes:
        for batch in (1, 2048):
            g = biased.pairs_per_program(s.r * s.r, batch * s.h)
            biased.attention_tiles("biased_attention", s.r * s.r, s.d, s.dv, g, biased.GPU_CONFIGS)
        shrink.projection_tile(s.c, _runtime.block(s.d), shrink.GPU_CONFIGS)


@pytest.mark.skipif(not INTERPRETED, reason="on GPU, tests/test_triton_gpu.py runs every config at LeViT shapes")
@pytest.mark.parametrize("op_name", ["biased_attention", "shrink_attention", "linear", "mlp"])
def test_every_gpu_config_interpreted(op_name, gen):
    """Each GPU autotune candidate (tile sizes, query tiles per program, output tiles...) forced alone through the
    interpreter at a small odd shape: the index arithmetic and masks are right for every tiling the GPU may pick."""
    kernel, candidates = cases.autotuned_kernels()[op_name]
    att, shrink = cases.AttentionShape(4, 1, 3, 16, 24, 0), cases.AttentionShape(5, 2, 2, 8, 40, 24)
    call, inputs, ref_fn = {op[0]: op[1:] for op in cases.op_calls(gen, 2, torch.float16, DEVICE, att, shrink,
                                                                    9, 24, 40)}[op_name]
    ref = ref_fn(inputs)
    for config in candidates:
        with cases.only_config(kernel, config):
            out = run_poisoned(call, inputs)
        assert_close_to_reference(out, ref, torch.float16, f"{op_name} with {config}")


def test_fp32_dot_precision_follows_torch():
    assert _runtime.dot_precision(torch.float32) == "ieee"
    # allow_tf32 is a property-like setting of torch (no real attribute): monkeypatch cannot undo it on every
    # pytest version (newer ones delattr it at teardown), so set and restore it by hand.
    matmul = torch.backends.cuda.matmul
    previous = matmul.allow_tf32
    try:
        matmul.allow_tf32 = True
        assert _runtime.dot_precision(torch.float32) == "tf32"
    finally:
        matmul.allow_tf32 = previous


@pytest.mark.skipif(not INTERPRETED, reason="checks the interpreter's mode lock")
def test_interpreter_mode_is_locked_once_kernels_exist(monkeypatch):
    from levit_kernels.backends.triton import biased  # noqa: F401  (builds the kernels if not yet built)

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert _runtime.interpreting()  # the built kernels are interpreted, whatever the environment says now
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET changed"):
        _runtime.freeze_kernel_mode()


def test_ops_are_registered_with_fake_impls(gen):
    """torch.library.opcheck: schema, fake (meta) implementation against the real one, dispatch."""
    q, k, v, biases = cases.attention_inputs(gen, 1, 2, 4, 1, 16, 16, torch.float32, DEVICE, packed=True)
    x, qw, qb, sk, sv, sbias = cases.shrink_inputs(gen, 1, 2, 5, 2, 16, 16, 16, torch.float32, DEVICE)
    lx, lw, lb, lr = cases.linear_inputs(gen, (3,), 16, 16, torch.float32, DEVICE, True, True)
    mx, w1, b1, w2, b2 = cases.mlp_inputs(gen, (3,), 16, 32, 16, torch.float32, DEVICE)
    ops = torch.ops.levit_triton
    for op, args in ((ops.biased_attention, (q, k, v, biases, [4, 4], 1, 0.25, "hardswish")),
                     (ops.shrink_attention, (x, qw, qb, sk, sv, sbias, [5, 5], 2, 0.25, None)),
                     (ops.linear, (lx, lw, lb, "hardswish", lr)),
                     (ops.linear, (lx, lw, None, None, None)),
                     (ops.mlp, (mx, w1, b1, w2, b2, "hardswish", True))):
        torch.library.opcheck(op.default, args, test_utils=("test_schema", "test_faketensor",
                                                            "test_aot_dispatch_static"))


def test_torch_compile_traces_without_graph_break(gen):
    q, k, v, biases = cases.attention_inputs(gen, 2, 2, 4, 1, 16, 32, torch.float32, DEVICE)

    from levit_kernels.backends import triton as triton_backend

    def block(q, k, v, biases):
        return triton_backend.biased_attention(q, k, v, biases, 4, 1, 0.25, None) * 2.0

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(q, k, v, biases), block(q, k, v, biases), rtol=0, atol=0)


def test_availability_without_triton_or_gpu():
    """In a fresh process: levit_kernels imports with triton missing, and without CUDA or the interpreter the
    backend says why it is unavailable and refuses to run."""
    probe = ("import sys, torch\n"
             "sys.modules['triton'] = None\n"  # makes `import triton` raise ImportError
             "import levit_kernels\n"
             "print(levit_kernels.availability('triton'))\n"
             "del sys.modules['triton']\n"
             "print(levit_kernels.availability('triton'))\n"
             "try:\n"
             "    levit_kernels.linear(torch.ones(2, 4), torch.ones(3, 4), None, backend='triton')\n"
             "except RuntimeError as exc:\n"
             "    print('refused:', exc)\n")
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(False, 'triton cannot be imported" in result.stdout
    if not torch.cuda.is_available():
        assert "(False, 'no CUDA GPU visible to torch" in result.stdout
        assert "refused: linear: backend 'triton' is unavailable: no CUDA GPU" in result.stdout


def test_kernel_modules_do_not_shadow_backend_functions():
    """A kernel module named like a backend function replaces that function on import (an `attention.py` once broke
    either `attention` or `biased_attention`, whichever ran second); run each op, in a fresh process, before and after
    the others have imported their kernel modules."""
    code = ("import torch, levit_kernels as lk\n"
            "from levit_kernels import reference\n"
            "q, k, v = torch.randn(1, 2, 16, 16), torch.randn(1, 2, 16, 16), torch.randn(1, 2, 16, 8)\n"
            "first = lk.attention(q, k, v, backend='triton')\n"
            "lk.biased_attention(q, k, v, torch.randn(2, 16), 4, backend='triton')\n"
            "lk.shrink_attention(torch.randn(1, 16, 8), torch.randn(32, 8), torch.randn(32), k, v, torch.randn(2, 16), 4,"
            " backend='triton')\n"
            "again = lk.attention(q, k, v, backend='triton')\n"
            "assert torch.equal(first, again)\n"
            "assert (first - reference.attention(q, k, v)).abs().max() < 1e-5\n"
            "import levit_kernels.backends.triton as t\n"
            "assert callable(t.attention) and callable(t.biased_attention) and callable(t.shrink_attention)\n")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("op", ["biased", "shrink"])
def test_table_bias_streamed_when_keys_do_not_fit(op, gen, monkeypatch):
    """With the on-chip K/V budget at 0 every launch takes the flash kernel with the gathered dense bias
    (table_bias_streamed.py) — the path LeViT-192+'s fp32 stage-1 shrink takes on a GPU — and agrees with the
    reference as the on-chip kernels do."""
    from levit_kernels.backends.triton import table_bias_streamed

    routed = []
    monkeypatch.setattr(table_bias_streamed, "ON_CHIP_KV_BYTES", 0)
    for name in ("biased_attention", "shrink_attention"):
        original = getattr(table_bias_streamed, name)
        monkeypatch.setattr(table_bias_streamed, name,
                            lambda *a, _f=original, _n=name, **kw: routed.append(_n) or _f(*a, **kw))
    if op == "biased":
        for b, h, r, stride, d, dv, packed, activation in ATTENTION_CASES[:3] + ATTENTION_CASES[5:7]:
            q, k, v, biases = cases.attention_inputs(gen, b, h, r, stride, d, dv, torch.float32, DEVICE, packed)
            out = run_poisoned(levit_kernels.biased_attention, q, k, v, biases, r, stride, activation=activation,
                               backend="triton")
            assert_close_to_reference(out, cases.attention_reference(q, k, v, biases, r, stride, activation),
                                      torch.float32)
    else:
        for b, h, r, stride, c, d, dv, packed, activation in SHRINK_CASES[:4]:
            x, wq, bq, k, v, biases = cases.shrink_inputs(gen, b, h, r, stride, c, d, dv, torch.float32, DEVICE,
                                                          packed)
            out = run_poisoned(levit_kernels.shrink_attention, x, wq, bq, k, v, biases, r, stride,
                               activation=activation, backend="triton")
            assert_close_to_reference(out, cases.shrink_reference(x, wq, bq, k, v, biases, r, stride, activation),
                                      torch.float32)
    assert routed and set(routed) == {f"{op}_attention"} | ({"biased_attention"} if op == "shrink" else set())
