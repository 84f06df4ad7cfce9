"""optimize/verify with backend="triton": natively on a GPU, else through the Triton interpreter on CPU tensors.

As tests/test_triton.py, this module turns the interpreter on (TRITON_INTERPRET=1) at collection when no CUDA GPU
is visible. The interpreter is slow (minutes per LeViT-128S forward), so it runs small LeViTs on 64×64 images at
batch 1; its bf16 dot is broken (triton issue 11584), so low precision runs in fp16 there.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import levit  # noqa: E402
from levit.config import LeViTSpec  # noqa: E402
import levit_kernels  # noqa: E402

AVAILABLE, WHY = levit_kernels.availability("triton")
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"triton backend unavailable: {WHY}")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LOW_PRECISION = torch.bfloat16 if DEVICE == "cuda" else torch.float16


def randomized(model, gen):
    return levit.randomize_(model, gen).eval().to(DEVICE)


def test_small_levit_verifies(gen, seed):
    # Every block kind (attention, mlp, shrink) on 64×64 images: the interpreter takes minutes per LeViT-128S.
    spec = LeViTSpec("small", (32, 48), 16, (2, 3), (1, 1))
    model = randomized(levit.create_model(spec, num_classes=10, img_size=64), gen)
    report = levit_kernels.verify(model, backend="triton", batch=1, seed=seed)
    assert report.passed, report.table()
    assert report.backend == "triton" and [s.kind for s in report.blocks] == [
        "stem", "attention", "mlp", "shrink", "mlp", "attention", "mlp"]


def test_timm_conv_kind_verifies_in_low_precision(timm, gen, seed):
    from timm.models.levit import LevitDistilled

    # Key dim 32 as LeViT-192/256/384; a 4×4 then 2×2 grid keeps the interpreter's run short.
    model = randomized(LevitDistilled(img_size=64, embed_dim=(64, 96), key_dim=32, num_heads=(2, 3), depth=(1, 1),
                                      use_conv=True, num_classes=100), gen)
    report = levit_kernels.verify(model, backend="triton", dtype=LOW_PRECISION, batch=1, seed=seed)
    assert report.passed, report.table()
    assert report.logits.eager_lowp_error is not None and report.source == "timm LevitDistilled (conv kind)"


def test_small_efficientformer_verifies(gen, seed):
    # Every EfficientFormer block kind (pool, mlp, conv, LayerNorm-first attention and MLP, the LayerNorm head) on
    # 64×64 images: grids 16, 8, 4, 2.
    from levit.efficientformer import EfficientFormer, EfficientFormerSpec

    spec = EfficientFormerSpec("tiny", (16, 24, 32, 48), (1, 1, 1, 2), 1, heads=2, key_dim=16)
    model = randomized(EfficientFormer(spec, num_classes=10, img_size=64), gen)
    report = levit_kernels.verify(model, backend="triton", batch=1, seed=seed)
    assert report.passed, report.table()
    assert [s.kind for s in report.blocks] == ["stem", "pool", "mlp", "conv", "pool", "mlp", "conv", "pool", "mlp",
                                               "conv", "pool", "mlp", "attention", "mlp"]


def test_small_vit_pytorch_levit_verifies(gen, seed):
    from support.timm_compat import import_vit_pytorch_levit

    module = import_vit_pytorch_levit()
    if module is None:
        pytest.skip("vit-pytorch (and einops) not installed")
    model = module.LeViT(image_size=64, num_classes=10, dim=(32, 48), depth=1, heads=(2, 3), mlp_mult=2, stages=2,
                         dim_key=16, dim_value=16)
    model = levit.randomize_(model, gen)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding):  # its bias table, which randomize_ does not know
                m.weight.normal_(generator=gen)
    report = levit_kernels.verify(model.eval().to(DEVICE), backend="triton", batch=1, seed=seed)
    assert report.passed, report.table()
    assert [s.kind for s in report.blocks] == ["stem", "attention", "mlp", "shrink", "mlp", "attention", "mlp"]


def test_small_t2t_vit_verifies(gen, seed):
    # Every ViT-style block kind but the performer (unfold, softmax attention with the v residual over the 147- and
    # 576-wide token layers, the soft split + project conv, class tokens, the class-token head) on 16×16 images.
    from levit.t2t_vit import T2TViT, T2TViTSpec

    model = randomized(T2TViT(T2TViTSpec("tiny_t", "transformer", 128, 1, 2, 2.0), num_classes=10, img_size=16), gen)
    report = levit_kernels.verify(model, backend="triton", batch=1, seed=seed)
    assert report.passed, report.table()
    assert [s.kind for s in report.blocks] == ["stem", "unfold", "softmax", "mlp", "unfold", "softmax", "mlp", "conv",
                                               "tokens", "softmax", "mlp"]


def test_small_t2t_vit_performer_verifies(gen, seed):
    from levit.t2t_vit import T2TViT, T2TViTSpec

    model = randomized(T2TViT(T2TViTSpec("tiny", "performer", 64, 1, 1, 2.0), num_classes=10, img_size=16), gen)
    report = levit_kernels.verify(model, backend="triton", batch=1, seed=seed)
    assert report.passed, report.table()
    assert [s.kind for s in report.blocks][:3] == ["stem", "unfold", "performer"]
