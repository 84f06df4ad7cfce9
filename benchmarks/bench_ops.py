"""Per-op benchmarks: biased_attention, shrink_attention, mlp and linear at every distinct op shape of every LeViT
variant (levit.config), per protocol (paper, latency), device, backend and baseline (see conftest.py)."""
from conftest import (SMOKE_BASELINES, batch_for, bench_mode, devices, models, parametrize_candidates, protocols,
                      run_candidate)
from levit_kernels.bench import cases
from levit_kernels.bench.command import BASELINES
from levit_kernels.bench.runner import DTYPES


def _cases(mode):
    for device in devices():
        for protocol, dtype, threads in protocols(device, mode):
            for model in models(mode):
                found = cases.op_cases(model, cases.OPS, batch_for(protocol, device, model, mode), DTYPES[dtype],
                                       device, threads)
                if mode == "smoke":  # the first shape of each op
                    found = [c for i, c in enumerate(found) if c.op not in {f.op for f in found[:i]}]
                for c in found:
                    yield c, f"{model}-{c.block}-{protocol}-b{c.batch}-t{threads}-{dtype}-{device}"


def pytest_generate_tests(metafunc):
    if "op_case" in metafunc.fixturenames:
        mode = bench_mode(metafunc.config)
        parametrize_candidates(metafunc, "op_case", _cases(mode), SMOKE_BASELINES if mode == "smoke" else BASELINES)


def test_op(benchmark, op_case, candidate, baselines):
    run_candidate(benchmark, op_case, candidate, baselines)
