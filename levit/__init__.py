"""Paper-exact pure-PyTorch LeViT (Graham et al., ICCV 2021): the eager reference model of levit-kernels; the
other families' reference models register their names here too (T2T-ViT: :mod:`levit.t2t_vit`).

- :func:`create_model` builds any registered model (:func:`model_names`): ``levit_128s``, ``levit_128``,
  ``levit_192``, ``levit_256``, ``levit_384``;
- :func:`load_checkpoint` loads timm (``levit_*``, ``levit_conv_*``) and official facebookresearch checkpoints;
- :func:`fuse` folds every BatchNorm for inference; :func:`count_macs` counts multiply-adds like the paper;
- :mod:`levit.config` gives every block's op shapes (:func:`op_shapes`), from which the model is built.
"""
from levit.checkpoint import CheckpointError, load_checkpoint
from levit.config import MODEL_NAMES, SPECS, LeViTSpec, get_spec, op_shapes, stem_shapes
from levit.flops import count_macs
from levit.fuse import fuse
from levit.model import LeViT, randomize_
from levit.registry import create_model, model_names
from levit.t2t_vit import T2TViT

__all__ = ["create_model", "load_checkpoint", "CheckpointError", "fuse", "count_macs", "op_shapes", "stem_shapes",
           "get_spec", "model_names", "LeViT", "T2TViT", "LeViTSpec", "MODEL_NAMES", "SPECS", "randomize_"]
