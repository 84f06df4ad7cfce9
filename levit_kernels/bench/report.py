"""Human-readable output of benchmark results: the table, the speedup chart, and the comparison of two files."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional, Sequence

from levit_kernels.bench.results import measurement_key, measurements, timed


def format_grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table; columns whose cells all look numeric are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def numeric(i):
        return rows and all(r[i][:1].isdigit() or r[i][:1] in "-—" or r[i] == "skip" for r in rows)

    right = [numeric(i) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_time(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def format_speedup(ratio: Optional[float]) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def speedup(m: dict, baseline: str) -> Optional[float]:
    """How many times faster the subject runs than ``baseline`` on this case (None if either was not timed)."""
    subject, other = m["candidates"].get(m["subject"], {}), m["candidates"].get(baseline, {})
    if not (timed(subject) and timed(other)):
        return None
    return other["median_s"] / subject["median_s"]


def _baselines(ms: Sequence[dict]) -> list[str]:
    names: list[str] = []
    for m in ms:
        names += [n for n in m["candidates"] if n != m["subject"] and n not in names]
    return names


def candidate_label(ms: Sequence[dict], name: str) -> str:
    """``name``, with the precision it ran in where that is not its measurements' dtype (a baseline such as
    OpenVINO in its default precision): "openvino-default (bfloat16)"."""
    other = sorted({c["precision"] for c in (m["candidates"].get(name, {}) for m in ms)
                    for m in ms if c.get("precision") not in (None, m["dtype"])})
    return name if not other else f"{name} ({'/'.join(other)})"


def rate_cell(m: dict, name: str) -> str:
    c = m["candidates"].get(name, {})
    if not timed(c):
        return "skip"
    flag = "" if c.get("ok", True) else "!"
    if m["kind"] == "e2e":
        return f"{m['batch'] / c['median_s']:,.1f}{flag}"
    return format_time(c["median_s"]) + flag


def format_table(run: dict, kind: str) -> str:
    """The ``kind`` ("op" or "e2e") measurements of ``run`` as a table: time (µs per call) or images/s, then
    achieved GFLOP/s and % of the measured peak for the subject, then each baseline with the subject's speedup."""
    ms = [m for m in run["measurements"] if m["kind"] == kind]
    if not ms:
        return ""
    unit = "img/s" if kind == "e2e" else "µs"
    subject = ms[0]["subject"]
    peak = (run.get("peak") or {}).get("gflops")
    baselines = _baselines(ms)
    headers = (["model", "batch"] if kind == "e2e" else ["model", "op", "block", "shape", "×n"])
    headers += [f"{subject} {unit}", "GFLOP/s", "% peak"]
    for b in baselines:
        headers += [f"{candidate_label(ms, b)} {unit}", f"vs {b}"]
    rows = []
    for m in ms:
        row = [m["model"], str(m["batch"])] if kind == "e2e" else [m["model"], m["op"], m["block"], m["label"],
                                                                   str(m["count"])]
        s = m["candidates"][m["subject"]]
        gflops = m["flops"] / s["median_s"] / 1e9 if timed(s) else None
        row += [rate_cell(m, m["subject"]), "—" if gflops is None else f"{gflops:.1f}",
                "—" if gflops is None or not peak else f"{100 * gflops / peak:.0f}%"]
        for b in baselines:
            row += [rate_cell(m, b), format_speedup(speedup(m, b))]
        rows.append(row)
    return format_grid(headers, rows)


def format_notes(run: dict) -> str:
    """Peak used for "% peak", skipped candidates (with reasons, once each), and accuracy flags."""
    lines = []
    peak = run.get("peak")
    if peak:
        lines.append(f"peak: {peak['gflops']:.1f} GFLOP/s — {peak['label']}")
    seen = set()
    for m in run["measurements"]:
        for name, c in m["candidates"].items():
            if "skipped" in c and (name, c["skipped"]) not in seen:
                seen.add((name, c["skipped"]))
                lines.append(f"skipped {name}: {c['skipped']}")
            elif timed(c) and not c.get("ok", True):
                lines.append(f"! {name} on {m['model']} {m['op']} {m['block']}: max rel error "
                             f"{c['max_rel_error']:.2e} > tolerance {c['tolerance']:.1e}")
    return "\n".join(lines)


def format_run(run: dict) -> str:
    s = run["settings"]
    title = (f"{run['command']}\n{s['device']} · {s['dtype']} · {s['threads']} thread(s) · backend {s['backend']}"
             f" · preset {s.get('preset') or '-'}")
    parts = [title] + [t for t in (format_table(run, "e2e"), format_table(run, "op"), format_notes(run)) if t]
    return "\n\n".join(parts)


# ---- comparing two result files --------------------------------------------------------------------------

def _describe(data: dict) -> str:
    fp = data["runs"][-1]["fingerprint"] if data["runs"] else {}
    commit = (fp.get("git_commit") or "?")[:12]
    return f"{data['hardware_id']} (commit {commit}, {fp.get('date', '?')}, torch {fp.get('software', {}).get('torch')})"


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    """Every case and candidate timed in both files: the two times and B's speed relative to A's (>1: B faster)."""
    index_a = {measurement_key(m): m for _, m in measurements(a)}
    index_b = {measurement_key(m): m for _, m in measurements(b)}
    common = [k for k in index_a if k in index_b]
    rows = []
    for key in common:
        ma, mb = index_a[key], index_b[key]
        kind, model, op, block, _, batch, dtype, device, threads = key
        for name in [n for n in ma["candidates"] if n in mb["candidates"]]:
            ca, cb = ma["candidates"][name], mb["candidates"][name]
            if not (timed(ca) and timed(cb)):
                continue
            speed = f"{ca['median_s'] / cb['median_s']:.2f}×"
            rows.append([model, op, block, ma["label"], str(batch), dtype, str(threads), name,
                         format_time(ca["median_s"]), format_time(cb["median_s"]), speed])
    lines = [f"A = {name_a}: {_describe(a)}", f"B = {name_b}: {_describe(b)}", ""]
    if rows:
        lines.append(format_grid(["model", "op", "block", "shape", "batch", "dtype", "threads", "candidate", "A µs",
                                  "B µs", "B speed vs A"], rows))
    else:
        lines.append("no case was timed in both files")
    only_a, only_b = len(index_a) - len(common), len(index_b) - len(common)
    if only_a or only_b:
        lines.append(f"\ncases only in A: {only_a}; only in B: {only_b}")
    return "\n".join(lines)


# ---- chart ---------------------------------------------------------------------------------------------

def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def chart_series(data: dict) -> list[tuple[str, list[str], dict[str, list[Optional[float]]]]]:
    """One panel per (kind, device, dtype, batch, threads, and for end to end the input size): (title, x labels,
    {baseline: speedups}). End-to-end panels have one entry per model; op panels one per (model, op), the geometric
    mean over its shapes."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for _, m in measurements(data):
        size = m["label"] if m["kind"] == "e2e" else ""
        groups[(m["kind"], m["device"], m["dtype"], m["batch"], m["threads"], size)].append(m)
    panels = []
    e2e_first = sorted(groups.items(), key=lambda kv: kv[0][0] != "e2e")
    for (kind, device, dtype, batch, threads, size), ms in e2e_first:
        entries: dict[str, list[dict]] = defaultdict(list)
        for m in ms:
            entries[m["model"] if kind == "e2e" else f"{m['model']}\n{m['op']}"].append(m)
        series = {}
        for b in _baselines(ms):
            values = []
            for group in entries.values():
                ratios = [r for r in (speedup(m, b) for m in group) if r is not None]
                values.append(_geomean(ratios) if ratios else None)
            if any(v is not None for v in values):
                series[b] = values
        what = f"end to end, {size}" if kind == "e2e" else "per op (geomean over shapes)"
        title = f"{ms[0]['subject']} speedup, {what} · {device} {dtype} · batch {batch} · {threads} thread(s)"
        panels.append((title, list(entries), series))
    return panels


def write_chart(data: dict, path: str) -> Optional[str]:
    """PNG of every panel of :func:`chart_series`; returns the path, or None when nothing was comparable."""
    panels = [p for p in chart_series(data) if p[2]]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.6 * max(len(p[1]) for p in panels) + 3),
                                                      3.6 * len(panels)), squeeze=False)
    for ax, (title, labels, series) in zip(axes[:, 0], panels):
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
            heights = [v if v is not None else 0 for v in values]
            bars = ax.bar(xs, heights, width, label=f"vs {name}")
            for bar, v in zip(bars, values):
                if v is not None:
                    ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=6)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("speedup (×)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(data["hardware_id"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- markdown for the README ---------------------------------------------------------------------------------

def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _md_e2e(run: dict, ms: list[dict]) -> str:
    peak = (run.get("peak") or {}).get("gflops")
    baselines = _baselines(ms)
    headers = (["model", "batch", f"{ms[0]['subject']} img/s", "% peak"]
               + [f"{candidate_label(ms, b)} img/s (×)" for b in baselines])
    rows = []
    for m in ms:
        s = m["candidates"][m["subject"]]
        frac = f"{100 * m['flops'] / s['median_s'] / 1e9 / peak:.0f}%" if timed(s) and peak else "—"
        rows.append([m["model"], str(m["batch"]), rate_cell(m, m["subject"]), frac]
                    + [f"{rate_cell(m, b)} ({format_speedup(speedup(m, b))})" for b in baselines])
    return _md_table(headers, rows)


def _md_ops(ms: list[dict]) -> str:
    """Per (model, op): the subject's geometric-mean speedup over each baseline across the op's shapes."""
    baselines = _baselines(ms)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for m in ms:
        groups[(m["model"], m["op"])].append(m)
    rows = []
    for (model, op), group in groups.items():
        cells = []
        for b in baselines:
            ratios = [r for r in (speedup(m, b) for m in group) if r is not None]
            cells.append(format_speedup(_geomean(ratios)) if ratios else "—")
        rows.append([model, op, str(len(group))] + cells)
    return _md_table(["model", "op", "shapes"] + [f"vs {b} (geomean)" for b in baselines], rows)


def format_markdown(data: dict, chart: Optional[str] = None) -> str:
    """The README section of one results file: per run, its command, end-to-end table and per-op summary."""
    out = [f"### `{data['hardware_id']}`"]
    for run in data["runs"]:
        fp, settings = run["fingerprint"], run["settings"]
        cpu, gpu = fp.get("cpu", {}), fp.get("gpu")
        usable = cpu.get("cores_usable", cpu.get("cores"))  # older files have no affinity record
        pinned = f" (pinned to {usable})" if usable != cpu.get("cores") else ""
        uarch = f" ({cpu['microarchitecture']})" if cpu.get("microarchitecture") else ""  # older files lack it
        machine = gpu["name"] if settings["device"] == "cuda" and gpu else \
            f"{cpu.get('model')}{uarch}, {cpu.get('isa_active') or cpu.get('isa_detected')}, {cpu.get('cores')} " \
            f"cores{pinned}"
        out.append(f"`{run['command']}` — {machine}; torch {fp.get('software', {}).get('torch')}, commit "
                   f"{(fp.get('git_commit') or '?')[:12]}, {fp.get('date')}, load average at start "
                   f"{(fp.get('load_average') or ['?'])[0]}")
        e2e_ms = [m for m in run["measurements"] if m["kind"] == "e2e"]
        op_ms = [m for m in run["measurements"] if m["kind"] == "op"]
        if e2e_ms:
            out.append(_md_e2e(run, e2e_ms))
        if op_ms:
            out.append(_md_ops(op_ms))
        notes = format_notes(run)
        if notes:
            out.append("\n".join(f"- {line}" for line in notes.splitlines()))
    if chart:
        out.append(f"![{data['hardware_id']} speedups]({chart})")
    return "\n\n".join(out)
