"""GPU benchmark of the Triton kernels at LeViT-256 shapes (batch 2048, bf16) against the alternatives.

    python benchmarks/bench_gpu_ops.py            # full run, writes benchmarks/results/<gpu-name>.json
    python benchmarks/bench_gpu_ops.py --quick    # smoke run (batch 32, short timing, no max-autotune), no file

- attention (every stage attention and shrink attention of LeViT-256): backend="triton" against the eager
  reference (with its eval-time gathered-bias cache), F.scaled_dot_product_attention with the gathered bias
  materialized (the backend it picks is recorded, and each backend that accepts the inputs is timed too), and
  compiled FlexAttention with a bias-gather score_mod (FORCE_USE_FLEX_ATTENTION for Q_LEN < 128, where Flex would
  otherwise take its decoding kernel). Every candidate computes the same thing: token-major (B, Nq, H·Dv) with
  the Hardswish that precedes LeViT's projection. Target: triton ≥ 2× the best of SDPA and Flex.
- mlp (every MLP of LeViT-256): triton against eager and torch.compile(mode="max-autotune"). Target: ≥ 1.3×.
- linear (the attention projections): triton's fused epilogue against F.linear plus the eager epilogue.

Timing: triton.testing.do_bench (median ms, L2 flushed between runs). Each candidate's output on the first
images is checked against the float64 reference under tolerances.KERNEL_RTOL. Without a CUDA GPU (or with the
triton backend unavailable) the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import levit_kernels  # noqa: E402
from levit import config as levit_config  # noqa: E402
from levit_kernels import reference, tolerances  # noqa: E402

VARIANT = "levit_256"
CHECK_IMAGES = 16
TARGETS = {"attention": 2.0, "mlp": 1.3}


def gpu_file_name() -> str:
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def bench_ms(fn, quick):
    import triton.testing

    return triton.testing.do_bench(fn, warmup=5 if quick else 25, rep=20 if quick else 200, return_mode="median")


def run_candidates(candidates, reference_fn, dtype, quick):
    """{name: {"ms", "rel_err", "ok"} or {"error"}}: each candidate checked on the first images, then timed."""
    ref = reference_fn()
    results = {}
    for name, fn in candidates.items():
        try:
            out = fn()
            torch.cuda.synchronize()
            err = tolerances.max_rel_error(out[:CHECK_IMAGES], ref)
            results[name] = {"ms": bench_ms(fn, quick), "rel_err": err, "ok": err <= tolerances.kernel_rtol(dtype)}
        except Exception as exc:  # an alternative that rejects these inputs is a result, not a crash
            results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(f"    {name:28s} {results[name]}", flush=True)
    return results


def speedup(results, ours, rivals):
    times = [results[r]["ms"] for r in rivals if "ms" in results.get(r, {})]
    if "ms" not in results.get(ours, {}) or not times:
        return None
    return min(times) / results[ours]["ms"]


def token_major(o):
    """(B, H, Nq, Dv) → (B, Nq, H·Dv), Hardswish: what the fused kernel writes."""
    return F.hardswish(o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1))


def sdpa_choice(q, k, v, mask):
    try:
        from torch.nn.attention import SDPBackend

        return SDPBackend(torch._fused_sdp_choice(q, k, v, mask, 0.0, False)).name
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def attention_candidates(q, k, v, biases, r, stride, project=None):
    """Candidates for one attention; ``project`` (shrink) maps x to q first, for the alternatives."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import flex_attention

    gathered = reference.gather_attention_bias(biases, r, stride)  # the model's eval-time cache
    mask = gathered.unsqueeze(0)
    index = reference.attention_bias_index(r, stride, biases.device)
    nq = index.shape[0]

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + biases[h, index[q_idx, kv_idx]].to(score.dtype)

    flex = torch.compile(flex_attention, dynamic=False)
    options = {"FORCE_USE_FLEX_ATTENTION": True} if nq < 128 else None
    queries = (lambda: project()) if project is not None else (lambda: q)
    candidates = {
        "eager": lambda: reference.biased_attention(queries(), k, v, biases, r, stride, None, "hardswish",
                                                    gathered_bias=gathered),
        "sdpa": lambda: token_major(F.scaled_dot_product_attention(queries(), k, v, attn_mask=mask)),
        "flex": lambda: token_major(flex(queries(), k, v, score_mod=score_mod, kernel_options=options)),
    }
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        def forced(backend=backend):
            with sdpa_kernel([backend]):
                return token_major(F.scaled_dot_product_attention(queries(), k, v, attn_mask=mask))
        candidates[f"sdpa[{backend.name}]"] = forced
    return candidates, sdpa_choice(queries(), k, v, mask)


def randn(gen, *shape, dtype, scale=1.0):
    return (torch.randn(*shape, generator=gen, device="cuda") * scale).to(dtype)


def bench_attention(block, batch, dtype, gen, quick):
    h, d, dv, r, s = block.heads, block.key_dim, block.value_dim, block.resolution, block.stride
    nk = r * r
    biases = randn(gen, h, nk, dtype=dtype)
    if block.kind == "attention":
        qkv = randn(gen, batch, nk, h, 2 * d + dv, dtype=dtype)  # the qkv projection's output, viewed per head
        q, k, v = (t.transpose(1, 2) for t in qkv.split([d, d, dv], dim=3))
        ours = {"triton": lambda: levit_kernels.biased_attention(q, k, v, biases, r, s, activation="hardswish",
                                                                 backend="triton")}
        candidates, choice = attention_candidates(q, k, v, biases, r, s)

        def ref():
            return reference.biased_attention(*(t[:CHECK_IMAGES].double() for t in (q, k, v)), biases.double(), r,
                                              s, None, "hardswish")
    else:
        c = block.in_channels
        x = randn(gen, batch, nk, c, dtype=dtype)
        kv = randn(gen, batch, nk, h, d + dv, dtype=dtype)
        k, v = (t.transpose(1, 2) for t in kv.split([d, dv], dim=3))
        wq, bq = randn(gen, h * d, c, dtype=dtype, scale=c ** -0.5), randn(gen, h * d, dtype=dtype)

        def project():
            xs = reference.subsample_tokens(x, r, s)
            return reference.linear(xs, wq, bq).reshape(batch, -1, h, d).transpose(1, 2)

        ours = {"triton": lambda: levit_kernels.shrink_attention(x, wq, bq, k, v, biases, r, s,
                                                                 activation="hardswish", backend="triton")}
        candidates, choice = attention_candidates(None, k, v, biases, r, s, project)

        def ref():
            return reference.shrink_attention(x[:CHECK_IMAGES].double(), wq.double(), bq.double(),
                                              k[:CHECK_IMAGES].double(), v[:CHECK_IMAGES].double(),
                                              biases.double(), r, s, None, "hardswish")
    results = run_candidates({**ours, **candidates}, ref, dtype, quick)
    return {"block": block.kind, "resolution": r, "stride": s, "heads": h, "key_dim": d, "value_dim": dv,
            "sdpa_backend_picked": choice, "results": results,
            "speedup_vs_best_of_sdpa_flex": speedup(results, "triton", ["sdpa", "flex"] +
                                                    [n for n in results if n.startswith("sdpa[")]),
            "speedup_vs_eager": speedup(results, "triton", ["eager"])}


def bench_mlp(block, batch, dtype, gen, quick):
    c, hidden, tokens = block.channels, block.hidden, block.tokens
    x = randn(gen, batch, tokens, c, dtype=dtype)
    w1, b1 = randn(gen, hidden, c, dtype=dtype, scale=c ** -0.5), randn(gen, hidden, dtype=dtype)
    w2, b2 = randn(gen, c, hidden, dtype=dtype, scale=hidden ** -0.5), randn(gen, c, dtype=dtype)
    compiled = torch.compile(reference.mlp, mode="default" if quick else "max-autotune", dynamic=False)
    candidates = {"triton": lambda: levit_kernels.mlp(x, w1, b1, w2, b2, backend="triton"),
                  "eager": lambda: reference.mlp(x, w1, b1, w2, b2),
                  "compile": lambda: compiled(x, w1, b1, w2, b2)}
    results = run_candidates(candidates, lambda: reference.mlp(*(t.double() for t in (x[:CHECK_IMAGES], w1, b1,
                                                                                      w2, b2))), dtype, quick)
    return {"block": "mlp", "tokens": tokens, "channels": c, "hidden": hidden, "results": results,
            "speedup_vs_compile": speedup(results, "triton", ["compile"]),
            "speedup_vs_eager": speedup(results, "triton", ["eager"])}


def bench_linear(name, tokens, c_in, c_out, batch, dtype, gen, quick):
    """qkv: bias only; proj: bias + residual (the attention output already carries the Hardswish)."""
    x = randn(gen, batch, tokens, c_in, dtype=dtype)
    w, b = randn(gen, c_out, c_in, dtype=dtype, scale=c_in ** -0.5), randn(gen, c_out, dtype=dtype)
    res = randn(gen, batch, tokens, c_out, dtype=dtype) if name == "proj" else None
    candidates = {"triton": lambda: levit_kernels.linear(x, w, b, None, res, backend="triton"),
                  "eager": lambda: reference.linear(x, w, b, None, res)}

    def ref():
        return reference.linear(x[:CHECK_IMAGES].double(), w.double(), b.double(), None,
                                None if res is None else res[:CHECK_IMAGES].double())

    results = run_candidates(candidates, ref, dtype, quick)
    return {"block": f"linear/{name}", "tokens": tokens, "in": c_in, "out": c_out, "results": results,
            "speedup_vs_eager": speedup(results, "triton", ["eager"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 32, short timing, no file written")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--out", default=None, help="results file (default benchmarks/results/<gpu>.json)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_ops: skipped: no CUDA GPU")
        return 0
    ok, why = levit_kernels.availability("triton")
    if not ok:
        print(f"bench_gpu_ops: skipped: triton backend unavailable: {why}")
        return 0
    import triton

    batch = args.batch or (32 if args.quick else 2048)
    dtype = torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(0)
    blocks = {}
    for block in levit_config.op_shapes(VARIANT):  # distinct shapes only (the 4 blocks of a stage repeat)
        blocks.setdefault((block.kind, block.resolution, getattr(block, "channels", None)), block)
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "python": platform.python_version(), "variant": VARIANT, "batch": batch, "dtype": str(dtype),
              "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "targets": TARGETS,
              "timing": "triton.testing.do_bench median, ms", "attention": [], "mlp": [], "linear": []}
    for block in blocks.values():
        print(f"{block}", flush=True)
        if block.kind in ("attention", "shrink"):
            report["attention"].append(bench_attention(block, batch, dtype, gen, args.quick))
            if block.kind == "attention":
                for name, (c_in, c_out) in block.linears.items():
                    report["linear"].append(bench_linear(name, block.tokens, c_in, c_out, batch, dtype, gen,
                                                         args.quick))
        else:
            report["mlp"].append(bench_mlp(block, batch, dtype, gen, args.quick))
    att = [a["speedup_vs_best_of_sdpa_flex"] for a in report["attention"]]
    mlp = [m["speedup_vs_compile"] for m in report["mlp"]]
    report["summary"] = {
        "attention_speedup_vs_best_of_sdpa_flex": att, "mlp_speedup_vs_compile": mlp,
        "attention_meets_target": all(s is not None and s >= TARGETS["attention"] for s in att),
        "mlp_meets_target": all(s is not None and s >= TARGETS["mlp"] for s in mlp),
        "all_outputs_within_tolerance": all(r.get("ok", True) for sec in ("attention", "mlp", "linear")
                                            for entry in report[sec] for r in entry["results"].values()),
    }
    print(json.dumps(report["summary"], indent=1))
    if args.quick and args.out is None:
        return 0
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{gpu_file_name()}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"bench_gpu_ops: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
