"""backend="cpu" biased_attention and shrink_attention (csrc/attention) against the float64 eager reference, under
every ISA variant this CPU runs, with every activation, at every LeViT variant's shapes, EfficientFormer's and odd
shapes, with outputs poisoned."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_close_to_reference
from levit.config import MODEL_NAMES, SHRINK_STRIDE, op_shapes
from levit_kernels import _debug, ops, reference
from levit_kernels.backends import cpu
from levit_kernels.bench.timing import torch_threads
from levit_kernels.backends.cpu._loader import ISAS

pytestmark = pytest.mark.skipif(not cpu.availability()[0], reason=f"CPU backend: {cpu.availability()[1]}")
ACTIVATIONS = reference.ACTIVATIONS

def levit_shapes(kind):
    """Distinct (heads, R, D, Dv, C_in) of every stage ("attention") or shrink attention of the five variants,
    from the model's own block list."""
    cases = {}
    for name in MODEL_NAMES:
        for s in op_shapes(name):
            if s.kind == kind:
                c_in = s.in_channels if kind == "shrink" else s.channels
                key = (s.heads, s.resolution, s.key_dim, s.value_dim, c_in)
                cases.setdefault(key, f"{name}-{kind}{s.stage}")
    return [pytest.param(*key, id=label) for key, label in cases.items()]


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test under one ISA variant; variants this CPU cannot run are skipped with the reason."""
    name = request.param
    if not cpu.isa_supported(name):
        pytest.skip(f"ISA {name} is not supported by this CPU (supported: {cpu.supported_isas()})")
    with cpu.force_isa(name):
        yield name


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen)


def attention_inputs(gen, b, h, r, s, d, dv, layout="packed"):
    """q, k, v, attention_biases. layout: "packed" (views of one (B, N, H, D+D+Dv) qkv tensor, as LeViT's
    projection makes them; needs s = 1), "contiguous", or "strided" (q transposed in memory, v every other element,
    k sliced from a wider tensor, bias table transposed)."""
    nk, nq = r * r, reference.query_grid_side(r, s) ** 2
    if layout == "packed":
        assert nq == nk
        qkv = randn(gen, b, nk, h, 2 * d + dv)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([d, d, dv], dim=-1))
    elif layout == "contiguous":
        q, k, v = randn(gen, b, h, nq, d), randn(gen, b, h, nk, d), randn(gen, b, h, nk, dv)
    else:
        q = randn(gen, b, h, d, nq).transpose(2, 3)
        k = randn(gen, b, h, nk, d + 3)[..., 1:d + 1]
        v = randn(gen, b, h, nk, 2 * dv)[..., ::2]
    biases = randn(gen, nk, h).t() if layout == "strided" else randn(gen, h, nk)
    return q, k, v, biases


def shrink_inputs(gen, b, h, r, s, d, dv, c, layout="contiguous"):
    """x, q_weight, q_bias, k, v, attention_biases; "strided": x every other channel, q_weight transposed in memory,
    k/v views of a packed kv tensor."""
    nk = r * r
    if layout == "strided":
        x = randn(gen, b, nk, 2 * c)[..., ::2]
        q_weight = randn(gen, c, h * d).t() / math.sqrt(c)
        kv = randn(gen, b, nk, h, d + dv)
        k, v = (t.permute(0, 2, 1, 3) for t in kv.split([d, dv], dim=-1))
    else:
        x = randn(gen, b, nk, c)
        q_weight = randn(gen, h * d, c) / math.sqrt(c)
        k, v = randn(gen, b, h, nk, d), randn(gen, b, h, nk, dv)
    return x, q_weight, randn(gen, h * d), k, v, randn(gen, h, nk)


def f64(tensors):
    return [t.to(torch.float64) for t in tensors]


def check(op, inputs, r, s, activation):
    """backend "cpu" of ops.<op> with poisoned outputs vs reference.<op> in float64."""
    with _debug.poisoned_outputs():
        out = getattr(ops, op)(*inputs, r, s, activation=activation, backend="cpu")
    ref = getattr(reference, op)(*f64(inputs), r, s, activation=activation)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert_close_to_reference(out, ref, torch.float32, op)


def check_biased(inputs, r, s, activation):
    check("biased_attention", inputs, r, s, activation)


def check_shrink(inputs, r, s, activation):
    check("shrink_attention", inputs, r, s, activation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("h, r, d, dv, c", levit_shapes("attention"))
def test_biased_attention_levit_shapes(isa, gen, h, r, d, dv, c, activation):
    check_biased(attention_inputs(gen, 2, h, r, 1, d, dv, "packed"), r, 1, activation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("h, r, d, dv, c", levit_shapes("shrink"))
def test_shrink_attention_levit_shapes(isa, gen, h, r, d, dv, c, activation):
    s = SHRINK_STRIDE
    check_shrink(shrink_inputs(gen, 2, h, r, s, d, dv, c, "strided"), r, s, activation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layout", ["packed", "contiguous"])
def test_biased_attention_efficientformer_shape(isa, gen, layout, activation):
    """EfficientFormer's Meta3D attention (efficientformer-facts): 8 heads, key dim 32, value dim 128, 7² tokens."""
    check_biased(attention_inputs(gen, 2, 8, 7, 1, 32, 128, layout), 7, 1, activation)


ODD = [  # (batch, heads, D, Dv, activation): D = 8 and 64, Dv not a multiple of 16 (nor of 8), batch 1 and 7
    (1, 2, 8, 20, "hardswish"),
    (7, 3, 64, 9, None),
    (1, 2, 8, 20, "gelu"),
    (2, 3, 64, 9, "relu"),
]


@pytest.mark.parametrize("r", [1, 3, 5, 13])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("b, h, d, dv, activation", ODD)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_biased_attention_odd_shapes(isa, gen, r, s, b, h, d, dv, activation, layout):
    check_biased(attention_inputs(gen, b, h, r, s, d, dv, layout), r, s, activation)


@pytest.mark.parametrize("r", [1, 3, 5, 13])
@pytest.mark.parametrize("b, h, d, dv, activation", ODD)
def test_biased_attention_packed_qkv_odd_shapes(isa, gen, r, b, h, d, dv, activation):
    check_biased(attention_inputs(gen, b, h, r, 1, d, dv, "packed"), r, 1, activation)


@pytest.mark.parametrize("r", [1, 3, 5, 13])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("b, h, d, dv, activation", ODD)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_shrink_attention_odd_shapes(isa, gen, r, s, b, h, d, dv, activation, layout):
    check_shrink(shrink_inputs(gen, b, h, r, s, d, dv, 13 if d == 8 else 40, layout), r, s, activation)


def test_stride_beyond_grid(isa, gen):
    """s ≥ R leaves one query (the origin)."""
    check_biased(attention_inputs(gen, 2, 2, 3, 5, 8, 12, "contiguous"), 3, 5, None)
    check_shrink(shrink_inputs(gen, 2, 2, 3, 7, 8, 12, 5), 3, 7, None)


def test_many_keys(isa, gen):
    """Nk = 400 (more than one score tile of rows fits the tile budget) and Dv > several register tiles."""
    check_biased(attention_inputs(gen, 1, 2, 20, 1, 24, 130, "packed"), 20, 1, "hardswish")


def test_empty_batch(isa, gen):
    q, k, v, ab = attention_inputs(gen, 0, 2, 3, 1, 8, 4, "contiguous")
    out = ops.biased_attention(q, k, v, ab, 3, 1, backend="cpu")
    assert out.shape == (0, 9, 8)


def special_value_inputs(gen):
    q, k, v, ab = attention_inputs(gen, 2, 4, 5, 1, 8, 12, "contiguous")
    q[0, 0, 3, 1] = float("nan")        # that query's row is NaN
    k[1, 1, 7, 2] = float("inf")        # every query of (1, 1) meets +inf or -inf scores
    v[0, 2, 4, 5] = float("inf")        # column 5 of (0, 2) is +inf
    v[1, 3, 6, 0] = float("nan")        # column 0 of (1, 3) is NaN
    ab[3, 2] = float("-inf")            # one masked relative offset
    ab[2] = float("-inf")               # head 2: every score -inf → NaN rows, as torch.softmax
    return q, k, v, ab


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_inf_pattern_matches_reference(isa, gen, activation):
    inputs = special_value_inputs(gen)
    with _debug.poisoned_outputs():
        out = ops.biased_attention(*inputs, 5, 1, activation=activation, backend="cpu")
    ref = reference.biased_attention(*f64(inputs), 5, 1, activation=activation)
    assert torch.equal(out.isnan(), ref.isnan()), "NaN pattern differs from the reference"
    assert torch.equal(out.isinf(), ref.isinf()) and torch.equal(out[out.isinf()], ref[ref.isinf()].float())
    finite = ref.isfinite()
    assert finite.any() and not finite.all()
    assert_close_to_reference(out[finite], ref[finite], torch.float32, "finite elements")


def test_threads_give_identical_results(gen):
    """Each work item runs on one thread: the thread count cannot change a single bit."""
    inputs = attention_inputs(gen, 3, 4, 7, 1, 16, 32, "packed")
    with torch_threads(1), _debug.poisoned_outputs():
        one = ops.biased_attention(*inputs, 7, 1, backend="cpu")
    with torch_threads(max(2, torch.get_num_threads())), _debug.poisoned_outputs():
        many = ops.biased_attention(*inputs, 7, 1, backend="cpu")
    assert torch.equal(one, many)
    assert_close_to_reference(one, reference.biased_attention(*(t.double() for t in inputs), 7, 1), torch.float32)


def test_auto_picks_cpu_for_cpu_tensors(gen):
    from levit_kernels import backends

    assert backends.resolve("biased_attention", "auto", torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes_raise_type_error_naming_the_dtype(gen, dtype):
    q, k, v, ab = (t.to(dtype) for t in attention_inputs(gen, 1, 2, 3, 1, 8, 8, "contiguous"))
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
        ops.biased_attention(q, k, v, ab, 3, 1, backend="cpu")
    x, wq, bq, k, v, ab = (t.to(dtype) for t in shrink_inputs(gen, 1, 2, 3, 2, 8, 8, 5))
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
        ops.shrink_attention(x, wq, bq, k, v, ab, 3, 2, backend="cpu")


def test_custom_op_checks_its_arguments(gen):
    """The C++ op validates on its own (it is reachable without the Python checks, via torch.ops)."""
    q, k, v, ab = attention_inputs(gen, 1, 2, 3, 1, 8, 8, "contiguous")
    op = torch.ops.levit_kernels.biased_attention
    with pytest.raises(RuntimeError, match="'q' must be float32, got Double"):
        op(q.double(), k, v, ab, 3, 1, 0.3, None)
    with pytest.raises(RuntimeError, match=r"'k' must have size 16 in dim 2 \(keys = Rh·Rw\), got shape \[1, 2"):
        op(q, k, v, ab, 4, 1, 0.3, None)
    with pytest.raises(RuntimeError, match="'attention_biases' must have size 2 in dim 0"):
        op(q, k, v, ab[:1], 3, 1, 0.3, None)
    with pytest.raises(ValueError,
                       match="argument 'activation' must be None, 'hardswish', 'gelu' or 'relu', got 'tanh'"):
        op(q, k, v, ab, 3, 1, 0.3, "tanh")
    x, wq, bq, k, v, ab = shrink_inputs(gen, 1, 2, 3, 2, 8, 8, 5)
    with pytest.raises(RuntimeError, match="'q_weight' must have size 5 in dim 1"):
        torch.ops.levit_kernels.shrink_attention(x, wq[:, :4], bq, k, v, ab, 3, 2, 0.3, None)


def test_opcheck(gen):
    args = (*attention_inputs(gen, 2, 3, 4, 1, 8, 12, "packed"), 4, 1, 0.35, "hardswish")
    torch.library.opcheck(torch.ops.levit_kernels.biased_attention.default, args)
    args = (*shrink_inputs(gen, 2, 3, 5, 2, 8, 12, 7, "strided"), 5, 2, 0.35, "gelu")
    torch.library.opcheck(torch.ops.levit_kernels.shrink_attention.default, args)


def test_torch_compile_fullgraph(gen):
    attn_inputs = attention_inputs(gen, 2, 3, 4, 1, 8, 12, "packed")
    shrink = shrink_inputs(gen, 2, 3, 4, 2, 8, 12, 7)

    def both(q, k, v, ab, x, wq, bq, k2, v2, ab2):
        a = cpu.biased_attention(q, k, v, ab, 4, 1, 8 ** -0.5, "hardswish")
        b = cpu.shrink_attention(x, wq, bq, k2, v2, ab2, 4, 2, 8 ** -0.5, None)
        return a.sum() + b.sum(), a, b

    compiled = torch.compile(both, fullgraph=True, backend="aot_eager")
    _, a, b = compiled(*attn_inputs, *shrink)
    _, a_eager, b_eager = both(*attn_inputs, *shrink)
    assert torch.equal(a, a_eager) and torch.equal(b, b_eager)


def test_torch_export(gen):
    class Attention(torch.nn.Module):
        def forward(self, q, k, v, ab):
            return cpu.biased_attention(q, k, v, ab, 4, 1, 0.3, "hardswish")

    inputs = attention_inputs(gen, 2, 3, 4, 1, 8, 12, "contiguous")
    exported = torch.export.export(Attention(), inputs)
    assert any(n.target is torch.ops.levit_kernels.biased_attention.default for n in exported.graph.nodes)
    assert torch.equal(exported.module()(*inputs), Attention()(*inputs))
