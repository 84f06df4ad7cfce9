"""Device helpers shared by the kernel modules."""
import triton
import triton.language as tl

# Activation codes of apply_activation (a constexpr kernel argument), from the ops' activation names.
ACTIVATION_CODES = {None: 0, "hardswish": 1, "gelu": 2, "relu": 3}


def activation_code(name) -> int:
    return ACTIVATION_CODES[name]


@triton.jit
def hardswish(x):
    return x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0)


@triton.jit
def apply_activation(x, ACT: tl.constexpr):
    """The activation of code ACT (see ACTIVATION_CODES): GELU in its exact erf form, as torch's default."""
    if ACT == 1:
        x = hardswish(x)
    elif ACT == 2:
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 3:
        x = tl.where(x > 0.0, x, 0.0)
    return x
