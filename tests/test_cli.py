"""The command line: the demo's report, exit codes, one-line errors."""
import os
import subprocess
import sys

import pytest
import torch

import levit
from levit_kernels.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _restore_threads():
    """The demo sets torch's thread count for the process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_demo_reports_params_flops_verification_speed_and_fusion_error(capsys):
    assert main(["demo", "--model", "levit_128s", "--batch", "2", "--repeats", "2", "--seed", "3",
                 "--verify-batch", "1", "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert "levit_128s: 7,777,058 parameters, 305.1 M multiply-adds per image" in out
    assert "end-to-end check of levit_kernels.optimize (backend reference)" in out and "PASSED" in out
    assert "blocks.4" in out and "top-1 agreement 1/1" in out
    assert "batch 2" in out and "1 thread(s)" in out
    assert out.count("images/s") == 3 and "eager, unfused" in out and "eager, BN fused" in out
    assert "levit_kernels[reference]" in out
    assert "max relative error, fused vs unfused" in out and ": OK" in out


def test_demo_with_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "w.pth"
    torch.save(levit.create_model("levit_128s").state_dict(), path)
    assert main(["demo", "--model", "levit_128s", "--batch", "1", "--repeats", "1", "--checkpoint", str(path),
                 "--verify-batch", "1", "--backend", "reference"]) == 0
    assert str(path) in capsys.readouterr().out


@pytest.mark.parametrize("argv,code,words", [
    ([], 2, ["required", "COMMAND"]),
    (["frobnicate"], 2, ["invalid choice", "frobnicate"]),
    (["demo", "--model", "levit_999"], 2, ["--model", "levit_999", "levit_128s"]),
    (["demo", "--batch", "0"], 2, ["--batch", "positive integer"]),
    (["demo", "--threads", "x"], 2, ["--threads"]),
    (["demo", "--model", "levit_128s", "--checkpoint", "/nonexistent/w.pth"], 1, ["not found", "/nonexistent/w.pth"]),
])
def test_errors_are_one_line_with_an_exit_code(capsys, argv, code, words):
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("levit-kernels") and all(w in lines[0] for w in words), lines[0]


def test_wrong_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "w.pth"
    torch.save(levit.create_model("levit_128").state_dict(), path)
    assert main(["demo", "--model", "levit_128s", "--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "fits levit_128 " in err


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "levit_kernels", "demo", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout, result.stderr


def test_verify_and_predict_take_every_family_the_demo_levit_only(capsys):
    from levit_kernels import ops

    for command in ("verify", "predict"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(name in out for name in levit.model_names())
    assert main(["demo", "--model", "efficientformer_l1"]) == 2
    assert "invalid choice: 'efficientformer_l1'" in capsys.readouterr().err
    try:
        ops.linear(torch.zeros(1, 2), torch.zeros(2, 2), None, "gelu", backend="reference")
    except ValueError:
        pytest.skip("the public ops do not take activation='gelu' in this build yet")
    assert main(["verify", "--model", "efficientformer_l1", "--backend", "reference", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "levit EfficientFormer" in out and "stages.3.blocks.4.token_mixer" in out and "PASSED" in out
