"""Timing that can be trusted on a noisy machine.

CPU: candidates run interleaved (round r runs every candidate, in an order rotated by r), warm-up excluded, and
each call takes the next input set from a pool, so a kernel never sees the operands the previous call left in
cache. The result is the median over rounds of the mean time per call within a round. Each candidate is then also
timed alone, as many rounds in a block of its own, and the better (lower) of its two medians is kept, both
recorded: interleaving spreads the machine's drift over every candidate alike, but a runtime whose thread pool
lingers after a call (spinning workers) or that loses its warm caches to its neighbours is at its best alone.
GPU: ``triton.testing.do_bench`` (device events, L2 flushed between calls), or CUDA-graph replay for small batches
where launch overhead would dominate, again interleaved over rounds.
"""
from __future__ import annotations

import contextlib
import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch


@dataclass
class Candidate:
    """One implementation under test: ``fn(*inputs)`` with ``inputs`` drawn in turn from ``pool``. ``fn.alone``,
    where fn has one, is the same computation configured for running with nothing after it (e.g. ONNX Runtime with
    its spinning thread pool allowed), used in the candidate's block of its own."""
    name: str
    fn: Callable[..., Any]
    pool: Sequence[tuple]

    def __post_init__(self):
        if not self.pool:
            raise ValueError(f"candidate {self.name!r}: the input pool is empty")
        self._next = itertools.cycle(self.pool)
        self._alone = getattr(self.fn, "alone", None) or self.fn
        self.own_alone = self._alone is not self.fn  # a separate callable for the alone block: warm it up too

    def call(self):
        return self.fn(*next(self._next))

    def call_alone(self):
        return self._alone(*next(self._next))


@dataclass
class Settings:
    rounds: int = 15            # samples per candidate (median over them)
    warmup_calls: int = 3       # per candidate, before any timing
    round_seconds: float = 0.05  # a round runs a candidate at least this long (CPU), so timer noise is small
    settle_seconds: float = 0.2  # idle before each candidate's block of its own (CPU): a pool left spinning by
                                 # the previous block (ORT's, allowed to spin there) goes quiet first

    @classmethod
    def quick(cls) -> "Settings":
        return cls(rounds=2, warmup_calls=1, round_seconds=0.0, settle_seconds=0.0)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _summary(samples: list[float], calls: int, method: str) -> dict:
    ordered = sorted(samples)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {"median_s": statistics.median(ordered), "q1_s": quartiles[0], "q3_s": quartiles[2],
            "min_s": ordered[0], "samples": len(ordered), "calls_per_sample": calls, "method": method}


def _calls_per_round(candidate: Candidate, target_seconds: float) -> int:
    if target_seconds <= 0:
        return 1
    start = time.perf_counter()
    candidate.call()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10_000, round(target_seconds / once)))


def time_cpu(candidates: Sequence[Candidate], settings: Settings, cpu_time: bool = False) -> dict[str, dict]:
    """{name: summary} for CPU candidates, timed interleaved and then each alone; times are seconds per call.

    The summary is that of the lower of the two medians (``method`` says which: "cpu-interleaved/…" or
    "cpu-alone/…"); ``interleaved`` and ``alone`` hold both summaries in full.

    ``cpu_time``: rank by the process's CPU time instead of wall time. For single-threaded candidates on a shared
    machine this is the better estimate of the wall time on an idle one: time spent descheduled while other
    processes run does not count, while work on any thread of the process still does. Wall medians are kept
    beside it (``wall_median_s``). With several threads wall time is the only honest clock (idle workers spin).
    """
    for c in candidates:
        for _ in range(settings.warmup_calls):
            c.call()
    calls = {c.name: _calls_per_round(c, settings.round_seconds) for c in candidates}
    interleaved = {c.name: ([], []) for c in candidates}  # (wall, cpu) samples
    for r in range(settings.rounds):
        shift = r % len(candidates)
        for c in list(candidates[shift:]) + list(candidates[:shift]):
            _sample(c.call, calls[c.name], *interleaved[c.name])
    alone = {}
    for c in candidates:
        alone[c.name] = ([], [])
        time.sleep(settings.settle_seconds)
        if c.own_alone:
            for _ in range(settings.warmup_calls):
                c.call_alone()
        for _ in range(settings.rounds):
            _sample(c.call_alone, calls[c.name], *alone[c.name])
    out = {}
    for c in candidates:
        both = {how: _clock_summary(*samples[c.name], calls[c.name], f"cpu-{how}", cpu_time)
                for how, samples in (("interleaved", interleaved), ("alone", alone))}
        best = min(both.values(), key=lambda summary: summary["median_s"])
        out[c.name] = {**best, **both}
    return out


def _sample(call: Callable[[], Any], n: int, wall: list, cpu: list):
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    cpu.append((time.process_time() - start_cpu) / n)
    wall.append((time.perf_counter() - start) / n)


def _clock_summary(wall: list, cpu: list, calls: int, method: str, cpu_time: bool) -> dict:
    if cpu_time:
        return {**_summary(cpu, calls, f"{method}/process-cpu-time"), "wall_median_s": statistics.median(wall)}
    return _summary(wall, calls, f"{method}/wall")


def cuda_time(fn: Callable[[], Any], budget_ms: float = 50.0) -> float:
    """Median seconds per call of ``fn`` on the current CUDA device, over about ``budget_ms`` of calls (device
    events; triton's do_bench also flushes L2 between calls)."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        return do_bench(fn, warmup=max(1.0, budget_ms / 4), rep=max(1.0, budget_ms), return_mode="median") / 1e3
    fn()
    torch.cuda.synchronize()
    times: list[float] = []
    while not times or sum(times) * 1e3 < budget_ms and len(times) < 1000:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _graph_replayer(candidate: Candidate) -> Callable[[], Any]:
    """Capture one call of the candidate (on its first input set) in a CUDA graph; return the replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # allocator and lazy-init warm-up outside the capture
            candidate.fn(*candidate.pool[0])
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        candidate.fn(*candidate.pool[0])
    return graph.replay


def time_cuda(candidates: Sequence[Candidate], settings: Settings, use_graphs: bool) -> dict[str, dict]:
    """{name: summary} for GPU candidates, interleaved over rounds; CUDA graphs when ``use_graphs`` (a candidate
    that cannot be captured, e.g. one that syncs with the host, is timed without and says so)."""
    runners, methods = {}, {}
    for c in candidates:
        for _ in range(settings.warmup_calls):
            c.call()
        runners[c.name], methods[c.name] = c.call, "cuda-do_bench"
        if use_graphs:
            try:
                runners[c.name], methods[c.name] = _graph_replayer(c), "cuda-graph"
            except RuntimeError:
                torch.cuda.synchronize()
    torch.cuda.synchronize()
    budget_ms = max(2.0, settings.round_seconds * 1e3)
    samples: dict[str, list[float]] = {c.name: [] for c in candidates}
    for r in range(settings.rounds):
        shift = r % len(candidates)
        for c in list(candidates[shift:]) + list(candidates[:shift]):
            samples[c.name].append(cuda_time(runners[c.name], budget_ms))
    return {c.name: _summary(samples[c.name], 1, methods[c.name]) for c in candidates}


def time_candidates(candidates: Sequence[Candidate], device: str, settings: Settings,
                    use_graphs: bool = False, cpu_time: bool = False) -> dict[str, dict]:
    if device == "cuda":
        return time_cuda(candidates, settings, use_graphs)
    return time_cpu(candidates, settings, cpu_time)
