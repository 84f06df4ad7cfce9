"""Run-time ISA selection of the CPU backend (LEVIT_KERNELS_ISA, force_isa, cpu_isa), and a check on the built
extension that no AVX instruction leaked into code a plain x86-64 CPU may run."""
from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

from levit_kernels.backends import cpu
from levit_kernels.backends.cpu._loader import ISAS
from levit_kernels.bench.timing import torch_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not cpu.availability()[0], reason=f"CPU backend: {cpu.availability()[1]}")

# Runs a call to biased_attention on backend "cpu" and prints the ISA it ran with.
PROBE = """
import torch, levit_kernels as lk
q = torch.randn(1, 1, 4, 8); b = torch.randn(1, 4)
lk.biased_attention(q, q, q, b, 2, backend="cpu")
print(lk.cpu_isa())
"""


def run_probe(isa_env):
    env = dict(os.environ, LEVIT_KERNELS_ISA=isa_env, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)


def test_scalar_is_always_supported_and_best_is_active():
    assert "scalar" in cpu.supported_isas()
    assert cpu.cpu_isa() in cpu.supported_isas()
    assert cpu.supported_isas()[-1] == cpu.cpu_isa() or os.environ.get("LEVIT_KERNELS_ISA")


def test_force_isa_switches_and_restores():
    before = cpu.cpu_isa()
    with cpu.force_isa("scalar"):
        assert cpu.cpu_isa() == "scalar"
    assert cpu.cpu_isa() == before


@pytest.mark.parametrize("name", [n for n in ISAS if n != "scalar"])
def test_force_isa_refuses_unsupported(name):
    if cpu.isa_supported(name):
        pytest.skip(f"{name} is supported here")
    with pytest.raises(ValueError, match=f"'{name}' is not supported by this CPU"):
        with cpu.force_isa(name):
            pass


def test_env_override_valid():
    result = run_probe("scalar")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "scalar"


def test_env_override_unknown_is_a_clear_error():
    result = run_probe("sse9")
    assert result.returncode != 0
    assert "ISA must be one of scalar, avx2, avx512, neon; got 'sse9'" in result.stderr


def test_env_override_unsupported_is_a_clear_error():
    unsupported = [n for n in ISAS if not cpu.isa_supported(n)]
    if not unsupported:
        pytest.skip("this CPU supports every ISA variant")
    result = run_probe(unsupported[0])
    assert result.returncode != 0
    assert f"LEVIT_KERNELS_ISA={unsupported[0]} is not supported by this CPU" in result.stderr


# --- no AVX outside the AVX kernels ------------------------------------------------------------------------------

FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
INSTRUCTION = re.compile(r"^\s+[0-9a-f]+:\s+(?P<mnemonic>\S+)\s*(?P<operands>.*)$")
# VEX/EVEX-encoded instructions all have a "v" mnemonic in AT&T syntax (vmovss, vfmadd231ps, vzeroupper, ...) or
# use ymm/zmm/mask registers (kmovw, ...); plain x86-64 code has neither.
AVX_REGISTER = re.compile(r"%(?:[yz]mm\d+|k[0-7])\b")


def avx_leaks(disassembly: str) -> dict[str, str]:
    """{function: first AVX instruction} for functions of `objdump -d` output that use AVX (any VEX/EVEX instruction)
    although their (mangled) name does not mark them as an AVX2/AVX-512 kernel: such code could run on a CPU
    without AVX. Kernel code compiled for AVX is templated over VecAvx2/VecAvx512 or named *_avx2/*_avx512."""
    leaks, name = {}, None
    for line in disassembly.splitlines():
        if m := FUNCTION.match(line):
            name = m["name"]
            continue
        m = INSTRUCTION.match(line)
        if name is None or m is None or re.search("avx2|avx512", name, re.IGNORECASE):
            continue
        mnemonic = m["mnemonic"]
        if (mnemonic.startswith("v") and mnemonic not in ("verr", "verw")) or AVX_REGISTER.search(m["operands"]):
            leaks.setdefault(name, f"{mnemonic} {m['operands']}".strip())
    return leaks


def test_avx_leak_detector_flags_avx_outside_avx_kernels():
    sample = """
0000000000001000 <_ZN5levit9attention10run_scalarERKNS0_7ProblemE>:
    1000:	movss  (%rdi),%xmm0
    1004:	vaddss %xmm1,%xmm0,%xmm0
0000000000001100 <_ZN5levit9attention8run_avx2ERKNS0_7ProblemE>:
    1100:	vfmadd231ps %ymm1,%ymm2,%ymm3
0000000000001200 <helper>:
    1200:	addps  %xmm1,%xmm0
    1204:	kmovw  %k1,%eax
0000000000001300 <clean>:
    1300:	mulss  %xmm1,%xmm0
"""
    assert avx_leaks(sample) == {"_ZN5levit9attention10run_scalarERKNS0_7ProblemE": "vaddss %xmm1,%xmm0,%xmm0",
                                 "helper": "kmovw %k1,%eax"}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 build only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_no_avx_outside_avx_kernels_in_built_extension():
    from levit_kernels import _C

    libraries = glob.glob(os.path.join(os.path.dirname(_C.__file__), "_C*.so"))
    assert libraries, "built extension not found"
    disassembly = subprocess.run(["objdump", "-d", "--no-show-raw-insn", libraries[0]], capture_output=True,
                                 text=True, check=True).stdout
    # the attention kernels are templates over the vector type (attend_tile<VecAvx2, TileShape<4, 2>> and so on)
    assert re.search(r"<_ZN5levit9attention\w*INS_4simd7VecAvx2E", disassembly), \
        "AVX2 attention kernel missing from the build"
    leaks = avx_leaks(disassembly)
    assert not leaks, "AVX instructions in functions a plain x86-64 CPU may run:\n" + "\n".join(
        f"  {name}: {insn}" for name, insn in sorted(leaks.items())[:20])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: nothing to run in parallel")
def test_kernels_run_on_all_torch_threads():
    """at::parallel_for is inlined into the extension: built without the OpenMP flag torch's own build used, it runs
    every kernel on one thread, silently (results stay right; only speed suffers, so no correctness test sees it)."""
    from levit_kernels import _C

    with torch_threads(2):
        assert _C.parallel_workers(64) == 2, "the kernels' parallel_for ran on one thread with torch set to two"
    with torch_threads(1):
        assert _C.parallel_workers(64) == 1
