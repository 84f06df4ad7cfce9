"""The eager reference as a backend (``backend="reference"``)."""
from levit_kernels.reference import (biased_attention, layer_norm, linear, mlp, pool_mixer,  # noqa: F401
                                     shrink_attention)


def availability():
    return True, ""
