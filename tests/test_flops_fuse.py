"""FLOPs against the paper (and against the work the model actually does), and BatchNorm fusion."""
import copy

import pytest
import torch
import torch.nn as nn

import levit
from levit.flops import PAPER_MACS
from levit.fuse import fold_batchnorm_into_next
from levit.model import MLP, Attention, Residual, ShrinkAttention
from levit_kernels import reference, tolerances
from support.macs import forward_macs


@pytest.mark.parametrize("name", list(PAPER_MACS))
def test_macs_within_one_percent_of_the_paper(name):
    macs = levit.count_macs(name)
    assert abs(macs / PAPER_MACS[name] - 1) < 0.01, f"{name}: {macs / 1e6:.1f}M vs paper {PAPER_MACS[name] / 1e6}M"


@pytest.mark.parametrize("name,distillation", [("levit_128s", True), ("levit_192", False)])
def test_macs_equal_the_work_of_a_forward_pass(monkeypatch, gen, name, distillation):
    """Count the multiply-adds of every Conv/Linear the model really runs, plus each attention core, by hooks."""
    model = levit.create_model(name, distillation=distillation).eval()
    x = torch.randn(1, 3, 224, 224, generator=gen)
    assert forward_macs(model, x, monkeypatch) == levit.count_macs(name, distillation=distillation)


def _randomized(name, gen):
    return levit.randomize_(levit.create_model(name), gen).eval()


@pytest.mark.parametrize("name", list(PAPER_MACS))
def test_fused_equals_unfused_fp32(gen, name):
    model = _randomized(name, gen)
    fused = levit.fuse(copy.deepcopy(model))
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        want, got = model(x), fused(x)
    error = tolerances.max_rel_error(got, want)
    assert error <= tolerances.FUSE_FP32_RTOL, f"{name}: fused vs unfused {error:.2e}"


def test_fusion_is_exact_in_float64(gen):
    model = _randomized("levit_128s", gen).double()
    fused = levit.fuse(copy.deepcopy(model))
    x = torch.randn(2, 3, 224, 224, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        features_error = tolerances.max_rel_error(fused.forward_features(x), model.forward_features(x))
        logits_error = tolerances.max_rel_error(fused(x), model(x))
    assert max(features_error, logits_error) <= tolerances.kernel_rtol(torch.float64)


def test_fused_structure(monkeypatch, gen):
    model = _randomized("levit_128s", gen)
    n_attention = sum(isinstance(m, (Attention, ShrinkAttention)) for m in model.modules())
    fused = model.fuse()
    assert fused is model and fused.fused and not fused.training
    assert levit.fuse(fused) is fused  # idempotent
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    attention = next(b.body for b in fused.blocks if isinstance(b, Residual) and isinstance(b.body, Attention))
    assert type(attention.qkv) is nn.Linear and type(attention.proj) is nn.Linear
    assert type(fused.head) is nn.Linear and type(fused.stem.conv1) is nn.Conv2d
    calls = []
    real = reference.biased_attention
    monkeypatch.setattr(reference, "biased_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        fused(torch.randn(1, 3, 224, 224, generator=gen))
    assert len(calls) == n_attention  # the fused model still runs the same reference attention
    with pytest.raises(RuntimeError, match="fused"):
        fused.train()
    with pytest.raises(TypeError, match="'model'"):
        levit.fuse(nn.Linear(2, 2))


def test_fused_mlp_is_the_reference_mlp(gen):
    fused = _randomized("levit_128s", gen).fuse()
    block = next(b for b in fused.blocks if isinstance(b, Residual) and isinstance(b.body, MLP))
    x = torch.randn(1, 196, 128, generator=gen)
    mlp = block.body
    with torch.no_grad():
        want = reference.mlp(x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias, "hardswish", True)
        assert torch.equal(block(x), want)


def test_fold_batchnorm_into_next_matches_bn_then_linear(gen):
    bn = nn.BatchNorm1d(6).double().eval()
    linear = nn.Linear(6, 4).double()
    with torch.no_grad():
        for t, low in ((bn.running_mean, -1), (bn.running_var, 0.2), (bn.weight, -2), (bn.bias, -1)):
            t.copy_(torch.rand(6, generator=gen, dtype=torch.float64) * 2 + low)
    x = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    weight, bias = fold_batchnorm_into_next(bn, linear.weight, linear.bias)
    with torch.no_grad():
        want = linear(bn(x))
    assert tolerances.max_rel_error(x @ weight.T + bias, want) <= tolerances.kernel_rtol(torch.float64)
