"""One adapter per model family, and the one table of them (Liger-Kernel's model type → patch function idea).

Each adapter module exposes ``NAME`` (what the family is), ``STRUCTURE`` (the attributes it is recognised by, for
the refusal message), ``matches(model) -> bool`` (structure only: no model package is imported) and
``describe(model) -> ModelDescription`` (block specs, folded). :func:`levit_kernels.optimize.recognize.describe` asks
them in this order; adding a family is one module and one line here.
"""
from levit_kernels.optimize.families import (efficientformer, levit, t2t_vit, timm_efficientformer, timm_levit,
                                             vitpytorch_levit, vitpytorch_t2t, vitpytorch_vit)

FAMILIES = (levit, timm_levit, vitpytorch_levit, efficientformer, timm_efficientformer, t2t_vit, vitpytorch_t2t,
            vitpytorch_vit)

__all__ = ["FAMILIES"]
