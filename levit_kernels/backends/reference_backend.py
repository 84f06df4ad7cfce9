"""The eager reference as a backend (``backend="reference"``)."""
from levit_kernels.reference import (attention, biased_attention, layer_norm, linear, mlp,  # noqa: F401
                                     pool_mixer, shrink_attention)


def availability():
    return True, ""
