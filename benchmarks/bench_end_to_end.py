"""End-to-end benchmarks: a whole LeViT forward (images → logits) of every variant, per protocol (paper,
latency) and device: the optimized model (levit_kernels.optimize, when it exists) against the eager BN-folded
model, torch.compile of it, and ONNX Runtime on CPU (skipped when onnxruntime is not installed)."""
from conftest import (SMOKE_BASELINES, batch_for, bench_mode, devices, models, parametrize_candidates, protocols,
                      run_candidate)
from levit_kernels.bench.command import BASELINES
from levit_kernels.bench.e2e import EndToEndCase
from levit_kernels.bench.runner import DTYPES

E2E_BASELINES = tuple(b for b in BASELINES if b not in ("sdpa", "flex"))


def _cases(mode):
    for device in devices():
        for protocol, dtype, threads in protocols(device, mode):
            for model in models(mode):
                case = EndToEndCase(model, batch_for(protocol, device, model, mode), DTYPES[dtype], device, threads)
                yield case, f"{model}-{protocol}-b{case.batch}-t{threads}-{dtype}-{device}"


def pytest_generate_tests(metafunc):
    if "e2e_case" in metafunc.fixturenames:
        mode = bench_mode(metafunc.config)
        parametrize_candidates(metafunc, "e2e_case", _cases(mode),
                               SMOKE_BASELINES if mode == "smoke" else E2E_BASELINES)


def test_end_to_end(benchmark, e2e_case, candidate, baselines):
    run_candidate(benchmark, e2e_case, candidate, baselines)
