"""Backends as test targets: "reference", "cpu-<isa>" for every ISA the CPU backend knows, "triton". Entering a
target skips the test (with the reason) when it cannot run here, forces the ISA for cpu ones, and says which
device the target's tensors live on (triton: CPU tensors under the interpreter, CUDA ones on a GPU).

Modules using the triton target must set TRITON_INTERPRET before any Triton kernel is built; :func:`interpret_triton`
does it as tests/test_triton.py does (at import of the test module, when no GPU is visible).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os

import pytest
import torch

from levit_kernels import _debug, backends, reference
from levit_kernels.backends import cpu
from levit_kernels.backends.cpu._loader import ISAS

from support import op_cases
from support.op_cases import single_threaded

KERNEL_TARGETS = (*(f"cpu-{isa}" for isa in ISAS), "triton")
ALL_TARGETS = ("reference", *KERNEL_TARGETS)

# The smallest call of each op, to ask a backend which activations it takes.
_PROBES = {
    "biased_attention": op_cases.AttentionCase(1, 1, 2, 1, 8, 8),
    "shrink_attention": op_cases.AttentionCase(1, 1, 2, 2, 8, 8, channels=8),
    "linear": op_cases.GemmCase((2,), 8, 8),
    "mlp": op_cases.GemmCase((2,), 8, 8, hidden=8, residual=True),
    "attention": op_cases.FlashCase(1, 1, 2, 3, 8, 8),
}


def interpret_triton():
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str     # as in ALL_TARGETS
    backend: str  # the ops' backend argument
    device: str

    @property
    def interpreted(self) -> bool:
        return self.backend == "triton" and self.device == "cpu"


def dtypes_of(target: Target) -> list:
    """fp32 everywhere; fp16 on triton, bf16 too on a GPU (the interpreter's bf16 tl.dot is broken)."""
    if target.backend != "triton":
        return [torch.float32]
    return [torch.float32, torch.float16] + ([] if target.interpreted else [torch.bfloat16])


@contextlib.contextmanager
def use(name: str):
    """Yields the Target ``name`` (skipping the test when it cannot run here)."""
    if name == "reference":
        with single_threaded():  # torch's own ops on small tensors: one thread is several times cheaper
            yield Target(name, "reference", "cpu")
        return
    backend = name.split("-")[0]
    ok, why = backends.availability(backend)
    if not ok:
        pytest.skip(f"backend {backend} unavailable: {why}")
    if backend == "triton":
        from levit_kernels.backends.triton import _runtime

        if not _runtime.interpreting():
            yield Target(name, "triton", "cuda")
            return
        with single_threaded():  # the interpreter runs the programs one by one in Python
            yield Target(name, "triton", "cpu")
        return
    isa = name[len("cpu-"):]
    if not cpu.isa_supported(isa):
        pytest.skip(f"ISA {isa} is not supported by this CPU (supported: {cpu.supported_isas()})")
    with cpu.force_isa(isa):
        yield Target(name, "cpu", "cpu")


def activations(target: Target, op: str) -> tuple:
    """The activations of reference.ACTIVATIONS that ``op`` takes on the target's backend (asked by calling it: a
    backend refuses one it lacks with "argument 'activation' must be ..."), so the suites test each activation on
    every backend as soon as it gains it, without a list to update."""
    return _activations(target, op)


@functools.lru_cache(maxsize=None)
def _activations(target: Target, op: str) -> tuple:
    taken = []
    for activation in reference.ACTIVATIONS:
        case = dataclasses.replace(_PROBES[op], activation=activation)
        args, kwargs = op_cases.make_args(case, target.device)
        try:
            run_poisoned(target, case, args, kwargs)
        except ValueError as exc:
            if "argument 'activation'" not in str(exc):
                raise
            continue
        taken.append(activation)
    return tuple(taken)


# The interpreter's deep call chains, started deep inside pytest and hypothesis, cross a CPython 3.11 frame-stack
# chunk boundary back and forth: ~7000 mmap/munmap pairs per launch, a third of its time. One worker thread with a
# shallow stack runs interpreted launches instead (one at a time, as the interpreter needs).
_SHALLOW = concurrent.futures.ThreadPoolExecutor(max_workers=1)


def _poisoned_call(case, args, kwargs, backend):
    with _debug.poisoned_outputs():  # thread-local for Python-allocated outputs: entered on the calling thread
        return op_cases.call(case, args, kwargs, backend)


def run_poisoned(target: Target, case, args, kwargs):
    """``levit_kernels.<case.op>(*args, **kwargs)`` on the target's backend with outputs poisoned (NaN-filled)."""
    if target.interpreted:
        return _SHALLOW.submit(_poisoned_call, case, args, kwargs, target.backend).result()
    return _poisoned_call(case, args, kwargs, target.backend)
