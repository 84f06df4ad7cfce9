"""CPU (C++) conv2d, the implicit GEMM of csrc/conv, against oneDNN's fused conv + activation (what the optimized stem
ran before, ``torch.ops.mkldnn._convolution_pointwise``), per layer of the LeViT-128S / 256 / 384 stems and of
EfficientFormer-L1's stem and downsamplings, and for the whole LeViT stems, fp32.

Per layer: "oneDNN" on a channels-last input; "ours" (conv2d_packed, weight packed once) on the same channels-last
input; for the first layer also "ours NCHW", reading the NCHW images in place through their strides (what the stem
does when its first layer is ours: no channels-last copy of the images). Whole stem: FusedStem with every layer
on oneDNN, every layer on ours, and the choice optimize() makes (levit_kernels.optimize.stem.kernel_wins), from
NCHW images (the channels-last copy, where a stem makes one, counted).
GFLOP/s counts 2·B·Ho·Wo·C_out·9·C_in.

    python benchmarks/bench_cpu_conv.py [--rounds 9] [--threads 1] [--batch 1 16] [--models levit_128s ...]
                                        [--no-stem | --stem-only]
"""
from __future__ import annotations

import argparse

import torch

import levit_kernels as lk
from levit import config
from levit_kernels import reference, tolerances
from levit_kernels.backends import cpu
from levit_kernels.bench import timing
from levit_kernels.optimize import stem
from levit_kernels.optimize.specs import Conv

EF_L1 = (48, 96, 224, 448)
POOL = 4  # input sets per candidate, taken in turn


def layer_shapes(model: str) -> list[tuple[int, int, int, str]]:
    """(C_in, C_out, input side, activation) of each conv of ``model``'s stem (EfficientFormer-L1: and its
    downsamplings)."""
    if model == "efficientformer_l1":
        w = EF_L1
        return [(3, w[0] // 2, 224, "relu"), (w[0] // 2, w[0], 112, "relu"),
                (w[0], w[1], 56, None), (w[1], w[2], 28, None), (w[2], w[3], 14, None)]
    shapes = config.stem_shapes(model)
    return [(s.in_channels, s.out_channels, s.in_side, "hardswish" if i < len(shapes) - 1 else None)
            for i, s in enumerate(shapes)]


def make_conv(gen, c_in, c_out, act, where="bench") -> Conv:
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64) / (9 * c_in) ** 0.5
    return Conv(weight, torch.randn(c_out, generator=gen, dtype=torch.float64), (2, 2), (1, 1), act, where)


def layer_candidates(conv: Conv, side: int, batch: int, gen):
    c_in = conv.weight.shape[1]
    nchw = [torch.randn(batch, c_in, side, side, generator=gen) for _ in range(POOL)]
    cl = [x.contiguous(memory_format=torch.channels_last) for x in nchw]
    w32, b32 = conv.weight.float(), conv.bias.float()
    w_cl = w32.contiguous(memory_format=torch.channels_last)
    packed = cpu.pack_conv_weight(w32)
    k = [3, 3]
    ours = lambda x: stem._kernel_conv(x, packed, b32, conv.weight.shape[0], k, [2, 2], [1, 1], conv.activation)  # noqa: E731
    fns = {"oneDNN": (lambda x: stem._onednn_conv(x, w_cl, b32, (2, 2), (1, 1), conv.activation), cl),
           "ours": (ours, cl)}
    if c_in == 3:
        fns["ours NCHW"] = (ours, nchw)
    ref = reference.apply_activation(torch.nn.functional.conv2d(nchw[0].double(), conv.weight, conv.bias, 2, 1),
                                     conv.activation)
    return fns, ref


def stem_candidates(convs: list[Conv], batch: int, gen):
    images = [torch.randn(batch, 3, 224, 224, generator=gen) for _ in range(POOL)]
    f32, dev = torch.float32, torch.device("cpu")
    return {"oneDNN": (stem.FusedStem(convs, f32, dev, kernel_conv=False), images),
            "ours": (stem.FusedStem(convs, f32, dev, kernel_conv=True), images),
            "optimize's choice": (stem.FusedStem(convs, f32, dev), images)}


def _time(fns, settings, cpu_time):
    with torch.no_grad():
        return timing.time_cpu([timing.Candidate(k, fn, [(x,) for x in pool]) for k, (fn, pool) in fns.items()],
                               settings, cpu_time)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--models", nargs="+", default=["levit_128s", "levit_256", "levit_384", "efficientformer_l1"])
    parser.add_argument("--no-stem", action="store_true", help="per-layer figures only")
    parser.add_argument("--stem-only", action="store_true", help="whole-stem figures only")
    args = parser.parse_args()
    settings = timing.Settings(rounds=args.rounds, round_seconds=0.05, settle_seconds=0.05)
    cpu_time = args.threads == 1
    gen = torch.Generator().manual_seed(0)
    with timing.torch_threads(args.threads):
        print(f"ISA {lk.cpu_isa()}, {args.threads} thread(s), medians of {args.rounds} rounds "
              f"({'CPU' if cpu_time else 'wall'} time)")
        for model in args.models:
            convs = [make_conv(gen, c_in, c_out, act) for c_in, c_out, _, act in layer_shapes(model)]
            for batch in args.batch:
                for conv, (c_in, c_out, side, act) in zip([] if args.stem_only else convs, layer_shapes(model)):
                    fns, ref = layer_candidates(conv, side, batch, gen)
                    with torch.no_grad():
                        errors = {k: tolerances.max_rel_error(fn(pool[0]), ref) for k, (fn, pool) in fns.items()}
                    summary = _time(fns, settings, cpu_time)
                    flops = 2 * batch * (side // 2) ** 2 * c_out * 9 * c_in
                    base = summary["oneDNN"]["median_s"]
                    for name, s in summary.items():
                        t = s["median_s"]
                        print(f"{model:18s} B{batch:<3d} {c_in:3d}->{c_out:<3d} @{side:3d}² {name:10s} "
                              f"{t * 1e6:9.1f} us {flops / t / 1e9:6.1f} GFLOP/s  {base / t:5.2f}x oneDNN  "
                              f"err {errors[name]:.1e}", flush=True)
                if args.no_stem or model.startswith("efficientformer"):
                    continue
                fns = stem_candidates(convs, batch, gen)
                summary = _time(fns, settings, cpu_time)
                base = summary["oneDNN"]["median_s"]
                for name, s in summary.items():
                    print(f"{model:18s} B{batch:<3d} whole stem {name:18s} {s['median_s'] * 1e6:9.1f} us  "
                          f"{base / s['median_s']:5.2f}x oneDNN", flush=True)


if __name__ == "__main__":
    main()
