"""Bad input to every public entry point (the ops, levit.create_model, levit.load_checkpoint, optimize when present,
the command line) is refused with an error naming the argument, what was expected and what came: wrong rank,
shape, dtype, device mix (the 'meta' device stands in for a second device), mismatched heads or resolution,
non-finite scale, unknown backend or model name. The command line prints one line and exits non-zero, no
traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import pytest
import torch

import levit
import levit_kernels as lk
from levit_kernels import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape))).to(dtype)


def valid_args(op: str) -> dict:
    """A valid call of ``op`` by keyword (2 images, 2 heads, a 3×3 grid, key dim 8, value dim 12, C = 16)."""
    attention = {"k": _r(2, 2, 9, 8), "v": _r(2, 2, 9, 12), "attention_biases": _r(2, 9), "resolution": 3}
    if op == "biased_attention":
        return {"q": _r(2, 2, 9, 8), **attention, "stride": 1}
    if op == "shrink_attention":
        return {"x": _r(2, 9, 16), "q_weight": _r(16, 16), "q_bias": _r(16), **attention, "stride": 2}
    if op == "linear":
        return {"x": _r(3, 16), "weight": _r(8, 16), "bias": _r(8), "residual": _r(3, 8)}
    if op == "layer_norm":  # 3 rows of C = 16
        return {"x": _r(3, 16), "weight": _r(16), "bias": _r(16), "eps": 1e-5}
    if op == "pool_mixer":  # 2 maps of 3×4, C = 16
        return {"x": _r(2, 3, 4, 16), "layer_scale": _r(16), "pool_size": 3}
    return {"x": _r(3, 16), "w1": _r(32, 16), "b1": _r(32), "w2": _r(16, 32), "b2": _r(16)}


# (op, changes to the valid call, exception, argument named, expected, received)
P = pytest.param
BAD_OP_CALLS = [
    # rank
    P("biased_attention", {"q": _r(2, 9, 8)}, ValueError, "q", "4-D tensor", "shape (2, 9, 8)", id="attn-rank"),
    P("shrink_attention", {"x": _r(9, 16)}, ValueError, "x", "3-D tensor", "shape (9, 16)", id="shrink-rank"),
    P("linear", {"x": torch.tensor(1.0)}, ValueError, "x", "at least 1 dim", "shape ()", id="linear-rank-x"),
    P("linear", {"weight": _r(1, 8, 16)}, ValueError, "weight", "2-D tensor", "shape (1, 8, 16)", id="linear-rank-w"),
    P("mlp", {"b1": _r(32, 1)}, ValueError, "b1", "1-D tensor", "shape (32, 1)", id="mlp-rank-b1"),
    # shape
    P("biased_attention", {"q": _r(2, 2, 9, 4)}, ValueError, "q", "size 8 in dim 3", "shape (2, 2, 9, 4)",
      id="attn-key-dim"),
    P("biased_attention", {"v": _r(1, 2, 9, 12)}, ValueError, "v", "size 2 in dim 0", "shape (1, 2, 9, 12)",
      id="attn-batch"),
    P("shrink_attention", {"q_weight": _r(16, 5)}, ValueError, "q_weight", "size 16 in dim 1 (channels of x)",
      "shape (16, 5)", id="shrink-qweight"),
    P("shrink_attention", {"q_bias": _r(15)}, ValueError, "q_bias", "size 16 in dim 0", "shape (15,)",
      id="shrink-qbias"),
    P("linear", {"weight": _r(8, 5)}, ValueError, "weight", "size 16 in dim 1 (channels of x)", "shape (8, 5)",
      id="linear-weight"),
    P("linear", {"bias": _r(7)}, ValueError, "bias", "size 8 in dim 0", "shape (7,)", id="linear-bias"),
    P("linear", {"residual": _r(3, 7)}, ValueError, "residual", "output's shape (3, 8)", "shape (3, 7)",
      id="linear-residual"),
    P("mlp", {"w2": _r(16, 5)}, ValueError, "w2", "size 32 in dim 1 (hidden width", "shape (16, 5)", id="mlp-w2"),
    P("mlp", {"w2": _r(8, 32), "b2": _r(8)}, ValueError, "w2", "for the residual add", "shape (8, 32)",
      id="mlp-residual-width"),
    # layer_norm, pool_mixer
    P("layer_norm", {"x": torch.tensor(1.0)}, ValueError, "x", "at least 1 dim", "shape ()", id="ln-rank"),
    P("layer_norm", {"x": _r(3, 0), "weight": None, "bias": None}, ValueError, "x", "at least 1 channel",
      "shape (3, 0)", id="ln-no-channels"),
    P("layer_norm", {"weight": _r(7)}, ValueError, "weight", "size 16 in dim 0 (channels of x)", "shape (7,)",
      id="ln-weight-size"),
    P("layer_norm", {"bias": _r(1, 16)}, ValueError, "bias", "1-D tensor", "shape (1, 16)", id="ln-bias-rank"),
    P("layer_norm", {"x": _r(3, 16).long()}, TypeError, "x", "floating tensor", "torch.int64", id="ln-int"),
    P("layer_norm", {"bias": _r(16, dtype=torch.float16)}, TypeError, "bias", "same dtype as 'x' (torch.float32)",
      "torch.float16", id="ln-dtype-mix"),
    P("layer_norm", {"weight": torch.empty(16, device="meta")}, ValueError, "weight", "same device as 'x' (cpu)",
      "meta", id="ln-device-mix"),
    P("layer_norm", {"eps": -1e-5}, ValueError, "eps", "finite and >= 0", "-1e-05", id="ln-eps-negative"),
    P("layer_norm", {"eps": math.nan}, ValueError, "eps", "finite and >= 0", "nan", id="ln-eps-nan"),
    P("layer_norm", {"eps": torch.tensor(1e-5)}, TypeError, "eps", "a Python float", "Tensor", id="ln-eps-tensor"),
    P("layer_norm", {"backend": "gpu"}, ValueError, "backend", "'auto', 'reference', 'cpu', 'triton'", "'gpu'",
      id="ln-backend"),
    P("pool_mixer", {"x": _r(3, 4, 16)}, ValueError, "x", "4-D tensor (B, H, W, C)", "shape (3, 4, 16)",
      id="pool-rank"),
    P("pool_mixer", {"layer_scale": _r(4)}, ValueError, "layer_scale", "size 16 in dim 0 (channels of x)",
      "shape (4,)", id="pool-ls-size"),
    P("pool_mixer", {"layer_scale": _r(16, 1)}, ValueError, "layer_scale", "1-D tensor (C,)", "shape (16, 1)",
      id="pool-ls-rank"),
    P("pool_mixer", {"pool_size": 4}, ValueError, "pool_size", "an odd int in [1, 129]", "4", id="pool-even"),
    P("pool_mixer", {"pool_size": 131}, ValueError, "pool_size", "an odd int in [1, 129]", "131", id="pool-huge"),
    P("pool_mixer", {"pool_size": 0}, ValueError, "pool_size", "positive int", "0", id="pool-zero"),
    P("pool_mixer", {"pool_size": 3.0}, TypeError, "pool_size", "positive int", "3.0", id="pool-float"),
    P("pool_mixer", {"layer_scale": _r(16, dtype=torch.float64)}, TypeError, "layer_scale",
      "same dtype as 'x' (torch.float32)", "torch.float64", id="pool-dtype-mix"),
    P("pool_mixer", {"layer_scale": torch.empty(16, device="meta")}, ValueError, "layer_scale",
      "same device as 'x' (cpu)", "meta", id="pool-device-mix"),
    P("pool_mixer", {"x": [[0.0]]}, TypeError, "x", "torch.Tensor", "list", id="pool-list"),
    # dtype
    P("biased_attention", {"q": _r(2, 2, 9, 8).long()}, TypeError, "q", "floating tensor", "torch.int64",
      id="attn-int"),
    P("biased_attention", {"k": _r(2, 2, 9, 8, dtype=torch.float64)}, TypeError, "k",
      "same dtype as 'q' (torch.float32)", "torch.float64", id="attn-dtype-mix"),
    P("shrink_attention", {"q_bias": _r(16, dtype=torch.float16)}, TypeError, "q_bias",
      "same dtype as 'x' (torch.float32)", "torch.float16", id="shrink-dtype-mix"),
    P("linear", {"bias": _r(8, dtype=torch.bfloat16)}, TypeError, "bias", "same dtype as 'x'", "torch.bfloat16",
      id="linear-dtype-mix"),
    P("mlp", {"x": _r(3, 16).bool()}, TypeError, "x", "floating tensor", "torch.bool", id="mlp-bool"),
    # device mix
    P("biased_attention", {"v": torch.empty(2, 2, 9, 12, device="meta")}, ValueError, "v",
      "same device as 'q' (cpu)", "meta", id="attn-device-mix"),
    P("shrink_attention", {"q_weight": torch.empty(16, 16, device="meta")}, ValueError, "q_weight",
      "same device as 'x' (cpu)", "meta", id="shrink-device-mix"),
    P("linear", {"residual": torch.empty(3, 8, device="meta")}, ValueError, "residual", "same device as 'x'",
      "meta", id="linear-device-mix"),
    P("mlp", {"b2": torch.empty(16, device="meta")}, ValueError, "b2", "same device as 'x'", "meta",
      id="mlp-device-mix"),
    # heads / resolution / stride
    P("biased_attention", {"attention_biases": _r(3, 9)}, ValueError, "attention_biases", "size 2 in dim 0 (heads",
      "shape (3, 9)", id="attn-heads"),
    P("shrink_attention", {"v": _r(2, 3, 9, 12)}, ValueError, "v", "size 2 in dim 1 (heads, as k)",
      "shape (2, 3, 9, 12)", id="shrink-heads"),
    P("biased_attention", {"resolution": 4}, ValueError, "k", "Rh·Rw = 16", "shape (2, 2, 9, 8)",
      id="attn-resolution"),
    P("biased_attention", {"stride": 2}, ValueError, "q", "stride-2 2×2 subgrid of the 3×3 grid", "shape (2, 2, 9, 8)",
      id="attn-stride"),
    P("biased_attention", {"resolution": 3.0}, TypeError, "resolution", "positive int", "3.0", id="attn-res-float"),
    P("shrink_attention", {"stride": 0}, ValueError, "stride", "positive int", "0", id="shrink-stride-0"),
    # scale
    P("biased_attention", {"scale": math.nan}, ValueError, "scale", "finite", "nan", id="attn-scale-nan"),
    P("shrink_attention", {"scale": math.inf}, ValueError, "scale", "finite", "inf", id="shrink-scale-inf"),
    P("biased_attention", {"scale": torch.tensor(0.3)}, TypeError, "scale", "Python float or None", "Tensor",
      id="attn-scale-tensor"),
    # flags, backend, non-tensors
    P("linear", {"activation": "silu"}, ValueError, "activation", "(None, 'hardswish', 'gelu', 'relu')", "'silu'",
      id="linear-activation"),
    P("biased_attention", {"activation": "GELU"}, ValueError, "activation", "(None, 'hardswish', 'gelu', 'relu')",
      "'GELU'", id="attn-activation-case"),
    P("mlp", {"residual": 1}, TypeError, "residual", "a bool", "int", id="mlp-residual-int"),
    P("biased_attention", {"backend": "gpu"}, ValueError, "backend", "'auto', 'reference', 'cpu', 'triton'",
      "'gpu'", id="attn-backend"),
    P("mlp", {"backend": None}, ValueError, "backend", "one of", "None", id="mlp-backend-none"),
    P("linear", {"bias": [0.0] * 8}, TypeError, "bias", "torch.Tensor", "list", id="linear-bias-list"),
]


@pytest.mark.parametrize("op, change, exc, arg, expected, received", BAD_OP_CALLS)
def test_ops_name_argument_expected_and_received(op, change, exc, arg, expected, received):
    kwargs = {**valid_args(op), **change}
    with pytest.raises(exc) as info:
        getattr(lk, op)(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{op}: argument '{arg}' must be"), message
    assert expected in message and received in message, message


@pytest.mark.parametrize("op", ["biased_attention", "shrink_attention", "linear", "mlp", "layer_norm", "pool_mixer"])
def test_the_valid_calls_above_are_valid(op):
    """Each bad call differs from a valid one only in what it breaks."""
    assert getattr(lk, op)(**valid_args(op), backend="reference").dtype == torch.float32


@pytest.mark.parametrize("backend, words", [("cpu", ["backend 'cpu' runs on cpu tensors", "meta"])])
def test_backend_refuses_tensors_on_another_device(backend, words):
    if not lk.availability(backend)[0]:
        pytest.skip(f"backend {backend} unavailable")
    args = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in valid_args("linear").items()}
    with pytest.raises(ValueError) as info:
        lk.linear(**args, backend=backend)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_availability_of_unknown_backend():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference', 'cpu', 'triton'\), "
                                         r"got 'tpu'"):
        lk.availability("tpu")


# ---- models and checkpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, words", [
    P({"name": "levit_999"}, ValueError, ["levit_999", "levit_128s", "levit_384"], id="unknown-name"),
    P({"name": None}, ValueError, ["None", "levit_128s"], id="name-none"),
    P({"num_classes": 0}, ValueError, ["num_classes", "positive int", "0"], id="num-classes-0"),
    P({"num_classes": 2.5}, ValueError, ["num_classes", "positive int", "2.5"], id="num-classes-float"),
    P({"img_size": 0}, ValueError, ["img_size", "positive int", "0"], id="img-size-0"),
    P({"img_size": "224"}, ValueError, ["img_size", "positive int", "'224'"], id="img-size-str"),
    P({"checkpoint": 5}, TypeError, ["'checkpoint'", "a path or a state dict", "int"], id="checkpoint-int"),
    P({"checkpoint": "/nonexistent/w.pth"}, FileNotFoundError, ["/nonexistent/w.pth", "not found"],
      id="checkpoint-missing"),
])
def test_create_model_refuses(kwargs, exc, words):
    kwargs = {"name": "levit_128s", **kwargs}
    with pytest.raises(exc) as info:
        levit.create_model(**kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("content", [b"not a checkpoint" * 4, b""], ids=["garbage", "empty"])
def test_unreadable_checkpoint_file_is_one_clear_line(tmp_path, content):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(levit.CheckpointError) as info:
        levit.create_model("levit_128s", checkpoint=path)
    message = str(info.value)
    assert str(path) in message and "not a readable checkpoint" in message and "\n" not in message, message


def test_load_checkpoint_refuses(tmp_path):
    model = levit.create_model("levit_128s")
    with pytest.raises(TypeError, match=r"argument 'model' must be a levit.LeViT.*, got Linear"):
        levit.load_checkpoint(torch.nn.Linear(2, 2), model.state_dict())
    other = levit.create_model("levit_128").state_dict()
    with pytest.raises(levit.CheckpointError, match=r"does not fit levit_128s .*the checkpoint fits levit_128 "):
        levit.load_checkpoint(model, other)
    wrong = dict(model.state_dict())
    wrong["head.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(levit.CheckpointError, match=r"head.linear.weight"):
        levit.load_checkpoint(model, wrong)


# ---- optimize ---------------------------------------------------------------------------------------------------

needs_optimize = pytest.mark.skipif(not hasattr(lk, "optimize"),
                                    reason="levit_kernels.optimize does not exist in this checkout")


@needs_optimize
def test_optimize_refuses():
    model = levit.create_model("levit_128s").eval()
    cases = [
        (lambda: lk.optimize("levit_128s"), TypeError, ["'model'", "torch.nn.Module", "str"]),
        (lambda: lk.optimize(model, backend="tpu"), ValueError, ["'backend'", "'tpu'"]),
        (lambda: lk.optimize(model, backend="reference", dtype="int8"), ValueError, ["'dtype'", "'int8'"]),
        (lambda: lk.optimize(torch.nn.Sequential(torch.nn.Linear(3, 3)).eval()), ValueError, ["LeViT"]),
        (lambda: lk.optimize(levit.create_model("levit_128s")), ValueError, ["training mode"]),
    ]
    for call, exc, words in cases:
        with pytest.raises(exc) as info:
            call()
        assert all(w in str(info.value) for w in words), str(info.value)
    split = levit.create_model("levit_128s").eval()
    split.head.to("meta")
    with pytest.raises(ValueError, match="meta"):
        lk.optimize(split)


@needs_optimize
def test_optimized_model_refuses_wrong_images():
    optimized = lk.optimize(levit.create_model("levit_128s").eval(), backend="reference")
    for bad in (torch.zeros(3, 224, 224), torch.zeros(1, 4, 224, 224), torch.zeros(1, 3, 100, 100)):
        with pytest.raises(ValueError, match=r"images of shape"):
            optimized(bad)


# ---- command line -----------------------------------------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _argv_with(command: str, parser: argparse.ArgumentParser, image: str, **override) -> list[str]:
    """argv for ``command``: every required argument filled (positional ones with ``image``), then ``override``
    (option dest → value) appended."""
    argv = [command]
    for action in parser._actions:
        if action.dest in override or action.dest == "help":
            continue
        if not action.option_strings:
            argv.append(image)
        elif action.required:
            argv += [action.option_strings[0], "/nonexistent/w.pth" if action.dest == "checkpoint" else "1"]
    for dest, value in override.items():
        option = next(a.option_strings[0] for a in parser._actions if a.dest == dest)
        argv += [option, value]
    return argv


def _bad_values(parser: argparse.ArgumentParser):
    """(dest, bad value, words the error must contain) for every option with choices or a numeric type."""
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if action.choices:
            yield action.dest, "nonsense_value", [action.option_strings[0], "nonsense_value", "choose from"]
        elif action.type is cli.positive_int:
            yield action.dest, "0", [action.option_strings[0], "positive integer", "'0'"]
        elif action.type is int:
            yield action.dest, "x1", [action.option_strings[0], "'x1'"]


def _assert_one_line(capsys, code, expected_code, words):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == expected_code, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(cli.PROG) and all(w in lines[0] for w in words), lines[0]


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path)
    return str(path)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_cli_bad_option_values_are_one_line_exit_2(command, capsys, image):
    parser = _subcommands()[command]
    argv = _argv_with(command, parser, image) + ["--no-such-option"]
    _assert_one_line(capsys, cli.main(argv), 2, ["unrecognized arguments: --no-such-option"])
    for dest, value, words in _bad_values(parser):
        _assert_one_line(capsys, cli.main(_argv_with(command, parser, image, **{dest: value})), 2, words)


@pytest.mark.parametrize("command", sorted(c for c, p in _subcommands().items()
                                           if any(a.dest == "checkpoint" for a in p._actions)))
def test_cli_missing_checkpoint_is_one_line_exit_1(command, capsys, image):
    parser = _subcommands()[command]
    argv = _argv_with(command, parser, image, checkpoint="/nonexistent/w.pth")
    if any(a.dest == "model" for a in parser._actions):
        argv += ["--model", "levit_128s"]
    _assert_one_line(capsys, cli.main(argv), 1, ["/nonexistent/w.pth", "not found"])


def test_cli_unknown_command_and_no_command(capsys):
    _assert_one_line(capsys, cli.main(["frobnicate"]), 2, ["invalid choice", "'frobnicate'"])
    _assert_one_line(capsys, cli.main([]), 2, ["required"])


def test_python_dash_m_prints_one_line_and_exits_1(tmp_path):
    """The real entry point, in a fresh process: an unreadable checkpoint gives one stderr line, no traceback."""
    path = tmp_path / "broken.pth"
    path.write_bytes(b"\x00" * 64)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "levit_kernels", "demo", "--model", "levit_128s", "--checkpoint",
                             str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in lines[0] and "not a readable checkpoint" in lines[0], lines[0]
