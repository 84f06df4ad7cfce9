"""End-to-end cases: a whole model's forward pass (any registered model: LeViT, EfficientFormer), images in, logits
out.

Candidates: the optimized model (``levit_kernels.optimize``, the subject) against the eager BN-folded model,
torch.compile of it and, on CPU in fp32, ONNX Runtime running the folded model exported with torch.onnx.export.
On GPU the eager and compiled baselines run under bf16/fp16 autocast, as the paper protocol (AMP) does.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import levit_kernels
from levit_kernels import tolerances
from levit_kernels.bench.cases import CandidateSpec, CaseSetup, Unavailable


@dataclass(frozen=True)
class EndToEndCase:
    model: object          # a registered model name (levit.model_names()) or a levit.config.LeViTSpec
    batch: int
    dtype: torch.dtype
    device: str
    threads: int
    img_size: int = 224
    num_classes: int = 1000

    op = "e2e"
    kind = "e2e"
    count = 1

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    @property
    def block(self) -> str:
        return "model"

    @property
    def shape(self) -> dict:
        return {"img": self.img_size, "classes": self.num_classes}

    @property
    def label(self) -> str:
        return f"{self.img_size}px"

    @property
    def flops(self) -> float:
        import levit
        from levit.config import MODEL_NAMES
        from levit_kernels.optimize.profile import step_macs

        if not isinstance(self.model, str) or self.model in MODEL_NAMES:  # LeViT's own counter, both heads
            return 2.0 * self.batch * levit.count_macs(self.model, self.img_size, self.num_classes)
        return 2.0 * self.batch * sum(step_macs(self.model, self.img_size, self.num_classes))

    def make_inputs(self, gen: torch.Generator) -> tuple:
        images = torch.randn(self.batch, 3, self.img_size, self.img_size, generator=gen)
        return (images.to(self.device),)


def build_model(case: EndToEndCase, seed: int = 0) -> torch.nn.Module:
    """A randomized (non-trivial BatchNorm statistics, affines, LayerScales, biases) model in eval mode, not yet
    folded, in fp32."""
    import levit

    model = levit.create_model(case.model, num_classes=case.num_classes, img_size=case.img_size)
    levit.randomize_(model, torch.Generator().manual_seed(seed))
    return model.eval().to(case.device)


def _no_grad(fn: Callable) -> Callable:
    def run(*args):
        with torch.inference_mode():
            return fn(*args)
    return run


def _autocast(fn: Callable, case: EndToEndCase) -> Callable:
    if case.device != "cuda" or case.dtype == torch.float32:
        return _no_grad(fn)

    def run(*args):
        with torch.inference_mode(), torch.autocast("cuda", dtype=case.dtype):
            return fn(*args)
    return run


@contextlib.contextmanager
def _quiet():
    """Silence the ONNX exporter's progress prints, warnings and log lines (they would drown the bench output)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnxruntime(case: EndToEndCase, folded: torch.nn.Module) -> Callable:
    if case.device != "cpu" or case.dtype != torch.float32:
        raise Unavailable("ONNX Runtime is the CPU fp32 baseline")
    try:
        import onnxruntime as ort
    except ImportError:
        raise Unavailable("onnxruntime is not installed (pip install 'levit-kernels[bench]')") from None
    example = case.make_inputs(torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{case.model_name}.onnx")
        try:
            with _quiet():
                torch.onnx.export(folded, example, path, input_names=["images"], output_names=["logits"],
                                  dynamo=True, external_data=False, verbose=False)
        except Exception as exc:  # the exporter's failure modes are many; report, do not abort the run
            raise Unavailable(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = case.threads
        options.inter_op_num_threads = 1
        # ORT's idle workers otherwise keep spinning after run() returns and take the cores from whatever runs next:
        # measured interleaved at batch 1 on 2 cores, that cut the other candidates to less than half their speed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(images):
        return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    return run


def _optimized(case: EndToEndCase, model: torch.nn.Module, backend: str) -> Callable:
    if not hasattr(levit_kernels, "optimize"):
        raise Unavailable("levit_kernels.optimize does not exist yet")
    dtype = None if case.dtype == torch.float32 else case.dtype
    # A drop-in replacement takes the images the original model takes (fp32); the cast to dtype is its business.
    return _no_grad(levit_kernels.optimize(copy.deepcopy(model), backend=backend, dtype=dtype))


# Logits checked against the float64 model on this many images of the batch (each image is independent).
CHECKED_IMAGES = 8


def _e2e_tolerance(case: EndToEndCase) -> Callable[[str, dict], Optional[float]]:
    def tolerance(name, errors):
        if case.dtype == torch.float32:
            return tolerances.MODEL_FP32_RTOL
        # Low precision: within a multiple of the eager model's own error in that precision (issue contract).
        eager = errors.get("eager")
        return None if eager is None else tolerances.MODEL_LOWP_ERROR_RATIO * eager
    return tolerance


def e2e_candidates(case: EndToEndCase, backend: str, baselines: Optional[set] = None, seed: int = 0) -> CaseSetup:
    """The optimized model (subject), then the eager folded model, torch.compile of it, and ONNX Runtime."""
    import levit

    model = build_model(case, seed)
    folded = levit.fuse(copy.deepcopy(model))
    exact = copy.deepcopy(folded).to(torch.float64)
    compile_mode = "max-autotune" if case.device == "cuda" else None
    specs = [CandidateSpec(f"levit_kernels[{backend}]", lambda: _optimized(case, model, backend), "subject"),
             CandidateSpec("eager", lambda: _autocast(folded, case)),
             CandidateSpec("compile", lambda: _autocast(torch.compile(folded, mode=compile_mode), case)),
             CandidateSpec("onnxruntime", lambda: _onnxruntime(case, folded))]
    specs = [s for s in specs if s.role == "subject" or baselines is None or s.name in baselines]
    return CaseSetup(specs, _no_grad(lambda images: exact(images[:CHECKED_IMAGES].to(torch.float64))),
                     _e2e_tolerance(case), lambda logits: logits[:CHECKED_IMAGES])
