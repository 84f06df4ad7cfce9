"""Runs a benchmark plan: builds each case's candidates, checks their outputs once against the float64 reference,
times them interleaved, and collects the measurements of one run (see :mod:`levit_kernels.bench.results`)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

import torch

from levit_kernels import allocator, tolerances
from levit_kernels.bench import cases as op_cases_mod
from levit_kernels.bench import e2e, hardware, peak, report, timing
from levit_kernels.bench.cases import Unavailable

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# CUDA graphs replace per-launch host overhead at batches this small, where it would dominate the timing.
GRAPH_MAX_BATCH = 16


@dataclass
class Plan:
    models: list                 # variant names (or levit.config.LeViTSpec objects, for tests)
    ops: list                    # subset of cases.OPS + ("e2e",)
    device: str                  # "cpu" or "cuda"
    dtype: torch.dtype
    backend: str                 # resolved backend name: "reference", "cpu" or "triton"
    threads: int
    batch: Callable[[str], int]  # batch size per variant name
    baselines: Optional[set] = None  # None: all that apply
    quick: bool = False
    seed: int = 0
    img_size: object = 224       # an int S or (H, W) (a non-square size: end to end only)
    num_classes: int = 1000
    settings: dict = field(default_factory=dict)  # extra fields recorded with the run (preset, requested backend)


def model_name(model) -> str:
    return model if isinstance(model, str) else model.name


def _levit(model) -> bool:
    from levit.config import MODEL_NAMES

    return not isinstance(model, str) or model in MODEL_NAMES


def build_cases(plan: Plan) -> list:
    out = []
    for model in plan.models:
        batch = plan.batch(model_name(model))
        if "e2e" in plan.ops:
            out.append(e2e.EndToEndCase(model, batch, plan.dtype, plan.device, plan.threads, plan.img_size,
                                        plan.num_classes))
        wanted = [op for op in plan.ops if op != "e2e"]
        if wanted and _levit(model):  # op shapes come from LeViT's config; the other families time end to end
            out += op_cases_mod.op_cases(model, wanted, batch, plan.dtype, plan.device, plan.threads, plan.img_size)
    if "flash" in plan.ops:
        out += op_cases_mod.flash_cases(plan.dtype, plan.device, plan.threads)
    return out


def case_setup(case, backend: str, baselines: Optional[set] = None, seed: int = 0):
    """The :class:`~levit_kernels.bench.cases.CaseSetup` of an op or end-to-end case."""
    if case.kind == "e2e":
        return e2e.e2e_candidates(case, backend, baselines, seed)
    return op_cases_mod.op_candidates(case, backend, baselines)


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def _failure(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"failed: {type(exc).__name__}: {text[:300]}"


def _cache_bytes() -> int:
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size", encoding="ascii") as f:
            text = f.read().strip()
        return int(text[:-1]) * {"K": 2**10, "M": 2**20}[text[-1]]
    except (OSError, ValueError, KeyError):
        return 32 * 2**20


def input_pool(case, gen: torch.Generator, first: Optional[tuple] = None) -> list[tuple]:
    """Independent input sets for ``case``, enough that rotating them defeats the caches (see cases.pool_size)."""
    first = first if first is not None else case.make_inputs(gen)
    count = op_cases_mod.pool_size(op_cases_mod.tensor_bytes(first), case.device, _cache_bytes())
    return [first] + [case.make_inputs(gen) for _ in range(count - 1)]


def measure_case(case, plan: Plan, gen: torch.Generator) -> dict:
    """One measurement record: every candidate of ``case`` checked, then timed (or skipped with the reason)."""
    setup = case_setup(case, plan.backend, plan.baselines, plan.seed)
    first = case.make_inputs(gen)
    pool = input_pool(case, gen, first)
    truth = setup.reference(*first)
    entries, errors, precisions, runnable = {}, {}, {}, []
    dtype = str(case.dtype).replace("torch.", "")
    for spec in setup.specs:
        try:
            fn = spec.build()
            out = fn(*first)  # the first call compiles/prepares; it is never timed
            _sync(case.device)
        except Unavailable as exc:
            entries[spec.name] = {"skipped": str(exc)}
            continue
        except Exception as exc:  # a candidate that breaks is reported in the results, not fatal to the run
            entries[spec.name] = {"skipped": _failure(exc)}
            continue
        errors[spec.name] = tolerances.max_rel_error(setup.compared(out), truth)
        precisions[spec.name] = getattr(fn, "precision", dtype)  # a baseline may compute in another precision
        runnable.append(timing.Candidate(spec.name, fn, pool))
    for name, err in errors.items():
        # A baseline that ran in another precision than the case's is recorded, not held to the case's tolerance.
        tol = setup.tolerance(name, errors) if precisions[name] == dtype else None
        entries[name] = {"max_rel_error": err, "tolerance": tol, "ok": tol is None or err <= tol,
                         "precision": precisions[name]}
    settings = timing.Settings.quick() if plan.quick else timing.Settings()
    if runnable:
        timed = timing.time_candidates(runnable, case.device, settings,
                                       use_graphs=case.device == "cuda" and case.batch <= GRAPH_MAX_BATCH,
                                       cpu_time=case.threads == 1)
        for name, summary in timed.items():
            entries[name] = {**summary, **entries[name]}
    subject = setup.specs[0].name
    ordered = {s.name: entries[s.name] for s in setup.specs}
    return {"kind": case.kind, "model": model_name(case.model), "op": case.op, "block": case.block,
            "count": case.count, "shape": case.shape, "label": case.label, "batch": case.batch,
            "dtype": dtype, "device": case.device, "threads": case.threads,
            "flops": case.flops, "subject": subject, "candidates": ordered}


def progress_line(i: int, n: int, m: dict, seconds: float) -> str:
    """"[i/n] model op block (shape, batch): subject time; each baseline's time (subject's speedup) [seconds]"."""
    unit = "img/s" if m["kind"] == "e2e" else "µs"
    parts = []
    for name in m["candidates"]:
        cell = report.rate_cell(m, name)
        ratio = report.speedup(m, name) if name != m["subject"] else None
        parts.append(f"{name} {cell}" + ("" if cell == "skip" else f" {unit}")
                     + ("" if ratio is None else f" ({report.format_speedup(ratio)})"))
    return (f"[{i}/{n}] {m['model']} {m['op']} {m['block']} ({m['label']}, batch {m['batch']}): "
            f"{'; '.join(parts)} [{seconds:.0f} s]")


def run(plan: Plan, command: str, progress: bool = True) -> dict:
    """Measure every case of ``plan``; return the run record (fingerprint, settings, peak, measurements).
    ``progress``: one line per case on stderr."""
    log: Optional[TextIO] = sys.stderr if progress else None
    cases = build_cases(plan)
    gen = torch.Generator().manual_seed(plan.seed)
    # Every candidate in this process reuses freed memory rather than faulting in its large tensors on each call,
    # as ONNX Runtime's and OpenVINO's own arenas do (levit_kernels/allocator.py: 1.04-1.06x on LeViT-384 and
    # T2T-ViT-14 at batch 16, Zen 5); recorded in the settings.
    heap_reuse = allocator.keep_freed_memory()
    with timing.torch_threads(plan.threads):
        if log:
            print(f"levit-kernels bench: {len(cases)} case(s); measuring the {plan.device} peak…", file=log,
                  flush=True)
        machine_peak = peak.measure_peak(plan.device, plan.dtype, plan.threads, plan.quick)
        measured = []
        for i, case in enumerate(cases, 1):
            start = time.perf_counter()
            measured.append(measure_case(case, plan, gen))
            if log:
                print(progress_line(i, len(cases), measured[-1], time.perf_counter() - start), file=log,
                      flush=True)
    settings = {"device": plan.device, "dtype": str(plan.dtype).replace("torch.", ""), "backend": plan.backend,
                "threads": plan.threads, "models": [model_name(m) for m in plan.models], "ops": list(plan.ops),
                "baselines": sorted(plan.baselines) if plan.baselines is not None else None,
                "quick": plan.quick, "seed": plan.seed, "keep_freed_memory": heap_reuse, **plan.settings}
    return {"command": command, "fingerprint": hardware.fingerprint(), "settings": settings,
            "peak": machine_peak, "measurements": measured}
