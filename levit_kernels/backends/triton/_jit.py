"""Device helpers shared by the kernel modules."""
import triton
import triton.language as tl

# The kernels' ACT constexpr: which activation the epilogue applies (names of reference.ACTIVATIONS).
ACTIVATION_CODES = {None: 0, "hardswish": 1, "gelu": 2, "relu": 3}


def activation_code(activation) -> int:
    return ACTIVATION_CODES[activation]


@triton.jit
def hardswish(x):
    return x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0)


@triton.jit
def gelu(x):
    """The exact erf form, as torch's fp32 GELU computes it (libdevice erff on CUDA; numpy in the interpreter)."""
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def activate(x, ACT: tl.constexpr):
    """x through the activation of code ACT (ACTIVATION_CODES); a constexpr branch, so only one is compiled."""
    if ACT == 1:
        x = hardswish(x)
    elif ACT == 2:
        x = gelu(x)
    elif ACT == 3:
        x = tl.where(x < 0.0, 0.0, x)  # not tl.maximum: NaN stays NaN, as torch.relu
    return x
