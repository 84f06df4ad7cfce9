"""Paper-exact pure-PyTorch LeViT (Graham et al., ICCV 2021): the eager reference model of levit-kernels.

- :func:`create_model` builds ``levit_128s``, ``levit_128``, ``levit_192``, ``levit_256`` or ``levit_384``;
- :func:`load_checkpoint` loads timm (``levit_*``, ``levit_conv_*``) and official facebookresearch checkpoints;
- :func:`fuse` folds every BatchNorm for inference; :func:`count_macs` counts multiply-adds like the paper;
- :mod:`levit.config` gives every block's op shapes (:func:`op_shapes`), from which the model is built.
"""
from levit.checkpoint import CheckpointError, load_checkpoint
from levit.config import MODEL_NAMES, SPECS, LeViTSpec, get_spec, op_shapes, stem_shapes
from levit.flops import count_macs
from levit.fuse import fuse
from levit.model import LeViT, create_model, randomize_

__all__ = ["create_model", "load_checkpoint", "CheckpointError", "fuse", "count_macs", "op_shapes", "stem_shapes",
           "get_spec", "LeViT", "LeViTSpec", "MODEL_NAMES", "SPECS", "randomize_"]
