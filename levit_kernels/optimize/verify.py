"""``levit_kernels.verify``: the optimized model against the eager model, logits and every block.

Both run on the same random images. Errors are measured against the eager model in float64 with
:func:`levit_kernels.tolerances.max_rel_error`. Pass criteria (issue contract, numbers in
:mod:`levit_kernels.tolerances`):

- float32: relative logit error ≤ ``MODEL_FP32_RTOL``, and so for the tokens after the stem and every block;
- float16/bfloat16: relative logit error ≤ ``MODEL_LOWP_ERROR_RATIO`` × that of the eager model run in the same
  dtype; each block within the same ratio of the eager model's error there, or within the dtype's kernel
  tolerance (a block where the eager model happens to round luckily does not fail the run).

The block outputs of the eager model are read with forward hooks on the modules the family adapter names (adding
the residual where the model adds it outside the module), so the first block over its tolerance is named.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn as nn

from levit_kernels import tolerances
from levit_kernels.optimize import optimize_described
from levit_kernels.optimize.specs import Tap
from levit_kernels.reference import grid_sides

LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class StepError:
    """Error of one step's output (the stem, a block, or the logits) against the float64 eager model."""

    name: str
    kind: str
    abs_error: float
    rel_error: float
    tolerance: float
    eager_lowp_error: Optional[float] = None  # the eager model's own error in the low-precision dtype

    @property
    def ok(self) -> bool:
        return self.rel_error <= self.tolerance


@dataclass
class VerifyReport:
    source: str
    backend: str
    dtype: torch.dtype
    device: str
    batch: int
    seed: int
    steps: list[StepError]            # stem, every block, then the logits
    top1_agreement: int
    top5_agreement: int
    notes: list[str] = field(default_factory=list)

    @property
    def logits(self) -> StepError:
        return self.steps[-1]

    @property
    def blocks(self) -> list[StepError]:
        return self.steps[:-1]

    @property
    def passed(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def first_failure(self) -> Optional[StepError]:
        return next((step for step in self.steps if not step.ok), None)

    def table(self) -> str:
        lowp, dtype = self.dtype in LOW_PRECISION, str(self.dtype).replace("torch.", "")
        lines = [f"{self.source}: backend {self.backend}, {dtype}, batch {self.batch}, seed {self.seed}, "
                 f"{self.device}; errors against the eager model in float64",
                 f"  {'step':<34} {'kind':<9} {'max abs err':>11} {'rel err':>9} "
                 + (f"{'eager ' + dtype:>14} " if lowp else "") + f"{'tolerance':>9}"]
        for s in self.steps:
            eager = f"{s.eager_lowp_error:14.2e} " if lowp else ""
            lines.append(f"  {s.name:<34} {s.kind:<9} {s.abs_error:11.2e} {s.rel_error:9.2e} {eager}"
                         f"{s.tolerance:9.1e}  {'ok' if s.ok else 'FAIL'}")
        lines.append(f"  top-1 agreement {self.top1_agreement}/{self.batch}, top-5 agreement (same set) "
                     f"{self.top5_agreement}/{self.batch}")
        lines += [f"  note: {n}" for n in self.notes]
        criterion = (f"≤ {tolerances.MODEL_LOWP_ERROR_RATIO:g}× the eager {dtype} model's error" if lowp
                     else f"≤ {tolerances.MODEL_FP32_RTOL:.0e}")
        if self.passed:
            lines.append(f"PASSED: relative logit error {self.logits.rel_error:.2e} {criterion}")
        else:
            bad = self.first_failure
            what = f"{bad.name} ({bad.kind})" if bad.kind else bad.name
            lines.append(f"FAILED: {what} has relative error {bad.rel_error:.2e} > {bad.tolerance:.2e}")
        return "\n".join(lines)

    __str__ = table


def _tokens(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).transpose(1, 2) if t.dim() == 4 else t


def _run_eager(model: nn.Module, taps: list[Tap], images: torch.Tensor, dtype: torch.dtype):
    """(outputs of every tap as tokens, logits) of a copy of ``model`` cast to ``dtype``."""
    names = {id(m): name for name, m in model.named_modules()}
    replica = copy.deepcopy(model).to(dtype)
    outputs: list[Optional[torch.Tensor]] = [None] * len(taps)
    bases: dict[int, torch.Tensor] = {}  # the latest input of each tap's base module
    handles = []
    for i, tap in enumerate(taps):
        def hook(module, inputs, output, i=i, tap=tap):
            if tap.base is not None:
                output = bases[id(tap.base)] + output
            elif tap.residual:
                output = inputs[0] + output
            outputs[i] = _tokens(output).detach()

        def input_hook(module, inputs, i=i):
            outputs[i] = _tokens(inputs[0]).detach()
        if tap.base is not None:
            def base_hook(module, inputs, key=id(tap.base)):
                bases[key] = inputs[0]
            handles.append(replica.get_submodule(names[id(tap.base)]).register_forward_pre_hook(base_hook))
        target = replica.get_submodule(names[id(tap.module)])
        handles.append(target.register_forward_pre_hook(input_hook) if tap.of_input
                       else target.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = replica(images.to(dtype))
    finally:
        for h in handles:
            h.remove()
    missing = [i for i, out in enumerate(outputs) if out is None]
    if missing:
        raise RuntimeError(f"verify: the eager model never ran {names[id(taps[missing[0]].module)]}")
    return outputs, logits


def _errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    return (out.double() - ref.double()).abs().max().item(), tolerances.max_rel_error(out, ref)


def verify(model: nn.Module, backend: str = "auto", dtype: Union[None, str, torch.dtype] = None, batch: int = 4,
           seed: int = 0, images: Optional[torch.Tensor] = None) -> VerifyReport:
    """Optimize ``model`` and compare it with the eager model on ``batch`` random N(0, 1) images (or ``images``).

    Returns a :class:`VerifyReport` (``.passed``, ``.steps``, printable table). See the module docstring for the
    pass criteria. The model is not modified.
    """
    if images is None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"verify: argument 'batch' must be a positive int, got {batch!r}")
    optimized, description = optimize_described(model, backend, dtype)
    dtype = optimized.dtype
    if images is None:
        # The source's own input size when it states one (a model built for 33×47 takes no other), else the largest
        # images the optimized model takes.
        size = getattr(model, "img_size", None)
        stated = isinstance(size, int) or (isinstance(size, tuple) and len(size) == 2)
        height, width = grid_sides(size) if stated else optimized.image_hw
        gen = torch.Generator().manual_seed(seed)
        images = torch.randn(batch, optimized.in_channels, height, width, generator=gen)
    images = images.to(optimized.device, torch.float32)
    taps = [description.stem_tap] + [b.tap for b in description.blocks]

    ref_steps, ref_logits = _run_eager(model, taps, images, torch.float64)
    with torch.no_grad():
        steps, logits = optimized.trace(images)
    lowp = dtype in LOW_PRECISION
    if lowp:
        eager_steps, eager_logits = _run_eager(model, taps, images, dtype)

    names, kinds = optimized.step_names[:-1] + ["logits"], optimized.step_kinds[:-1] + [""]
    results = []
    for i, (out, ref) in enumerate(zip(steps + [logits], ref_steps + [ref_logits])):
        abs_err, rel_err = _errors(out, ref)
        eager_err, tol = None, tolerances.MODEL_FP32_RTOL
        if lowp:
            eager_err = tolerances.max_rel_error((eager_steps + [eager_logits])[i], ref)
            tol = tolerances.MODEL_LOWP_ERROR_RATIO * eager_err
            if i < len(steps):
                tol = max(tol, tolerances.kernel_rtol(dtype))
        results.append(StepError(names[i], kinds[i], abs_err, rel_err, tol, eager_err))

    top1 = int((logits.argmax(-1) == ref_logits.argmax(-1)).sum())
    k = min(5, logits.shape[-1])
    top5 = sum(set(a.tolist()) == set(b.tolist())
               for a, b in zip(logits.topk(k, -1).indices, ref_logits.topk(k, -1).indices))
    notes = [] if description.heads_merged else ["the model has no classifier: 'logits' are pooled features"]
    return VerifyReport(optimized.source, optimized.backend, dtype, str(optimized.device), images.shape[0], seed,
                        results, top1, top5, notes)


__all__ = ["verify", "VerifyReport", "StepError"]
