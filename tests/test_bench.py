"""The benchmark framework (levit_kernels.bench): fingerprint, timing, cases, results file, table, compare, and a
quick end-to-end `levit-kernels bench` run into a temporary folder. Nothing here asserts on speed."""
import argparse
import copy
import dataclasses
import json
import os
import re
import time

import pytest
import torch

from levit_kernels import ops, tolerances
from levit_kernels.bench import cases, command, e2e, hardware, peak, report, results, runner, timing

CPU_ID = re.compile(r"^cpu-[a-z0-9-]+-(avx512|avx2|neon|scalar|unknown)-\d+c$")


# ---- hardware ------------------------------------------------------------------------------------------------

def test_fingerprint_describes_this_machine():
    fp = hardware.fingerprint()
    assert fp["cpu"]["model"] and fp["cpu"]["cores"] >= 1
    assert fp["cpu"]["isa_detected"] in ("avx512", "avx2", "neon", "scalar")
    assert fp["software"]["torch"] == torch.__version__
    assert fp["gpu"] is None or fp["gpu"]["name"]
    assert re.match(r"^\d{4}-\d\d-\d\dT", fp["date"])
    assert fp["git_commit"] is None or re.match(r"^[0-9a-f]{40}(\+dirty)?$", fp["git_commit"])
    assert CPU_ID.match(hardware.hardware_id(fp))
    json.dumps(fp)  # must be serialisable as is


@pytest.mark.parametrize("model,uarch,isa,cores,expected", [
    ("Intel(R) Xeon(R) Gold 6138 CPU @ 2.00GHz", "skylake-sp", "avx512", 1, "cpu-intel-xeon-gold-6138-avx512-1c"),
    ("AMD EPYC 7763 64-Core Processor", "zen3", "avx2", 2, "cpu-amd-epyc-7763-avx2-2c"),
    ("AMD EPYC", None, None, 2, "cpu-amd-epyc-avx2-2c"),
    # a VM's bare "AMD EPYC" is told apart by its microarchitecture: Zen 4 and Zen 5 both run avx512
    ("AMD EPYC", "zen4", "avx512", 2, "cpu-amd-epyc-zen4-avx512-2c"),
    ("AMD EPYC", "zen5", "avx512", 2, "cpu-amd-epyc-zen5-avx512-2c"),
])
def test_cpu_hardware_id(model, uarch, isa, cores, expected):
    fp = {"cpu": {"model": model, "microarchitecture": uarch, "isa_active": isa, "isa_detected": "avx2",
                  "cores": cores}, "gpu": None}
    assert hardware.hardware_id(fp) == expected


@pytest.mark.parametrize("vendor,family,model,expected", [
    ("AuthenticAMD", "25", "1", "zen3"), ("AuthenticAMD", "25", "17", "zen4"), ("AuthenticAMD", "26", "2", "zen5"),
    ("AuthenticAMD", "25", "200", None), ("GenuineIntel", "6", "143", "sapphirerapids"), (None, None, None, None),
])
def test_cpu_microarchitecture(monkeypatch, vendor, family, model, expected):
    fields = {"model name": "AMD EPYC"}
    fields.update({k: v for k, v in (("vendor_id", vendor), ("cpu family", family), ("model", model)) if v})
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: fields)
    ids = hardware.cpu_ids()
    assert ids["microarchitecture"] == expected
    assert ids["family"] == (int(family) if family else None)
    described = hardware.describe_cpu()
    if family is None:
        assert described == "AMD EPYC"
    else:
        assert described.startswith("AMD EPYC (") and f"family {family} model {model})" in described


def test_gpu_hardware_id():
    fp = {"cpu": {}, "gpu": {"name": "NVIDIA H100 80GB HBM3"}}
    assert hardware.hardware_id(fp, "cuda") == "gpu-nvidia-h100-80gb-hbm3"
    with pytest.raises(ValueError, match="no GPU"):
        hardware.hardware_id({"cpu": {}, "gpu": None}, "cuda")


# ---- peak ----------------------------------------------------------------------------------------------------

def test_peak_falls_back_to_labelled_matmul_throughput(monkeypatch):
    monkeypatch.setattr(peak, "_cpu_fma_hook", lambda: None)
    got = peak.measure_peak("cpu", torch.float32, 1, quick=True)
    assert got["method"] == "matmul" and got["gflops"] > 0
    assert "not the FMA peak" in got["label"]


def test_peak_uses_the_extension_fma_loop_when_present(monkeypatch):
    calls = []
    monkeypatch.setattr(peak, "_cpu_fma_hook", lambda: lambda threads: calls.append(threads) or 123.0 * threads)
    got = peak.measure_peak("cpu", torch.float32, 2, quick=True)
    assert got == {"gflops": 246.0, "method": "fma-loop", "label": got["label"]} and calls == [2]


# ---- timing --------------------------------------------------------------------------------------------------

def test_cpu_timing_interleaves_rotates_inputs_and_excludes_warmup():
    order, seen = [], {"a": [], "b": []}

    def make(name, seconds):
        def fn(token):
            order.append(name)
            seen[name].append(token)
            time.sleep(seconds)
        return fn

    settings = timing.Settings(rounds=4, warmup_calls=2, round_seconds=0.0)
    got = timing.time_cpu([timing.Candidate("a", make("a", 0.002), [(0,), (1,), (2,)]),
                           timing.Candidate("b", make("b", 0.008), [(0,), (1,)])], settings)
    timed_order = order[2 * 2:]  # after the warm-up calls
    assert timed_order[:8] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # the starting candidate rotates per round
    assert timed_order[8:] == ["a"] * 4 + ["b"] * 4  # then each alone, as many rounds in a block of its own
    assert set(seen["a"]) == {0, 1, 2} and set(seen["b"]) == {0, 1}
    for name in "ab":
        both = got[name]["interleaved"], got[name]["alone"]
        assert [s["method"] for s in both] == ["cpu-interleaved/wall", "cpu-alone/wall"]
        assert all(s["samples"] == 4 for s in both)
        assert got[name]["median_s"] == min(s["median_s"] for s in both)  # the better figure is the one kept
        assert got[name]["method"] == min(both, key=lambda s: s["median_s"])["method"]
    assert got["a"]["q1_s"] <= got["a"]["median_s"] <= got["a"]["q3_s"]
    assert got["b"]["median_s"] > 2 * got["a"]["median_s"]  # sleeps of 8 ms vs 2 ms: a property, not a speed target


def test_cpu_timing_keeps_the_alone_figure_of_a_candidate_its_neighbour_slows():
    """b is slow right after a call of a (as after a runtime whose pool spins on): interleaved, half its calls
    follow a; alone, none but the first does. Its alone median is kept; a is unaffected either way."""
    last = []

    def fn(name):
        def call():
            time.sleep(0.012 if name == "b" and last[-1:] == ["a"] else 0.002)
            last.append(name)
        return call

    settings = timing.Settings(rounds=4, warmup_calls=1, round_seconds=0.0, settle_seconds=0.0)
    got = timing.time_cpu([timing.Candidate("a", fn("a"), [()]), timing.Candidate("b", fn("b"), [()])], settings)
    b = got["b"]
    assert b["interleaved"]["median_s"] > 0.006 > b["alone"]["median_s"]
    assert b["method"] == "cpu-alone/wall" and b["median_s"] == b["alone"]["median_s"]


def test_cpu_timing_runs_a_candidates_alone_variant_in_its_own_block():
    """fn.alone (e.g. ONNX Runtime with spinning allowed) replaces fn in the alone block only, warmed up first."""
    calls = []

    def fn():
        calls.append("interleaved")
    fn.alone = lambda: calls.append("alone")
    settings = timing.Settings(rounds=3, warmup_calls=2, round_seconds=0.0, settle_seconds=0.0)
    timing.time_cpu([timing.Candidate("x", fn, [()])], settings)
    assert calls == ["interleaved"] * (2 + 3) + ["alone"] * (2 + 3)


def test_cpu_time_clock_ignores_time_spent_off_the_cpu():
    # A sleeping candidate uses no CPU: by process CPU time it is ~free, by wall time it takes its sleep.
    settings = timing.Settings(rounds=3, warmup_calls=0, round_seconds=0.0, settle_seconds=0.0)
    got = timing.time_cpu([timing.Candidate("sleep", lambda: time.sleep(0.01), [()])], settings, cpu_time=True)
    for how in ("interleaved", "alone"):
        summary = got["sleep"][how]
        assert summary["method"] == f"cpu-{how}/process-cpu-time"
        assert summary["wall_median_s"] >= 0.01 > 5 * summary["median_s"]
    assert got["sleep"]["method"].endswith("/process-cpu-time")


def test_candidate_rejects_empty_pool():
    with pytest.raises(ValueError, match="input pool is empty"):
        timing.Candidate("x", lambda: None, [])


def test_pool_size_spills_the_cache():
    assert cases.pool_size(1 << 30, "cpu", 32 << 20) == 2
    assert cases.pool_size(8 << 20, "cpu", 32 << 20) == 8
    assert cases.pool_size(20 << 20, "cpu", 32 << 20) == 4
    assert cases.pool_size(2 << 30, "cuda", 32 << 20) == 1


# ---- cases ---------------------------------------------------------------------------------------------------

def test_op_cases_cover_every_block_of_the_config():
    from levit import config

    found = cases.op_cases("levit_128s", cases.OPS, 2, torch.float32, "cpu", 1)
    blocks = config.op_shapes("levit_128s")
    per_op = {op: sum(c.count for c in found if c.op == op) for op in cases.OPS}
    assert per_op["attention"] == sum(b.kind == "attention" for b in blocks)
    assert per_op["shrink"] == sum(b.kind == "shrink" for b in blocks)
    assert per_op["mlp"] == sum(b.kind == "mlp" for b in blocks)
    # qkv + proj per attention, kv + proj per shrink, and the classifier head
    assert per_op["linear"] == 2 * per_op["attention"] + 2 * per_op["shrink"] + 1
    keys = [(c.op, tuple(c.shape.items())) for c in found]
    assert len(keys) == len(set(keys)), "distinct shapes only"


def test_op_case_inputs_fit_the_public_ops_and_flops_follow_the_shapes(gen):
    found = cases.op_cases("levit_128s", cases.OPS, 2, torch.float32, "cpu", 1)
    for case in found:
        setup = cases.op_candidates(case, "reference", baselines={"eager"})
        fn = setup.specs[0].build()
        args = case.make_inputs(gen)
        out = fn(*args)  # the public op validates every argument
        assert tolerances.max_rel_error(out, setup.reference(*args)) <= tolerances.kernel_rtol(torch.float32)
    mlp = next(c for c in found if c.op == "mlp")
    assert mlp.flops == 2 * 2 * mlp.shape["N"] * 2 * mlp.shape["C"] * mlp.shape["hidden"]
    lin = next(c for c in found if c.op == "linear")
    assert lin.flops == 2 * 2 * lin.shape["N"] * lin.shape["in"] * lin.shape["out"]


def test_flash_cases_are_the_t2t_shapes_with_sdpa_beside_them(gen):
    """The "flash" op (levit_kernels.attention) at issue 12's shapes, each at its own batch, timed against SDPA."""
    found = cases.flash_cases(torch.float32, "cpu", 1)
    assert [(c.batch, c.shape["H"], c.shape["N"], c.shape["D"]) for c in found] == [(2, 1, 3136, 64), (2, 1, 784, 64),
                                                                                   (16, 6, 197, 64)]
    small = dataclasses.replace(found[-1], batch=1, shape={**found[-1].shape, "N": 20})
    q, k, v = small.make_inputs(gen)
    assert q.shape == k.shape == v.shape == (1, 6, 20, 64)
    assert small.flops == 2 * 6 * 20 * 20 * (64 + 1 + 64)
    setup = cases.op_candidates(small, "reference")
    assert [s.name for s in setup.specs] == ["levit_kernels[reference]", "eager", "compile", "sdpa"]
    sdpa = next(s for s in setup.specs if s.name == "sdpa").build()
    assert tolerances.max_rel_error(sdpa(q, k, v), setup.reference(q, k, v)) <= tolerances.kernel_rtol(torch.float32)


def test_op_case_inputs_have_the_config_operand_shapes():
    from levit import config

    blocks = config.op_shapes("levit_256")
    for case in cases.op_cases("levit_256", ["attention", "shrink", "mlp"], 3, torch.float32, "cpu", 1):
        stage = int(case.block[1])
        block = next(b for b in blocks if b.kind == case.op and b.stage == stage)
        expected = getattr(block, f"{case.op}_operands")(3)
        expected.pop("out")
        got = [tuple(a.shape) for a in case.make_inputs(torch.Generator()) if isinstance(a, torch.Tensor)]
        assert got == list(expected.values()), case.block


def test_attention_case_inputs_are_laid_out_as_the_optimized_model_passes_them():
    """q, k, v (shrink: k, v) are per-head views of one packed projection output, and on CPU the shrink's q_weight
    is stored transposed: the layouts FusedAttention / FusedShrink hand the kernels, so the bench times that path."""
    found = {c.op: c for c in cases.op_cases("levit_128s", ["attention", "shrink"], 2, torch.float32, "cpu", 1)}
    q, k, v = found["attention"].make_inputs(torch.Generator())[:3]
    h, n, d, dv = q.shape[1], q.shape[2], q.shape[3], v.shape[3]
    assert q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr() == v.untyped_storage().data_ptr()
    assert q.stride() == k.stride() == v.stride() == (n * h * (2 * d + dv), 2 * d + dv, h * (2 * d + dv), 1)
    assert (k.storage_offset(), v.storage_offset()) == (d, 2 * d)
    x, q_weight, _, k, v = found["shrink"].make_inputs(torch.Generator())[:5]
    assert k.untyped_storage().data_ptr() == v.untyped_storage().data_ptr() and v.storage_offset() == k.shape[3]
    assert q_weight.shape == (k.shape[1] * k.shape[3], x.shape[2]) and q_weight.stride() == (1, q_weight.shape[0])
    gpu = cases.OpCase(**{**found["shrink"].__dict__, "device": "meta"})
    assert gpu.make_inputs(torch.Generator())[1].is_contiguous()


def test_baselines_apply_by_device():
    case = cases.op_cases("levit_128s", ["attention"], 1, torch.float32, "cpu", 1)[0]
    assert [s.name for s in cases.op_candidates(case, "cpu").specs] == ["levit_kernels[cpu]", "eager", "compile"]
    gpu_case = cases.OpCase(**{**case.__dict__, "device": "cuda"})
    assert [s.name for s in cases.op_candidates(gpu_case, "triton").specs][-2:] == ["sdpa", "flex"]
    assert [s.name for s in cases.op_candidates(case, "cpu", {"eager"}).specs] == ["levit_kernels[cpu]", "eager"]


@pytest.mark.parametrize("baseline", ["sdpa", "flex"])
@pytest.mark.parametrize("op", ["attention", "shrink"])
def test_gpu_attention_baselines_match_the_reference(op, baseline, gen):
    # Run on CPU here: the code the GPU baselines run (materialized-bias SDPA; compiled FlexAttention with the
    # bias-gather score_mod), so a wrong gather or layout shows without a GPU.
    case = cases.op_cases("levit_128s", [op], 2, torch.float32, "cpu", 1)[-1]
    args = case.make_inputs(gen)
    out = {"sdpa": cases._sdpa, "flex": cases._flex}[baseline](case)(*args)
    ref = cases.op_candidates(case, "reference").reference(*args)
    assert tolerances.max_rel_error(out, ref) <= tolerances.kernel_rtol(torch.float32)


# ---- results file, table, compare ----------------------------------------------------------------------------

def _measurement(model="levit_256", op="mlp", block="s0.mlp", subject_s=1e-3, eager_s=2e-3, kind="op", batch=16):
    return {"kind": kind, "model": model, "op": op, "block": block, "count": 4, "shape": {"N": 196},
            "label": "N196", "batch": batch, "dtype": "float32", "device": "cpu", "threads": 1, "flops": 5e8,
            "subject": "levit_kernels[cpu]",
            "candidates": {
                "levit_kernels[cpu]": {"median_s": subject_s, "q1_s": subject_s, "q3_s": subject_s,
                                       "min_s": subject_s, "samples": 3, "calls_per_sample": 1,
                                       "method": "cpu-interleaved", "max_rel_error": 1e-7, "tolerance": 1e-5,
                                       "ok": True},
                "eager": {"median_s": eager_s, "q1_s": eager_s, "q3_s": eager_s, "min_s": eager_s, "samples": 3,
                          "calls_per_sample": 1, "method": "cpu-interleaved", "max_rel_error": 1e-7,
                          "tolerance": 1e-5, "ok": True},
                "compile": {"skipped": "failed: RuntimeError: no compiler"}}}


def _run(*ms, command_line="levit-kernels bench --quick"):
    return {"command": command_line, "fingerprint": {"git_commit": "0" * 40, "date": "2026-01-01", "software": {}},
            "settings": {"device": "cpu", "dtype": "float32", "threads": 1, "backend": "cpu", "preset": "paper"},
            "peak": {"gflops": 100.0, "method": "matmul", "label": "test peak"}, "measurements": list(ms)}


def test_results_round_trip(tmp_path):
    data = results.merge(None, "cpu-test-avx2-2c", _run(_measurement()))
    path = str(tmp_path / "cpu-test-avx2-2c.json")
    results.save(path, data)
    assert results.load(path) == data


def test_results_merge_keeps_the_latest_of_each_case():
    first = results.merge(None, "hw", _run(_measurement(block="s0.mlp"), _measurement(block="s1.mlp")))
    second = results.merge(first, "hw", _run(_measurement(block="s1.mlp", subject_s=5e-4), command_line="again"))
    assert [r["command"] for r in second["runs"]] == ["levit-kernels bench --quick", "again"]
    assert [m["block"] for m in second["runs"][0]["measurements"]] == ["s0.mlp"]
    third = results.merge(second, "hw", _run(_measurement(block="s0.mlp")))
    assert [r["command"] for r in third["runs"]] == ["again", "levit-kernels bench --quick"]  # emptied run dropped
    with pytest.raises(results.ResultsError, match="cannot take a run"):
        results.merge(first, "other-hw", _run(_measurement()))


def test_results_merge_keeps_cases_that_differ_only_in_shape():
    # The detection preset's 448x800 batch-1 run must not supersede the latency preset's 224x224 batch-1 one.
    latency = dict(_measurement(kind="e2e", op="e2e", block="model", batch=1), shape={"img": [224, 224]})
    detection = dict(latency, shape={"img": [448, 800]}, label="448×800px")
    data = results.merge(results.merge(None, "hw", _run(latency, command_line="latency")), "hw",
                         _run(detection, command_line="detection"))
    assert [r["command"] for r in data["runs"]] == ["latency", "detection"]
    again = results.merge(data, "hw", _run(dict(detection), command_line="detection again"))
    assert [r["command"] for r in again["runs"]] == ["latency", "detection again"]


@pytest.mark.parametrize("breakage,message", [
    (lambda d: d.pop("hardware_id"), "hardware_id"),
    (lambda d: d.update(schema="other/9"), "schema"),
    (lambda d: d["runs"][0].pop("peak"), "lacks \\['peak'\\]"),
    (lambda d: d["runs"][0]["measurements"][0].pop("flops"), "lacks \\['flops'\\]"),
    (lambda d: d["runs"][0]["measurements"][0]["candidates"]["eager"].pop("median_s"), "'eager' lacks"),
    (lambda d: d["runs"][0]["measurements"][0].update(subject="nope"), "subject 'nope'"),
])
def test_results_validation_names_the_problem(tmp_path, breakage, message):
    data = results.merge(None, "hw", _run(_measurement()))
    breakage(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(results.ResultsError, match=message):
        results.load(str(path))


def test_table_shows_time_throughput_peak_fraction_and_speedups():
    run = _run(_measurement(subject_s=1e-3, eager_s=2.5e-3),
               _measurement(kind="e2e", op="e2e", block="model", subject_s=0.1, eager_s=0.3))
    op_table = report.format_table(run, "op").splitlines()
    assert op_table[0].split() == ["model", "op", "block", "shape", "×n", "levit_kernels[cpu]", "µs", "GFLOP/s",
                                   "%", "peak", "eager", "µs", "vs", "eager", "compile", "µs", "vs", "compile"]
    row = op_table[2].split()
    # 5e8 FLOP in 1 ms = 500 GFLOP/s = 500% of the 100 GFLOP/s peak; eager is 2.5× slower; compile was skipped
    assert row == ["levit_256", "mlp", "s0.mlp", "N196", "4", "1,000", "500.0", "500%", "2,500", "2.50×", "skip",
                   "—"]
    e2e_row = report.format_table(run, "e2e").splitlines()[2].split()
    assert e2e_row[:4] == ["levit_256", "16", "160.0", "5.0"]  # 16 images / 0.1 s; 5e8 FLOP / 0.1 s
    assert e2e_row[5:7] == ["53.3", "3.00×"]
    notes = report.format_notes(run)
    assert "peak: 100.0 GFLOP/s — test peak" in notes
    assert notes.count("skipped compile: failed: RuntimeError: no compiler") == 1


def test_table_flags_a_candidate_outside_its_tolerance():
    m = _measurement()
    m["candidates"]["levit_kernels[cpu]"].update(max_rel_error=3e-4, ok=False)
    run = _run(m)
    assert "1,000!" in report.format_table(run, "op")
    assert "max rel error 3.00e-04 > tolerance 1.0e-05" in report.format_notes(run)


def test_compare_prints_per_case_ratios():
    a = results.merge(None, "hw", _run(_measurement(block="s0.mlp"), _measurement(block="s1.mlp")))
    b = results.merge(None, "hw", _run(_measurement(block="s0.mlp", subject_s=5e-4),
                                       _measurement(block="s2.mlp")))
    text = report.compare(a, b, "a.json", "b.json")
    rows = [line.split() for line in text.splitlines() if line.startswith("levit_256")]
    assert ["levit_256", "mlp", "s0.mlp", "N196", "16", "float32", "1", "levit_kernels[cpu]", "1,000", "500",
            "2.00×"] in rows
    assert ["levit_256", "mlp", "s0.mlp", "N196", "16", "float32", "1", "eager", "2,000", "2,000", "1.00×"] in rows
    assert len(rows) == 2  # s1/s2 are in one file only; compile was never timed
    assert "cases only in A: 1; only in B: 1" in text


def test_markdown_section_for_the_readme(tmp_path, capsys):
    data = results.merge(None, "hw", _run(_measurement(subject_s=1e-3, eager_s=2e-3),
                                          _measurement(block="s1.mlp", subject_s=1e-3, eager_s=8e-3),
                                          _measurement(kind="e2e", op="e2e", block="model", subject_s=0.1,
                                                       eager_s=0.3)))
    text = report.format_markdown(data, "benchmarks/results/hw.png")
    assert text.startswith("### `hw`") and "`levit-kernels bench --quick`" in text
    assert "| levit_256 | 16 | 160.0 | 5% | 53.3 (3.00×) | skip (—) |" in text  # e2e: 5 GFLOP/s of 100
    assert "| levit_256 | mlp | 2 | 4.00× | — |" in text  # geomean of 2× and 8×; compile never timed
    assert text.endswith("![hw speedups](benchmarks/results/hw.png)")
    path = tmp_path / "hw.json"
    results.save(str(path), data)
    assert command.run_bench(_args("--markdown", str(path))) == 0
    assert "| levit_256 | mlp | 2 | 4.00× | — |" in capsys.readouterr().out


def test_chart_has_one_panel_per_protocol(tmp_path):
    small = dict(_measurement(kind="e2e", op="e2e", block="model", batch=1), label="224×224px")
    large = dict(small, shape={"img": [448, 800]}, label="448×800px",
                 candidates={**small["candidates"], "eager": dict(small["candidates"]["eager"], median_s=5e-3)})
    data = results.merge(None, "hw", _run(_measurement(), _measurement(block="s1.mlp", subject_s=1e-3,
                                                                       eager_s=4e-3),
                                          _measurement(kind="e2e", op="e2e", block="model"), small, large))
    panels = report.chart_series(data)
    assert [p[1] for p in panels] == [["levit_256"]] * 3 + [["levit_256\nmlp"]]
    # input sizes get their own panels, not one geometric mean of 2x at 224 and 5x at 448x800
    assert sorted(p[2]["eager"][0] for p in panels[:3] if "batch 1 " in p[0]) == [pytest.approx(2), pytest.approx(5)]
    assert any("448×800px" in p[0] for p in panels)
    assert panels[3][2]["eager"] == [pytest.approx(8 ** 0.5)]  # geometric mean of 2× and 4×
    assert "compile" not in panels[3][2]
    path = report.write_chart(data, str(tmp_path / "chart.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ---- the command ---------------------------------------------------------------------------------------------

def _args(*argv):
    parser = argparse.ArgumentParser()
    command.add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_presets_follow_the_paper_protocol():
    plan = command.make_plan(_args("--backend", "reference", "--device", "cpu"))
    assert (plan.dtype, plan.threads, plan.batch("levit_384")) == (torch.float32, 1, 16)
    assert plan.models == ["levit_128s", "levit_128", "levit_192", "levit_256", "levit_384"]
    latency = command.make_plan(_args("--preset", "latency", "--backend", "reference", "--device", "cpu"))
    assert (latency.batch("levit_256"), latency.threads) == (1, hardware.cpu_cores())
    gpu = command.PRESETS["paper"]["cuda"]
    assert (gpu["dtype"], gpu["batch"], gpu["batch_overrides"]) == ("bfloat16", 2048, {"levit_384": 1024})


@pytest.mark.parametrize("argv,message", [
    (["--model", "levit_999"], "unknown variant"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--device", "cpu", "--dtype", "float16"], "float16 is a GPU dtype"),
])
def test_bad_arguments_are_reported(capsys, argv, message):
    assert command.run_bench(_args("--backend", "reference", *argv)) == 2
    assert message in capsys.readouterr().err


def test_quick_run_writes_results_chart_and_compares(tmp_path, capsys):
    out = str(tmp_path / "results")
    argv = ["--model", "levit_128s", "--backend", "reference", "--device", "cpu", "--baselines", "eager",
            "--batch", "1", "--quick", "--output-dir", out]
    assert command.run_bench(_args(*argv, "--ops", "attention", "linear")) == 0
    printed = capsys.readouterr()
    hw_id = hardware.hardware_id(hardware.fingerprint())
    path = os.path.join(out, f"{hw_id}.json")
    data = results.load(path)
    run = data["runs"][-1]
    assert run["command"].startswith("levit-kernels bench --preset paper --model levit_128s --ops attention linear")
    expected = cases.op_cases("levit_128s", ["attention", "linear"], 1, torch.float32, "cpu", 1)
    assert [(m["op"], m["block"]) for m in run["measurements"]] == [(c.op, c.block) for c in expected]
    for m in run["measurements"]:
        subject = m["candidates"]["levit_kernels[reference]"]
        assert subject["median_s"] > 0 and subject["ok"], m
        assert set(m["candidates"]) == {"levit_kernels[reference]", "eager"}
    assert os.path.exists(os.path.join(out, f"{hw_id}.png"))
    assert "levit_kernels[reference] µs" in printed.out
    assert re.search(r"\[\d+/\d+\] levit_128s attention s0.attn", printed.err)  # progress, one line per case

    first = copy.deepcopy(data)
    assert command.run_bench(_args(*argv, "--ops", "mlp", "--no-save")) == 0
    assert results.load(path) == first  # --no-save writes nothing
    assert command.run_bench(_args(*argv, "--ops", "mlp")) == 0
    both = results.load(path)
    assert [len(r["measurements"]) for r in both["runs"]] == [len(expected), 3]  # merged, both kept
    capsys.readouterr()
    assert command.run_bench(_args("--compare", path, path)) == 0
    assert "1.00×" in capsys.readouterr().out


def test_end_to_end_case_on_a_tiny_variant(gen):
    from levit.config import LeViTSpec

    tiny = LeViTSpec("tiny", (16, 32), 8, (2, 4), (1, 1))
    case = e2e.EndToEndCase(tiny, 2, torch.float32, "cpu", 1, img_size=64, num_classes=10)
    plan = runner.Plan(models=[tiny], ops=["e2e"], device="cpu", dtype=torch.float32, backend="reference",
                       threads=1, batch=lambda name: 2, baselines={"eager"}, quick=True, img_size=64, num_classes=10)
    m = runner.measure_case(case, plan, gen)
    assert m["kind"] == "e2e" and m["flops"] > 0
    eager = m["candidates"]["eager"]
    assert eager["median_s"] > 0 and eager["max_rel_error"] <= tolerances.MODEL_FP32_RTOL
    subject = m["candidates"]["levit_kernels[reference]"]
    import levit_kernels

    if hasattr(levit_kernels, "optimize"):
        assert subject["median_s"] > 0 and subject["ok"]
    else:
        assert subject == {"skipped": "levit_kernels.optimize does not exist yet"}


@pytest.fixture(scope="module")
def tiny_e2e():
    """A tiny variant's end-to-end case and its candidates (ONNX Runtime and OpenVINO share one export)."""
    from levit.config import LeViTSpec

    tiny = LeViTSpec("tiny", (16, 32), 8, (2, 4), (1, 1))
    case = e2e.EndToEndCase(tiny, 2, torch.float32, "cpu", 2, img_size=64, num_classes=10)
    return case, e2e.e2e_candidates(case, "reference", {"onnxruntime", "openvino", "openvino-default"})


def _spec(setup, name):
    return next(s for s in setup.specs if s.name == name)


def test_onnxruntime_baseline_matches_the_model(tiny_e2e):
    pytest.importorskip("onnxruntime")
    case, setup = tiny_e2e
    run = _spec(setup, "onnxruntime").build()
    images = case.make_inputs(torch.Generator().manual_seed(1))
    for fn in (run, run.alone):  # spinning off (interleaved) and on (alone, with 2 threads): the same model
        assert tolerances.max_rel_error(fn(*images), setup.reference(*images)) <= tolerances.MODEL_FP32_RTOL
    assert run.alone is not run and run.precision == "float32"
    with pytest.raises(cases.Unavailable, match="CPU fp32"):
        e2e._onnxruntime(e2e.EndToEndCase(case.model, 2, torch.bfloat16, "cpu", 1, 64, 10), None)


def test_openvino_baselines_fp32_and_default_precision(tiny_e2e):
    pytest.importorskip("openvino")
    case, setup = tiny_e2e
    images = case.make_inputs(torch.Generator().manual_seed(1))
    run = _spec(setup, "openvino").build()
    assert run.precision == "float32"
    assert tolerances.max_rel_error(run(*images), setup.reference(*images)) <= tolerances.MODEL_FP32_RTOL
    try:
        default = _spec(setup, "openvino-default").build()
    except cases.Unavailable as exc:  # this CPU's default is f32 (no AVX-512 BF16 / AMX)
        assert "default precision on this CPU is f32" in str(exc)
    else:
        assert default.precision in ("bfloat16", "float16")
        assert tolerances.max_rel_error(default(*images), setup.reference(*images)) <= 0.1
    with pytest.raises(cases.Unavailable, match="CPU fp32"):
        e2e._openvino(e2e.EndToEndCase(case.model, 2, torch.bfloat16, "cpu", 1, 64, 10), None, "f32")


def test_baseline_in_another_precision_is_recorded_not_judged(monkeypatch, gen):
    """A baseline whose callable says it ran in bf16 keeps its measured error and precision in the results, is not
    held to the fp32 tolerance, and the table names its precision; an fp32 one off by as much is flagged."""
    from levit.config import LeViTSpec

    case = e2e.EndToEndCase(LeViTSpec("tiny", (16, 32), 8, (2, 4), (1, 1)), 2, torch.float32, "cpu", 1, 64, 10)

    def lowp(images):
        return (images.flatten(1)[:, :10] * 1.01).to(torch.bfloat16).float()
    lowp.precision = "bfloat16"

    def reference(images):
        return images.flatten(1)[:, :10].double()
    specs = [cases.CandidateSpec("subject", lambda: lambda images: images.flatten(1)[:, :10] * 1.01, "subject"),
             cases.CandidateSpec("lowp", lambda: lowp)]
    setup = cases.CaseSetup(specs, reference, lambda name, errors: tolerances.MODEL_FP32_RTOL)
    monkeypatch.setattr(runner, "case_setup", lambda *args: setup)
    plan = runner.Plan(models=[case.model], ops=["e2e"], device="cpu", dtype=torch.float32, backend="reference",
                       threads=1, batch=lambda name: 2, quick=True)
    m = runner.measure_case(case, plan, gen)
    subject, low = m["candidates"]["subject"], m["candidates"]["lowp"]
    assert subject["precision"] == "float32" and not subject["ok"]
    assert low["precision"] == "bfloat16" and low["tolerance"] is None and low["ok"]
    assert low["max_rel_error"] > tolerances.MODEL_FP32_RTOL
    header = report.format_table(_run(m), "e2e").splitlines()[0]
    assert "lowp (bfloat16) img/s" in header


def test_ops_used_by_cases_are_the_public_ones():
    # The subject goes through levit_kernels.ops (validation + backend dispatch), not a backend module directly.
    case = cases.op_cases("levit_128s", ["mlp"], 1, torch.float32, "cpu", 1)[0]
    fn = cases.op_candidates(case, "reference").specs[0].build()
    bad = list(case.make_inputs(torch.Generator().manual_seed(0)))
    bad[1] = bad[1][:, :-1]
    with pytest.raises(ValueError, match="mlp: argument 'w1'"):
        fn(*bad)
    assert ops.mlp is cases.ops.mlp


def test_efficientformer_is_timed_end_to_end(gen):
    plan = command.make_plan(_args("--model", "efficientformer_l1", "levit_128s", "--backend", "reference",
                                   "--device", "cpu", "--batch", "1", "--quick", "--baselines", "eager"))
    built = runner.build_cases(plan)
    assert [(c.model, c.kind) for c in built if c.model == "efficientformer_l1"] == [
        ("efficientformer_l1", "e2e")]  # op shapes come from LeViT's config: LeViT alone gets op cases
    assert len([c for c in built if c.model == "levit_128s"]) > 1
    case = next(c for c in built if c.model == "efficientformer_l1")
    assert abs(case.flops / 2 - 1.3e9) <= 0.02 * 1.3e9  # the paper's 1.3 G MACs
    from test_optimize_families import public_ops_take

    if not public_ops_take("gelu"):
        pytest.skip("the public ops do not take activation='gelu' in this build yet")
    m = runner.measure_case(case, plan, gen)
    for name in ("eager", "levit_kernels[reference]"):
        assert m["candidates"][name]["median_s"] > 0 and m["candidates"][name]["ok"], m["candidates"][name]
