#!/usr/bin/env bash
# The full test suite: Python tests (reference, model, CPU kernels under every ISA this CPU runs, Triton under the
# interpreter, property/extreme-value/concurrency/bad-input/scale tests), the benchmarks in their quick smoke mode (so
# they cannot rot), the standalone C++ tests, and the C++ kernels under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pytest -q -p no:cacheprovider tests "$@"
"$PY" -m pytest -q -p no:cacheprovider benchmarks --benchmark-disable
# Standalone C++ kernel tests (no Python): every SIMD variant against scalar, natively (AVX2 here) and as AArch64
# NEON under qemu-aarch64 (installs g++-aarch64-linux-gnu and qemu-user when missing).
bash scripts/neon_test.sh --native
bash scripts/neon_test.sh
# The README install in brand-new venvs, as a new user runs it: Python's bundled pip and the newest pip, each with the
# newest setuptools and the pinned torch wheel; editable, regular and wheel installs, each checked from outside the
# checkout (`levit-kernels info`, an import, a CPU kernel, optimize()). One cold extension build and three ccache
# hits: 4.2 min in a CI run on 2 cores (253 s), 13 min at load 9-10 with three other agents building beside it.
bash scripts/fresh_install_test.sh
# AddressSanitizer + UndefinedBehaviorSanitizer build of csrc: the C++ tests and the CPU op tests again; fails on any
# report (about 9 minutes on 2 cores, most of it the instrumented build).
bash scripts/sanitize_test.sh
# Every Triton kernel compiled ahead of time for sm_80 and sm_90 (no GPU needed): fails on a compile error, shared
# memory over the target's limit or register spills; the table goes to benchmarks/results/. The full matrix: every
# shape class × fp32/fp16/bf16 × every config of each dtype's autotune list (328 compiles, ~210 CPU-s cold, 3.6 min
# on 2 cores; Triton's cache makes reruns with unchanged kernels cheap). Not --quick (the classes no other class
# covers, fp32 and bf16): the full matrix found two spills that --quick's coverage rule had skipped. Last, so a
# kernel that does not fit a GPU leaves every CPU stage's verdict standing.
"$PY" scripts/triton_compile_check.py --targets sm_80,sm_90
