"""levit_kernels.attention (softmax attention over long sequences, flash-style) on every backend — reference, cpu
under each ISA this CPU runs, triton (interpreted without a GPU) — against the float64 reference, with outputs
poisoned: N = 1 … 9216 (the long ones at batch 1, one head, cpu only: the interpreter would take minutes), odd N and
D, Dv ≠ D, Nq ≠ Nk, every broadcast form of the dense bias, strided and packed-qkv views, NaN/inf patterns and
fully masked rows as the reference gives them, thread-count independence, and bad input. The memory test runs
N = 9216 in a fresh process and checks that its peak RSS stays within a small multiple of the inputs (a 9216²
score matrix alone would be 340 MB).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
import torch

from support import targets

targets.interpret_triton()  # before any Triton kernel is built

from conftest import assert_close_to_reference  # noqa: E402
from levit_kernels import backends, ops, reference, tolerances  # noqa: E402
from levit_kernels.bench.timing import torch_threads  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OP = types.SimpleNamespace(op="attention")


@pytest.fixture(params=targets.ALL_TARGETS)
def target(request):
    with targets.use(request.param) as t:
        yield t


def attention_inputs(gen, b, h, nq, nk, d, dv, layout="contiguous", device="cpu"):
    """q, k, v. layout: "contiguous"; "packed" (views of one (B, N, H, D+D+Dv) qkv tensor, as a qkv projection
    makes them; needs nq = nk); "strided" (q stored (B, H, D, Nq), k every other element of a wider tensor, v a
    column slice of a (B, Nk, H, Dv+3) tensor)."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    if layout == "packed":
        assert nq == nk
        qkv = randn(b, nk, h, 2 * d + dv)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([d, d, dv], dim=-1))
    elif layout == "strided":
        q = randn(b, h, d, nq).transpose(2, 3)
        k = randn(b, h, nk, 2 * d)[..., ::2]
        v = randn(b, nk, h, dv + 3)[..., 1:dv + 1].permute(0, 2, 1, 3)
    else:
        q, k, v = randn(b, h, nq, d), randn(b, h, nk, d), randn(b, h, nk, dv)
    return tuple(t.to(device) for t in (q, k, v))


def run(target, q, k, v, **kwargs):
    return targets.run_poisoned(target, OP, (q, k, v), kwargs)


def reference64(q, k, v, scale=None, bias=None, activation=None, chunk=1024):
    """The float64 reference, over query chunks (a 9216² float64 score matrix would be 680 MB)."""
    q, k, v = (t.detach().cpu().double() for t in (q, k, v))
    if bias is not None:
        bias = bias.detach().cpu().double().expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    parts = [reference.attention(q[:, :, i:i + chunk], k, v, scale, None if bias is None else bias[:, :, i:i + chunk],
                                 activation) for i in range(0, max(q.shape[2], 1), chunk)]
    return torch.cat(parts, dim=1)


def check(target, q, k, v, what, **kwargs):
    out = run(target, q, k, v, **kwargs)
    b, h, nq, _ = q.shape
    assert out.shape == (b, nq, h * v.shape[3]) and out.dtype == q.dtype and out.is_contiguous()
    assert_close_to_reference(out, reference64(q, k, v, **kwargs), q.dtype, what)


# (B, H, Nq, Nk, D, Dv, layout): one and two keys/queries, Nq ≠ Nk both ways, odd D and Dv, D = Dv = 64 (T2T),
# a key count past several key blocks and query counts past several query tiles; small enough for the interpreter.
SHAPES = [
    (1, 1, 1, 1, 64, 64, "contiguous"),
    (2, 3, 1, 2, 8, 16, "contiguous"),
    (2, 2, 37, 50, 24, 20, "strided"),
    (1, 2, 50, 37, 5, 7, "strided"),
    (3, 1, 7, 300, 16, 33, "contiguous"),
    (2, 2, 65, 65, 64, 64, "packed"),
    (1, 1, 130, 1, 13, 64, "contiguous"),
    (1, 3, 49, 49, 64, 24, "packed"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}H{}Nq{}Nk{}D{}Dv{}-{}".format(*s))
def test_shapes(target, gen, shape):
    b, h, nq, nk, d, dv, layout = shape
    q, k, v = attention_inputs(gen, b, h, nq, nk, d, dv, layout, target.device)
    check(target, q, k, v, f"{shape}")


# Every bias form broadcastable to (B, H, Nq, Nk) = (2, 3, Nq, Nk): full, size-1 batch and/or head, fewer leading
# dims, a per-key row (padding mask), a per-query column; and one non-contiguous (transposed) full bias.
BIAS_SHAPES = ["BHQK", "1HQK", "B1QK", "11QK", "QK", "K", "B11K", "Q1", "BHKQ-transposed"]


@pytest.mark.parametrize("form", BIAS_SHAPES)
def test_bias_broadcast_forms(target, gen, form):
    b, h, nq, nk = 2, 3, 13, 29  # past one 16-key block of the interpreted triton kernel, kept small for it
    q, k, v = attention_inputs(gen, b, h, nq, nk, 16, 12, "strided", target.device)
    sizes = {"B": b, "H": h, "Q": nq, "K": nk, "1": 1}
    if form.endswith("-transposed"):
        bias = torch.randn(b, h, nk, nq, generator=gen).transpose(2, 3)
    else:
        bias = torch.randn(*(sizes[c] for c in form), generator=gen)
    check(target, q, k, v, f"bias {form}", bias=bias.to(target.device))


@pytest.mark.parametrize("activation", [None, "hardswish", "gelu", "relu"])
def test_activation_and_scale(target, gen, activation):
    q, k, v = attention_inputs(gen, 2, 2, 21, 34, 8, 24, "contiguous", target.device)
    bias = torch.randn(1, 2, 21, 34, generator=gen).to(target.device)
    check(target, q, k, v, f"activation {activation}", scale=147 ** -0.5, bias=bias, activation=activation)


LONG = [(784, 64), (3136, 64), (9216, 64), (1031, 40)]
CHECKED_ROWS = 384  # query rows of a long case compared with the float64 reference (all keys each)


@pytest.mark.parametrize("n, d", LONG, ids=lambda x: str(x))
def test_long_sequences(target, gen, n, d):
    """T2T-ViT's token layers (N = 3136, 784; 9216 at 384×384 input) and an odd long N, batch 1, one head. Every
    output row is poisoned first and must be finite; CHECKED_ROWS random rows (first and last included) are
    compared with the float64 reference over all N keys."""
    if target.backend != "cpu":
        pytest.skip("long sequences run on the cpu backend only (the interpreter would take minutes)")
    if target.name == "cpu-scalar" and n > 1100:
        pytest.skip("the scalar variant at N >= 3136 takes tens of seconds; N = 784 and 1031 cover it")
    q, k, v = attention_inputs(gen, 1, 1, n, n, d, d, "packed" if n % 2 else "contiguous")
    out = run(target, q, k, v, scale=147 ** -0.5)
    assert out.shape == (1, n, d) and out.isfinite().all()
    rows = torch.cat([torch.tensor([0, n - 1]), torch.randperm(n, generator=gen)[:CHECKED_ROWS - 2]])
    ref = reference64(q[:, :, rows], k, v, scale=147 ** -0.5)
    assert_close_to_reference(out[:, rows], ref, torch.float32, f"N={n} D={d}")


def test_long_keys_few_queries(target, gen):
    """One query against 5000 keys (tens of key blocks), and a masked-out majority of keys."""
    if target.interpreted:
        pytest.skip("5000 keys take the interpreter minutes")
    q, k, v = attention_inputs(gen, 1, 2, 3, 5000, 32, 16, "contiguous", target.device)
    bias = torch.zeros(1, 1, 1, 5000)
    bias[..., :4000] = float("-inf")  # the first blocks see only masked keys: a masked prefix of every row
    check(target, q, k, v, "5000 keys", bias=bias.to(target.device))


def special_value_inputs(gen, device):
    q, k, v = attention_inputs(gen, 2, 3, 20, 37, 8, 12, "contiguous")
    bias = torch.randn(2, 3, 20, 37, generator=gen)
    q[0, 0, 3, 1] = float("nan")        # that query's row is NaN
    k[1, 1, 7, 2] = float("inf")        # every query of (1, 1) meets ±inf scores
    v[0, 2, 30, 5] = float("inf")       # column 5 of (0, 2) is +inf
    v[1, 0, 6, 0] = float("nan")        # column 0 of (1, 0) is NaN
    bias[0, 1, 4] = float("-inf")       # fully masked row → NaN, as torch.softmax
    bias[0, 1, 5, :33] = float("-inf")  # a masked prefix across key blocks: the row is finite
    bias[1, 2, :, 10] = float("-inf")   # one masked key
    return tuple(t.to(device) for t in (q, k, v, bias))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy on NaN
def test_nan_inf_pattern_and_masked_rows_match_reference(target, gen):
    q, k, v, bias = special_value_inputs(gen, target.device)
    out = run(target, q, k, v, bias=bias, activation="hardswish").cpu()
    ref = reference64(q, k, v, bias=bias, activation="hardswish")
    assert torch.equal(out.isnan(), ref.isnan()), "NaN pattern differs from the reference"
    assert torch.equal(out.isinf(), ref.isinf()) and torch.equal(out[out.isinf()], ref[ref.isinf()].float())
    assert ref[0, 4, 12:24].isnan().all() and ref[0, 5, 12:24].isfinite().all()  # the inputs do what they claim
    finite = ref.isfinite()
    assert finite.any() and not finite.all()
    assert_close_to_reference(out[finite], ref[finite], torch.float32, "finite elements")


@pytest.mark.skipif(not backends.availability("cpu")[0], reason="the CPU backend is not built")
def test_threads_give_identical_results(gen):
    """Each work item runs on one thread: the thread count cannot change a single bit."""
    q, k, v = attention_inputs(gen, 1, 1, 300, 300, 64, 64, "packed")
    with torch_threads(1):
        one = ops.attention(q, k, v, backend="cpu")
    with torch_threads(max(2, torch.get_num_threads())):
        many = ops.attention(q, k, v, backend="cpu")
    assert torch.equal(one, many)


@pytest.mark.skipif(not backends.availability("cpu")[0], reason="the CPU backend is not built")
def test_custom_op_traces_and_checks_its_arguments(gen):
    q, k, v = attention_inputs(gen, 2, 3, 9, 11, 8, 12, "strided")
    bias = torch.randn(3, 1, 11, generator=gen)
    op = torch.ops.levit_kernels.attention.default
    torch.library.opcheck(op, (q, k, v, 0.3, bias, "hardswish"))
    compiled = torch.compile(lambda *a: ops.attention(*a, backend="cpu"), fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(q, k, v, 0.3, bias), ops.attention(q, k, v, 0.3, bias, backend="cpu"))
    # reachable without the Python checks, so the C++ op validates on its own
    with pytest.raises(TypeError, match="'q' must be float32, got Double"):
        op(q.double(), k, v, 0.3, None, None)
    with pytest.raises(ValueError, match=r"'v' must have size 11 in dim 2 \(keys, as k\)"):
        op(q, k, v[:, :, :5], 0.3, None, None)
    with pytest.raises(ValueError, match=r"'bias' must broadcast to \(B, H, Nq, Nk\)"):
        op(q, k, v, 0.3, torch.randn(2, 9, 10), None)
    with pytest.raises(ValueError, match="'activation' must be"):
        op(q, k, v, 0.3, None, "swish")


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def valid():
    return {"q": _r(2, 3, 9, 8), "k": _r(2, 3, 11, 8), "v": _r(2, 3, 11, 12)}


BAD = [  # (change to the valid call, exception, words the message must contain)
    ({"q": _r(3, 9, 8)}, ValueError, ["'q'", "4-D tensor (B, H, Nq, D)", "shape (3, 9, 8)"]),
    ({"k": _r(1, 3, 11, 8)}, ValueError, ["'k'", "size 2 in dim 0 (batch, as q)", "shape (1, 3, 11, 8)"]),
    ({"k": _r(2, 2, 11, 8)}, ValueError, ["'k'", "size 3 in dim 1 (heads, as q)"]),
    ({"k": _r(2, 3, 11, 7)}, ValueError, ["'k'", "size 8 in dim 3 (key dim, as q)"]),
    ({"v": _r(2, 3, 10, 12)}, ValueError, ["'v'", "size 11 in dim 2 (keys, as k)", "shape (2, 3, 10, 12)"]),
    ({"k": _r(2, 3, 0, 8), "v": _r(2, 3, 0, 12)}, ValueError, ["at least one key"]),
    ({"bias": _r(2, 3, 9, 10)}, ValueError, ["'bias'", "(2, 3, 9, 11)", "size 11 or 1 in dim 3 (keys)"]),
    ({"bias": _r(4, 9, 11)}, ValueError, ["'bias'", "size 3 or 1 in dim 0 (heads)", "shape (4, 9, 11)"]),
    ({"bias": _r(1, 2, 3, 9, 11)}, ValueError, ["'bias'", "broadcastable", "shape (1, 2, 3, 9, 11)"]),
    ({"bias": _r(9, 11, dtype=torch.float64)}, TypeError, ["'bias'", "same dtype as 'q'"]),
    ({"bias": "mask"}, TypeError, ["'bias'", "torch.Tensor", "str"]),
    ({"v": _r(2, 3, 11, 12).long()}, TypeError, ["'v'", "floating tensor", "torch.int64"]),
    ({"k": torch.empty(2, 3, 11, 8, device="meta")}, ValueError, ["'k'", "same device as 'q'", "meta"]),
    ({"scale": float("nan")}, ValueError, ["'scale'", "finite", "nan"]),
    ({"activation": "swish"}, ValueError, ["'activation'", "one of", "'swish'"]),
    ({"backend": "gpu"}, ValueError, ["'backend'", "'auto', 'reference', 'cpu', 'triton'", "'gpu'"]),
]


@pytest.mark.parametrize("change, exc, words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_names_argument_expected_and_received(change, exc, words):
    with pytest.raises(exc) as info:
        ops.attention(**{**valid(), **change})
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_the_valid_call_above_is_valid():
    args = valid()
    assert ops.attention(**args, backend="reference").shape == (2, 9, 36)


# ---- memory ---------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not backends.availability("cpu")[0], reason="the CPU backend is not built")
def test_peak_memory_does_not_grow_with_the_score_matrix():
    """N = 9216, D = 64, batch 1, one head, in a fresh process: the forward's peak RSS over the RSS just before it
    stays within twice the inputs + output (plus a few MB of allocator and workspace slack); the Nq×Nk scores alone
    would be 340 MB. The output's own pages must show, or the measurement is broken."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    probe = os.path.join(ROOT, "tests", "support", "attention_memory_probe.py")
    result = subprocess.run([sys.executable, probe, "9216", "64"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads(result.stdout.strip().splitlines()[-1])
    grown, data = m["peak"] - m["baseline"], m["inputs"] + m["output"]
    print(f"\n[memory] attention N=9216: forward added {grown / 2**20:.1f} MiB over inputs+output "
          f"{data / 2**20:.1f} MiB (scores would be {9216 ** 2 * 4 / 2**20:.0f} MiB)")
    assert grown >= 0.5 * m["output"], f"the output's {m['output']} bytes did not show: {m}"
    assert grown <= 2 * data + 8 * 2**20, f"attention grew by {grown / 2**20:.1f} MiB: {m}"
