"""levit.layers: every Conv/Linear+BN layer folds its own BatchNorm; fused vs unfused in float64 at LeViT's shapes
and at odd ones (bias, groups, stride, padding, tokens of any rank)."""
import pytest
import torch
import torch.nn as nn

import levit
from levit.layers import BNLinear, ConvBN, FoldsBatchNorm, LinearBN, fuse_modules
from tests.conftest import assert_close_to_reference

F64 = torch.float64


def _randomized(layer: nn.Module, gen) -> nn.Module:
    layer = layer.to(F64)
    with torch.no_grad():  # non-trivial statistics, affines and biases, so a wrong fold shows
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
    return levit.randomize_(layer, gen).eval()


@pytest.mark.parametrize("cin,cout,bias,rank", [(128, 384, False, 3), (3, 7, True, 2), (17, 5, True, 4)])
def test_linear_bn_fuses(gen, cin, cout, bias, rank):
    layer = _randomized(LinearBN(cin, cout, bias=bias), gen)
    x = torch.randn(*([2, 5, 3][: rank - 1]), cin, generator=gen, dtype=F64)
    fused = layer.fuse()
    assert type(fused) is nn.Linear and (fused.in_features, fused.out_features) == (cin, cout)
    with torch.no_grad():
        assert_close_to_reference(fused(x), layer(x), F64, "fused LinearBN")


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,groups,bias", [
    (3, 16, 3, 2, 1, 1, False),  # LeViT-128S stem conv1
    (64, 128, 3, 2, 1, 1, False),
    (6, 9, (3, 1), 1, (1, 0), 3, True),  # grouped, non-square, with bias
    (8, 8, 1, 1, 0, 8, True),  # depthwise 1×1
])
def test_conv_bn_fuses(gen, cin, cout, kernel, stride, padding, groups, bias):
    layer = _randomized(ConvBN(cin, cout, kernel, stride, padding, groups=groups, bias=bias), gen)
    x = torch.randn(2, cin, 13, 11, generator=gen, dtype=F64)
    fused = layer.fuse()
    assert type(fused) is nn.Conv2d and fused.groups == groups and fused.bias is not None
    with torch.no_grad():
        assert_close_to_reference(fused(x), layer(x), F64, "fused ConvBN")


@pytest.mark.parametrize("cin,cout", [(384, 1000), (5, 3)])
def test_bn_linear_fuses(gen, cin, cout):
    layer = _randomized(BNLinear(cin, cout), gen)
    x = torch.randn(4, cin, generator=gen, dtype=F64)
    fused = layer.fuse()
    assert type(fused) is nn.Linear
    with torch.no_grad():
        assert_close_to_reference(fused(x), layer(x), F64, "fused BNLinear")


def test_fuse_modules_replaces_every_layer_at_any_depth(gen):
    model = _randomized(nn.Sequential(ConvBN(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                      nn.Sequential(LinearBN(4 * 6 * 6, 8), BNLinear(8, 2))), gen)
    x = torch.randn(3, 3, 6, 6, generator=gen, dtype=F64)
    with torch.no_grad():
        want = model(x)
        fuse_modules(model)
        assert not any(isinstance(m, (FoldsBatchNorm, nn.modules.batchnorm._BatchNorm)) for m in model.modules())
        assert_close_to_reference(model(x), want, F64, "fuse_modules")


def test_folds_batchnorm_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        FoldsBatchNorm()
