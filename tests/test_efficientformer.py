"""The pure-PyTorch EfficientFormer (levit.efficientformer): sizes, MACs, equality with timm's efficientformer_l1/l3/l7,
the official checkpoint layout, fuse(), bad checkpoints and names, and an import without compiled code.

L3 and L7 (31 M and 82 M parameters) are built once per module and reloaded by each test; parameter counts and
MACs use the meta device, so only the forwards cost time.
"""
import contextlib
import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import levit
from levit import checkpoint_efficientformer as ckpt
from levit.checkpoint import CheckpointError
from levit.efficientformer import MODEL_NAMES, Flatten, LayerScale, Meta3D, Meta4D, PointwiseMLP, get_spec
from levit.flops import PAPER_MACS_EFFICIENTFORMER
from levit_kernels import reference, tolerances
from support.macs import forward_macs
from test_checkpoints import official_bias_index

# timm's counts (both heads), as the issue states them.
PARAMS = {"efficientformer_l1": 12_289_928, "efficientformer_l3": 31_406_000, "efficientformer_l7": 82_229_328}
# Index of the Flatten in the last stage's blocks (timm's and the official numbering): before the Meta3D blocks.
FLATTEN_AT = {"efficientformer_l1": 3, "efficientformer_l3": 2, "efficientformer_l7": 0}
TIMM_RTOL = 1e-5  # the bound; the models compute the same ops in the same order and agree to the bit today


class _Models:
    """One timm model and one of ours per variant, built on first use; tests randomize and reload them."""

    def __init__(self, timm_module):
        self.timm, self._cache = timm_module, {}

    def get(self, name):
        if name not in self._cache:
            self._cache[name] = (self.timm.create_model(name, pretrained=False).eval(), levit.create_model(name))
        return self._cache[name]


@pytest.fixture(scope="module")
def models(timm):
    return _Models(timm)


def _meta(name, **kwargs):
    with torch.device("meta"):
        return levit.create_model(name, **kwargs)


def _images(gen, batch=1):
    return torch.randn(batch, 3, 224, 224, generator=gen)


def _randomized_pair(models, name, gen):
    """timm's model randomized (BN/LN statistics and affines, LayerScale, bias tables) and ours loaded from it."""
    theirs, ours = models.get(name)
    levit.randomize_(theirs, gen).eval()  # eval() also drops timm's gathered-bias cache, stale after randomize_
    return theirs, levit.load_checkpoint(ours, theirs.state_dict()).eval()


# ---------------------------------------------------------------------------------------------- sizes and MACs
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_equal_timm(name):
    assert sum(p.numel() for p in _meta(name).parameters()) == PARAMS[name]
    width = get_spec(name).widths[-1]
    no_dist = _meta(name, distillation=False, num_classes=10)
    assert sum(p.numel() for p in no_dist.parameters()) == PARAMS[name] - 2 * (width * 1000 + 1000) + width * 10 + 10
    assert no_dist.head_dist is None


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_structure_follows_the_paper(name):
    spec, model = get_spec(name), _meta(name)
    assert model.sides == (56, 28, 14, 7)
    last = model.stages[-1].blocks
    assert isinstance(last[FLATTEN_AT[name]], Flatten)
    kinds = [type(b) for stage in model.stages for b in stage.blocks if not isinstance(b, Flatten)]
    assert kinds == [Meta4D] * (sum(spec.depths) - spec.attention_blocks) + [Meta3D] * spec.attention_blocks
    for block in last[FLATTEN_AT[name] + 1:]:
        attention = block.token_mixer
        assert (attention.heads, attention.key_dim, attention.value_dim, attention.resolution) == (8, 32, 128, 7)
        assert attention.attention_biases.shape == (8, 49)
        assert attention.qkv.weight.shape == (8 * (32 + 32 + 128), spec.widths[-1])
        assert attention.proj.weight.shape == (spec.widths[-1], 1024)
    assert model.stem.conv1.conv.weight.shape == (spec.widths[0] // 2, 3, 3, 3)
    assert model.stages[0].blocks[0].mlp.fc1.conv.weight.shape == (4 * spec.widths[0], spec.widths[0], 1, 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_macs_within_two_percent_of_the_paper(name):
    macs = levit.count_macs(name)
    paper = PAPER_MACS_EFFICIENTFORMER[name]
    assert abs(macs / paper - 1) < 0.02, f"{name}: {macs / 1e9:.3f}G vs paper {paper / 1e9}G"


@pytest.mark.parametrize("name,distillation,img_size", [(n, True, 224) for n in MODEL_NAMES]
                         + [("efficientformer_l1", False, 192)])
def test_macs_equal_the_work_of_a_forward_pass(monkeypatch, name, distillation, img_size):
    """Every Conv/Linear the model really runs (on the meta device), the Meta3D MLPs and each attention core."""
    model = _meta(name, distillation=distillation, img_size=img_size).eval()
    x = torch.empty(1, 3, img_size, img_size, device="meta")
    assert forward_macs(model, x, monkeypatch) == levit.count_macs(name, img_size=img_size, distillation=distillation)


# ------------------------------------------------------------------------------------------- against timm
@contextlib.contextmanager
def _stage_outputs(*models):
    """Lists receiving each model's ``stages`` output (last-stage tokens, before the final LayerNorm)."""
    seen = [[] for _ in models]
    handles = [m.stages.register_forward_hook(lambda module, inputs, output, out=out: out.append(output))
               for m, out in zip(models, seen)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_equal_timm(models, gen, name):
    """Logits and the last stage's tokens (before the LayerNorm, where an error is not normalised away)."""
    theirs, ours = _randomized_pair(models, name, gen)
    x = _images(gen)
    with _stage_outputs(theirs, ours) as (theirs_tokens, our_tokens), torch.no_grad():
        want, got = theirs(x), ours(x)
        assert tolerances.max_rel_error(our_tokens[-1], theirs_tokens[-1]) <= TIMM_RTOL
        assert tolerances.max_rel_error(got, want) <= TIMM_RTOL
        assert want.abs().max() > 0.1  # the randomization leaves the logits non-trivial
        if name == "efficientformer_l1":
            # Sharp: rolling one block's LayerScale gammas (or flipping the one bias table) exceeds it.
            block = ours.stages[3].blocks[4]
            block.ls1.gamma.copy_(block.ls1.gamma.roll(1))
            ours(x)
            assert tolerances.max_rel_error(our_tokens[-1], theirs_tokens[-1]) > TIMM_RTOL
            block.ls1.gamma.copy_(block.ls1.gamma.roll(-1))
            block.token_mixer.attention_biases.copy_(block.token_mixer.attention_biases.flip(1))
            ours(x)
            assert tolerances.max_rel_error(our_tokens[-1], theirs_tokens[-1]) > TIMM_RTOL


def _official(theirs, ours) -> dict:
    """timm's state dict in the official layout, its bias indices built the official way (first appearance)."""
    to_ours, out = ckpt.key_map(ours, "timm"), {}
    for key, value in theirs.state_dict().items():
        if key.endswith(".attention_bias_idxs"):
            table = ckpt.rename(to_ours[key.replace("attention_bias_idxs", "attention_biases")], "official")
            out[table.replace("attention_biases", "attention_bias_idxs")] = official_bias_index(7, 1)
        else:
            out[ckpt.rename(to_ours[key], "official")] = value
    return out


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_official_layout_round_trip(models, timm, gen, name):
    """timm → official names → timm's own official→timm filter gives timm's state dict back, and it loads to the
    same weights (and, for L1, the same outputs)."""
    theirs, ours = _randomized_pair(models, name, gen)
    want = {k: v.clone() for k, v in ours.state_dict().items()}
    official = _official(theirs, ours)
    assert ckpt.detect_layout(official) == "official"
    assert any(k.startswith("network.6.") and k.endswith("layer_scale_2") for k in official)
    assert "dist_head.weight" in official and "patch_embed.4.running_var" in official
    back = timm.models.efficientformer.checkpoint_filter_fn(official, theirs)
    assert list(back) == list(theirs.state_dict())
    assert all(torch.equal(back[k], v) for k, v in theirs.state_dict().items() if not k.endswith("bias_idxs"))
    for p in ours.parameters():
        p.data.zero_()
    levit.load_checkpoint(ours, {"model": official})
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in want.items())
    if name == "efficientformer_l1":
        x = _images(gen)
        with torch.no_grad():
            assert tolerances.max_rel_error(ours.eval()(x), theirs(x)) <= TIMM_RTOL


def test_native_layout_round_trip(gen):
    model = levit.randomize_(levit.create_model("efficientformer_l1"), gen)
    assert ckpt.detect_layout(model.state_dict()) == "native"
    loaded = levit.create_model("efficientformer_l1", checkpoint=model.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


# -------------------------------------------------------------------------------------------------- fuse
@pytest.fixture
def l1(gen):
    return levit.randomize_(levit.create_model("efficientformer_l1"), gen).eval()


def test_fused_model_equals_unfused(gen, l1, monkeypatch):
    fused = levit.fuse(copy.deepcopy(l1))
    assert fused.fused and not fused.training and levit.fuse(fused) is fused
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    scales = [name for name, m in fused.named_modules() if isinstance(m, LayerScale)]
    assert scales and all(name.endswith(".ls1") and isinstance(fused.get_submodule(name[:-4]), Meta4D)
                          for name in scales)  # only the pool mixer's ls1 stays
    calls = {"pool_mixer": 0, "mlp": 0, "biased_attention": 0}
    for op in calls:
        real = getattr(reference, op)

        def counting(*args, _real=real, _op=op, **kwargs):
            calls[_op] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(reference, op, counting)
    x = _images(gen)
    with torch.no_grad():
        want = l1(x)
        got = fused(x)
    assert tolerances.max_rel_error(got, want) <= tolerances.FUSE_FP32_RTOL
    n4, n3 = sum(isinstance(m, Meta4D) for m in l1.modules()), sum(isinstance(m, Meta3D) for m in l1.modules())
    # Both models run the same references: every Meta4D the pool mixer (and, fused, its MLP as the mlp op).
    assert calls == {"pool_mixer": 2 * n4, "mlp": 2 * n3 + n4, "biased_attention": 2 * n3}
    with pytest.raises(RuntimeError, match="fused"):
        fused.train()
    with pytest.raises(CheckpointError, match="fused"):
        levit.load_checkpoint(fused, l1.state_dict())


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("side", [5, 7])
def test_fused_blocks_equal_unfused_at_each_width(gen, name, side):
    """Meta4D (odd map shapes) and Meta3D blocks at every variant's widths, BN/LN/LayerScale randomized."""
    spec = get_spec(name)
    for width in spec.widths:
        block = levit.randomize_(Meta4D(width, spec), gen).eval()
        x = torch.randn(2, width, side, side + 2, generator=gen)
        fused = copy.deepcopy(block)
        fused.fuse()
        assert isinstance(fused.mlp, PointwiseMLP) and isinstance(fused.ls2, nn.Identity)
        with torch.no_grad():
            assert tolerances.max_rel_error(fused(x), block(x)) <= tolerances.FUSE_FP32_RTOL
    width = spec.widths[-1]
    block = levit.randomize_(Meta3D(width, spec, side), gen).eval()
    x = torch.randn(2, side * side, width, generator=gen)
    fused = copy.deepcopy(block)
    fused.fuse()
    with torch.no_grad():
        assert tolerances.max_rel_error(fused(x), block(x)) <= tolerances.FUSE_FP32_RTOL


def test_blocks_compute_the_formulas(gen):
    """Meta4D and Meta3D against the facts file's formulas, written out with plain torch in float64."""
    spec = get_spec("efficientformer_l1")
    block = levit.randomize_(Meta4D(16, spec), gen).eval().double()
    x = torch.randn(2, 16, 5, 6, generator=gen, dtype=torch.float64)
    ls1, ls2 = block.ls1.gamma[:, None, None], block.ls2.gamma[:, None, None]
    pooled = nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    y = x + ls1 * (pooled - x)
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    hidden = nn.functional.gelu(fc1.bn(fc1.conv(y)))
    with torch.no_grad():
        assert tolerances.max_rel_error(block(x), y + ls2 * fc2.bn(fc2.conv(hidden))) <= 1e-12

    block = levit.randomize_(Meta3D(64, spec, 3), gen).eval().double()
    x = torch.randn(2, 9, 64, generator=gen, dtype=torch.float64)
    attention = block.token_mixer
    qkv = attention.qkv(block.norm1(x)).view(2, 9, 8, 192).transpose(1, 2)
    q, k, v = qkv.split([32, 32, 128], dim=-1)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    idx = (ys.reshape(-1, 1) - ys.reshape(1, -1)).abs() * 3 + (xs.reshape(-1, 1) - xs.reshape(1, -1)).abs()
    logits = q @ k.transpose(-1, -2) * 32 ** -0.5 + attention.attention_biases[:, idx]
    attended = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 9, 1024)
    y = x + block.ls1.gamma * attention.proj(attended)
    mlp = block.mlp
    want = y + block.ls2.gamma * mlp.fc2(nn.functional.gelu(mlp.fc1(block.norm2(y))))
    with torch.no_grad():
        assert tolerances.max_rel_error(block(x), want) <= 1e-12


# ------------------------------------------------------------------------------ checkpoints that do not fit
def _expect_error(model, checkpoint, *fragments):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        levit.load_checkpoint(model, checkpoint)
    message = str(info.value)
    assert all(f in message for f in fragments), message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "a failed load changed the model"
    return message


@pytest.fixture(scope="module")
def timm_l1(models):
    """A timm-layout L1 checkpoint (timm's own state dict, with its attention_bias_idxs)."""
    return dict(models.get("efficientformer_l1")[0].state_dict())


def test_wrong_variant_names_the_one_that_fits():
    model = levit.create_model("efficientformer_l1")
    _expect_error(model, _meta("efficientformer_l3").state_dict(), "native checkpoint does not fit efficientformer_l1",
                  "the checkpoint fits efficientformer_l3 (1000 classes, with distillation head")
    _expect_error(model, _meta("efficientformer_l1", num_classes=10).state_dict(),
                  "the checkpoint fits efficientformer_l1 (10 classes", "head.weight: checkpoint (10, 448)")


def test_missing_unexpected_and_misshaped_keys_are_named(timm_l1):
    model = levit.create_model("efficientformer_l1")
    qkv = "stages.3.blocks.4.token_mixer.qkv.weight"
    _expect_error(model, {k: v for k, v in timm_l1.items() if k != qkv}, "timm checkpoint", "1 missing",
                  f"{qkv} (1536, 448)")
    extra = dict(timm_l1, **{"stages.0.blocks.0.extra": torch.zeros(3)})
    _expect_error(model, extra, "1 unexpected", "stages.0.blocks.0.extra (3,)")
    wrong = dict(timm_l1, **{"stages.1.blocks.0.mlp.norm1.weight": torch.zeros(5)})
    _expect_error(model, wrong, "1 mis-shaped", "stages.1.blocks.0.mlp.norm1.weight: checkpoint (5,) vs model (384,)")
    index = dict(timm_l1, **{"stages.3.blocks.4.token_mixer.attention_bias_idxs": torch.zeros(49, 49).long()})
    _expect_error(model, index, "wrong attention_bias_idxs", "stages.3.blocks.4.token_mixer.attention_bias_idxs")
    no_dist = levit.create_model("efficientformer_l1", distillation=False)
    _expect_error(no_dist, timm_l1, "2 unexpected", "head_dist.weight (1000, 448)",
                  "the checkpoint fits efficientformer_l1 (1000 classes, with distillation head")
    # Another img_size resamples the square 7×7 tables (tests/test_anysize.py); a table of no square grid cannot be.
    table = "stages.3.blocks.4.token_mixer.attention_biases"
    not_square = dict(timm_l1, **{table: torch.zeros(8, 48)})
    _expect_error(levit.create_model("efficientformer_l1", img_size=192), not_square, "mis-shaped",
                  "attention_biases: checkpoint (8, 48) vs model (8, 36)")


def test_checkpoints_of_the_other_family_are_refused(timm_l1):
    message = _expect_error(levit.create_model("efficientformer_l1"), _meta("levit_128s").state_dict(),
                            "unrecognised checkpoint layout (the keys are LeViT's, native layout")
    assert "stem.conv1.weight" in message
    for checkpoint, layout in ((timm_l1, "timm"), (_meta("efficientformer_l1").state_dict(), "native")):
        with pytest.raises(CheckpointError, match=f"unrecognised checkpoint layout .the keys are EfficientFormer's, "
                                                  f"{layout} layout: load it into a levit.EfficientFormer"):
            levit.load_checkpoint(levit.create_model("levit_128s"), checkpoint)
    with pytest.raises(TypeError, match=r"'model' must be a levit.LeViT or levit.EfficientFormer.*, got Linear"):
        levit.load_checkpoint(nn.Linear(2, 2), timm_l1)


# ------------------------------------------------------------------------------------------ names and inputs
def test_unknown_names_and_bad_arguments_raise():
    for call in (lambda: levit.create_model("efficientformer_l2"), lambda: levit.count_macs("efficientformer_l2")):
        with pytest.raises(ValueError, match=r"unknown model 'efficientformer_l2'; valid names: .*efficientformer_l7"):
            call()
    with pytest.raises(ValueError, match="unknown EfficientFormer variant 'l1'"):
        get_spec("l1")
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        levit.create_model("efficientformer_l1", num_classes=0)
    with pytest.raises(TypeError, match="'model' must be a levit.LeViT or levit.EfficientFormer"):
        levit.fuse(nn.Linear(2, 2))
    model = _meta("efficientformer_l1")
    with pytest.raises(ValueError, match=r"efficientformer_l1: input must be images of shape \(B, 3, 224, 224\), "
                                         r"got shape \(1, 3, 192, 192\)"):
        model(torch.empty(1, 3, 192, 192, device="meta"))


def test_train_mode_returns_both_heads_and_other_sizes_run(gen):
    model = levit.randomize_(levit.create_model("efficientformer_l1", num_classes=10, img_size=160), gen)
    assert model.sides == (40, 20, 10, 5)
    assert model.stages[3].blocks[4].token_mixer.attention_biases.shape == (8, 25)
    x = torch.randn(1, 3, 160, 160, generator=gen)
    cls, dist = model.train()(x)
    assert cls.shape == dist.shape == (1, 10) and not torch.equal(cls, dist)
    with torch.no_grad():
        features = model.eval().forward_features(x).mean(dim=1)
        averaged = (model.head(features) + model.head_dist(features)) / 2
        assert tolerances.max_rel_error(model(x), averaged) <= 1e-6  # eval: the two heads averaged


def test_randomize_makes_every_layer_scale_and_norm_nontrivial(timm, gen):
    for model in (levit.create_model("efficientformer_l1"), timm.create_model("efficientformer_l1")):
        levit.randomize_(model, gen)
        gammas = [p for n, p in model.named_parameters() if n.endswith("gamma")]
        assert len(gammas) == 2 * 15 and all(g.abs().min() >= 0.1 and g.abs().max() <= 0.5 for g in gammas)
        assert all(not torch.allclose(g, g[0]) for g in gammas)
        norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
        assert len(norms) == 3 and all(not torch.allclose(m.weight, torch.ones_like(m.weight)) for m in norms)
        assert all(m.attention_biases.abs().max() > 1 for m in model.modules() if hasattr(m, "attention_biases"))


def test_imports_and_runs_without_the_cpp_extension():
    """In a fresh interpreter where importing levit_kernels._C fails: build, randomize, fuse and run L1."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "levit_kernels._C":
            raise ImportError("blocked by the test")
sys.meta_path.insert(0, Block())
import torch, levit
model = levit.fuse(levit.randomize_(levit.create_model("efficientformer_l1")))
with torch.no_grad():
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
assert "levit_kernels._C" not in sys.modules
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(root), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
