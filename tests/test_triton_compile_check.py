"""scripts/triton_compile_check.py fails on a kernel a GPU compiler rejects (planted in
tests/support/planted_triton_kernels.py) and on one that spills registers, passes a good one with its registers in the table, and judges shared
memory and spills against each target's limit."""
import importlib.util
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "triton_compile_check.py")


def _script():
    spec = importlib.util.spec_from_file_location("triton_compile_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fails_on_a_planted_bad_kernel(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, SCRIPT, "--targets", "sm_90", "--dtypes", "fp16", "--jobs", "1",
                           "--module", "tests.support.planted_triton_kernels", "--out", str(out),
                           "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {line.split("|")[1].strip(): line for line in out.read_text().splitlines()
            if line.startswith("|") and "planted" in line}
    assert set(rows) == {"good_copy_kernel", "bad_arange_kernel", "spilling_kernel"}, out.read_text()
    assert "compile error" in rows["bad_arange_kernel"] and "FAILED bad_arange_kernel" in done.stderr
    assert "register spills" in rows["spilling_kernel"] and "FAILED spilling_kernel" in done.stderr
    good = [cell.strip() for cell in rows["good_copy_kernel"].split("|")[1:-1]]
    assert good[-1] == "ok" and int(good[5]) > 0 and int(good[6]) == 0, rows["good_copy_kernel"]
    assert "good_copy_kernel" not in done.stderr


@pytest.mark.parametrize("cc,shared,spills,expected", [
    (80, 163 * 1024, 0, []),
    (80, 163 * 1024 + 1, 0, ["shared memory"]),
    (90, 200 * 1024, 0, []),
    (90, 227 * 1024 + 1, 8, ["shared memory", "register spills"]),
])
def test_judge_limits(cc, shared, spills, expected):
    problems = _script().judge({"cc": cc, "shared": shared, "spills": spills})
    assert [p.split(" ")[0] + " " + p.split(" ")[1].rstrip(":") for p in problems] == expected


def test_targets_are_checked():
    with pytest.raises(SystemExit, match="sm_80, sm_90"):
        _script().parse_targets("sm_75")


def test_spills_report_mode_lists_spills_but_fails_only_on_the_rest():
    script = _script()
    spilling = {"problems": ["register spills: 96 B of stack/local memory"]}
    both = {"problems": ["shared memory 1 B > sm_90 limit 0 B", "register spills: 8 B of stack/local memory"]}
    assert script.failures(spilling, "fail") == spilling["problems"]
    assert script.failures(spilling, "report") == []
    assert script.failures(both, "report") == ["shared memory 1 B > sm_90 limit 0 B"]
    assert script.failures({"problems": ["compile error: CompilationError"]}, "report")
