"""Paper-exact pure-PyTorch LeViT (Graham et al., ICCV 2021): the eager reference model of levit-kernels.

- :func:`create_model` builds any registered model (:func:`model_names`): ``levit_128s``, ``levit_128``,
  ``levit_192``, ``levit_256``, ``levit_384``;
- :func:`load_checkpoint` loads timm (``levit_*``, ``levit_conv_*``) and official facebookresearch checkpoints;
- :func:`fuse` folds every BatchNorm for inference (each :mod:`levit.layers` layer folds its own);
  :func:`count_macs` counts multiply-adds like the paper;
- :mod:`levit.config` gives every block's op shapes (:func:`op_shapes`), from which the model is built.

Importing it loads no compiled code (neither levit_kernels' C++ extension nor triton).
"""
from levit.checkpoint import CheckpointError, load_checkpoint
from levit.config import MODEL_NAMES, SPECS, LeViTSpec, get_spec, op_shapes, stem_shapes
from levit.flops import count_macs
from levit.fuse import fuse
from levit.model import LeViT, randomize_
from levit.registry import create_model, model_names

__all__ = ["create_model", "load_checkpoint", "CheckpointError", "fuse", "count_macs", "op_shapes", "stem_shapes",
           "get_spec", "model_names", "LeViT", "LeViTSpec", "MODEL_NAMES", "SPECS", "randomize_"]
