"""optimize() on every family the adapters of levit_kernels.optimize.families recognise, against each eager model:
this project's EfficientFormer (unfused and fused), timm's EfficientFormer, vit-pytorch's LeViT; the folding helpers;
refusals that name the families, the module or the activation.

EfficientFormer and vit-pytorch's LeViT run GELU; where the public ops do not take ``activation="gelu"`` yet (the
GELU kernels land separately), those cases skip and the same structures run with Hardswish in GELU's place, so every
block kind (pool, conv, LayerNorm-first attention and MLP, q/k/v-stacked attention, the LayerNorm head) is checked
on every backend either way.
"""
import copy
import functools

import pytest
import torch
import torch.nn as nn

import levit
import levit_kernels
from levit_kernels import backends, ops, tolerances
from levit_kernels.optimize import UnrecognizedModelError, fold, optimize, recognize
from levit_kernels.optimize.families import FAMILIES
from levit_kernels.optimize.specs import Projection
from support.timm_compat import import_vit_pytorch_levit


@functools.lru_cache(maxsize=None)
def public_ops_take(activation: str) -> bool:
    try:
        ops.linear(torch.zeros(1, 2), torch.zeros(2, 2), None, activation, backend="reference")
    except ValueError:
        return False
    return True


def require(backend: str, activation: str = "hardswish") -> None:
    ok, why = backends.availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")
    if not public_ops_take(activation):
        pytest.skip(f"the public ops do not take activation={activation!r} in this build yet")


@pytest.fixture(scope="module")
def vit_pytorch_levit():
    module = import_vit_pytorch_levit()
    if module is None:
        pytest.skip("vit-pytorch (and einops) not installed")
    return module


def randomized(model, gen):
    """BN statistics, affines, LayerScales and bias tables random (levit.randomize_), plus vit-pytorch's Embedding
    bias table, which randomize_ does not know."""
    levit.randomize_(model, gen)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                m.weight.normal_(generator=gen)
    return model.eval()


def assert_verifies(model, backend, seed, batch=1):
    report = levit_kernels.verify(model, backend=backend, batch=batch, seed=seed)
    assert report.passed, report.table()
    assert report.backend == backend
    return report


def hardswish_for(model, activation_type=nn.GELU):
    """The model with every ``activation_type`` module replaced by Hardswish (same structure, another activation)."""
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, activation_type):
                setattr(m, child_name, nn.Hardswish())
    return model


# ------------------------------------------------------------------------------------------- EfficientFormer
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("fused", [False, True])
def test_efficientformer_l1_verifies(gen, seed, backend, fused):
    require(backend, "gelu")
    model = randomized(levit.create_model("efficientformer_l1"), gen)
    if fused:
        model = levit.fuse(copy.deepcopy(model))
    report = assert_verifies(model, backend, seed)
    kinds = [s.kind for s in report.blocks]
    assert kinds.count("pool") == 14 and kinds.count("attention") == 1 and kinds.count("conv") == 3
    assert kinds.count("mlp") == 15 and report.source.startswith("levit EfficientFormer")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_timm_efficientformer_l1_verifies(timm, gen, seed, backend):
    require(backend, "gelu")
    report = assert_verifies(randomized(timm.create_model("efficientformer_l1"), gen), backend, seed)
    assert report.source == "timm EfficientFormer"
    names = [s.name for s in report.steps]
    assert "stages.3.blocks.4.token_mixer" in names and "stages.1.downsample" in names  # timm's module names


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_timm_efficientformer_structure_with_hardswish(timm, gen, seed, backend):
    # Every EfficientFormer block kind at a small width: Meta4D in every stage, two Meta3D, no distillation head.
    require(backend)
    from timm.models.efficientformer import EfficientFormer

    model = EfficientFormer(depths=(1, 1, 1, 3), embed_dims=(16, 24, 32, 48), num_vit=2, num_classes=10,
                            act_layer=nn.Hardswish)
    report = assert_verifies(randomized(model, gen), backend, seed, batch=2)
    assert [s.kind for s in report.blocks][-6:] == ["pool", "mlp", "attention", "mlp", "attention", "mlp"]


def test_timm_efficientformer_without_classifier_returns_normalised_features(timm, gen):
    from timm.models.efficientformer import EfficientFormer

    model = randomized(EfficientFormer(depths=(1, 1, 1, 2), embed_dims=(16, 24, 32, 48), num_vit=1, num_classes=0,
                                       act_layer=nn.Hardswish), gen)
    optimized = optimize(model, backend="reference")
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        out, want = optimized(x), copy.deepcopy(model).double()(x.double())
    assert out.shape == (2, 48) and optimized.num_classes is None
    assert tolerances.max_rel_error(out, want) <= tolerances.MODEL_FP32_RTOL


def test_efficientformer_l3_describes(timm):
    description = recognize.describe(timm.create_model("efficientformer_l3").eval())
    kinds = [b.kind for b in description.blocks]
    assert kinds.count("attention") == 4 and kinds.count("pool") == 22 and kinds.count("conv") == 3
    assert description.token_side == 56 and description.image_sides == (221, 224)
    attention = next(b for b in description.blocks if b.kind == "attention")
    assert (attention.heads, attention.key_dim, attention.value_dim, attention.resolution) == (8, 32, 128, 7)
    assert attention.activation is None and attention.norm_eps == 1e-5
    assert description.head_spec.norm_eps == 1e-5 and description.heads_merged == 2


# ------------------------------------------------------------------------------------------- vit-pytorch LeViT
def small_vit_pytorch_levit(vit_pytorch_levit, image_size=64):
    # Three stages (two downsampling attentions), key and value dims as LeViT's small variants.
    return vit_pytorch_levit.LeViT(image_size=image_size, num_classes=10, dim=(32, 48, 64), depth=1,
                                   heads=(2, 3, 4), mlp_mult=2, dim_key=16, dim_value=16)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_vit_pytorch_levit_verifies(vit_pytorch_levit, gen, seed, backend):
    require(backend, "gelu")
    report = assert_verifies(randomized(small_vit_pytorch_levit(vit_pytorch_levit), gen), backend, seed, batch=2)
    assert report.source == "vit-pytorch LeViT"
    assert [s.kind for s in report.blocks] == ["stem", "attention", "mlp", "shrink", "mlp", "attention", "mlp",
                                               "shrink", "mlp", "attention", "mlp"]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_vit_pytorch_levit_structure_with_hardswish(vit_pytorch_levit, gen, seed, backend):
    require(backend)
    model = hardswish_for(small_vit_pytorch_levit(vit_pytorch_levit))
    assert_verifies(randomized(model, gen), backend, seed, batch=2)


def test_vit_pytorch_levit_full_size_verifies(vit_pytorch_levit, gen, seed):
    require("reference", "gelu")
    model = vit_pytorch_levit.LeViT(image_size=224, num_classes=1000, dim=(256, 384, 512), depth=4, heads=(4, 6, 8),
                                    mlp_mult=2)
    assert_verifies(randomized(model, gen), "reference", seed)


def test_vit_pytorch_bias_layout_is_folded(vit_pytorch_levit, gen):
    # Its logits add pos_bias(pos_indices) / scale: the table the kernels add is the Embedding's, transposed, / scale.
    model = randomized(small_vit_pytorch_levit(vit_pytorch_levit), gen)
    description = recognize.describe(model)
    attn = model.backbone[0].layers[0][0]
    spec = description.blocks[0]
    want = attn.pos_bias.weight.detach().double().T / attn.scale
    assert spec.kind == "attention" and torch.equal(spec.attention_biases, want)
    assert spec.activation == "gelu" and description.blocks[1].activation == "hardswish"
    # q, k, v stacked per head: rows [q_h | k_h | v_h].
    d = spec.key_dim
    q_rows = spec.qkv.weight.reshape(spec.heads, 2 * d + spec.value_dim, -1)[:, :d].reshape(-1, spec.qkv.weight.shape[1])
    q_folded = fold.batchnorm_after(attn.to_q[0].weight.detach().double()[:, :, 0, 0], None, attn.to_q[1], "q")[0]
    assert torch.allclose(q_rows, q_folded, rtol=1e-12, atol=0)


def test_vit_pytorch_levit_with_distillation_head_is_refused(vit_pytorch_levit):
    model = vit_pytorch_levit.LeViT(image_size=64, num_classes=10, dim=(32, 48), depth=1, heads=(2, 3), mlp_mult=2,
                                    stages=2, dim_key=16, dim_value=16, num_distill_classes=10).eval()
    with pytest.raises(UnrecognizedModelError, match="'distill_head'.*returns a \\(logits, distill\\) tuple"):
        optimize(model, backend="reference")


# ------------------------------------------------------------------------------------------- folding and refusals
def test_layernorm_affine_and_layer_scale_fold_exactly(gen):
    norm = nn.LayerNorm(6, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.normal_(generator=gen)
        norm.bias.normal_(generator=gen)
    p = Projection(torch.randn(4, 6, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen,
                                                                                      dtype=torch.float64), "p")
    scale = torch.randn(4, generator=gen, dtype=torch.float64)
    folded, eps = fold.layernorm_before(norm, p, "norm")
    folded = fold.scaled(folded, scale)
    x = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    want = scale * (norm(x) @ p.weight.T + p.bias)
    got = nn.functional.layer_norm(x, (6,), eps=eps) @ folded.weight.T + folded.bias
    assert eps == 1e-6 and torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def test_unknown_model_is_refused_listing_every_family():
    with pytest.raises(UnrecognizedModelError) as info:
        optimize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()).eval(), backend="reference")
    message = str(info.value)
    assert "Sequential (children: 0, 1)" in message
    assert all(f.NAME in message and f.STRUCTURE in message for f in FAMILIES), message
    assert len(FAMILIES) == 8


def test_tanh_gelu_is_refused_naming_the_activation(timm):
    from timm.models.efficientformer import EfficientFormer

    model = EfficientFormer(depths=(1, 1, 1, 2), embed_dims=(16, 24, 32, 48), num_vit=1,
                            act_layer=functools.partial(nn.GELU, approximate="tanh")).eval()
    with pytest.raises(UnrecognizedModelError, match="GELU at 'stages.0.blocks.0.mlp.act'.*GELU \\(erf\\)"):
        optimize(model, backend="reference")


def test_efficientformer_broken_structures_name_the_module(gen):
    model = randomized(levit.create_model("efficientformer_l1"), gen)
    broken = copy.deepcopy(model)
    broken.stages[3].blocks[4].token_mixer.attention_biases = nn.Parameter(torch.zeros(8, 36))
    with pytest.raises(UnrecognizedModelError, match="'stages.3.blocks.4.token_mixer.attention_biases'.*\\(8, 49\\)"):
        optimize(broken.eval(), backend="reference")
    broken = copy.deepcopy(model)
    broken.stages[1].blocks[0].ls1.gamma = nn.Parameter(torch.ones(3))
    with pytest.raises(UnrecognizedModelError, match="'stages.1.blocks.0.ls1'.*LayerScale of 96 channels"):
        optimize(broken.eval(), backend="reference")


def test_step_macs_of_every_family_follow_the_papers():
    from levit.config import MODEL_NAMES
    from levit_kernels.optimize.macs import step_macs

    for name in MODEL_NAMES:  # LeViT's own counter, with one head (the merged eval head)
        steps = step_macs(recognize.describe(levit.create_model(name).eval()), 224)
        assert sum(steps) == levit.count_macs(name, distillation=False), name
    for name, paper, width in (("efficientformer_l1", 1.3e9, 448), ("efficientformer_l3", 3.9e9, 512)):
        steps = step_macs(recognize.describe(levit.create_model(name).eval()), 224)
        assert abs(sum(steps) - paper) <= 0.02 * paper, (name, sum(steps))
        assert steps[-1] == width * 1000  # the merged head
