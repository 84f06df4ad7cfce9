"""pytest-benchmark suites of levit-kernels (bench_*.py files in this folder).

Two modes:
- full (benchmarks enabled, the default of ``pytest benchmarks/``): every LeViT variant's op shapes (from
  levit.config), the paper protocol (CPU 1 thread batch 16 fp32 / GPU bf16 batch 2048) and the latency protocol
  (batch 1, all threads), every backend that can run here and every baseline. Hours on a small CPU: narrow with
  ``-k`` (e.g. ``-k "levit_256 and paper"``).
- smoke (``--benchmark-disable``, or LEVIT_BENCH_MODE=smoke): LeViT-128S, one shape per op, batch 1, eager
  baseline only; each benchmark runs once and its output is checked against the float64 reference, so the suites
  cannot rot. This is the mode of the test command.

They never fail on speed: a benchmark fails only if its candidate breaks or computes a wrong result. For timings
interleaved across candidates in one run (what the committed results use), run ``levit-kernels bench``.
"""
import os
import time

import pytest
import torch

from levit_kernels.bench import command, hardware, runner
from levit_kernels.bench.cases import Unavailable
from levit_kernels.tolerances import max_rel_error

SMOKE_MODEL = "levit_128s"
SMOKE_BASELINES = ("eager",)
ROUND_BUDGET_S = 2.0  # rounds per benchmark ≈ this much time over one call's (5 to 100 rounds)


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py here as test modules (pytest's default pattern is test_*.py)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def bench_mode(config) -> str:
    forced = os.environ.get("LEVIT_BENCH_MODE")
    if forced in ("smoke", "full"):
        return forced
    return "smoke" if config.getoption("benchmark_disable", default=False) else "full"


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def protocols(device: str, mode: str) -> list[tuple[str, str, int]]:
    """(protocol name, dtype name, threads) per preset of ``levit-kernels bench``."""
    names = ["latency"] if mode == "smoke" else list(command.PRESETS)
    out = []
    for name in names:
        preset = command.PRESETS[name][device]
        out.append((name, preset["dtype"], preset["threads"] or hardware.cpu_cores()))
    return out


def batch_for(protocol: str, device: str, model: str, mode: str) -> int:
    if mode == "smoke":
        return 1
    preset = command.PRESETS[protocol][device]
    return preset["batch_overrides"].get(model, preset["batch"])


def subjects(device: str, mode: str) -> list[str]:
    """Candidate names of the levit-kernels backends timed on ``device`` (unavailable ones skip at run time)."""
    backends = (["reference", "cpu"] if mode == "smoke" else ["cpu"]) if device == "cpu" else ["triton"]
    return [f"levit_kernels[{b}]" for b in backends]


def models(mode: str) -> list[str]:
    from levit.config import MODEL_NAMES

    return [SMOKE_MODEL] if mode == "smoke" else list(MODEL_NAMES)


def parametrize_candidates(metafunc, argname: str, cases_with_ids, baselines) -> None:
    """Parametrize ``argname``, "candidate" and "baselines": each (case, id) once per subject and baseline, so
    the candidates of one case sit side by side in pytest-benchmark's group of that case."""
    params, ids = [], []
    for case, case_id in cases_with_ids:
        for candidate in subjects(case.device, bench_mode(metafunc.config)) + list(baselines):
            params.append((case, candidate, baselines))
            ids.append(f"{case_id}-{candidate}")
    metafunc.parametrize(f"{argname},candidate,baselines", params, ids=ids)


def run_candidate(benchmark, case, candidate: str, baselines, seed: int = 0):
    """Benchmark ``candidate`` on ``case`` with rotating inputs; check its output once against the float64
    reference. Skips (with the reason) a candidate that cannot run here."""
    backend = candidate[len("levit_kernels["):-1] if candidate.startswith("levit_kernels[") else "reference"
    if candidate.startswith("levit_kernels["):
        from levit_kernels.backends import availability

        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"backend {backend} unavailable: {why}")
    setup = runner.case_setup(case, backend, set(baselines) | {"eager"}, seed)
    spec = next((s for s in setup.specs if s.name == candidate), None)
    if spec is None:
        pytest.skip(f"{candidate} does not apply to {case.op} on {case.device}")
    try:
        fn = spec.build()
    except Unavailable as exc:
        pytest.skip(f"{candidate}: {exc}")
    gen = torch.Generator().manual_seed(seed)
    pool = runner.input_pool(case, gen)
    state = {"i": 0}

    def next_inputs():
        state["i"] += 1
        return pool[state["i"] % len(pool)], {}

    def call(*args):
        out = fn(*args)
        if case.device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.group = (f"{runner.model_name(case.model)} {case.op} {case.block} batch{case.batch} "
                       f"t{case.threads} {case.dtype}")
    benchmark.extra_info.update({"flops": case.flops, "label": case.label, "count": case.count})
    with runner.timing.torch_threads(case.threads):
        try:
            start = time.perf_counter()
            out = call(*pool[0])  # compile / prepare outside the timing
            _check_output(setup, candidate, out, pool[0], benchmark.group)
            once = time.perf_counter() - start
        except NotImplementedError as exc:
            pytest.skip(f"{candidate}: {exc}")
        rounds = max(5, min(100, int(ROUND_BUDGET_S / max(once, 1e-6))))
        benchmark.pedantic(call, setup=next_inputs, rounds=rounds, warmup_rounds=2, iterations=1)


def _check_output(setup, candidate, out, inputs, where):
    """The candidate's output against the float64 reference, under the tolerance the results file uses."""
    truth = setup.reference(*inputs)
    error = max_rel_error(setup.compared(out), truth)
    errors = {candidate: error}
    if setup.tolerance(candidate, errors) is None and candidate != "eager":
        # low-precision end to end: the bound is a multiple of the eager model's own error in that precision
        eager = next(s for s in setup.specs if s.name == "eager").build()
        errors["eager"] = max_rel_error(setup.compared(eager(*inputs)), truth)
    tolerance = setup.tolerance(candidate, errors)
    if tolerance is None:  # the eager low-precision model is the yardstick itself: only require finite logits
        assert error < float("inf"), f"{candidate} on {where}: non-finite output"
        return
    assert error <= tolerance, f"{candidate} on {where}: max rel error {error:.2e} > tolerance {tolerance:.1e}"
