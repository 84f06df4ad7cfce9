"""optimize() on the ViT-style families: this project's T2T-ViT (performer and transformer token layers), vit-pytorch's
T2TViT and plain ViT, against each eager model in float64; the soft split against nn.Unfold; the descriptions (and
MACs) of the full-size variants; the CLI's verify; refusals of near-misses that name the module and what was expected.

The heavy models run as small random configs (32-64 px images: 4-16² token grids) so the file stays within seconds
per backend; one full-size T2T-ViT runs at batch 1.
"""
import copy

import pytest
import torch
import torch.nn as nn

import levit
import levit_kernels
from levit import t2t_vit
from levit_kernels import backends, tolerances
from levit_kernels.optimize import UnrecognizedModelError, optimize, recognize
from levit_kernels.optimize.fused import FusedUnfold
from levit_kernels.optimize.specs import Tap, UnfoldSpec
from support.timm_compat import import_vit_pytorch

BACKENDS = ["reference", "cpu"]
# The paper's MACs (Yuan et al., table 1 / the official README), in G: performer and transformer token layers.
PAPER_GMACS = {"t2t_vit_7": 1.1, "t2t_vit_10": 1.5, "t2t_vit_12": 1.8, "t2t_vit_14": 4.8, "t2t_vit_19": 8.5,
               "t2t_vit_24": 13.8, "t2t_vit_t_14": 6.1, "t2t_vit_t_19": 9.8, "t2t_vit_t_24": 15.0}


def require(backend: str) -> None:
    ok, why = backends.availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")


def _vit_pytorch_or_skip(part: str):
    module = import_vit_pytorch(part)
    if module is None:
        pytest.skip("vit-pytorch (and einops) not installed")
    return module


@pytest.fixture(scope="module")
def vp_t2t():
    return _vit_pytorch_or_skip("t2t")


@pytest.fixture(scope="module")
def vp_vit():
    return _vit_pytorch_or_skip("vit")


def randomized(model, gen):
    """Random LayerNorm affines, biases and class tokens (levit.randomize_ matches them by module type), eval mode."""
    return levit.randomize_(model, gen).eval()


def assert_verifies(model, backend, seed, batch=2):
    report = levit_kernels.verify(model, backend=backend, batch=batch, seed=seed)
    assert report.passed, report.table()
    assert report.backend == backend
    return report


def small_t2t(kind: str, gen, depth=2, img_size=32):
    # The token layers keep their real widths (147, 576 → 64); a small backbone of two 64-wide heads.
    spec = t2t_vit.T2TViTSpec(f"tiny_{kind}", kind, 128, depth, 2, 2.0)
    return randomized(t2t_vit.T2TViT(spec, num_classes=10, img_size=img_size), gen)


# ------------------------------------------------------------------------------------------- this project's T2T-ViT
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", t2t_vit.TOKEN_KINDS)
def test_t2t_vit_verifies(gen, seed, backend, kind):
    require(backend)
    report = assert_verifies(small_t2t(kind, gen), backend, seed)
    token_layer = ["performer"] if kind == "performer" else ["softmax", "mlp"]
    assert [s.kind for s in report.blocks] == ["stem", "unfold", *token_layer, "unfold", *token_layer, "conv",
                                               "tokens"] + ["softmax", "mlp"] * 2
    assert report.source == f"T2T-ViT ({kind} token layers)"


@pytest.mark.parametrize("name", ["t2t_vit_7", "t2t_vit_t_14"])
def test_t2t_vit_model_shapes_match_eager(gen, seed, name):
    # The real backbone widths at 64 px (a 4² grid, 17 tokens), the pretrained qk scale (embed_dim^-0.5).
    require("cpu")
    model = randomized(t2t_vit.create_model(name, num_classes=100, img_size=64, qk_scale="pretrained"), gen)
    x = torch.randn(3, 3, 64, 64, generator=gen)
    optimized = optimize(model, backend="cpu")
    with torch.no_grad():
        out, want = optimized(x), copy.deepcopy(model).double()(x.double())
    assert out.shape == (3, 100) and out.dtype == torch.float32
    assert tolerances.max_rel_error(out, want) <= tolerances.MODEL_FP32_RTOL


def test_full_size_t2t_vit_verifies(gen, seed):
    # 224 px: the performer over 3136 and 784 tokens, the 197-token backbone, as in the paper.
    require("cpu")
    report = assert_verifies(randomized(t2t_vit.create_model("t2t_vit_7"), gen), "cpu", seed, batch=1)
    assert [s.name for s in report.blocks][:3] == ["stem", "tokens_to_token.soft_split0",
                                                   "tokens_to_token.attention1"]


@pytest.mark.parametrize("name", t2t_vit.MODEL_NAMES)
def test_full_size_descriptions(name):
    from levit_kernels.optimize.macs import step_macs

    spec = t2t_vit.SPECS[name]
    description = recognize.describe(t2t_vit.create_model(name).eval())
    gmacs = sum(step_macs(description, 224)) / 1e9
    assert abs(gmacs - PAPER_GMACS[name]) <= 0.05 * PAPER_GMACS[name] + 0.05, gmacs
    kinds = [b.kind for b in description.blocks]
    assert kinds.count("softmax") == spec.depth + (2 if spec.tokens == "transformer" else 0)
    assert kinds.count("performer") == (2 if spec.tokens == "performer" else 0)
    assert description.image_sides == (224, 224) and description.head_spec.pool == "cls"
    split0, split1, conv = [b for b in description.blocks if b.kind in ("unfold", "conv")]
    assert (split0.kernel, split0.stride, split0.padding, split0.side, split0.out_side()) == (7, 4, 2, 224, 56)
    assert (split1.side, split1.out_side()) == (56, 28)
    assert conv.conv.weight.shape == (spec.embed_dim, 64, 3, 3) and conv.conv.out_side(28) == 14
    backbone = [b for b in description.blocks if b.kind == "softmax"][-1]
    assert (backbone.heads, backbone.key_dim, backbone.scale) == (spec.heads, 64, 64 ** -0.5)
    if spec.tokens == "transformer":
        token = next(b for b in description.blocks if b.kind == "softmax")
        assert (token.heads, token.key_dim, token.residual, token.scale) == (1, 64, "v", 147 ** -0.5)


# ------------------------------------------------------------------------------------------- the soft split
@pytest.mark.parametrize("order", ["cf", "cl"])
@pytest.mark.parametrize("side,channels,kernel,stride,padding", [
    (224, 3, 7, 4, 2), (56, 64, 3, 2, 1), (9, 5, 3, 2, 1), (7, 3, 4, 3, 2), (12, 3, 4, 4, 0), (5, 1, 1, 1, 0)])
def test_unfold_matches_nn_unfold(gen, order, side, channels, kernel, stride, padding):
    x = torch.randn(2, side * side, channels, generator=gen)
    spec = UnfoldSpec("split", kernel, stride, padding, side, order, Tap(nn.Identity()))
    block = FusedUnfold(spec, torch.float32, torch.device("cpu"))
    out = block(x)
    want = nn.Unfold(kernel, stride=stride, padding=padding)(x.transpose(1, 2).reshape(2, channels, side, side))
    if order == "cl":  # (c, ki, kj) → (ki, kj, c)
        want = want.reshape(2, channels, kernel * kernel, -1).transpose(1, 2)
    assert out.shape == (2, spec.out_side() ** 2, channels * kernel * kernel) and out.is_contiguous()
    assert torch.equal(out, want.reshape(2, -1, want.shape[-1]).transpose(1, 2))


# ------------------------------------------------------------------------------------------- vit-pytorch
def small_vp_t2t(vp_t2t, gen, pool="cls"):
    # Token Transformers of head dims 147 and 1323 (one head, no output projection), a 2-head 32-wide backbone.
    return randomized(vp_t2t.T2TViT(image_size=32, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64,
                                    dim_head=16, pool=pool), gen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_pytorch_t2t_verifies(vp_t2t, gen, seed, backend, pool):
    require(backend)
    model = small_vp_t2t(vp_t2t, gen, pool)
    report = assert_verifies(model, backend, seed)
    assert [s.kind for s in report.blocks] == ["stem", "unfold", "softmax", "mlp", "norm", "unfold", "softmax", "mlp",
                                               "norm", "conv", "tokens"] + ["softmax", "mlp"] * 2
    description = recognize.describe(model)
    token = description.blocks[5]  # the second token Transformer's attention
    assert description.image_sides == (32, 32)  # the multiple of the total stride 16 among 31..34
    assert (token.heads, token.key_dim, token.proj) == (1, 1323, None) and description.head_spec.pool == pool


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_pytorch_vit_verifies(vp_vit, gen, seed, backend, pool):
    require(backend)
    # dim_head 24 × 3 heads ≠ dim 48: the output projection maps 72 → 48.
    model = randomized(vp_vit.ViT(image_size=48, patch_size=8, num_classes=10, dim=48, depth=2, heads=3, mlp_dim=96,
                                  dim_head=24, pool=pool, channels=2), gen)
    report = assert_verifies(model, backend, seed)
    assert [s.kind for s in report.blocks] == ["stem", "unfold", "linear", "norm", "tokens"] + ["softmax", "mlp"] * 2
    assert report.source == "vit-pytorch ViT"


def test_vit_pytorch_vit_b16_shape_describes(vp_vit):
    model = vp_vit.ViT(image_size=224, patch_size=16, num_classes=1000, dim=768, depth=12, heads=12, mlp_dim=3072)
    description = recognize.describe(model.eval())
    unfold = description.blocks[0]
    assert (unfold.kernel, unfold.stride, unfold.side, unfold.order) == (16, 16, 224, "cl")
    assert description.blocks[3].pos.shape == (197, 768) and description.in_channels == 3


# ------------------------------------------------------------------------------------------- refusals
def test_t2t_token_layer_of_another_kind_is_refused(gen):
    model = small_t2t("performer", gen)
    model.tokens_to_token.attention2 = nn.Linear(576, 64)
    with pytest.raises(UnrecognizedModelError, match="'tokens_to_token.attention2'.*TokenPerformer.*Linear"):
        optimize(model, backend="reference")


def test_t2t_dilated_soft_split_is_refused(gen):
    model = small_t2t("transformer", gen)
    model.tokens_to_token.soft_split1 = nn.Unfold(3, dilation=2, stride=2, padding=1)
    with pytest.raises(UnrecognizedModelError, match="'tokens_to_token.soft_split1'.*undilated.*dilation=2"):
        optimize(model, backend="reference")


def test_t2t_performer_feature_matrix_of_wrong_width_is_refused(gen):
    model = small_t2t("performer", gen)
    model.tokens_to_token.attention1.w = nn.Parameter(torch.randn(32, 48), requires_grad=False)
    with pytest.raises(UnrecognizedModelError, match="'tokens_to_token.attention1.w'.*\\(m, 64\\).*w \\(32, 48\\)"):
        optimize(model, backend="reference")


def test_vit_pytorch_relu_feed_forward_is_refused(vp_t2t, gen):
    model = small_vp_t2t(vp_t2t, gen)
    model.transformer.layers[1][1].net[2] = nn.ReLU()
    with pytest.raises(UnrecognizedModelError, match="ReLU at 'transformer.layers.1.1.net.2'.*GELU \\(erf\\) only"):
        optimize(model, backend="reference")


def test_vit_pytorch_t2t_without_token_transformer_layout_is_refused(vp_t2t, gen):
    model = small_vp_t2t(vp_t2t, gen)
    del model.to_patch_embedding[2]  # the Rearrange('b c n -> b n c') after the first Unfold
    with pytest.raises(UnrecognizedModelError, match="'to_patch_embedding.1'.*Rearrange\\('b c n -> b n c'\\)"):
        optimize(model, backend="reference")


def test_vit_pytorch_vit_with_another_patchify_is_refused(vp_vit, gen):
    from einops.layers.torch import Rearrange

    model = randomized(vp_vit.ViT(image_size=32, patch_size=8, num_classes=10, dim=32, depth=1, heads=2,
                                  mlp_dim=64), gen)
    model.to_patch_embedding[0] = Rearrange("b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=8, p2=8)
    with pytest.raises(UnrecognizedModelError, match="'to_patch_embedding'.*Rearrange\\('b c \\(h p1\\)"):
        optimize(model, backend="reference")


def test_vit_pytorch_vit_without_classifier_is_refused(vp_vit):
    model = vp_vit.ViT(image_size=32, patch_size=8, num_classes=0, dim=32, depth=1, heads=2, mlp_dim=64).eval()
    with pytest.raises(UnrecognizedModelError, match="'mlp_head'.*num_classes=0 returns every token"):
        optimize(model, backend="reference")


def test_t2t_in_training_mode_is_refused(gen):
    with pytest.raises(ValueError, match="training mode"):
        optimize(small_t2t("performer", gen).train(), backend="reference")


# ------------------------------------------------------------------------------------------- the CLI
def test_cli_verifies_t2t_vit(capsys):
    from levit_kernels.cli import main

    assert main(["verify", "--model", "t2t_vit_7", "--backend", "cpu", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "T2T-ViT (performer token layers)" in out and "tokens_to_token.attention2" in out and "PASSED" in out


def test_t2t_performer_in_float16_stays_within_the_eager_models_error(gen, seed):
    # The performer's features reach e^16, past fp16's range: the fused model computes them in fp32 as the eager one.
    model = small_t2t("performer", gen, depth=1)
    report = levit_kernels.verify(model, backend="reference", dtype=torch.float16, batch=2, seed=seed)
    assert report.passed, report.table()
    assert report.logits.eager_lowp_error is not None
