"""This project's LeViT (``levit.LeViT``, fused or not): ``stem``, ``blocks`` of ``Residual(Attention | MLP)`` and
``ShrinkAttention``, ``head`` and ``head_dist``; Hardswish everywhere."""
from __future__ import annotations

from dataclasses import replace

import torch.nn as nn

from levit_kernels.optimize import fold, recognize as r
from levit_kernels.optimize.specs import BlockSpec, HeadSpec, ModelDescription, Tap, fail, found

NAME = "levit.LeViT"
STRUCTURE = "stem, blocks, head, head_dist"
HARDSWISH = ("hardswish",)
HINT = " (this project's LeViT is built with Hardswish)"


def matches(model: nn.Module) -> bool:
    return r.has(model, "stem", "blocks", "head", "head_dist")


def _mlp(body, where: str, tap: Tap):
    fc1 = r.projection(r.child(body, "fc1", where, "a projection"), f"{where}.fc1")
    fc2 = r.projection(r.child(body, "fc2", where, "a projection"), f"{where}.fc2")
    return r.mlp(where, fc1, fc2, tap)


def _blocks(model: nn.Module) -> list[BlockSpec]:
    specs = []
    for name, block in r.child(model, "blocks", "", "a Sequential of blocks").named_children():
        where = f"blocks.{name}"
        body = getattr(block, "body", None)
        # Residual blocks are named by the Residual (whose output verify reads), their weights by the body.
        if isinstance(body, nn.Module) and hasattr(body, "qkv"):
            bw = f"{where}.body"
            geometry = r.geometry(body, bw, getattr(body, "resolution", None), 1)
            spec = r.attention(bw, r.projection(body.qkv, f"{bw}.qkv"),
                               r.projection(r.child(body, "proj", bw, "proj"), f"{bw}.proj"), geometry, Tap(block))
            specs.append(replace(spec, where=where))
        elif isinstance(body, nn.Module) and hasattr(body, "fc1"):
            specs.append(replace(_mlp(body, f"{where}.body", Tap(block)), where=where))
        elif hasattr(block, "kv") and hasattr(block, "q"):
            stride = getattr(block, "stride", None)
            geometry = r.geometry(block, where, getattr(block, "resolution", None), stride)
            specs.append(r.shrink(where, r.projection(block.kv, f"{where}.kv"), r.projection(block.q, f"{where}.q"),
                                  r.projection(r.child(block, "proj", where, "proj"), f"{where}.proj"), geometry,
                                  stride, Tap(block)))
        else:
            fail(where, "Residual(Attention: qkv, proj), Residual(MLP: fc1, fc2) or ShrinkAttention (kv, q, proj)",
                 block if body is None else f"{type(block).__name__} around {found(body)}")
    return specs


def describe(model: nn.Module) -> ModelDescription:
    stem = r.stem(r.child(model, "stem", "", "a stem"), "stem", HARDSWISH, HINT)
    heads = [h for h in (r.classifier(getattr(model, "head", None), "head"),
                         r.classifier(getattr(model, "head_dist", None), "head_dist")) if h is not None]
    kind = "levit (BN fused)" if getattr(model, "fused", False) else "levit"
    return r.finish(kind, stem, Tap(model.stem), _blocks(model), HeadSpec(fold.merged_heads(heads), len(heads)))
