"""Shared test fixtures: fresh seeds per test (printed on failure), poisoned outputs, tolerances."""
import os
import random

import pytest
import torch

from levit_kernels import tolerances


@pytest.fixture
def seed(request):
    """A fresh random seed per test (LEVIT_TEST_SEED pins it); pytest shows it in the failure report."""
    value = int(os.environ.get("LEVIT_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(value)
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture(scope="session")
def timm():
    """The real timm (imported through tests/support/timm_compat.py); tests using it skip without timm."""
    from support.timm_compat import import_timm

    module = import_timm()
    if module is None:
        pytest.skip("timm is not installed")
    return module


@pytest.fixture
def gen(seed):
    return torch.Generator().manual_seed(seed)


def pytest_runtest_makereport(item, call):
    if call.when == "call" and call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        for key, value in item.user_properties:
            if key == "seed":
                print(f"\n[levit-kernels] {item.nodeid} failed with seed {value} (rerun: LEVIT_TEST_SEED={value})")


def abs64(*tensors):
    """|t| in float64 of each tensor (None stays None): run an op's reference on these for the magnitude of the
    terms each output sums, |b| + Σ|w·x| for a product (the ``scale`` of :func:`assert_close_to_reference`)."""
    return [None if t is None else t.double().abs() for t in tensors]


def assert_close_to_reference(out, ref64, dtype, what="output", rtol=None, scale=0.0):
    """Kernel output vs float64 reference, under the dtype's tolerance from levit_kernels.tolerances (relative to
    max|ref64| or ``scale``, the magnitude of the terms behind the outputs, whichever is larger)."""
    tol = tolerances.kernel_rtol(dtype) if rtol is None else rtol
    err = tolerances.max_rel_error(out, ref64, scale)
    assert err <= tol, f"{what}: max relative error {err:.3e} > tolerance {tol:.1e} ({dtype})"
