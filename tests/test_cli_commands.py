"""The levit-kernels subcommands beyond demo: info, bench wiring, and the console-script entry point."""
import os
import shutil
import subprocess
import sys

import pytest

from levit_kernels import backends
from levit_kernels.cli import COMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_command_is_listed_in_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert [c.name for c in COMMANDS] == ["demo", "info", "verify", "predict", "bench"]
    assert all(c.name in out for c in COMMANDS)


def test_info_reports_versions_cpu_gpu_and_every_backend_with_its_reason(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("levit-kernels 0.1.0 (python ") and "torch " in out
    assert "\nCPU: " in out and "best ISA by CPU flags" in out and "\nGPU" in out
    for name, (ok, why) in backends.report().items():
        want = f"  {name:<10} available" if ok else f"  {name:<10} unavailable: {why}"
        assert want in out.splitlines(), (name, out)


def test_bench_is_mounted_with_its_own_arguments(capsys):
    assert main(["bench", "--help"]) == 0
    assert "--preset" in capsys.readouterr().out
    assert main(["bench", "--preset", "fastest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset" in err[0] and "fastest" in err[0]


@pytest.mark.parametrize("argv,code,words", [
    (["info", "--verbose"], 2, ["unrecognized arguments", "--verbose"]),
    (["verify", "--device", "cuda", "--model", "levit_128s"], 1, ["--device cuda"]),
])
def test_errors_are_one_line(capsys, argv, code, words):
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and all(w in lines[0] for w in words), err


@pytest.mark.parametrize("command", [[sys.executable, "-m", "levit_kernels"], ["levit-kernels"]])
def test_module_and_console_script_entry_points(command):
    if command[0] == "levit-kernels" and shutil.which("levit-kernels") is None:
        pytest.skip("the levit-kernels console script is not installed (pip install -e .)")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(command + ["info"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "backends:" in result.stdout, result.stderr
