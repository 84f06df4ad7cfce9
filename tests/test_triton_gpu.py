"""backend="triton" natively on a CUDA GPU: every LeViT shape at batch 1 to 2048 in fp32/fp16/bf16, TF32 dots, CUDA
graph capture, torch.compile, every autotune candidate, and a small workload for compute-sanitizer.

Skipped without CUDA (and under TRITON_INTERPRET, which tests/test_triton.py sets on CPU-only machines).
It sets LEVIT_KERNELS_TRITON_AUTOTUNE=0 (one config per kernel, so the shape sweep does not autotune every shape);
test_every_autotune_config covers the other candidates. scripts/gpu_check.sh runs it.
"""
import os

import pytest
import torch

import levit_kernels
from conftest import assert_close_to_reference
from levit_kernels import _debug, tolerances
from support import triton_cases as cases

if torch.cuda.is_available():
    # Before any kernel module is imported (that happens at the first op call, after collection): the shape sweep
    # runs one config per kernel instead of autotuning each of ~150 shapes × dtypes. Process-wide: in a GPU
    # session's full suite, tests/test_triton.py also runs untuned. Benchmarks run in their own process.
    os.environ.setdefault("LEVIT_KERNELS_TRITON_AUTOTUNE", "0")

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
    reason="needs a CUDA GPU running Triton natively (TRITON_INTERPRET unset)")

DEVICE = "cuda"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BATCHES = [1, 37, 2048]
ATTENTION = cases.unique(cases.levit_attention_shapes)
SHRINK = cases.unique(cases.levit_shrink_shapes)
LINEAR = cases.unique(cases.levit_linear_shapes)
MLP = cases.unique(cases.levit_mlp_shapes)


@pytest.fixture
def gen(seed):
    """A CUDA generator seeded from the test's fresh seed (overrides conftest's CPU one: batch-2048 inputs)."""
    return torch.Generator(device=DEVICE).manual_seed(seed)


def shape_id(entry):
    variant, shape = entry
    return f"{variant}-" + ("-".join(map(str, shape)) if isinstance(shape, tuple) else
                            f"R{shape.r}s{shape.stride}H{shape.h}D{shape.d}Dv{shape.dv}C{shape.c}")


def poisoned(fn, *args, **kwargs):
    with _debug.poisoned_outputs():
        out = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("entry", ATTENTION, ids=shape_id)
def test_levit_attention(entry, batch, dtype, gen):
    s = entry[1]
    q, k, v, biases = cases.attention_inputs(gen, batch, s.h, s.r, 1, s.d, s.dv, dtype, DEVICE, packed=True)
    out = poisoned(levit_kernels.biased_attention, q, k, v, biases, s.r, activation="hardswish", backend="triton")
    assert_close_to_reference(out, cases.attention_reference(q, k, v, biases, s.r, 1, "hardswish"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("entry", SHRINK, ids=shape_id)
def test_levit_shrink_attention(entry, batch, dtype, gen):
    s = entry[1]
    args = cases.shrink_inputs(gen, batch, s.h, s.r, 2, s.c, s.d, s.dv, dtype, DEVICE, packed=True)
    out = poisoned(levit_kernels.shrink_attention, *args, s.r, 2, activation="hardswish", backend="triton")
    assert_close_to_reference(out, cases.shrink_reference(*args, s.r, 2, "hardswish"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2048])
@pytest.mark.parametrize("entry", LINEAR, ids=shape_id)
def test_levit_linear(entry, batch, dtype, gen):
    tokens, c, n = entry[1]
    # Alternate the epilogues over the shapes so each one meets bias, Hardswish and residual somewhere.
    variant = LINEAR.index(entry) % 3
    x, weight, bias, residual = cases.linear_inputs(gen, (batch, tokens), c, n, dtype, DEVICE, bias=variant != 2,
                                                    residual=variant == 1)
    activation = "hardswish" if variant == 0 else None
    out = poisoned(levit_kernels.linear, x, weight, bias, activation, residual, backend="triton")
    assert_close_to_reference(out, cases.linear_reference(x, weight, bias, activation, residual), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("entry", MLP, ids=shape_id)
def test_levit_mlp(entry, batch, dtype, gen):
    tokens, c, hidden = entry[1]
    x, w1, b1, w2, b2 = cases.mlp_inputs(gen, (batch, tokens), c, hidden, c, dtype, DEVICE)
    out = poisoned(levit_kernels.mlp, x, w1, b1, w2, b2, backend="triton")
    assert_close_to_reference(out, cases.mlp_reference(x, w1, b1, w2, b2, "hardswish", True), dtype)


def test_tf32_dots_within_their_tolerance(gen, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    s = cases.levit_attention_shapes("levit_256")[0]
    q, k, v, biases = cases.attention_inputs(gen, 64, s.h, s.r, 1, s.d, s.dv, torch.float32, DEVICE)
    out = poisoned(levit_kernels.biased_attention, q, k, v, biases, s.r, backend="triton")
    ref = cases.attention_reference(q, k, v, biases, s.r, 1, None)
    assert_close_to_reference(out, ref, torch.float32, "tf32 attention", rtol=tolerances.TRITON_TF32_RTOL)
    x, w1, b1, w2, b2 = cases.mlp_inputs(gen, (64, 196), 256, 512, 256, torch.float32, DEVICE)
    out = poisoned(levit_kernels.mlp, x, w1, b1, w2, b2, backend="triton")
    ref = cases.mlp_reference(x, w1, b1, w2, b2, "hardswish", True)
    assert_close_to_reference(out, ref, torch.float32, "tf32 mlp", rtol=tolerances.TRITON_TF32_RTOL)


def _levit256_ops(gen, batch, dtype):
    s, sh = cases.levit_attention_shapes("levit_256")[0], cases.levit_shrink_shapes("levit_256")[0]
    return cases.op_calls(gen, batch, dtype, DEVICE, s, sh, 196, 256, 512)


def test_cuda_graph_capture_and_replay(gen):
    for name, call, inputs, ref_fn in _levit256_ops(gen, 8, torch.float16):
        static = [t.clone() for t in inputs]
        call(static)  # warm-up: autotuning must not happen during capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = call(static)
        for t, src in zip(static, inputs):  # new values in the captured storage
            t.copy_(src.flip(0))
        graph.replay()
        torch.cuda.synchronize()
        assert_close_to_reference(out, ref_fn(static), torch.float16, f"{name} replayed from a CUDA graph")


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_torch_compile(gen, mode):
    torch._dynamo.reset()
    for name, call, inputs, ref_fn in _levit256_ops(gen, 4, torch.float16):
        compiled = torch.compile(lambda *a: call(a) * 2.0, fullgraph=True, mode=mode)
        for _ in range(3):  # reduce-overhead records its CUDA graph on a later call
            out = compiled(*inputs)
        assert_close_to_reference(out, ref_fn(inputs) * 2.0, torch.float16, f"{name} under torch.compile({mode})")


@pytest.mark.parametrize("kernel_name", ["biased_attention", "shrink_attention", "linear", "mlp"])
def test_every_autotune_config(kernel_name, gen):
    """Each GPU candidate forced alone, at a LeViT-256 shape: whichever the autotuner picks is verified."""
    from triton.runtime.errors import OutOfResources

    kernel, candidates = cases.autotuned_kernels()[kernel_name]
    call, inputs, ref_fn = {op[0]: op[1:] for op in _levit256_ops(gen, 3, torch.float16)}[kernel_name]
    ref = ref_fn(inputs)
    ran = []
    for config in candidates:
        try:
            with cases.only_config(kernel, config), _debug.poisoned_outputs():
                out = call(inputs)
        except OutOfResources as exc:  # the autotuner drops such candidates as well
            print(f"{kernel_name}: {config} does not fit this GPU: {exc}")
            continue
        assert_close_to_reference(out, ref, torch.float16, f"{kernel_name} with {config}")
        ran.append(config)
    assert ran, f"{kernel_name}: no candidate config fits this GPU"


def test_memcheck_workload(gen):
    """One launch per kernel at a LeViT-256 shape and at an odd shape: what scripts/gpu_check.sh runs under
    compute-sanitizer memcheck (the checks here also make a bad result fail)."""
    for name, call, inputs, ref_fn in _levit256_ops(gen, 2, torch.float16):
        assert_close_to_reference(poisoned(call, inputs), ref_fn(inputs), torch.float16, name)
    q, k, v, biases = cases.attention_inputs(gen, 3, 2, 5, 2, 8, 20, torch.float16, DEVICE, packed=True)
    out = poisoned(levit_kernels.biased_attention, q, k, v, biases, 5, 2, backend="triton")
    assert_close_to_reference(out, cases.attention_reference(q, k, v, biases, 5, 2, None), torch.float16)
    args = cases.shrink_inputs(gen, 3, 2, 5, 2, 20, 8, 24, torch.float16, DEVICE, packed=True)
    out = poisoned(levit_kernels.shrink_attention, *args, 5, 2, backend="triton")
    assert_close_to_reference(out, cases.shrink_reference(*args, 5, 2, None), torch.float16)
    x, w, b, r = cases.linear_inputs(gen, (3, 7), 33, 70, torch.float16, DEVICE, residual=True)
    out = poisoned(levit_kernels.linear, x, w, b, "hardswish", r, backend="triton")
    assert_close_to_reference(out, cases.linear_reference(x, w, b, "hardswish", r), torch.float16)
    x, w1, b1, w2, b2 = cases.mlp_inputs(gen, (3, 7), 40, 80, 40, torch.float16, DEVICE)
    out = poisoned(levit_kernels.mlp, x, w1, b1, w2, b2, backend="triton")
    assert_close_to_reference(out, cases.mlp_reference(x, w1, b1, w2, b2, "hardswish", True), torch.float16)
