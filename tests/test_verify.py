"""levit_kernels.verify: its report, that it catches a wrong block and names it, low precision, and the CLI."""
import pytest
import torch

import levit
import levit_kernels
from levit_kernels import tolerances
from levit_kernels.backends import reference_backend
from levit_kernels.cli import main


@pytest.fixture
def model(gen):
    return levit.randomize_(levit.create_model("levit_128s"), gen).eval()


def test_report_lists_stem_every_block_and_logits(model, seed):
    report = levit_kernels.verify(model, backend="reference", batch=2, seed=seed)
    names = [s.name for s in report.steps]
    assert names == ["stem"] + [f"blocks.{i}" for i in range(len(model.blocks))] + ["logits"]
    assert [s.kind for s in report.steps[1:5]] == ["attention", "mlp", "attention", "mlp"]
    assert report.steps[5].kind == "shrink" and report.logits.kind == ""
    assert report.passed and report.first_failure is None
    assert all(s.tolerance == tolerances.MODEL_FP32_RTOL and s.eager_lowp_error is None for s in report.steps)
    # relative to max|ref| (no absolute floor since issue 16): zero exactly where the absolute error is
    assert all(s.rel_error >= 0 and s.abs_error >= 0 and (s.rel_error == 0) == (s.abs_error == 0)
               for s in report.steps)
    table = report.table()
    assert all(name in table for name in names) and "PASSED" in table and "top-1 agreement 2/2" in table


def test_a_wrong_block_fails_and_is_named(monkeypatch, model, seed):
    """Perturb the mlp op on the 7×7 grid only: the first MLP of stage 1 is the first step to fail."""
    real = reference_backend.mlp

    def wrong(x, *args):
        out = real(x, *args)
        return out + 1e-2 if x.shape[1] == 49 else out

    monkeypatch.setattr(reference_backend, "mlp", wrong)
    report = levit_kernels.verify(model, backend="reference", batch=2, seed=seed)
    assert not report.passed
    assert report.first_failure.name == "blocks.5" and report.first_failure.kind == "mlp"
    assert all(s.ok for s in report.steps[:6])
    assert "FAILED: blocks.5 (mlp)" in report.table()


def test_low_precision_is_judged_against_the_eager_model_in_that_dtype(model, seed):
    report = levit_kernels.verify(model, backend="reference", dtype=torch.bfloat16, batch=2, seed=seed)
    assert report.passed, report.table()
    logits = report.logits
    assert logits.eager_lowp_error > 1e-3  # bf16 really was used, by both
    assert logits.tolerance == tolerances.MODEL_LOWP_ERROR_RATIO * logits.eager_lowp_error
    for step in report.blocks:
        assert step.tolerance == max(tolerances.MODEL_LOWP_ERROR_RATIO * step.eager_lowp_error,
                                     tolerances.KERNEL_RTOL[torch.bfloat16])
    assert "eager bfloat16" in report.table()


def test_bad_batch_is_refused(model):
    with pytest.raises(ValueError, match="argument 'batch' must be a positive int, got 0"):
        levit_kernels.verify(model, backend="reference", batch=0)


def test_cli_verify_passes_and_fails_with_exit_codes(monkeypatch, capsys):
    argv = ["verify", "--model", "levit_128s", "--backend", "reference", "--batch", "1", "--seed", "5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "levit: backend reference, float32, batch 1, seed 5" in out and "PASSED" in out
    real = reference_backend.linear
    monkeypatch.setattr(reference_backend, "linear", lambda x, *a: real(x, *a) * 1.01)
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "FAILED: stem" not in captured.out and "FAILED: blocks.0 (attention)" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("levit-kernels verify: levit_128s failed: blocks.0"), err


@pytest.mark.parametrize("argv,code,words", [
    (["verify", "--dtype", "float8"], 2, ["--dtype", "float8"]),
    (["verify", "--batch", "0"], 2, ["--batch", "positive integer"]),
    (["verify", "--model", "levit_128s", "--backend", "nope"], 2, ["--backend", "nope"]),
    (["verify", "--model", "levit_128s", "--checkpoint", "/nonexistent.pth"], 1, ["not found", "/nonexistent.pth"]),
])
def test_cli_verify_errors_are_one_line(capsys, argv, code, words):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err


def test_cli_verify_refuses_low_precision_on_the_cpu_backend(capsys):
    if not levit_kernels.availability("cpu")[0]:
        pytest.skip("backend cpu unavailable")
    assert main(["verify", "--model", "levit_128s", "--backend", "cpu", "--dtype", "float16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend 'cpu' computes in torch.float32 only" in err[0], err
