"""levit-kernels: fused CPU (C++) and GPU (Triton) kernels for LeViT.

Public ops (semantics in :mod:`levit_kernels.reference`): :func:`biased_attention`, :func:`shrink_attention`,
:func:`attention` (softmax attention over long sequences), :func:`mlp`, :func:`linear`; :func:`fold_batchnorm` for
callers that fold BatchNorm themselves.
Whole models: :func:`optimize` (a LeViT — this project's or timm's — on the fused ops) and :func:`verify` (its
end-to-end equivalence with the eager model).
"""
from levit_kernels import reference
from levit_kernels.backends import BACKENDS, availability
from levit_kernels.backends.cpu import cpu_isa
from levit_kernels.ops import attention, biased_attention, linear, mlp, shrink_attention
from levit_kernels.optimize import optimize
from levit_kernels.optimize.verify import verify
from levit_kernels.reference import fold_batchnorm

__version__ = "0.1.0"

__all__ = ["attention", "biased_attention", "shrink_attention", "mlp", "linear", "fold_batchnorm", "reference",
           "BACKENDS", "availability", "cpu_isa", "optimize", "verify", "__version__"]
