"""levit_kernels.optimize: every variant, this project's and timm's module trees, checkpoints, refusals, and the
promise that a forward does no per-call weight preparation or validation."""
import copy
import gc
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import levit
import levit_kernels
from levit.config import MODEL_NAMES, LeViTSpec
from levit_kernels import backends, ops, reference, tolerances
from levit_kernels.optimize import OptimizedLeViT, UnrecognizedModelError, optimize
from levit_kernels.optimize import fold, recognize
from test_checkpoints import to_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randomized(name_or_model, gen, **kwargs):
    model = levit.create_model(name_or_model, **kwargs) if isinstance(name_or_model, (str, LeViTSpec)) \
        else name_or_model
    return levit.randomize_(model, gen).eval()


def require_backend(name):
    ok, why = backends.availability(name)
    if not ok:
        pytest.skip(f"backend {name} unavailable: {why}")


def images(gen, batch=2, side=224):
    return torch.randn(batch, 3, side, side, generator=gen)


def logits64(model, x):
    with torch.no_grad():
        return copy.deepcopy(model).double()(x.double())


def assert_matches_eager(optimized, model, x):
    with torch.no_grad():
        out = optimized(x)
    err = tolerances.max_rel_error(out, logits64(model, x))
    assert err <= tolerances.MODEL_FP32_RTOL, f"relative logit error {err:.2e}"


# ------------------------------------------------------------------------------------------- every variant
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_variant_verifies_on_cpu(gen, seed, name, backend):
    require_backend(backend)
    report = levit_kernels.verify(randomized(name, gen), backend=backend, batch=1, seed=seed)
    assert report.passed, report.table()
    assert report.backend == backend and report.top1_agreement == 1
    assert len(report.steps) == 1 + len(levit.op_shapes(name)) + 1


def test_fused_model_and_single_head_and_other_class_count(gen):
    model = randomized("levit_128s", gen, distillation=False, num_classes=10)
    x = images(gen)
    assert_matches_eager(optimize(model, backend="reference"), model, x)
    fused = levit.fuse(copy.deepcopy(model))
    optimized = optimize(fused, backend="reference")
    assert "BN fused" in optimized.source and optimized.num_classes == 10
    assert_matches_eager(optimized, model, x)


def test_merged_head_is_the_mean_of_the_folded_heads(gen):
    model = randomized("levit_128s", gen)
    folded = levit.fuse(copy.deepcopy(model))
    head = recognize.describe(model).head
    assert recognize.describe(model).heads_merged == 2
    with torch.no_grad():
        features = torch.randn(3, 384, generator=gen)
        want = (folded.head(features) + folded.head_dist(features)) / 2
        got = features.double() @ head.weight.T + head.bias
    assert tolerances.max_rel_error(got, want) <= 1e-6


def test_tiny_spec_and_smaller_images(gen, seed):
    # The bench's smoke model: any spec this project builds is recognised, at any image size.
    tiny = LeViTSpec("tiny", (16, 32), 8, (2, 4), (1, 1))
    model = randomized(tiny, gen, num_classes=10, img_size=64)
    report = levit_kernels.verify(model, backend="reference", batch=2, seed=seed)
    assert report.passed, report.table()
    assert optimize(model, backend="reference").image_sides == (49, 64)  # ceil(side / 16) == 4


# ------------------------------------------------------------------------------------------- timm
@pytest.mark.parametrize("timm_name", ["levit_128s", "levit_conv_128s", "levit_conv_192"])
def test_real_timm_models_verify(timm, gen, seed, timm_name):
    model = randomized(timm.create_model(timm_name, pretrained=False), gen)
    report = levit_kernels.verify(model, backend="reference", batch=2, seed=seed)
    assert report.passed, report.table()
    kind = "conv" if "conv" in timm_name else "linear"
    assert report.source == f"timm LevitDistilled ({kind} kind)"
    # The blocks are named by timm's modules, so a failure points into the user's model.
    names = [s.name for s in report.steps]
    assert "stages.1.downsample.attn_downsample" in names and "stages.2.blocks.0.mlp" in names


def test_timm_single_head_no_head_and_other_image_side(timm, gen):
    from timm.models.levit import Levit

    small = dict(embed_dim=(32, 64), key_dim=8, num_heads=(2, 4), depth=(1, 1))
    model = randomized(Levit(num_classes=7, **small), gen)
    x = images(gen, side=216)  # timm takes any side the stem maps onto its 14×14 grid
    optimized = optimize(model, backend="reference")
    assert optimized.source == "timm Levit (linear kind)" and optimized.image_sides == (209, 224)
    assert_matches_eager(optimized, model, x)
    featureless = randomized(Levit(num_classes=0, use_conv=True, **small), gen)
    optimized = optimize(featureless, backend="reference")
    with torch.no_grad():
        assert optimized(x).shape == (2, 64)
    assert_matches_eager(optimized, featureless, x)


@pytest.mark.parametrize("layout", ["timm", "timm_conv", "official"])
def test_checkpoints_loaded_through_levit_verify(gen, seed, layout):
    source = randomized("levit_128s", gen)
    model = levit.create_model("levit_128s", checkpoint=to_layout(source, layout)).eval()
    report = levit_kernels.verify(model, backend="reference", batch=1, seed=seed)
    assert report.passed, report.table()


# ------------------------------------------------------------------------------------------- refusals
def test_training_mode_is_refused(timm, gen):
    for model in (levit.create_model("levit_128s"), timm.create_model("levit_128s")):
        with pytest.raises(ValueError, match="training mode.*model.eval()"):
            optimize(model, backend="reference")
    model = randomized("levit_128s", gen)
    model.blocks[3].body.fc1.bn.train()
    with pytest.raises(ValueError, match=r"training mode \(blocks.3.body.fc1.bn\)"):
        optimize(model, backend="reference")


def test_silu_models_are_refused_naming_the_activation(timm):
    from timm.models.levit import LevitDistilled

    model = LevitDistilled(embed_dim=(32, 64), key_dim=8, num_heads=(2, 4), depth=(1, 1), act_layer="silu").eval()
    with pytest.raises(UnrecognizedModelError, match="SiLU at 'stem.act1'.*Hardswish only.*levit_256d"):
        optimize(model, backend="reference")


@pytest.mark.parametrize("break_it,fragments", [
    (lambda m: nn.Sequential(nn.Linear(3, 3)).eval(), ["'model'", "levit.LeViT", "Sequential (children: 0)"]),
    (lambda m: setattr(m.blocks, "7", nn.Identity()), ["'blocks.7'", "Residual(Attention", "Identity"]),
    (lambda m: setattr(m.blocks[0].body, "qkv", nn.Conv2d(128, 256, 3)), ["'blocks.0.body.qkv'", "1×1 conv"]),
    (lambda m: setattr(m.blocks[0].body, "heads", 5), ["'blocks.0.body.attention_biases'", "(5, 196)", "(4, 196)"]),
    (lambda m: setattr(m.blocks[2].body, "attention_biases", nn.Parameter(torch.zeros(4, 100))),
     ["'blocks.2.body.attention_biases'", "(4, 196)", "(4, 100)"]),
    (lambda m: setattr(m.blocks[4], "resolution", 13), ["'blocks.4.attention_biases'"]),
    (lambda m: setattr(m.stem, "act2", nn.ReLU()), ["ReLU at 'stem.act2'"]),
    (lambda m: setattr(m.head_dist, "linear", nn.Linear(384, 10)), ["'head_dist'", "(1000, 384)", "(10, 384)"]),
])
def test_unrecognised_structures_name_the_module(gen, break_it, fragments):
    model = randomized("levit_128s", gen)
    broken = break_it(model) or model
    with pytest.raises(UnrecognizedModelError) as info:
        optimize(broken.eval(), backend="reference")
    assert all(f in str(info.value) for f in fragments), str(info.value)


def test_bad_backend_and_dtype_arguments(gen):
    model = randomized("levit_128s", gen)
    with pytest.raises(ValueError, match="argument 'backend' must be one of"):
        optimize(model, backend="tpu")
    with pytest.raises(ValueError, match="argument 'dtype' must be"):
        optimize(model, backend="reference", dtype=torch.int8)
    with pytest.raises(ValueError, match="argument 'dtype' must be"):
        optimize(model, backend="reference", dtype="float8")
    require_backend("cpu")
    for dtype in (torch.float16, "bfloat16"):
        with pytest.raises(ValueError, match="backend 'cpu' computes in torch.float32 only.*triton backend"):
            optimize(model, backend="cpu", dtype=dtype)


def test_triton_backend_refused_clearly_when_unavailable():
    """In a fresh process that sees no GPU and has the Triton interpreter off (other test modules turn it on for this
    process, where triton is then available), optimize(backend="triton") refuses, naming the backend and why."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TRITON_INTERPRET", None)
    code = ("import levit, levit_kernels\n"
            "model = levit.create_model('levit_128s').eval()\n"
            "try:\n"
            "    levit_kernels.optimize(model, backend='triton')\n"
            "except RuntimeError as exc:\n"
            "    print('refused:', exc)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    why = [line for line in result.stdout.splitlines() if line.startswith("refused:")]
    assert why and "backend 'triton' is unavailable: " in why[0], result.stdout
    assert "triton cannot be imported" in why[0] or "no CUDA GPU visible" in why[0], why[0]


# ------------------------------------------------------------------------------------------- the optimized model
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_forward_does_no_weight_preparation_or_validation(monkeypatch, gen, backend):
    require_backend(backend)
    model = randomized("levit_128s", gen)
    optimized = optimize(model, backend=backend)
    from levit_kernels.backends.cpu import gemm

    gc.collect()  # weights of earlier tests dying mid-test would change the cache count
    cache = gemm.cache_entries() if backend == "cpu" else None
    x = images(gen, batch=1)
    with torch.no_grad():
        first = optimized(x)
    pointers = {name: t.data_ptr() for name, t in optimized.named_buffers()}

    def forbidden(*args, **kwargs):
        raise AssertionError("called during forward")

    # No folding, no public (validating) op, no backend lookup per call.
    for module, name in [(reference, "fold_batchnorm"), (fold, "fold_batchnorm"), (ops, "linear"),
                         (ops, "mlp"), (ops, "biased_attention"), (ops, "shrink_attention"),
                         (backends, "module"), (backends, "resolve")]:
        monkeypatch.setattr(module, name, forbidden)
    with torch.no_grad():
        again = optimized(x)
    assert torch.equal(first, again)
    assert pointers == {name: t.data_ptr() for name, t in optimized.named_buffers()}
    gc.collect()
    if cache is not None:  # the weights were packed during optimize: the backend's packing cache is not used
        assert optimized.packed and gemm.cache_entries() == cache


def test_weights_are_prepared_contiguous_in_the_target_dtype(gen):
    optimized = optimize(randomized("levit_128s", gen), backend="reference", dtype="bfloat16")
    for name, t in optimized.named_buffers():
        assert t.dtype == torch.bfloat16, name
        assert t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last), name
    with torch.no_grad():
        out = optimized(images(gen, batch=1))
    assert out.dtype == torch.float32  # logits come back in the images' dtype


def test_source_model_is_not_modified(timm, gen):
    for model in (randomized("levit_128s", gen), randomized(timm.create_model("levit_conv_128s"), gen)):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        modules = {name: (type(m), m.training) for name, m in model.named_modules()}
        optimize(model, backend="reference")
        assert {name: (type(m), m.training) for name, m in model.named_modules()} == modules
        after = model.state_dict()
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_optimized_model_refuses_bad_inputs_moves_and_training(gen):
    optimized = optimize(randomized("levit_128s", gen), backend="reference")
    assert isinstance(optimized, OptimizedLeViT)
    for bad in (torch.zeros(1, 3, 64, 64), torch.zeros(3, 224, 224), torch.zeros(1, 1, 224, 224), "images"):
        with pytest.raises(ValueError, match=r"images of shape \(B, 3, H, W\) with H, W in 209..224 on cpu"):
            optimized(bad)
    with pytest.raises(RuntimeError, match="cannot be moved or cast"):
        optimized.to(torch.float64)
    with pytest.raises(RuntimeError, match="inference only"):
        optimized.train()
    assert optimized.eval() is optimized


def test_stem_variants_agree(gen):
    from levit_kernels.optimize.stem import FusedStem, fused_conv_available

    model = randomized("levit_128s", gen)
    convs = recognize.describe(model).stem
    x = images(gen, batch=1)
    cpu, f32 = torch.device("cpu"), torch.float32
    with torch.no_grad():
        ref = logits64(model.stem, x).flatten(2).transpose(1, 2)
        variants = {"channels_last": FusedStem(convs, f32, cpu, channels_last=True, fused_conv=False)(x),
                    "contiguous": FusedStem(convs, f32, cpu, channels_last=False)(x)}
        if fused_conv_available(f32, cpu):
            variants["oneDNN conv+Hardswish"] = FusedStem(convs, f32, cpu, channels_last=True, fused_conv=True)(x)
    for name, tokens in variants.items():
        assert tokens.shape == (1, 196, 128) and tokens.is_contiguous(), name
        assert tolerances.max_rel_error(tokens, ref) <= tolerances.KERNEL_RTOL[f32], name


def test_profile_times_every_step_and_op_and_leaves_the_model_working(gen):
    from levit_kernels.bench.timing import Settings
    from levit_kernels.optimize import profile

    tiny = LeViTSpec("tiny", (16, 32), 8, (2, 4), (1, 1))
    model = randomized(tiny, gen, num_classes=10, img_size=64)
    optimized = optimize(model, backend="reference")
    x = images(gen, batch=2, side=64)
    with torch.no_grad():
        before = optimized(x)
    seconds = profile.step_times(optimized, x, Settings.quick())
    assert len(seconds) == len(optimized.step_names) == 1 + 6 + 1 and all(s > 0 for s in seconds)
    ops_seconds = profile.op_times(optimized, x, rounds=2)
    assert set(ops_seconds) == {("attention", "linear"), ("attention", "biased_attention"), ("mlp", "mlp"),
                                ("shrink", "linear"), ("shrink", "shrink_attention"), ("head", "linear")}
    assert profile.host_overhead(optimized, x[:1], repeats=3) > 0
    with torch.no_grad():
        assert torch.equal(optimized(x), before)  # the real ops are bound again
    assert len(profile.step_macs("levit_128s")) == 1 + len(levit.op_shapes("levit_128s")) + 1
    assert sum(profile.step_macs("levit_128s")) == levit.count_macs("levit_128s", distillation=False)
    detection = profile.step_macs("levit_128s", (448, 800))  # the profiler's --img-size 448x800
    pixels = 448 * 800 / 224 ** 2  # attention grows faster than the pixel count, every other step with it
    assert sum(detection) == levit.count_macs("levit_128s", (448, 800), distillation=False) > pixels * sum(
        profile.step_macs("levit_128s"))
