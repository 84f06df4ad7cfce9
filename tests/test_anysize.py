"""Any input size (issue 15): biased_attention and shrink_attention on Rh×Rw key grids on every backend and ISA
(reference, cpu per ISA, triton interpreted without a GPU) against the float64 reference with outputs poisoned;
the bias index and its validation; bias-table resampling (identity, constants, the bicubic interpolation it
claims); LeViT and EfficientFormer at non-square and larger sizes, eager vs optimized, forward_features; a 224
checkpoint loaded at 384; the optimized model's size check.
"""
from __future__ import annotations

import logging
import types

import pytest
import torch

from support import targets

targets.interpret_triton()  # before any Triton kernel is built

import levit  # noqa: E402
from conftest import assert_close_to_reference  # noqa: E402
from levit.config import LeViTSpec, op_shapes  # noqa: E402
from levit.efficientformer import EfficientFormer, EfficientFormerSpec, randomize_  # noqa: E402
from levit_kernels import backends, ops, optimize, reference, verify  # noqa: E402

CPU = backends.availability("cpu")[0]


@pytest.fixture(params=targets.ALL_TARGETS)
def target(request):
    with targets.use(request.param) as t:
        yield t


def randn(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def f64(*tensors):
    return [t.double() for t in tensors]


# (Rh, Rw, stride): wide, tall, odd sides both ways, a side of 1, a stride past one side; small for the interpreter.
GRIDS = [(3, 5, 1), (5, 3, 1), (3, 5, 2), (5, 4, 2), (1, 7, 1), (7, 1, 2), (4, 9, 3), (2, 3, 4)]


@pytest.mark.parametrize("rh, rw, stride", GRIDS, ids=lambda v: str(v))
def test_biased_attention_on_non_square_grids(target, gen, rh, rw, stride):
    b, h, d, dv = 2, 3, 8, 12
    qh, qw = reference.query_grid((rh, rw), stride)
    q, k, v = randn(gen, b, h, qh * qw, d), randn(gen, b, h, rh * rw, d), randn(gen, b, h, rh * rw, dv)
    table = randn(gen, h, rh * rw)
    ref = reference.biased_attention(q, k, v, table, (rh, rw), stride, activation="hardswish")
    args = [t.float().to(target.device) for t in (q, k, v, table)]
    out = targets.run_poisoned(target, types.SimpleNamespace(op="biased_attention"), (*args, (rh, rw), stride),
                               {"activation": "hardswish"})
    assert out.shape == (b, qh * qw, h * dv)
    assert_close_to_reference(out.cpu(), ref, torch.float32, f"biased {rh}×{rw} s{stride}")


@pytest.mark.parametrize("rh, rw, stride", GRIDS, ids=lambda v: str(v))
def test_shrink_attention_on_non_square_grids(target, gen, rh, rw, stride):
    b, h, d, dv, c = 2, 2, 16, 8, 20
    x = randn(gen, b, rh * rw, c)
    wq, bq = randn(gen, h * d, c, scale=c ** -0.5), randn(gen, h * d)
    k, v, table = randn(gen, b, h, rh * rw, d), randn(gen, b, h, rh * rw, dv), randn(gen, h, rh * rw)
    ref = reference.shrink_attention(x, wq, bq, k, v, table, (rh, rw), stride)
    args = [t.float().to(target.device) for t in (x, wq, bq, k, v, table)]
    out = targets.run_poisoned(target, types.SimpleNamespace(op="shrink_attention"), (*args, (rh, rw), stride), {})
    qh, qw = reference.query_grid((rh, rw), stride)
    assert out.shape == (b, qh * qw, h * dv)
    assert_close_to_reference(out.cpu(), ref, torch.float32, f"shrink {rh}×{rw} s{stride}")


@pytest.mark.skipif(not CPU, reason="the CPU backend is not built")
def test_cpu_at_the_448x800_levit_grids(gen):
    """LeViT-128S's first attention and shrink at 448×800 (28×50 keys; 14×25 queries) on the cpu backend."""
    shapes = [s for s in op_shapes("levit_128s", (448, 800)) if s.kind in ("attention", "shrink")]
    first, shrink = shapes[0], next(s for s in shapes if s.kind == "shrink")
    assert first.resolution == (28, 50) and shrink.out_resolution == (14, 25)
    h, d, dv, grid = first.heads, first.key_dim, first.value_dim, first.resolution
    q, k, v = randn(gen, 1, h, 1400, d), randn(gen, 1, h, 1400, d), randn(gen, 1, h, 1400, dv)
    table = randn(gen, h, 1400)
    out = ops.biased_attention(*(t.float() for t in (q, k, v, table)), grid, 1, backend="cpu")
    assert_close_to_reference(out, reference.biased_attention(q, k, v, table, grid, 1), torch.float32, "28×50")
    h, d, dv, c = shrink.heads, shrink.key_dim, shrink.value_dim, shrink.in_channels
    x, wq, bq = randn(gen, 1, 1400, c), randn(gen, h * d, c, scale=c ** -0.5), randn(gen, h * d)
    k, v = randn(gen, 1, h, 1400, d), randn(gen, 1, h, 1400, dv)
    out = ops.shrink_attention(*(t.float() for t in (x, wq, bq, k, v, table[:1].expand(h, -1))), grid, 2,
                               backend="cpu")
    ref = reference.shrink_attention(x, wq, bq, k, v, table[:1].expand(h, -1), grid, 2)
    assert out.shape == (1, 14 * 25, h * dv)
    assert_close_to_reference(out, ref, torch.float32, "shrink 28×50")


def test_bias_index_is_dy_times_rw_plus_dx():
    rh, rw, s = 4, 7, 2
    idx = reference.attention_bias_index((rh, rw), s)
    qh, qw = reference.query_grid((rh, rw), s)
    assert idx.shape == (qh * qw, rh * rw) == (2 * 4, 28)
    for i in range(qh * qw):
        yq, xq = i // qw * s, i % qw * s
        for j in range(rh * rw):
            assert idx[i, j] == abs(yq - j // rw) * rw + abs(xq - j % rw)
    # A square pair is the int's grid.
    assert torch.equal(reference.attention_bias_index((5, 5), 2), reference.attention_bias_index(5, 2))


@pytest.mark.parametrize("change, argument, words", [
    (dict(table=(2, 14)), "attention_biases", ["Rh·Rw", "3×5"]),
    (dict(nk=14), "k", ["Rh·Rw = 15", "3×5"]),
    (dict(nq=9), "q", ["2×3 subgrid", "3×5"]),
    (dict(resolution=(3, 5, 1)), "resolution", ["(Rh, Rw)"]),
    (dict(resolution=(3, 0)), "resolution[1] (Rw)", ["positive int"]),
])
def test_validation_names_the_grid_mismatch(gen, change, argument, words):
    rh, rw, s, h, d = 3, 5, 2, 2, 4
    nq, nk = change.get("nq", 6), change.get("nk", rh * rw)
    q, k, v = randn(gen, 1, h, nq, d).float(), randn(gen, 1, h, nk, d).float(), randn(gen, 1, h, nk, d).float()
    table = randn(gen, *change.get("table", (h, rh * rw))).float()
    with pytest.raises((ValueError, TypeError)) as info:
        ops.biased_attention(q, k, v, table, change.get("resolution", (rh, rw)), s, backend="reference")
    message = str(info.value)
    assert f"argument '{argument}'" in message and all(w in message for w in words), message


# ---- resampling --------------------------------------------------------------------------------------------------


def test_resample_at_the_same_grid_is_the_table_itself(gen):
    table = randn(gen, 3, 49).float()
    assert reference.resample_bias_table(table, 7, 7) is table
    assert reference.resample_bias_table(table, 7, (7, 7)) is table


def test_resample_keeps_a_constant_table_constant(gen):
    """Bicubic weights sum to 1 (borders clamped): per head, a constant table stays that constant on any grid."""
    values = randn(gen, 4)
    table = values[:, None].expand(4, 49).contiguous()
    for target in (12, (8, 10), (3, 5), (14, 25)):
        out = reference.resample_bias_table(table, 7, target)
        th, tw = reference.grid_sides(target)
        assert out.shape == (4, th * tw)
        torch.testing.assert_close(out, values[:, None].expand_as(out), rtol=0, atol=1e-12)


def keys_matrix(source: int, target: int, a: float = -0.75) -> torch.Tensor:
    """(target, source) weights of Keys' cubic convolution (a = −0.75, torch's and OpenCV's bicubic) sampling
    source coordinate (t + ½)·S/T − ½ for output t (align_corners=False), taps beyond the grid clamped to its edge."""
    def w(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a if d < 2 else 0.0

    m = torch.zeros(target, source, dtype=torch.float64)
    for t in range(target):
        x = (t + 0.5) * source / target - 0.5
        base = int(torch.tensor(x).floor())
        for k in range(base - 1, base + 3):
            m[t, min(max(k, 0), source - 1)] += w(x - k)
    return m


@pytest.mark.parametrize("source, target", [((14, 14), (24, 40)), ((7, 7), (4, 5)), ((4, 4), (7, 13))], ids=str)
def test_resample_is_the_bicubic_interpolation_it_claims(gen, source, target):
    """Viewed as (H, Sh, Sw) over the offsets, a table resamples to My · table_h · Mxᵀ per head, My and Mx the
    1-D Keys cubic-convolution matrices of :func:`keys_matrix` (separable bicubic, align_corners=False, clamped
    borders): upsampling and downsampling, a smooth table and a random one."""
    (sh, sw), (th, tw) = source, target
    dy, dx = torch.meshgrid(torch.arange(sh, dtype=torch.float64), torch.arange(sw, dtype=torch.float64),
                            indexing="ij")
    smooth = torch.stack([torch.cos(dy / 3) * torch.sin(dx / 4 + 1), -0.1 * (dy ** 2 + dx ** 2)])
    table = torch.cat([smooth, randn(gen, 2, sh, sw)]).reshape(4, sh * sw)
    out = reference.resample_bias_table(table, source, target).reshape(4, th, tw)
    want = keys_matrix(sh, th) @ table.reshape(4, sh, sw) @ keys_matrix(sw, tw).T
    torch.testing.assert_close(out, want, rtol=0, atol=1e-9)


# ---- models ------------------------------------------------------------------------------------------------------

SMALL_LEVIT = LeViTSpec("small", (32, 48, 64), 16, (2, 3, 4), (1, 1, 1))
SMALL_EFFICIENTFORMER = EfficientFormerSpec("tiny", (16, 24, 32, 48), (1, 1, 1, 2), 1, heads=2, key_dim=16)


def build(spec, img_size, gen, **kwargs):
    model = (EfficientFormer(spec, img_size=img_size, **kwargs) if isinstance(spec, EfficientFormerSpec)
             else levit.create_model(spec, img_size=img_size, **kwargs))
    return randomize_(model, gen).eval()


def stage_count(model):
    return len(model.stage_grids)


@pytest.mark.parametrize("spec", [SMALL_LEVIT, SMALL_EFFICIENTFORMER], ids=["levit", "efficientformer"])
@pytest.mark.parametrize("img_size", [(65, 97), (97, 65), 224, (33, 200)], ids=str)
def test_grids_follow_the_stem_arithmetic_and_features_are_maps(gen, spec, img_size):
    model = build(spec, img_size, gen, num_classes=10)
    h, w = reference.grid_sides(img_size)
    x = torch.randn(1, 3, h, w, generator=gen)
    with torch.no_grad():
        maps = model.forward_features(x, stages=tuple(range(stage_count(model))))
    side_h, side_w = h, w
    halvings = 4 if isinstance(spec, LeViTSpec) else 2
    for _ in range(halvings):  # stride-2 3×3 pad-1 convs: ceil(side / 2), odd sides included
        side_h, side_w = (side_h + 1) // 2, (side_w + 1) // 2
    for i, feature in enumerate(maps):
        assert feature.shape[2:] == (side_h, side_w), f"stage {i}"
        side_h, side_w = (side_h + 1) // 2, (side_w + 1) // 2
    assert model(x).shape == (1, 10)
    with pytest.raises(ValueError, match=r"stages must be increasing stage indices"):
        model.forward_features(x, stages=(1, 0))
    with pytest.raises(ValueError, match=rf"input must be images of shape \(B, 3, {h}, {w}\), got shape"):
        model(torch.randn(1, 3, h + 40, w, generator=gen))


@pytest.mark.skipif(not CPU, reason="the CPU backend is not built")
@pytest.mark.parametrize("name, img_size, batch", [
    ("levit_128s", (256, 320), 2), ("levit_256", 384, 1), ("levit_128s", (448, 800), 1),
    ("efficientformer_l1", 384, 1), ("efficientformer_l1", (448, 800), 1),
], ids=str)
def test_optimized_matches_eager_at_other_sizes(gen, name, img_size, batch):
    """The paper models at detection/segmentation sizes: optimized (cpu) vs eager float64, logits and every stage's
    map within 1e-4 of their largest element."""
    model = randomize_(levit.create_model(name, img_size=img_size), gen).eval()
    h, w = reference.grid_sides(img_size)
    x = torch.randn(batch, 3, h, w, generator=gen)
    fast = optimize(model, backend="cpu")
    with torch.no_grad():
        got, got_maps = fast(x), fast.forward_features(x)
        model.double()
        want = model(x.double())
        want_maps = model.forward_features(x.double(), stages=tuple(range(stage_count(model))))
    assert_close_to_reference(got, want, torch.float32, "logits", rtol=1e-4)
    assert len(got_maps) == len(want_maps)
    for i, (g, r) in enumerate(zip(got_maps, want_maps)):
        assert g.shape == r.shape
        assert_close_to_reference(g, r, torch.float32, f"stage {i}", rtol=1e-4)


@pytest.mark.skipif(not backends.availability("triton")[0], reason="triton unavailable")
def test_triton_optimized_at_a_small_odd_non_square_size(gen):
    """The interpreter at (33, 47): LeViT token grids 3×3 → 2×2 … and EfficientFormer 9×12 → 5×6 → 3×3 → 2×2."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for spec, img_size in ((LeViTSpec("small", (32, 48), 16, (2, 3), (1, 1)), (33, 47)),
                           (SMALL_EFFICIENTFORMER, (33, 47))):
        model = build(spec, img_size, gen, num_classes=10).to(device)
        report = verify(model, backend="triton", batch=1, seed=int(gen.initial_seed()))
        assert report.passed, report.table()


@pytest.mark.skipif(not CPU, reason="the CPU backend is not built")
@pytest.mark.parametrize("spec", [SMALL_LEVIT, SMALL_EFFICIENTFORMER], ids=["levit", "efficientformer"])
def test_checkpoint_of_another_size_is_resampled_once_and_runs(gen, spec, caplog):
    source = build(spec, 224, gen, num_classes=10)
    state = source.state_dict()
    # At the checkpoint's own size: nothing resampled, every output bit-identical.
    with caplog.at_level(logging.WARNING, logger="levit.checkpoint"):
        same = levit.load_checkpoint(build(spec, 224, gen, num_classes=10), state).eval()
    assert not caplog.records
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        assert torch.equal(same(x), source(x))
    # At 384: each table resampled from its grid, said once, naming the sizes.
    with caplog.at_level(logging.WARNING, logger="levit.checkpoint"):
        big = levit.load_checkpoint(build(spec, 384, gen, num_classes=10), state).eval()
    assert len(caplog.records) == 1 and "384×384" in caplog.text and "7×7 → 12×12" in caplog.text
    for name, table in big.state_dict().items():
        if name.endswith("attention_biases"):
            side = int(state[name].shape[1] ** 0.5)
            module = big.get_submodule(name.rpartition(".")[0])
            torch.testing.assert_close(table, reference.resample_bias_table(state[name], side, module.resolution))
    x = torch.randn(1, 3, 384, 384, generator=gen)
    fast = optimize(big, backend="cpu")
    with torch.no_grad():
        want = big.double()(x.double())
        assert_close_to_reference(fast(x), want, torch.float32, "384 logits", rtol=1e-4)


@pytest.mark.skipif(not CPU, reason="the CPU backend is not built")
def test_optimized_model_refuses_another_size_naming_both(gen):
    model = build(SMALL_LEVIT, (64, 96), gen, num_classes=10)
    fast = optimize(model, backend="cpu")
    assert fast.image_size == (64, 96) and fast.stage_grids == ((4, 6), (2, 3), (1, 2))
    with pytest.raises(ValueError, match=r"128×96 images, but it was built for the source model's size, "
                                         r"49\.\.64×81\.\.96 images \(token grid 4×6\)"):
        fast(torch.randn(1, 3, 128, 96))
