"""End-to-end cases: a whole model's forward pass (any registered model: LeViT, EfficientFormer), images in, logits
out.

Candidates: the optimized model (``levit_kernels.optimize``, the subject) against the eager BN-folded model,
torch.compile of it and, on CPU in fp32, ONNX Runtime and OpenVINO running the folded model exported once with
torch.onnx.export (the same graph for both): OpenVINO in fp32 (INFERENCE_PRECISION_HINT f32) and, where it differs,
in its default precision for this CPU (bf16 on AVX-512 BF16 Xeons). Each candidate's callable carries the precision
it computes in (``precision``), which the results record. On GPU the eager and compiled baselines run under
bf16/fp16 autocast, as the paper protocol (AMP) does.
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
from levit_kernels import reference, tolerances
from levit_kernels.bench.cases import CandidateSpec, CaseSetup, Unavailable


@dataclass(frozen=True)
class EndToEndCase:
    model: object          # a registered model name (levit.model_names()) or a levit.config.LeViTSpec
    batch: int
    dtype: torch.dtype
    device: str
    threads: int
    img_size: object = 224  # an int S (S×S images) or (H, W)
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
        h, w = reference.grid_sides(self.img_size)
        return f"{h}px" if h == w else f"{h}×{w}px"

    @property
    def flops(self) -> float:
        import levit
        from levit.config import MODEL_NAMES
        from levit_kernels.optimize.profile import step_macs

        if not isinstance(self.model, str) or self.model in MODEL_NAMES:  # LeViT's own counter, both heads
            return 2.0 * self.batch * levit.count_macs(self.model, self.img_size, self.num_classes)
        return 2.0 * self.batch * sum(step_macs(self.model, self.img_size, self.num_classes))

    def make_inputs(self, gen: torch.Generator) -> tuple:
        images = torch.randn(self.batch, 3, *reference.grid_sides(self.img_size), generator=gen)
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


class OnnxFile:
    """The folded model exported once with torch.onnx.export, for every runtime that reads ONNX: they run the same
    graph, and the export (about a minute for LeViT-128S on the 2-core AMD EPYC) happens once per case. The file
    lives as long as this object."""

    def __init__(self, case: EndToEndCase, folded: Optional[torch.nn.Module]):
        self.case, self.folded = case, folded
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._error: Optional[str] = None

    def path(self) -> str:
        if self._error is None and self._dir is None:
            tmp = tempfile.TemporaryDirectory()
            path = os.path.join(tmp.name, f"{self.case.model_name}.onnx")
            example = self.case.make_inputs(torch.Generator().manual_seed(0))
            try:
                with _quiet():  # on a copy: tracing may leave the model's eval-time caches holding traced values
                    torch.onnx.export(copy.deepcopy(self.folded), example, path, input_names=["images"],
                                      output_names=["logits"], dynamo=True, external_data=False, verbose=False)
                self._dir = tmp
            except Exception as exc:  # the exporter's failure modes are many; report, do not abort the run
                tmp.cleanup()
                self._error = f"torch.onnx.export failed: {type(exc).__name__}: {exc}"
        if self._error is not None:
            raise Unavailable(self._error)
        return os.path.join(self._dir.name, f"{self.case.model_name}.onnx")


def _cpu_fp32_only(case: EndToEndCase, runtime: str):
    if case.device != "cpu" or case.dtype != torch.float32:
        raise Unavailable(f"{runtime} is a CPU fp32 baseline")


def _onnxruntime(case: EndToEndCase, onnx: OnnxFile) -> Callable:
    _cpu_fp32_only(case, "ONNX Runtime")
    try:
        import onnxruntime as ort
    except ImportError:
        raise Unavailable("onnxruntime is not installed (pip install 'levit-kernels[bench]')") from None

    def session(spinning: bool):
        options = ort.SessionOptions()
        options.intra_op_num_threads = case.threads
        options.inter_op_num_threads = 1
        # ORT's idle workers otherwise keep spinning after run() returns and take the cores from whatever runs next:
        # measured interleaved at batch 1 on 2 cores, that cut the other candidates to less than half their speed.
        # Alone, in its own timing block, nothing follows it, and spinning is what ORT does by default.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(onnx.path(), options, providers=["CPUExecutionProvider"])

    def runner(sess):
        def run(images):
            return torch.from_numpy(sess.run(None, {"images": images.numpy()})[0])
        run.precision = "float32"  # the CPU execution provider computes an fp32 graph in fp32
        return run

    run = runner(session(spinning=False))
    run.alone = runner(session(spinning=True)) if case.threads > 1 else run
    return run


# OpenVINO's element types by the names the results use.
_OV_PRECISIONS = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def _openvino(case: EndToEndCase, onnx: OnnxFile, precision: Optional[str]) -> Callable:
    """OpenVINO's CPU plugin on the exported graph, one stream of ``case.threads`` threads, latency mode;
    ``precision`` "f32" forces fp32 (INFERENCE_PRECISION_HINT), None keeps the plugin's default for this CPU (and
    is unavailable where that default is f32 too: it would time the same thing twice). Its TBB workers have no
    spin setting to turn off; whether they slow the candidate after them shows as that candidate's interleaved
    median against its alone one, and the better of the two is kept either way (timing.time_cpu)."""
    _cpu_fp32_only(case, "OpenVINO")
    try:
        import openvino as ov
    except ImportError:
        raise Unavailable("openvino is not installed (pip install openvino)") from None
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": case.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(core.read_model(onnx.path()), "CPU", config)
    ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if precision is None and ran == "f32":
        raise Unavailable("OpenVINO's default precision on this CPU is f32: the same as candidate 'openvino'")
    request = compiled.create_infer_request()

    def run(images):
        return torch.from_numpy(request.infer({0: images.numpy()})[0].copy())
    run.precision = _OV_PRECISIONS.get(ran, ran)
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
    """The optimized model (subject), then the eager folded model, torch.compile of it, ONNX Runtime and OpenVINO
    (fp32, and its default precision)."""
    import levit

    model = build_model(case, seed)
    # LeViT and EfficientFormer fold their BatchNorms (and LayerScales); T2T-ViT has nothing to fold.
    folded = levit.fuse(copy.deepcopy(model)) if hasattr(model, "fuse") else copy.deepcopy(model)
    exact = copy.deepcopy(folded).to(torch.float64)
    compile_mode = "max-autotune" if case.device == "cuda" else None
    onnx = OnnxFile(case, folded)
    specs = [CandidateSpec(f"levit_kernels[{backend}]", lambda: _optimized(case, model, backend), "subject"),
             CandidateSpec("eager", lambda: _autocast(folded, case)),
             CandidateSpec("compile", lambda: _autocast(torch.compile(folded, mode=compile_mode), case)),
             CandidateSpec("onnxruntime", lambda: _onnxruntime(case, onnx)),
             CandidateSpec("openvino", lambda: _openvino(case, onnx, "f32")),
             CandidateSpec("openvino-default", lambda: _openvino(case, onnx, None))]
    specs = [s for s in specs if s.role == "subject" or baselines is None or s.name in baselines]
    return CaseSetup(specs, _no_grad(lambda images: exact(images[:CHECKED_IMAGES].to(torch.float64))),
                     _e2e_tolerance(case), lambda logits: logits[:CHECKED_IMAGES])
