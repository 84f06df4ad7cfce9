"""Every reference op against a direct naive implementation (explicit loops over grid positions for the attention
bias index), at every LeViT shape (from levit.config.op_shapes) and at odd shapes, in float64; and the public ops'
validation of bad inputs."""
import functools
import math

import pytest
import torch

import levit_kernels
from conftest import assert_close_to_reference
from levit.config import MODEL_NAMES, ShrinkAttentionShape, op_shapes
from levit_kernels import reference

F64 = torch.float64


# ------------------------------------------------------------------------------------------- naive versions
@functools.lru_cache(maxsize=None)
def naive_bias_index(resolution, stride):
    """Query (yq, xq) on the stride grid, key (yk, xk) on the R×R grid → |yq·s − yk|·R + |xq·s − xk|."""
    query_points = [(y, x) for y in range(0, resolution, stride) for x in range(0, resolution, stride)]
    key_points = [(y, x) for y in range(resolution) for x in range(resolution)]
    rows = [[abs(yq - yk) * resolution + abs(xq - xk) for (yk, xk) in key_points] for (yq, xq) in query_points]
    return torch.tensor(rows, dtype=torch.long)


def naive_hardswish(x):
    return x * torch.clamp(x + 3, 0, 6) / 6


def naive_gelu(x):
    """x·Φ(x) with Φ the standard normal CDF, from erf."""
    return x * (1 + torch.erf(x / math.sqrt(2))) / 2


def naive_activation(x, activation):
    naive = {None: lambda t: t, "hardswish": naive_hardswish, "gelu": naive_gelu,
             "relu": lambda t: torch.where(t > 0, t, torch.zeros_like(t))}
    return naive[activation](x)


def naive_biased_attention(q, k, v, biases, resolution, stride, scale, activation):
    b, h, nq, d = q.shape
    dv = v.shape[-1]
    scale = d ** -0.5 if scale is None else scale
    idx = naive_bias_index(resolution, stride)
    out = torch.empty(b, nq, h * dv, dtype=F64)
    for bi in range(b):
        for hi in range(h):
            logits = scale * torch.einsum("id,jd->ij", q[bi, hi].double(), k[bi, hi].double())
            logits = logits + biases[hi].double()[idx]
            weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)
            out[bi, :, hi * dv:(hi + 1) * dv] = weights @ v[bi, hi].double()
    return naive_activation(out, activation)


def naive_subsample(x, resolution, stride):
    tokens = [y * resolution + xx for y in range(0, resolution, stride) for xx in range(0, resolution, stride)]
    return x[:, tokens]


def naive_linear(x, w, b, activation=None, residual=None):
    y = naive_activation(x.double() @ w.double().T + b.double(), activation)
    return y if residual is None else residual.double() + y


# ------------------------------------------------------------------------------------------------- shapes
def _levit_attention_cases():
    cases = {}
    for name in MODEL_NAMES:
        for s in op_shapes(name):
            if s.kind in ("attention", "shrink"):
                key = (s.heads, s.key_dim, s.value_dim, s.resolution, s.stride)
                cases.setdefault(key, f"{name}-{s.kind}-H{s.heads}-D{s.key_dim}-R{s.resolution}")
    return [pytest.param(*key, id=label) for key, label in cases.items()]


ODD_ATTENTION = [pytest.param(h, d, dv, r, s, id=f"odd-H{h}-D{d}-Dv{dv}-R{r}-s{s}")
                 for (h, d, dv, r, s) in [(1, 8, 8, 1, 1), (2, 8, 24, 1, 2), (3, 8, 16, 3, 1), (3, 64, 32, 3, 2),
                                          (2, 64, 128, 5, 1), (1, 8, 40, 5, 2), (2, 8, 16, 13, 1),
                                          (3, 64, 64, 13, 2), (2, 8, 16, 4, 3)]]


def _levit_linear_cases():
    """(in, out, rows) of every projection and MLP layer of every variant, rows = tokens it runs on."""
    cases = set()
    for name in MODEL_NAMES:
        for s in op_shapes(name):
            if s.kind == "mlp":
                cases |= {(cin, cout, s.tokens) for cin, cout in s.linears.values()}
            elif s.kind == "attention":
                cases |= {(cin, cout, s.tokens) for cin, cout in s.linears.values()}
            else:
                lin = s.linears
                cases |= {(*lin["kv"], s.keys), (*lin["q"], s.queries), (*lin["proj"], s.queries)}
    return sorted(cases)


def _levit_mlp_cases():
    return sorted({(s.channels, s.hidden, s.tokens) for n in MODEL_NAMES for s in op_shapes(n) if s.kind == "mlp"})


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=F64)


def _packed_qkv(gen, b, h, nq, nk, d, dv, stride):
    """q, k, v as strided views: k and v (and q at stride 1) sliced from one packed projection, like the model."""
    packed = _randn(gen, b, nk, h, 2 * d + dv).permute(0, 2, 1, 3)
    k, v = packed[..., d:2 * d], packed[..., 2 * d:]
    q = packed[..., :d] if stride == 1 else _randn(gen, b, nq, h, d).permute(0, 2, 1, 3)
    return q, k, v


# ----------------------------------------------------------------------------------------------- attention
def test_bias_index_formula_matches_loops():
    for resolution in (1, 2, 3, 4, 5, 7, 13, 14):
        for stride in (1, 2, 3):
            assert torch.equal(reference.attention_bias_index(resolution, stride),
                               naive_bias_index(resolution, stride)), (resolution, stride)


@pytest.mark.parametrize("heads,key_dim,value_dim,resolution,stride", _levit_attention_cases() + ODD_ATTENTION)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_biased_attention_matches_naive(gen, heads, key_dim, value_dim, resolution, stride, activation):
    nk = resolution ** 2
    nq = reference.query_grid_side(resolution, stride) ** 2
    q, k, v = _packed_qkv(gen, 1, heads, nq, nk, key_dim, value_dim, stride)
    biases = _randn(gen, heads, nk)
    assert k.untyped_storage().data_ptr() == v.untyped_storage().data_ptr()  # views of one packed tensor
    want = naive_biased_attention(q, k, v, biases, resolution, stride, None, activation)
    got = reference.biased_attention(q, k, v, biases, resolution, stride, None, activation)
    assert_close_to_reference(got, want, F64, "reference.biased_attention")
    via_op = levit_kernels.biased_attention(q, k, v, biases, resolution, stride, activation=activation,
                                            backend="reference")
    assert_close_to_reference(via_op, want, F64, "levit_kernels.biased_attention")
    cached = reference.gather_attention_bias(biases, resolution, stride)
    assert cached.shape == (heads, nq, nk)
    with_cache = reference.biased_attention(q, k, v, biases, resolution, stride, None, activation,
                                            gathered_bias=cached)
    assert_close_to_reference(with_cache, want, F64, "with gathered_bias")


def test_biased_attention_explicit_scale_and_batch(gen):
    q, k, v = _packed_qkv(gen, 3, 2, 9, 9, 8, 16, 1)
    biases = _randn(gen, 2, 9)
    want = naive_biased_attention(q, k, v, biases, 3, 1, 0.37, "hardswish")
    got = levit_kernels.biased_attention(q, k, v, biases, 3, 1, scale=0.37, activation="hardswish",
                                         backend="reference")
    assert_close_to_reference(got, want, F64)


def _levit_shrink_cases():
    cases = {}
    for name in MODEL_NAMES:
        for s in op_shapes(name):
            if s.kind == "shrink":
                cases.setdefault(s, f"{name}-shrink-C{s.in_channels}-H{s.heads}-R{s.resolution}")
    return [pytest.param(s, id=label) for s, label in cases.items()]


ODD_SHRINK = [pytest.param(ShrinkAttentionShape(1, 24, 0, h, d, dv, r, s), id=f"odd-H{h}-D{d}-Dv{dv}-R{r}-s{s}")
              for (h, d, dv, r, s) in [(2, 8, 24, 1, 2), (3, 64, 32, 3, 2), (1, 8, 40, 5, 2), (3, 64, 64, 13, 2),
                                       (2, 8, 16, 4, 3)]]


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("shape", _levit_shrink_cases() + ODD_SHRINK)
def test_shrink_attention_matches_naive(gen, shape, activation):
    operands = {name: _randn(gen, *dims) for name, dims in shape.shrink_operands(2).items() if name != "out"}
    x, q_weight, q_bias = operands["x"], operands["q_weight"], operands["q_bias"]
    k, v, biases = operands["k"], operands["v"], operands["attention_biases"]
    resolution, stride = shape.resolution, shape.stride
    xs = naive_subsample(x, resolution, stride)
    q = naive_linear(xs, q_weight, q_bias).reshape(2, -1, shape.heads, shape.key_dim).permute(0, 2, 1, 3)
    want = naive_biased_attention(q, k, v, biases, resolution, stride, None, activation)
    assert want.shape == shape.shrink_operands(2)["out"]
    got = reference.shrink_attention(x, q_weight, q_bias, k, v, biases, resolution, stride, None, activation)
    assert_close_to_reference(got, want, F64, "reference.shrink_attention")
    via_op = levit_kernels.shrink_attention(x, q_weight, q_bias, k, v, biases, resolution, stride,
                                            activation=activation, backend="reference")
    assert_close_to_reference(via_op, want, F64, "levit_kernels.shrink_attention")


# ------------------------------------------------------------------------------------------- mlp / linear
ODD_MLP = [(1, 3, 1), (5, 7, 3), (24, 40, 13), (16, 8, 49)]


@pytest.mark.parametrize("channels,hidden,tokens", _levit_mlp_cases() + ODD_MLP)
def test_mlp_matches_naive(gen, channels, hidden, tokens):
    x = _randn(gen, 1, tokens, channels)
    w1, b1 = _randn(gen, hidden, channels) / math.sqrt(channels), _randn(gen, hidden)
    w2, b2 = _randn(gen, channels, hidden) / math.sqrt(hidden), _randn(gen, channels)
    hidden_act = naive_linear(x, w1, b1, "hardswish")
    for residual in (True, False):
        want = naive_linear(hidden_act, w2, b2, None, x if residual else None)
        assert_close_to_reference(reference.mlp(x, w1, b1, w2, b2, "hardswish", residual), want, F64)
        got = levit_kernels.mlp(x, w1, b1, w2, b2, residual=residual, backend="reference")
        assert_close_to_reference(got, want, F64, f"levit_kernels.mlp residual={residual}")
    for activation in ("gelu", "relu"):
        want = naive_linear(naive_linear(x, w1, b1, activation), w2, b2, None, x)
        got = levit_kernels.mlp(x, w1, b1, w2, b2, activation, True, backend="reference")
        assert_close_to_reference(got, want, F64, f"levit_kernels.mlp act={activation}")
    no_act = naive_linear(naive_linear(x, w1, b1), w2, b2, None, x)
    assert_close_to_reference(reference.mlp(x, w1, b1, w2, b2, None, True), no_act, F64, "mlp without activation")


ODD_LINEAR = [(1, 1, 1), (3, 5, 7), (40, 24, 13)]


@pytest.mark.parametrize("in_features,out_features,rows", _levit_linear_cases() + ODD_LINEAR)
def test_linear_matches_naive(gen, in_features, out_features, rows):
    x = _randn(gen, 1, rows, in_features)
    w, b = _randn(gen, out_features, in_features), _randn(gen, out_features)
    residual = _randn(gen, 1, rows, out_features)
    combos = [(None, None), ("hardswish", residual), ("gelu", None), ("relu", residual), ("hardswish", None),
              (None, residual), ("gelu", residual), ("relu", None)]
    for activation, res in combos if (in_features, out_features, rows) in ODD_LINEAR else combos[:4]:
        want = naive_linear(x, w, b, activation, res)
        assert_close_to_reference(reference.linear(x, w, b, activation, res), want, F64)
        got = levit_kernels.linear(x, w, b, activation, res, backend="reference")
        assert_close_to_reference(got, want, F64, f"levit_kernels.linear act={activation}")
    assert_close_to_reference(reference.linear(x, w, None), naive_linear(x, w, torch.zeros(out_features)), F64)


# ------------------------------------------------------------------------------------------ fold_batchnorm
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_fold_batchnorm_matches_naive(gen, kind, with_bias, affine):
    channels_in, channels_out = 6, 5
    if kind == "linear":
        weight, x = _randn(gen, channels_out, channels_in), _randn(gen, 7, channels_in)
        bn = torch.nn.BatchNorm1d(channels_out, affine=affine)
    else:
        weight, x = _randn(gen, channels_out, channels_in, 3, 3), _randn(gen, 2, channels_in, 5, 5)
        bn = torch.nn.BatchNorm2d(channels_out, affine=affine)
    bn = bn.double().eval()
    bias = _randn(gen, channels_out) if with_bias else None
    with torch.no_grad():
        bn.running_mean.copy_(_randn(gen, channels_out))
        bn.running_var.copy_(torch.rand(channels_out, generator=gen, dtype=F64) + 0.5)
        if affine:
            bn.weight.copy_(_randn(gen, channels_out))
            bn.bias.copy_(_randn(gen, channels_out))
    op = torch.nn.functional.linear if kind == "linear" else functools.partial(torch.nn.functional.conv2d,
                                                                               padding=1)
    # Naive BN over the channel dim (1 for both layouts), written out per channel.
    y = op(x, weight, bias)
    want = torch.empty_like(y)
    for c in range(channels_out):
        gamma = bn.weight[c] if affine else 1.0
        beta = bn.bias[c] if affine else 0.0
        want[:, c] = (y[:, c] - bn.running_mean[c]) / torch.sqrt(bn.running_var[c] + bn.eps) * gamma + beta
    folded_w, folded_b = levit_kernels.fold_batchnorm(weight, bias, bn)
    assert folded_w.shape == weight.shape and folded_b.shape == (channels_out,)
    assert_close_to_reference(op(x, folded_w, folded_b), want.detach(), F64, "folded layer")


# ----------------------------------------------------------------------------------------------- bad input
def _attention_args():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, generator=g), torch.randn(2, 3, 16, 8, generator=g),
               torch.randn(2, 3, 16, 16, generator=g))
    return dict(q=q, k=k, v=v, attention_biases=torch.randn(3, 16, generator=g), resolution=4, stride=1)


def _shrink_args():
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.randn(2, 16, 10, generator=g), q_weight=torch.randn(24, 10, generator=g),
                q_bias=torch.randn(24, generator=g), k=torch.randn(2, 3, 16, 8, generator=g),
                v=torch.randn(2, 3, 16, 16, generator=g), attention_biases=torch.randn(3, 16, generator=g),
                resolution=4, stride=2)


def _mlp_args():
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.randn(2, 5, 6, generator=g), w1=torch.randn(12, 6, generator=g),
                b1=torch.randn(12, generator=g), w2=torch.randn(6, 12, generator=g), b2=torch.randn(6, generator=g))


def _linear_args():
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.randn(2, 5, 6, generator=g), weight=torch.randn(7, 6, generator=g),
                bias=torch.randn(7, generator=g), residual=torch.randn(2, 5, 7, generator=g))


OPS = {"biased_attention": (levit_kernels.biased_attention, _attention_args),
       "shrink_attention": (levit_kernels.shrink_attention, _shrink_args),
       "mlp": (levit_kernels.mlp, _mlp_args), "linear": (levit_kernels.linear, _linear_args)}

# (op, argument, bad value as a function of the good arguments, exception, words the message must contain)
BAD_INPUTS = [
    ("biased_attention", "q", lambda a: a["q"][0], ValueError, ["'q'", "4-D"]),
    ("biased_attention", "q", lambda a: a["q"][:, :, :9], ValueError, ["'q'", "queries"]),
    ("biased_attention", "q", lambda a: a["q"].long(), TypeError, ["'q'", "floating"]),
    ("biased_attention", "q", lambda a: a["q"].double(), TypeError, ["'q'", "dtype"]),
    ("biased_attention", "q", lambda a: a["q"][..., :4], ValueError, ["'q'", "key dim"]),
    ("biased_attention", "q", lambda a: a["q"].numpy(), TypeError, ["'q'", "torch.Tensor"]),
    ("biased_attention", "k", lambda a: a["k"][:, :, :9], ValueError, ["'k'", "resolution"]),
    ("biased_attention", "k", lambda a: a["k"].to("meta"), ValueError, ["'k'", "device"]),
    ("biased_attention", "v", lambda a: a["v"][:1], ValueError, ["'v'", "batch"]),
    ("biased_attention", "v", lambda a: a["v"][:, :2], ValueError, ["'v'", "heads"]),
    ("biased_attention", "v", lambda a: a["v"].half(), TypeError, ["'v'", "dtype"]),
    ("biased_attention", "attention_biases", lambda a: a["attention_biases"][:2], ValueError,
     ["'attention_biases'", "heads"]),
    ("biased_attention", "attention_biases", lambda a: a["attention_biases"][:, :9], ValueError,
     ["'attention_biases'", "resolution"]),
    ("biased_attention", "attention_biases", lambda a: a["attention_biases"][0], ValueError,
     ["'attention_biases'", "2-D"]),
    ("biased_attention", "resolution", lambda a: 5, ValueError, ["'k'", "resolution"]),
    ("biased_attention", "resolution", lambda a: 0, ValueError, ["'resolution'", "positive"]),
    ("biased_attention", "resolution", lambda a: 4.0, TypeError, ["'resolution'", "int"]),
    ("biased_attention", "stride", lambda a: 2, ValueError, ["'q'", "stride-2"]),
    ("biased_attention", "stride", lambda a: 0, ValueError, ["'stride'"]),
    ("biased_attention", "scale", lambda a: float("nan"), ValueError, ["'scale'", "finite"]),
    ("biased_attention", "scale", lambda a: float("inf"), ValueError, ["'scale'", "finite"]),
    ("biased_attention", "scale", lambda a: torch.tensor(0.5), TypeError, ["'scale'", "float"]),
    ("biased_attention", "activation", lambda a: "tanh", ValueError, ["'activation'", "'hardswish', 'gelu', 'relu'"]),
    ("biased_attention", "backend", lambda a: "cuda-magic", ValueError, ["'backend'", "reference"]),
    ("shrink_attention", "x", lambda a: a["x"][:, :9], ValueError, ["'x'", "resolution"]),
    ("shrink_attention", "x", lambda a: a["x"][0], ValueError, ["'x'", "3-D"]),
    ("shrink_attention", "q_weight", lambda a: a["q_weight"][:16], ValueError, ["'q_weight'", "heads"]),
    ("shrink_attention", "q_weight", lambda a: a["q_weight"][:, :4], ValueError, ["'q_weight'", "channels"]),
    ("shrink_attention", "q_bias", lambda a: a["q_bias"][:3], ValueError, ["'q_bias'"]),
    ("shrink_attention", "q_bias", lambda a: a["q_bias"].double(), TypeError, ["'q_bias'", "dtype"]),
    ("shrink_attention", "x", lambda a: a["x"][:1], ValueError, ["'x'", "batch"]),
    ("shrink_attention", "scale", lambda a: float("-inf"), ValueError, ["'scale'"]),
    ("shrink_attention", "activation", lambda a: "GELU", ValueError, ["'activation'"]),
    ("mlp", "w1", lambda a: a["w1"][:, :5], ValueError, ["'w1'", "channels"]),
    ("mlp", "b1", lambda a: a["b1"][:5], ValueError, ["'b1'", "hidden"]),
    ("mlp", "w2", lambda a: a["w2"][:, :5], ValueError, ["'w2'", "hidden"]),
    ("mlp", "w2", lambda a: a["w2"][:4], ValueError, ["'b2'"]),
    ("mlp", "b2", lambda a: a["b2"].to("meta"), ValueError, ["'b2'", "device"]),
    ("mlp", "residual", lambda a: 1, TypeError, ["'residual'", "bool"]),
    ("mlp", "activation", lambda a: "silu", ValueError, ["'activation'"]),
    ("mlp", "backend", lambda a: "", ValueError, ["'backend'"]),
    ("linear", "weight", lambda a: a["weight"][:, :5], ValueError, ["'weight'", "channels"]),
    ("linear", "weight", lambda a: a["weight"][0], ValueError, ["'weight'", "2-D"]),
    ("linear", "bias", lambda a: a["bias"][:3], ValueError, ["'bias'"]),
    ("linear", "residual", lambda a: a["residual"][:, :4], ValueError, ["'residual'", "shape"]),
    ("linear", "residual", lambda a: a["residual"].double(), TypeError, ["'residual'", "dtype"]),
    ("linear", "x", lambda a: a["x"].int(), TypeError, ["'x'", "floating"]),
    ("linear", "activation", lambda a: "tanh", ValueError, ["'activation'"]),
]


@pytest.mark.parametrize("op_name,arg,make_bad,exc,words", BAD_INPUTS,
                         ids=[f"{op}-{arg}-{i}" for i, (op, arg, *_rest) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_naming_the_argument(op_name, arg, make_bad, exc, words):
    op, make_args = OPS[op_name]
    args = make_args()
    op(**args, backend="reference")  # the unmodified arguments are accepted
    args[arg] = make_bad(args)
    kwargs = {"backend": "reference", **args}
    with pytest.raises(exc) as info:
        op(**kwargs)
    message = str(info.value)
    assert op_name in message and all(w in message for w in words), message


def test_bias_index_cache_survives_tracing():
    """torch.export (as torch.onnx.export does) before any eager call: the index cache must not keep the traced
    tensor for the eager calls after it."""
    reference._bias_index_cpu.cache_clear()

    class Gather(torch.nn.Module):
        def forward(self, biases):
            return reference.gather_attention_bias(biases, 3, 2)

    biases = torch.randn(2, 9)
    torch.export.export(Gather(), (biases,))
    got = reference.gather_attention_bias(biases, 3, 2)
    # |Δy|·3 + |Δx| from the queries (0, 0), (0, 2), (2, 0), (2, 2) to the 3×3 keys
    index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 0, 5, 4, 3, 8, 7, 6],
                          [6, 7, 8, 3, 4, 5, 0, 1, 2], [8, 7, 6, 5, 4, 3, 2, 1, 0]])
    assert type(got) is torch.Tensor and torch.equal(got, biases[:, index])
