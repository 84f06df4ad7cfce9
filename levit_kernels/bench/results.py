"""The results file: ``benchmarks/results/<hardware-id>.json``, one per machine, holding its latest measurements.

Layout (``schema`` = SCHEMA)::

    {"schema": ..., "hardware_id": ...,
     "runs": [{"command": str, "fingerprint": {...}, "settings": {...}, "peak": {...},
               "measurements": [{"kind": "op"|"e2e", "model", "op", "block", "count", "shape", "label", "batch",
                                 "dtype", "device", "threads", "flops", "subject",
                                 "candidates": {name: {"median_s", "q1_s", "q3_s", "min_s", "samples",
                                                       "calls_per_sample", "method", "max_rel_error",
                                                       "tolerance", "ok", "precision",
                                                       "interleaved": {...}, "alone": {...}}
                                               | {"skipped": reason}}}]}]}

A CPU candidate's top-level timing is the better (lower median) of its two summaries, timed interleaved with the
others and alone in a block of its own (``method`` says which); ``precision`` is what it computed in (a baseline
may differ from the case's dtype: OpenVINO's default is bf16 on AVX-512 BF16 CPUs). Older files lack both.

Saving a run into an existing file replaces the older measurements of the same case (same kind, model, op,
block, batch, dtype, device, threads) and drops runs left empty, so the file holds the latest of everything.
"""
from __future__ import annotations

import json
import os
from typing import Iterable

SCHEMA = "levit-kernels-bench/1"
_RUN_KEYS = ("command", "fingerprint", "settings", "peak", "measurements")
_MEASUREMENT_KEYS = ("kind", "model", "op", "block", "count", "shape", "label", "batch", "dtype", "device",
                     "threads", "flops", "subject", "candidates")
_TIMED_KEYS = ("median_s", "q1_s", "q3_s", "min_s", "samples", "method")


class ResultsError(ValueError):
    """A results file that does not follow the schema; the message names the file and the problem."""


def measurement_key(m: dict) -> tuple:
    # The shape belongs to the case: the detection preset's 448x800 batch-1 runs are not the latency preset's 224
    # batch-1 runs and must not supersede them.
    return (m["kind"], m["model"], m["op"], m["block"], json.dumps(m["shape"], sort_keys=True), m["batch"],
            m["dtype"], m["device"], m["threads"])


def validate(data: dict, source: str = "results") -> dict:
    """Check ``data`` against the schema; return it or raise ResultsError naming what is wrong."""
    def need(cond, what):
        if not cond:
            raise ResultsError(f"{source}: {what}")

    need(isinstance(data, dict), f"expected a JSON object, got {type(data).__name__}")
    need(data.get("schema") == SCHEMA, f"schema must be {SCHEMA!r}, got {data.get('schema')!r}")
    need(isinstance(data.get("hardware_id"), str), "missing 'hardware_id'")
    need(isinstance(data.get("runs"), list), "'runs' must be a list")
    for i, run in enumerate(data["runs"]):
        missing = [k for k in _RUN_KEYS if k not in run]
        need(not missing, f"run {i} lacks {missing}")
        for j, m in enumerate(run["measurements"]):
            missing = [k for k in _MEASUREMENT_KEYS if k not in m]
            need(not missing, f"run {i} measurement {j} lacks {missing}")
            need(m["subject"] in m["candidates"], f"run {i} measurement {j}: subject {m['subject']!r} "
                                                  f"is not among its candidates")
            for name, c in m["candidates"].items():
                if "skipped" in c:
                    need(isinstance(c["skipped"], str), f"run {i} measurement {j} {name}: 'skipped' not a reason")
                    continue
                missing = [k for k in _TIMED_KEYS if k not in c]
                need(not missing, f"run {i} measurement {j} candidate {name!r} lacks {missing}")
                need(c["median_s"] > 0, f"run {i} measurement {j} candidate {name!r}: median_s must be > 0")
    return data


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    return validate(data, path)


def merge(existing: dict | None, hardware_id: str, run: dict) -> dict:
    """``existing`` (or a new file) with ``run`` appended and superseded measurements removed from older runs."""
    data = existing or {"schema": SCHEMA, "hardware_id": hardware_id, "runs": []}
    if data["hardware_id"] != hardware_id:
        raise ResultsError(f"results for {data['hardware_id']!r} cannot take a run from {hardware_id!r}")
    fresh = {measurement_key(m) for m in run["measurements"]}
    kept = []
    for old in data["runs"]:
        old = dict(old, measurements=[m for m in old["measurements"] if measurement_key(m) not in fresh])
        if old["measurements"]:
            kept.append(old)
    return {**data, "runs": kept + [run]}


def save(path: str, data: dict) -> None:
    validate(data, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def measurements(data: dict) -> Iterable[tuple[dict, dict]]:
    """(run, measurement) for every measurement in the file, oldest run first."""
    for run in data["runs"]:
        for m in run["measurements"]:
            yield run, m


def timed(candidate: dict) -> bool:
    return "median_s" in candidate
