"""Checkpoint layouts: timm levit_*, timm levit_conv_*, official {"model": sd}, our own; against the real timm
models; and checkpoints that do not fit, which must raise naming the offending keys without loading anything."""
import itertools
import re

import pytest
import torch

import levit
from levit.checkpoint import CheckpointError, detect_layout, key_map, load_checkpoint
from levit_kernels import reference, tolerances

# Keys of the official LeViT-128S checkpoint (facebookresearch/LeViT), as listed in the project's facts file.
OFFICIAL_128S_KEYS = ["patch_embed.0.c.weight", "patch_embed.0.bn.running_var", "patch_embed.6.c.weight",
                      "blocks.0.m.qkv.c.weight", "blocks.0.m.qkv.bn.bias", "blocks.0.m.proj.1.c.weight",
                      "blocks.0.m.attention_biases", "blocks.1.m.0.c.weight", "blocks.1.m.2.bn.weight",
                      "blocks.4.kv.c.weight", "blocks.4.q.1.c.weight", "blocks.4.proj.1.c.weight",
                      "blocks.4.attention_biases", "blocks.5.m.0.c.weight", "head.bn.weight", "head.l.weight",
                      "head.l.bias", "head_dist.bn.running_mean", "head_dist.l.weight"]


def official_bias_index(resolution, stride):
    """The official code's construction: offsets numbered in order of first appearance, not by formula."""
    side = len(range(0, resolution, stride))
    points = list(itertools.product(range(resolution), range(resolution)))
    queries = list(itertools.product(range(side), range(side)))
    numbers, idxs = {}, []
    for qy, qx in queries:
        for ky, kx in points:
            offset = (abs(qy * stride - ky), abs(qx * stride - kx))
            idxs.append(numbers.setdefault(offset, len(numbers)))
    return torch.tensor(idxs).view(len(queries), len(points))


def to_layout(model, layout):
    """``model``'s weights as a checkpoint in ``layout``."""
    state = model.state_dict()
    if layout == "native":
        return dict(state)
    scheme = "official" if layout == "official" else "timm"
    mapping = key_map(model, scheme)
    out = {theirs: state[ours].clone() for theirs, ours in mapping.items()}
    if layout == "timm_conv":  # every Linear of the blocks as a 1×1 conv; the heads stay Linear in timm
        out = {k: v[:, :, None, None] if k.startswith("stages.") and k.endswith("linear.weight") else v
               for k, v in out.items()}
    if layout == "official":
        for theirs, ours in mapping.items():
            if theirs.endswith(".attention_biases"):
                attention = model.get_submodule(ours[:-len(".attention_biases")])
                out[theirs.replace("attention_biases", "attention_bias_idxs")] = official_bias_index(
                    attention.resolution, attention.stride)
        out = {"model": out}
    return out


@pytest.fixture
def source(gen):
    return levit.randomize_(levit.create_model("levit_128s"), gen).eval()


def _outputs(model, x):
    with torch.no_grad():
        return model.eval().forward_features(x), model(x)


@pytest.mark.parametrize("layout", ["native", "timm", "timm_conv", "official"])
def test_layout_round_trip(gen, source, layout):
    checkpoint = to_layout(source, layout)
    inner = checkpoint.get("model", checkpoint)
    assert detect_layout(inner) == layout
    loaded = levit.create_model("levit_128s", checkpoint=checkpoint)
    x = torch.randn(1, 3, 224, 224, generator=gen)
    for got, want in zip(_outputs(loaded, x), _outputs(source, x)):
        assert torch.equal(got, want)


def test_official_keys_and_bias_index_agree_with_the_official_code(source):
    keys = to_layout(source, "official")["model"]
    assert all(k in keys for k in OFFICIAL_128S_KEYS), [k for k in OFFICIAL_128S_KEYS if k not in keys]
    assert not any(k.startswith("blocks.4.m.") for k in keys)  # the shrink attention has no residual wrapper
    for resolution, stride in [(14, 1), (7, 1), (4, 1), (14, 2), (7, 2)]:
        assert torch.equal(official_bias_index(resolution, stride),
                           reference.attention_bias_index(resolution, stride))


def test_file_paths_and_wrappers(tmp_path, gen, source):
    x = torch.randn(1, 3, 224, 224, generator=gen)
    want = _outputs(source, x)[1]
    path = tmp_path / "official.pth"
    torch.save(to_layout(source, "official"), path)
    assert torch.equal(_outputs(levit.create_model("levit_128s", checkpoint=str(path)), x)[1], want)
    path = tmp_path / "timm.pth"
    torch.save({"state_dict": to_layout(source, "timm"), "epoch": 3}, path)
    assert torch.equal(_outputs(levit.create_model("levit_128s", checkpoint=path), x)[1], want)
    safetensors = pytest.importorskip("safetensors.torch")
    path = tmp_path / "timm.safetensors"
    safetensors.save_file(to_layout(source, "timm"), str(path))
    assert torch.equal(_outputs(levit.create_model("levit_128s", checkpoint=path), x)[1], want)


def test_checkpoint_without_num_batches_tracked_loads(gen, source):
    checkpoint = {k: v for k, v in to_layout(source, "timm").items() if not k.endswith("num_batches_tracked")}
    loaded = levit.create_model("levit_128s", checkpoint=checkpoint)
    x = torch.randn(1, 3, 224, 224, generator=gen)
    assert torch.equal(_outputs(loaded, x)[1], _outputs(source, x)[1])


# -------------------------------------------------------------------------------------------- the real timm
@pytest.mark.parametrize("timm_name,ours", [("levit_128s", "levit_128s"), ("levit_conv_128s", "levit_128s"),
                                            ("levit_256", "levit_256")])
def test_real_timm_models_load_and_match(timm, gen, timm_name, ours):
    timm_model = levit.randomize_(timm.create_model(timm_name, pretrained=False), gen).eval()
    model = levit.create_model(ours, checkpoint=timm_model.state_dict()).eval()
    x = torch.randn(1, 3, 224, 224, generator=gen)
    with torch.no_grad():
        features, logits = _outputs(model, x)
        timm_features = timm_model.forward_features(x)
        if timm_features.dim() == 4:  # levit_conv_*: (B, C, H, W)
            timm_features = timm_features.flatten(2).transpose(1, 2)
        assert tolerances.max_rel_error(features, timm_features) <= 1e-6
        assert tolerances.max_rel_error(logits, timm_model(x)) <= 1e-6
        # The check is sharp: mis-mapping a single bias table (of the last attention) exceeds it.
        model.blocks[-2].body.attention_biases.copy_(model.blocks[-2].body.attention_biases.flip(1))
        assert tolerances.max_rel_error(model.forward_features(x), timm_features) > 1e-6


def test_timm_key_order_is_the_official_block_order(timm):
    """timm and the official checkpoints hold the same tensors in the same order; our two key maps must agree."""
    timm_model = timm.create_model("levit_128s", pretrained=False)
    model = levit.create_model("levit_128s")
    to_ours = key_map(model, "timm")
    to_official = {ours: theirs for theirs, ours in key_map(model, "official").items()}
    official_order = [to_official[to_ours[k]] for k in timm_model.state_dict()]
    blocks = [int(m.group(1)) for m in map(re.compile(r"blocks\.(\d+)\.").match, official_order) if m]
    assert blocks == sorted(blocks) and blocks[-1] == len(model.blocks) - 1


# ------------------------------------------------------------------------------------ checkpoints that do not fit
def _expect_error(model, checkpoint, *fragments):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, checkpoint)
    message = str(info.value)
    assert all(f in message for f in fragments), message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load changed the model"
    return message


def test_missing_key_is_named(source):
    checkpoint = to_layout(source, "timm")
    del checkpoint["stages.0.blocks.0.attn.qkv.linear.weight"]
    _expect_error(levit.create_model("levit_128s"), checkpoint, "1 missing",
                  "stages.0.blocks.0.attn.qkv.linear.weight (256, 128)")


def test_unexpected_key_is_named(source):
    checkpoint = to_layout(source, "official")
    checkpoint["model"]["blocks.0.m.extra.weight"] = torch.zeros(3)
    _expect_error(levit.create_model("levit_128s"), checkpoint, "1 unexpected", "blocks.0.m.extra.weight (3,)")


def test_misshaped_key_is_named_with_both_shapes(source):
    checkpoint = to_layout(source, "timm_conv")
    checkpoint["stages.1.downsample.attn_downsample.q.ln.linear.weight"] = torch.zeros(128, 64, 1, 1)
    _expect_error(levit.create_model("levit_128s"), checkpoint, "1 mis-shaped",
                  "stages.1.downsample.attn_downsample.q.ln.linear.weight: checkpoint (128, 64, 1, 1) vs model "
                  "(128, 128)")


def test_wrong_variant_is_named(gen):
    checkpoint = to_layout(levit.create_model("levit_128"), "timm")
    message = _expect_error(levit.create_model("levit_128s"), checkpoint, "does not fit levit_128s",
                            "the checkpoint fits levit_128 (1000 classes, with distillation head")
    assert "unexpected" in message and "mis-shaped" in message


def test_wrong_class_count_is_named(gen):
    checkpoint = to_layout(levit.create_model("levit_128s", num_classes=10), "official")
    _expect_error(levit.create_model("levit_128s"), checkpoint, "head.l.weight: checkpoint (10, 384) vs model "
                  "(1000, 384)", "fits levit_128s (10 classes")


def test_missing_distillation_head_is_named(source):
    checkpoint = {k: v for k, v in to_layout(source, "timm").items() if not k.startswith("head_dist.")}
    _expect_error(levit.create_model("levit_128s"), checkpoint, "missing", "head_dist.linear.weight (1000, 384)",
                  "fits levit_128s (1000 classes, without distillation head")


def test_wrong_official_bias_index_is_named(source):
    checkpoint = to_layout(source, "official")
    idxs = checkpoint["model"]["blocks.4.attention_bias_idxs"]
    checkpoint["model"]["blocks.4.attention_bias_idxs"] = idxs.flip(1)
    _expect_error(levit.create_model("levit_128s"), checkpoint, "wrong attention_bias_idxs",
                  "blocks.4.attention_bias_idxs (49, 196)")


def test_unrecognised_layout_and_bad_values():
    model = levit.create_model("levit_128s")
    _expect_error(model, {"encoder.weight": torch.zeros(2)}, "unrecognised checkpoint layout", "encoder.weight")
    checkpoint = to_layout(model, "timm")
    checkpoint["head.linear.bias"] = [0.0] * 1000
    _expect_error(model, checkpoint, "head.linear.bias: not a tensor (list)")
    with pytest.raises(TypeError, match="'checkpoint'"):
        load_checkpoint(model, 42)
    with pytest.raises(TypeError, match="'model'"):
        load_checkpoint(torch.nn.Linear(2, 2), checkpoint)
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        load_checkpoint(model, "/nonexistent/no_such.pth")


def test_fused_model_refuses_checkpoints(source):
    checkpoint = to_layout(source, "native")
    fused = levit.fuse(levit.create_model("levit_128s"))
    with pytest.raises(CheckpointError, match="before fuse"):
        load_checkpoint(fused, checkpoint)
