"""Concurrency: 8 Python threads calling the ops (each thread its own mix of shapes, so thread-local workspaces grow
and shrink under each other) give bit-identical results to serial calls on the kernel backends, and results within
the fp32 tolerance of them on the reference backend; so does an optimized model shared by 8 threads. Outputs are
poisoned (NaN-filled) in every thread. The CPU backend's packed-weight cache packs once under concurrent first use,
stays correct when weights die while other threads call, evicts beyond its bound, and drops the entries of dead
weights.
"""
from __future__ import annotations

import gc

import pytest
import torch

from support import targets

targets.interpret_triton()  # before any Triton kernel is built

import levit_kernels as lk  # noqa: E402
from levit_kernels import backends, reference, tolerances  # noqa: E402
from levit_kernels._debug import poisoned_outputs  # noqa: E402
from support import op_cases  # noqa: E402
from support.threads import run_threads  # noqa: E402
from support.op_cases import AttentionCase, FlashCase, GemmCase  # noqa: E402

THREADS = 8
ACTIVATIONS = reference.ACTIVATIONS  # the cases of each op cycle through them
ROUNDS = 3  # calls per case per thread


def cases_for(op: str):
    """Several shapes of op, varied so concurrent calls need workspaces of different sizes."""
    if op in ("biased_attention", "shrink_attention"):
        sizes = [(2, 4, 14, 16, 32), (3, 2, 7, 32, 64), (1, 8, 4, 16, 32), (4, 3, 5, 8, 20)]
        return [AttentionCase(b, h, r, 2 if op == "shrink_attention" else 1, d, dv, layout="packed",
                              activation=ACTIVATIONS[i % len(ACTIVATIONS)], seed=i,
                              channels=24 if op == "shrink_attention" else 0)
                for i, (b, h, r, d, dv) in enumerate(sizes)]
    if op == "attention":  # the flash op: Nq ≠ Nk, key counts past one key block (240), each dense-bias form
        sizes = [(2, 3, 50, 50, 16, 32), (1, 2, 17, 300, 32, 16), (3, 1, 197, 197, 64, 64), (2, 4, 9, 5, 8, 20)]
        return [FlashCase(b, h, nq, nk, d, dv, bias=op_cases.FLASH_BIASES[i % len(op_cases.FLASH_BIASES)],
                          layout="packed", activation=ACTIVATIONS[i % len(ACTIVATIONS)], seed=i)
                for i, (b, h, nq, nk, d, dv) in enumerate(sizes)]
    hidden = 1 if op == "mlp" else 0
    sizes = [((196,), 128, 256), ((2, 49), 256, 256), ((7,), 24, 40), ((16,), 384, 384)]
    return [GemmCase(lead, c, c if hidden else n, hidden=hidden * 2 * c, residual=bool(hidden), seed=i,
                     activation=ACTIVATIONS[i % len(ACTIVATIONS)])
            for i, (lead, c, n) in enumerate(sizes)]


def poisoned_call(case, args, kwargs, backend):
    with poisoned_outputs():  # per thread for Python-allocated outputs; the C++ flag stays on while any thread is in
        return op_cases.call(case, args, kwargs, backend)


def assert_same_as_serial(out, serial, backend: str, what: str):
    """Bit for bit on the kernel backends. The reference backend is torch's own ops, whose MKL GEMM blocks a product
    differently on another thread: measured (torch 2.13, AMD EPYC, 8 threads × 12 calls of cases_for's shapes),
    4 of 96 linear calls differed from the serial result by up to 4.8e-7 under torch.set_num_threads(1) or (4)
    and none under (2), so its bits are not this library's to promise; it must stay within the fp32 tolerance."""
    if backend == "reference":
        err = tolerances.max_rel_error(out, serial)
        assert err <= tolerances.kernel_rtol(torch.float32), f"{what}: {err:.2e} from the serial result"
    else:
        assert torch.equal(out, serial), f"{what}: differs from the serial result"


@pytest.fixture(params=targets.ALL_TARGETS)
def target(request):
    with targets.use(request.param) as t:
        yield t


@pytest.mark.parametrize("op", op_cases.OPS)
def test_threads_match_serial_calls(target, op):
    if target.interpreted:
        pytest.skip("the Triton interpreter is not thread-safe (it swaps triton.language builtins process-wide while "
                    "a kernel runs: concurrent launches fail with 'Did you forget to add @triton.jit'); runs on a GPU")
    cases = cases_for(op)
    inputs = [op_cases.make_args(c, target.device) for c in cases]
    serial = [poisoned_call(c, args, kwargs, target.backend) for c, (args, kwargs) in zip(cases, inputs)]
    results = [[] for _ in range(THREADS)]

    def worker(i):
        order = [(i + j) % len(cases) for j in range(len(cases))] * ROUNDS  # threads start on different cases
        for j in order:
            args, kwargs = inputs[j]
            results[i].append((j, poisoned_call(cases[j], args, kwargs, target.backend)))

    run_threads(worker, THREADS)
    for i, calls in enumerate(results):
        assert len(calls) == len(cases) * ROUNDS
        for j, out in calls:
            assert_same_as_serial(out, serial[j], target.backend, f"thread {i}, {cases[j]}")


# ---- the packed-weight cache (cpu) ------------------------------------------------------------------------------

cpu_only = pytest.mark.skipif(not backends.availability("cpu")[0],
                              reason=f"CPU backend unavailable: {backends.availability('cpu')[1]}")


def _gemm(case, device="cpu"):
    args, kwargs = op_cases.make_args(case, device)
    return args, kwargs, poisoned_call(case, args, kwargs, "cpu")


@cpu_only
def test_cache_concurrent_first_use_of_many_weights():
    """Every thread first-uses the same 16 fresh weights, in different orders: one entry per weight, results equal
    the serial ones; the entries go when the weights do."""
    from levit_kernels.backends.cpu import gemm

    gc.collect()
    gemm.clear_cache()
    cases = [GemmCase((5, 7), 24 + i, 40 - i, residual=True, activation="hardswish", seed=i) for i in range(16)]
    inputs = [op_cases.make_args(c) for c in cases]
    expected = [op_cases.reference64(c, *a) for c, a in zip(cases, inputs)]
    results = [dict() for _ in range(THREADS)]

    def worker(i):
        for j in sorted(range(len(cases)), key=lambda j: (j * (i + 1)) % len(cases)):
            args, kwargs = inputs[j]
            results[i][j] = poisoned_call(cases[j], args, kwargs, "cpu")

    run_threads(worker, THREADS)
    assert gemm.cache_entries() == len(cases), "each weight must be packed (and cached) exactly once"
    for per_thread in results:
        for j, out in per_thread.items():
            assert torch.equal(out, results[0][j])
            assert tolerances.max_rel_error(out, expected[j]) <= tolerances.kernel_rtol(torch.float32)
    inputs.clear()  # the last references to the weights (the worker's closure shares this list)
    gc.collect()
    assert gemm.cache_entries() == 0, "entries of dead weights must be released"


@cpu_only
def test_cache_weights_dying_while_other_threads_call():
    """Half the threads use a long-lived weight while the other half create, use and drop weights as fast as they
    can (so entries expire and are swept under the lock while lookups happen)."""
    from levit_kernels.backends.cpu import gemm

    gc.collect()
    gemm.clear_cache()
    keep = GemmCase((9,), 64, 96, activation="hardswish", seed=1)
    keep_args, keep_kwargs, keep_out = _gemm(keep)

    def worker(i):
        for round_ in range(40):
            if i % 2:
                out = poisoned_call(keep, keep_args, keep_kwargs, "cpu")
                assert torch.equal(out, keep_out)
            else:
                _gemm(GemmCase((3,), 16 + round_ % 5, 8 + i, seed=round_))

    run_threads(worker, THREADS)
    gc.collect()
    assert gemm.cache_entries() == 1, "only the live weight may keep an entry"
    del keep_args
    gc.collect()
    assert gemm.cache_entries() == 0


@cpu_only
def test_cache_evicts_beyond_its_bound_and_stays_correct():
    """More live weights than the cache holds (1024): old entries are evicted, and a weight whose entry was evicted
    is packed again, correctly."""
    from levit_kernels.backends.cpu import gemm

    gc.collect()
    gemm.clear_cache()
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    weights = [torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(1100)]
    with poisoned_outputs():
        first = [lk.linear(x, w, None, backend="cpu") for w in weights]
        assert gemm.cache_entries() <= 1024
        again = [lk.linear(x, w, None, backend="cpu") for w in weights[:50]]  # evicted ones: packed again
    for out, out_again, w in zip(first, again, weights):
        assert torch.equal(out, out_again)
        torch.testing.assert_close(out, x @ w.t(), rtol=1e-5, atol=1e-5)


# ---- an optimized model -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(lk, "optimize"), reason="levit_kernels.optimize does not exist in this checkout")
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_optimized_model_shared_by_threads(backend):
    import levit

    ok, why = backends.availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")
    torch.manual_seed(0)
    model = levit.randomize_(levit.create_model("levit_128s"), torch.Generator().manual_seed(0)).eval()
    optimized = lk.optimize(model, backend=backend)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(b, 3, 224, 224, generator=gen) for b in (1, 2, 3)]
    with torch.inference_mode(), poisoned_outputs():
        serial = [optimized(x) for x in batches]
        results = [[] for _ in range(THREADS)]

        def worker(i):
            with torch.inference_mode(), poisoned_outputs():  # thread-local modes: each thread sets its own
                for j in [(i + k) % len(batches) for k in range(len(batches))]:
                    results[i].append((j, optimized(batches[j])))

        run_threads(worker, THREADS)
    for i, calls in enumerate(results):
        assert len(calls) == len(batches)
        for j, out in calls:
            assert_same_as_serial(out, serial[j], backend, f"thread {i}, batch {batches[j].shape[0]}")
