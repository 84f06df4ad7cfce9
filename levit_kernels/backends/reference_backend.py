"""The eager reference as a backend (``backend="reference"``)."""
from levit_kernels.reference import attention, biased_attention, linear, mlp, shrink_attention  # noqa: F401


def availability():
    return True, ""
