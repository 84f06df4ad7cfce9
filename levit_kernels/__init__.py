"""levit-kernels: fused CPU (C++) and GPU (Triton) kernels for LeViT.

Public ops (semantics in :mod:`levit_kernels.reference`): :func:`biased_attention`, :func:`shrink_attention`,
:func:`attention` (softmax attention over long sequences, flash-style), :func:`mlp`, :func:`linear`,
:func:`layer_norm`, :func:`pool_mixer` (EfficientFormer's Meta4D token mixer), :func:`conv2d` (the stems'
channels-last convolutions); :func:`fold_batchnorm` for callers
that fold BatchNorm themselves.
Whole models: :func:`optimize` (a LeViT — this project's or timm's — on the fused ops) and :func:`verify` (its
end-to-end equivalence with the eager model).

Everything here is imported on first use (PEP 562), so ``import levit_kernels`` — which the pure-PyTorch models in
``levit/`` do, for the reference ops — loads neither the C++ extension nor triton: the backends load when an op
first runs on them (:mod:`levit_kernels.backends`).
"""
import importlib

__version__ = "0.1.0"

# Eager, unlike the rest: `optimize` is both this function and the subpackage levit_kernels.optimize, and importing
# any of the subpackage's modules (levit_kernels.optimize.verify, say) would otherwise set the package attribute to
# the module, so `levit_kernels.optimize(model)` would fail after it. The subpackage loads no backend (only the
# registry, torch-only), so this keeps the import light.
from levit_kernels.optimize import optimize  # noqa: E402

# public name -> (module, attribute in it; None: the module itself)
_LAZY = {
    "reference": ("levit_kernels.reference", None),
    "fold_batchnorm": ("levit_kernels.reference", "fold_batchnorm"),
    "BACKENDS": ("levit_kernels.backends", "BACKENDS"),
    "availability": ("levit_kernels.backends", "availability"),
    "cpu_isa": ("levit_kernels.backends.cpu", "cpu_isa"),
    "attention": ("levit_kernels.ops", "attention"),
    "biased_attention": ("levit_kernels.ops", "biased_attention"),
    "shrink_attention": ("levit_kernels.ops", "shrink_attention"),
    "mlp": ("levit_kernels.ops", "mlp"),
    "linear": ("levit_kernels.ops", "linear"),
    "layer_norm": ("levit_kernels.ops", "layer_norm"),
    "pool_mixer": ("levit_kernels.ops", "pool_mixer"),
    "conv2d": ("levit_kernels.ops", "conv2d"),
    "verify": ("levit_kernels.optimize.verify", "verify"),
    "keep_freed_memory": ("levit_kernels.allocator", "keep_freed_memory"),
}

__all__ = ["attention", "biased_attention", "shrink_attention", "mlp", "linear", "layer_norm", "pool_mixer",
           "conv2d", "fold_batchnorm", "reference", "BACKENDS", "availability", "cpu_isa", "optimize", "verify",
           "keep_freed_memory", "__version__"]


def __getattr__(name: str):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'levit_kernels' has no attribute {name!r}") from None
    value = importlib.import_module(module_name)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # resolved once: later lookups are plain module attributes
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
