"""The Triton autotune lists are per dtype class (fp32 and fp16/bf16 tiles differ: exact fp32 dots expand to FMAs
with their operands in registers), each launch keeps only its dtype's list, and the compile check's --quick set
(classes no other class covers) is chosen by a rule that can fail."""
import os

import pytest
import torch

# As test_triton.py, before triton is first imported: triton.language's own jit helpers (tl.max, …) are built in
# the mode of that import, and the kernels once per process.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton = pytest.importorskip("triton")

from levit_kernels.backends.triton import _runtime, biased, flash, gemm, shrink  # noqa: E402
from levit_kernels.backends.triton.compile_cases import DTYPES, CompileCase, mark_covered  # noqa: E402

# (kernel's prune, its GPU lists by dtype class, the tensor argument the prune reads the dtype from, constexprs)
PRUNES = {
    "attention": (biased._PRUNE["early_config_prune"], biased.GPU_CONFIGS_BY_DTYPE, "k_ptr", {"PACKED_ROWS": 196}),
    "shrink": (shrink._PRUNE["early_config_prune"], shrink.GPU_CONFIGS_BY_DTYPE, "k_ptr", {"PACKED_ROWS": 49}),
    "linear": (gemm._LINEAR_PRUNE["early_config_prune"], gemm.GPU_LINEAR_CONFIGS_BY_DTYPE, "x_ptr", {}),
    "mlp": (gemm._MLP_PRUNE["early_config_prune"], gemm.GPU_MLP_CONFIGS_BY_DTYPE, "x_ptr", {"C_OUT": 256}),
    "flash": (flash._prune, flash.GPU_CONFIGS_BY_DTYPE, "k_ptr", {"NQ_CLASS": 4096, "NK_CLASS": 4096, "HAS_BIAS": False}),
    "flash+bias": (flash._prune, flash.GPU_CONFIGS_BY_DTYPE, "k_ptr", {"NQ_CLASS": 256, "NK_CLASS": 256,
                                                                     "HAS_BIAS": True}),
}


@pytest.mark.parametrize("kernel", sorted(PRUNES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_launch_keeps_only_its_dtype_list(kernel, dtype):
    prune, by_dtype, arg, consts = PRUNES[kernel]
    union = _runtime.unique(c for configs in by_dtype.values() for c in configs)
    own = {_runtime.config_key(c) for c in by_dtype[_runtime.dtype_class(dtype)]}
    kept = prune(union, {arg: torch.empty(0, dtype=dtype), **consts})
    assert kept and {_runtime.config_key(c) for c in kept} <= own
    other = "half" if _runtime.dtype_class(dtype) == "fp32" else "fp32"
    foreign = {_runtime.config_key(c) for c in by_dtype[other]} - own
    assert not foreign & {_runtime.config_key(c) for c in kept}
    # the two lists differ (one may hold the other: biased attention's fp32 list is one config of its 16-bit list),
    # so the union the autotuner holds has configs this prune must drop for one of the dtypes
    fp32, half = ({_runtime.config_key(c) for c in by_dtype[d]} for d in ("fp32", "half"))
    assert fp32 != half, f"{kernel}: the fp32 and 16-bit lists are the same, nothing to prune by dtype"


def test_untuned_mode_gives_each_dtype_its_default(monkeypatch):
    monkeypatch.setattr(_runtime, "interpreting", lambda: False)
    monkeypatch.setenv("LEVIT_KERNELS_TRITON_AUTOTUNE", "0")
    by_dtype = biased.GPU_CONFIGS_BY_DTYPE
    configs = _runtime.tuned_configs(by_dtype, biased._query_tile(16, 2, 4))
    for dtype in (torch.float32, torch.bfloat16):
        first = by_dtype[_runtime.dtype_class(dtype)][0]
        assert [_runtime.config_key(c) for c in _runtime.for_dtype(configs, by_dtype, dtype)] == \
            [_runtime.config_key(first)]


def _case(kernel, configs, **consts):
    return CompileCase(kernel, str(consts), consts, {d: tuple(configs) for d in DTYPES})


def test_covered_classes_are_those_another_class_bounds():
    small, big = (triton.Config({"B": b}) for b in (16, 32))
    a, b = object(), object()
    cases = mark_covered([_case(a, [small], N=64, D=16, ACT=1), _case(a, [small, big], N=256, D=16, ACT=1),
                          _case(a, [small, big], N=256, D=16, ACT=2),  # another activation: never covered
                          _case(a, [small, big], N=64, D=32, ACT=1),  # larger D, smaller N: neither covers
                          _case(a, [small, big], N=256, D=16, ACT=1),  # equal to the second: the first stays
                          _case(b, [small], N=16, D=16, ACT=1),  # another kernel
                          _case(a, [small, big], N=16, D=16, ACT=1)],  # more configs than the first: still covered
                         ("N", "D"), ("ACT",))
    assert [c.covered for c in cases] == [True, False, False, False, True, False, True]
    # A config the larger class does not try leaves the smaller one to be compiled.
    extra = triton.Config({"B": 64})
    cases = mark_covered([_case(a, [small, extra], N=64, D=16, ACT=1), _case(a, [small, big], N=256, D=16, ACT=1)],
                         ("N", "D"), ("ACT",))
    assert [c.covered for c in cases] == [False, False]


def test_every_kernel_module_has_uncovered_classes():
    import importlib

    from levit_kernels.backends.triton.compile_cases import MODULES

    for name in MODULES:
        cases = importlib.import_module(f"levit_kernels.backends.triton.{name}").compile_cases()
        kernels = {id(c.kernel) for c in cases}
        assert kernels == {id(c.kernel) for c in cases if not c.covered}, name
        assert all(any(c.configs_for(d) for d in DTYPES) for c in cases), name
