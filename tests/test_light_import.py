"""`import levit` and `import levit_kernels` load no compiled code: the pure-PyTorch models build and run with
neither the C++ extension nor triton loaded, and the backends load on first use. Checked in a fresh interpreter,
since this test session has long since imported both."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("levit_kernels._C", "levit_kernels.backends.cpu", "levit_kernels.backends.triton", "triton")


def _run(code: str) -> str:
    """stdout of ``code`` in a fresh python, run from outside the checkout with this tree first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(ROOT), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _loaded_after(code: str) -> set[str]:
    """The HEAVY modules loaded in a fresh python after running ``code``."""
    out = _run(f"import sys\n{code}\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    return set(filter(None, out.rsplit("loaded:", 1)[1].strip().split(",")))


def test_the_issue_command_holds():
    _run("import levit, sys; levit.create_model('levit_128s'); assert 'levit_kernels._C' not in sys.modules")


@pytest.mark.parametrize("code", [
    "import levit, torch\nm = levit.create_model('levit_128s').eval()\nwith torch.no_grad(): m(torch.randn(1, 3, 224, 224))",
    "import levit\nlevit.fuse(levit.create_model('levit_128').eval())",
    "import levit_kernels\nlevit_kernels.reference, levit_kernels.fold_batchnorm, levit_kernels.BACKENDS",
], ids=["forward", "fuse", "levit_kernels"])
def test_models_run_without_compiled_code(code):
    assert _loaded_after(code) == set()


def test_backends_load_on_first_use():
    loaded = _loaded_after("import levit_kernels\nlevit_kernels.availability('cpu')")
    assert "levit_kernels.backends.cpu" in loaded and "triton" not in loaded
    loaded = _loaded_after("import levit_kernels\nlevit_kernels.cpu_isa")
    assert "levit_kernels.backends.cpu" in loaded


def test_lazy_attributes_resolve_and_unknown_ones_raise():
    import levit_kernels
    import levit_kernels.optimize.verify  # noqa: F401  (a submodule import must not shadow the optimize function)

    assert callable(levit_kernels.optimize) and callable(levit_kernels.verify)
    assert set(levit_kernels.__all__) <= set(dir(levit_kernels))
    for name in levit_kernels.__all__:
        assert getattr(levit_kernels, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        levit_kernels.nope
