"""Triton GPU backend (``backend="triton"``): biased.py (biased_attention), shrink.py (shrink_attention), flash.py
(attention), gemm.py (linear, mlp), norm_pool.py (layer_norm, pool_mixer), registered as ``torch.ops.levit_triton.*``
by library.py. No kernel module may share a name with a backend function: importing a submodule sets the package
attribute of its name, so an ``attention.py`` replaced the function ``attention`` below (or, imported as
``from levit_kernels.backends.triton import attention``, gave the function instead of the module).

Devices: CUDA tensors; with ``TRITON_INTERPRET=1`` set before the first kernel is built, CPU tensors too, through
the Triton interpreter (how the test suite checks the kernels without a GPU).

Precision: inputs fp32, fp16 or bf16, outputs in the input dtype; dots accumulate and softmax runs in fp32. fp32
inputs follow torch's matmul setting: exact ("ieee") tl.dot by default, TF32 tensor-core dots when the caller
enabled TF32 (``torch.backends.cuda.matmul.allow_tf32 = True`` or ``torch.set_float32_matmul_precision("high")``);
tolerances.KERNEL_RTOL[float32] resp. tolerances.TRITON_TF32_RTOL bound the error.

Autotuned on a GPU (configs keyed by shape and dtype; the first call with a new shape times the candidates, so
warm up before capturing a CUDA graph); LEVIT_KERNELS_TRITON_AUTOTUNE=0 (read at the first call) uses one default
config per kernel instead; one fixed config when interpreted. Inference only (no autograd).
"""
import torch

from levit_kernels.backends.triton import _runtime, library
from levit_kernels.reference import grid_sides

_MIN_TRITON = (3, 0)


def availability() -> tuple[bool, str]:
    try:
        import triton
    except Exception as exc:  # ImportError, or a broken install failing while it loads
        return False, f"triton cannot be imported ({exc})"
    version = tuple(int(part) for part in triton.__version__.split(".")[:2] if part.isdigit())
    if version < _MIN_TRITON:
        return False, f"triton {triton.__version__} is older than the required {'.'.join(map(str, _MIN_TRITON))}"
    if _runtime.interpreting():
        return True, ""
    if not torch.cuda.is_available():
        return False, ("no CUDA GPU visible to torch (set TRITON_INTERPRET=1 to run the kernels on CPU tensors "
                       "through the Triton interpreter)")
    return True, ""


def _check_inputs(op: str, t: torch.Tensor):
    if t.dtype not in _runtime.SUPPORTED_DTYPES:
        raise TypeError(f"{op}: backend 'triton' takes float32, float16 or bfloat16 tensors, got {t.dtype}")
    if t.device.type == "cuda" or (t.device.type == "cpu" and _runtime.interpreting()):
        return
    raise ValueError(f"{op}: backend 'triton' runs on CUDA tensors (CPU tensors only under TRITON_INTERPRET=1), "
                     f"got tensors on {t.device}")


def biased_attention(q, k, v, attention_biases, resolution, stride, scale, activation):
    _check_inputs("biased_attention", q)
    return library.biased_attention(q, k, v, attention_biases, grid_sides(resolution), stride, scale, activation)


def shrink_attention(x, q_weight, q_bias, k, v, attention_biases, resolution, stride, scale, activation):
    _check_inputs("shrink_attention", x)
    return library.shrink_attention(x, q_weight, q_bias, k, v, attention_biases, grid_sides(resolution), stride,
                                    scale, activation)


def attention(q, k, v, scale, bias, activation):
    _check_inputs("attention", q)
    return library.attention(q, k, v, scale, bias, activation)


def mlp(x, w1, b1, w2, b2, activation, residual):
    _check_inputs("mlp", x)
    return library.mlp(x, w1, b1, w2, b2, activation, residual)


def linear(x, weight, bias, activation, residual):
    _check_inputs("linear", x)
    return library.linear(x, weight, bias, activation, residual)


def layer_norm(x, weight, bias, eps):
    _check_inputs("layer_norm", x)
    return library.layer_norm(x, weight, bias, eps)


def pool_mixer(x, layer_scale, pool_size):
    _check_inputs("pool_mixer", x)
    return library.pool_mixer(x, layer_scale, pool_size)


__all__ = ["availability", "attention", "biased_attention", "shrink_attention", "mlp", "linear", "layer_norm",
           "pool_mixer"]
