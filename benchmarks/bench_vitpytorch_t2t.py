"""`levit-kernels bench` on vit-pytorch's T2TViT, which the model registry cannot hold (``levit`` never imports
vit_pytorch, whose package needs torchvision): this script registers it, for this process only, as
``vitpytorch_t2t_vit`` — the configuration of vit-pytorch's README (dim 512, depth 5, 8 heads, mlp_dim 512, default
T2T layers: token Transformers of widths 147 and 1323 over 3136 and 784 tokens) — and passes its arguments on::

    python benchmarks/bench_vitpytorch_t2t.py --preset paper --ops e2e
    python benchmarks/bench_vitpytorch_t2t.py --preset latency --ops e2e --quick --no-save

torchvision, when missing, is replaced by the tests' placeholder (tests/support/timm_compat.py): T2TViT never
calls it.
"""
import os
import sys

NAME = "vitpytorch_t2t_vit"
README_CONFIG = dict(dim=512, depth=5, heads=8, mlp_dim=512)


def create_model(name, num_classes=1000, img_size=224):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from support.timm_compat import import_vit_pytorch

    t2t = import_vit_pytorch("t2t")
    if t2t is None:
        raise RuntimeError("vit-pytorch (and einops) must be installed")
    return t2t.T2TViT(image_size=img_size, num_classes=num_classes, **README_CONFIG)


def main(argv=None) -> int:
    from levit import registry
    from levit_kernels.cli import main as cli

    registry.register("vit-pytorch", (NAME,), create_model)
    return cli(["bench", "--model", NAME, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
