"""Device helpers shared by the kernel modules."""
import triton
import triton.language as tl


@triton.jit
def hardswish(x):
    return x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0)
