"""The eager reference as a backend (``backend="reference"``)."""
from levit_kernels.reference import (attention, biased_attention, conv2d, layer_norm, linear,  # noqa: F401
                                     mlp, pool_mixer, shrink_attention)


def availability():
    return True, ""
