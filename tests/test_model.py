"""The pure-PyTorch LeViT: sizes, shapes, heads, blocks against the reference ops, the attention-bias cache."""
import copy

import pytest
import torch

import levit
from conftest import assert_close_to_reference
from levit.config import AttentionShape, MLPShape, ShrinkAttentionShape, op_shapes, stem_shapes
from levit.model import MLP, Attention, LinearBN, Residual, ShrinkAttention
from levit_kernels import fold_batchnorm, reference, tolerances

PARAMS = {"levit_128s": 7_777_058, "levit_128": 9_213_936, "levit_192": 10_947_069, "levit_256": 18_893_876,
          "levit_384": 39_128_836}


def _images(gen, batch=2, dtype=torch.float32):
    return torch.randn(batch, 3, 224, 224, generator=gen).to(dtype)


@pytest.fixture
def small(gen):
    """A randomized LeViT-128S in eval mode (non-trivial BN statistics and attention biases)."""
    return levit.randomize_(levit.create_model("levit_128s"), gen).eval()


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count_and_module_shapes(name):
    model = levit.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    # Every block is built from its op_shapes entry and its weights have exactly those sizes.
    assert [block.body.shape if isinstance(block, Residual) else block.shape for block in model.blocks] == \
        op_shapes(name)
    for block in model.blocks:
        module = block.body if isinstance(block, Residual) else block
        for attr, (cin, cout) in module.shape.linears.items():
            assert getattr(module, attr).linear.weight.shape == (cout, cin), (name, attr)
        if not isinstance(module, MLP):
            assert module.attention_biases.shape == (module.shape.heads, module.shape.resolution ** 2)
    assert [m.conv.weight.shape[:2] for m in model.stem if hasattr(m, "conv")] == \
        [(s.out_channels, s.in_channels) for s in stem_shapes(name)]


def test_op_shapes_of_levit_128s_follow_the_paper():
    blocks = op_shapes("levit_128s")
    kinds = [b.kind for b in blocks]
    # depths 2, 3, 4 of (attention, mlp) pairs; shrink + mlp between stages
    assert kinds == ["attention", "mlp"] * 2 + ["shrink", "mlp"] + ["attention", "mlp"] * 3 + ["shrink", "mlp"] \
        + ["attention", "mlp"] * 4
    first = blocks[0]
    assert first == AttentionShape(stage=0, channels=128, heads=4, key_dim=16, value_dim=32, resolution=14)
    assert first.linears == {"qkv": (128, 4 * (16 + 16 + 32)), "proj": (4 * 32, 128)}
    shrink1, shrink2 = (b for b in blocks if isinstance(b, ShrinkAttentionShape))
    assert (shrink1.in_channels, shrink1.out_channels, shrink1.heads, shrink1.key_dim, shrink1.value_dim) == \
        (128, 256, 128 // 16, 16, 64)
    assert (shrink1.resolution, shrink1.out_resolution, shrink1.stride, shrink1.queries) == (14, 7, 2, 49)
    assert shrink1.linears == {"kv": (128, 8 * (16 + 64)), "q": (128, 8 * 16), "proj": (8 * 64, 256)}
    assert (shrink2.resolution, shrink2.out_resolution, shrink2.heads) == (7, 4, 16)
    assert blocks[5] == MLPShape(stage=1, channels=256, hidden=512, resolution=7)
    assert [s.out_channels for s in stem_shapes("levit_128s")] == [16, 32, 64, 128]
    assert stem_shapes("levit_128s")[-1].out_side == 14


def test_unknown_variant_raises_listing_valid_names():
    with pytest.raises(ValueError) as info:
        levit.create_model("levit_999")
    assert "levit_999" in str(info.value) and all(name in str(info.value) for name in PARAMS)


def test_output_shapes_and_heads(gen, small):
    x = _images(gen)
    with torch.no_grad():
        out = small(x)
        assert out.shape == (2, 1000)
        features = small.forward_features(x)
        assert features.shape == (2, 16, 384)
        pooled = features.mean(dim=1)
        cls, dist = small.head(pooled), small.head_dist(pooled)
        assert not torch.allclose(cls, dist)
        torch.testing.assert_close(out, (cls + dist) / 2)
        small.train()
        train_out = small(x)
    assert isinstance(train_out, tuple) and len(train_out) == 2
    assert all(t.shape == (2, 1000) for t in train_out)


def test_without_distillation_and_other_class_count(gen):
    model = levit.create_model("levit_128s", num_classes=10, distillation=False)
    assert model.head_dist is None
    assert sum(p.numel() for p in model.parameters()) == PARAMS["levit_128s"] - 2 * (384 * 1000 + 1000) \
        - 2 * 384 + (384 * 10 + 10)
    x = _images(gen)
    with torch.no_grad():
        assert model.train()(x).shape == (2, 10)
        assert model.eval()(x).shape == (2, 10)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 64, 64), torch.zeros(3, 224, 224), torch.zeros(1, 1, 224, 224)])
def test_bad_image_shape_raises(small, bad):
    with pytest.raises(ValueError, match=r"levit_128s: input must be images of shape \(B, 3, 224, 224\)"):
        small(bad)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_bad_num_classes_raises(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        levit.create_model("levit_128s", num_classes=num_classes)


def test_attention_passes_views_of_the_packed_projection(monkeypatch, gen, small):
    """q, k, v reach the reference attention as strided views of one qkv output, without copies."""
    calls = []
    real = reference.biased_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append((q, k, v, args, kwargs))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(reference, "biased_attention", spy)
    with torch.no_grad():
        small(_images(gen, 1))
    shapes = [s for s in small.block_shapes if s.kind != "mlp"]
    assert len(calls) == len(shapes)
    for (q, k, v, args, kwargs), shape in zip(calls, shapes):
        storage = k.untyped_storage().data_ptr()
        assert v.untyped_storage().data_ptr() == storage
        if shape.kind == "attention":
            assert q.untyped_storage().data_ptr() == storage
        operands = shape.attention_operands(1)
        assert (q.shape, k.shape, v.shape) == (operands["q"], operands["k"], operands["v"])
        assert args[1:5] == (shape.resolution, shape.stride, shape.key_dim ** -0.5, "hardswish")
        assert kwargs["gathered_bias"].shape == (shape.heads, shape.queries, shape.keys)


# ----------------------------------------------------------------------- blocks vs the reference ops, folded
def _folded(linear_bn: LinearBN):
    return fold_batchnorm(linear_bn.linear.weight, None, linear_bn.bn)


def _block(small, kind):
    return next(b.body if isinstance(b, Residual) else b for b in small.blocks
                if (b.body if isinstance(b, Residual) else b).shape.kind == kind)


def test_mlp_block_equals_reference_mlp_on_folded_weights(gen, small):
    small.double()
    residual = next(b for b in small.blocks if isinstance(b, Residual) and isinstance(b.body, MLP))
    x = torch.randn(2, 196, 128, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = reference.mlp(x, *_folded(residual.body.fc1), *_folded(residual.body.fc2), "hardswish", True)
        assert_close_to_reference(residual(x), want, torch.float64, "Residual(MLP)")
        linear_bn = residual.body.fc1
        assert_close_to_reference(linear_bn(x), reference.linear(x, *_folded(linear_bn)), torch.float64, "LinearBN")


def test_attention_blocks_equal_reference_ops_on_folded_weights(gen, small):
    small.double()
    attention: Attention = _block(small, "attention")
    shrink: ShrinkAttention = _block(small, "shrink")
    with torch.no_grad():
        x = torch.randn(2, 196, 128, generator=gen, dtype=torch.float64)
        qkv = reference.linear(x, *_folded(attention.qkv)).view(2, 196, 4, 64).permute(0, 2, 1, 3)
        core = reference.biased_attention(qkv[..., :16], qkv[..., 16:32], qkv[..., 32:], attention.attention_biases,
                                          14, 1, None, "hardswish")
        want = reference.linear(core, *_folded(attention.proj))
        assert_close_to_reference(attention(x), want, torch.float64, "Attention")

        kv = reference.linear(x, *_folded(shrink.kv)).view(2, 196, 8, 16 + 64).permute(0, 2, 1, 3)
        core = reference.shrink_attention(x, *_folded(shrink.q), kv[..., :16], kv[..., 16:], shrink.attention_biases,
                                          14, 2, None, "hardswish")
        want = reference.linear(core, *_folded(shrink.proj))
        assert_close_to_reference(shrink(x), want, torch.float64, "ShrinkAttention")


# --------------------------------------------------------------------------------------- attention-bias cache
def _attentions(model):
    return [m for m in model.modules() if isinstance(m, (Attention, ShrinkAttention))]


def _fresh_output(model, x):
    """The output of an identical model that has never cached anything."""
    twin = levit.create_model(model.name).to(next(model.parameters()).dtype)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        return twin.eval()(x)


def _run(model, x):
    with torch.no_grad():
        return model(x)


def test_bias_cache_is_built_once_in_eval(gen, small):
    x = _images(gen, 1)
    _run(small, x)
    with torch.no_grad():
        first = [m._bias_cache[1] for m in _attentions(small)]
        _run(small, x)
        again = [m.gathered_bias() for m in _attentions(small)]
        for m, cached in zip(_attentions(small), again):
            assert torch.equal(cached, reference.gather_attention_bias(m.attention_biases, m.resolution, m.stride))
    assert all(a is b for a, b in zip(first, again))


def test_bias_cache_dropped_by_train(gen, small):
    x = _images(gen, 1)
    _run(small, x)
    small.train()
    assert all(m._bias_cache is None for m in _attentions(small))
    with torch.no_grad():  # training mode gathers from the live table
        assert all(m.gathered_bias() is None for m in _attentions(small))
        for m in _attentions(small):
            m.attention_biases.mul_(-1)
    small.eval()
    torch.testing.assert_close(_run(small, x), _fresh_output(small, x), rtol=0, atol=0)


def test_bias_cache_dropped_by_load_state_dict(gen, small):
    x = _images(gen, 1)
    before = _run(small, x)
    other = levit.randomize_(levit.create_model("levit_128s"), gen)
    small.load_state_dict(other.state_dict())
    assert all(m._bias_cache is None for m in _attentions(small))
    after = _run(small, x)
    assert tolerances.max_rel_error(after, before) > 1e-3
    torch.testing.assert_close(after, _fresh_output(other, x), rtol=0, atol=0)


@pytest.mark.parametrize("move", ["double", "half", "bfloat16", "to_float64", "to_cpu_device"])
def test_bias_cache_dropped_by_device_and_dtype_moves(gen, small, move):
    x = _images(gen, 1)
    _run(small, x)
    dtype = {"double": torch.float64, "half": torch.float16, "bfloat16": torch.bfloat16,
             "to_float64": torch.float64, "to_cpu_device": torch.float32}[move]
    if move.startswith("to_"):
        small.to(dtype if move == "to_float64" else torch.device("cpu"))
    else:
        getattr(small, move)()
    assert all(m._bias_cache is None for m in _attentions(small))
    with torch.no_grad():
        for m in _attentions(small):
            assert m.gathered_bias().dtype == dtype
    if dtype in (torch.float64, torch.bfloat16):  # CPU runs these; fp16 conv is not implemented on every CPU torch
        out = _run(small, x.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out, _fresh_output(small, x.to(dtype)), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bias_cache_dropped_by_cuda_and_back(monkeypatch, gen, small):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare full fp32 with the CPU
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    x = _images(gen, 1)
    cpu_out = _run(small, x)
    small.cuda()
    assert all(m._bias_cache is None for m in _attentions(small))
    cuda_out = _run(small, x.cuda())
    assert all(m._bias_cache[1].device.type == "cuda" for m in _attentions(small))
    assert tolerances.max_rel_error(cuda_out.cpu(), cpu_out) <= tolerances.MODEL_FP32_RTOL
    small.cpu()
    assert all(m._bias_cache is None for m in _attentions(small))
    torch.testing.assert_close(_run(small, x), cpu_out, rtol=0, atol=0)


def test_other_image_sizes(gen):
    model = levit.create_model("levit_128s", img_size=160).eval()  # token grids 10 → 5 → 3
    assert [s.resolution for s in model.block_shapes if s.kind == "shrink"] == [10, 5]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 160, 160, generator=gen)).shape == (1, 1000)
    assert levit.count_macs("levit_128s", img_size=160) < levit.count_macs("levit_128s")


def test_bias_cache_follows_in_place_edits(gen, small):
    x = _images(gen, 1)
    _run(small, x)
    with torch.no_grad():
        for m in _attentions(small):
            m.attention_biases.add_(0.5)
    torch.testing.assert_close(_run(small, x), _fresh_output(small, x), rtol=0, atol=0)


def test_eval_with_grad_gathers_live_so_gradients_reach_the_biases(gen, small):
    out = small(_images(gen, 1))  # eval, grad enabled: no cache, so the bias gradient is exact
    assert all(m._bias_cache is None for m in _attentions(small))
    out.sum().backward()
    assert all(m.attention_biases.grad is not None and m.attention_biases.grad.abs().sum() > 0
               for m in _attentions(small))


def test_train_mode_drop_path_only_in_training(gen):
    model = levit.randomize_(levit.create_model("levit_384"), gen)
    assert all(r.drop_path == 0.1 for r in model.modules() if isinstance(r, Residual))
    x = torch.randn(2, 196, 384, generator=gen)
    residual = model.blocks[1]
    with torch.no_grad():
        residual.eval()
        torch.testing.assert_close(residual(x), x + residual.body(x))
        residual.train()
        torch.manual_seed(0)  # with p=0.1 on 64 draws, some samples keep and (almost surely) some drop
        rows = torch.cat([residual(x) for _ in range(32)])
        branch = residual.body(x).repeat(32, 1, 1)
        base = x.repeat(32, 1, 1)
        kept = torch.isclose(rows, base + branch / 0.9, atol=1e-5).flatten(1).all(1)
        dropped = torch.isclose(rows, base).flatten(1).all(1)
    assert bool((kept | dropped).all()) and kept.any() and dropped.any()


def test_model_copy_does_not_share_cache(gen, small):
    x = _images(gen, 1)
    _run(small, x)
    twin = copy.deepcopy(small)
    with torch.no_grad():
        for m in _attentions(twin):
            m.attention_biases.zero_()
    assert not torch.equal(_run(twin, x), _run(small, x))
    torch.testing.assert_close(_run(twin, x), _fresh_output(twin, x), rtol=0, atol=0)
