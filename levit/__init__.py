"""Paper-exact pure-PyTorch LeViT (Graham et al., ICCV 2021), EfficientFormer (Li et al., NeurIPS 2022) and
T2T-ViT (Yuan et al., ICCV 2021): the eager reference models of levit-kernels.

- :func:`create_model` builds any registered model (:func:`model_names`): ``levit_128s``, ``levit_128``,
  ``levit_192``, ``levit_256``, ``levit_384`` (:mod:`levit.model`), ``efficientformer_l1``, ``_l3``, ``_l7``
  (:mod:`levit.efficientformer`);
- :func:`load_checkpoint` loads timm (``levit_*``, ``levit_conv_*``, ``efficientformer_*``) and the official
  facebookresearch / snap-research checkpoints;
- :func:`fuse` folds every BatchNorm (each :mod:`levit.layers` layer folds its own; EfficientFormer's LayerScales
  too) for inference; :func:`count_macs` counts
  multiply-adds like the papers; :func:`randomize_` gives untrained models non-trivial statistics for tests;
- :mod:`levit.config` gives every block's op shapes (:func:`op_shapes`), from which the model is built.

Importing it loads no compiled code (neither levit_kernels' C++ extension nor triton).
"""
from levit import checkpoint_efficientformer, checkpoint_t2t  # noqa: F401  (each registers its family's checkpoint loader)
from levit.checkpoint import CheckpointError, load_checkpoint
from levit.config import MODEL_NAMES, SPECS, LeViTSpec, get_spec, op_shapes, stem_shapes
from levit.efficientformer import EfficientFormer, EfficientFormerSpec
from levit.efficientformer import randomize_  # LeViT's, plus LayerNorm affines and LayerScale gammas
from levit.flops import count_macs
from levit.fuse import fuse
from levit.model import LeViT
from levit.registry import create_model, model_names
from levit.t2t_vit import T2TViT

__all__ = ["create_model", "load_checkpoint", "CheckpointError", "fuse", "count_macs", "op_shapes", "stem_shapes",
           "get_spec", "model_names", "LeViT", "LeViTSpec", "EfficientFormer", "EfficientFormerSpec", "T2TViT",
           "MODEL_NAMES", "SPECS", "randomize_"]
