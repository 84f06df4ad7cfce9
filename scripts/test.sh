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
# AddressSanitizer + UndefinedBehaviorSanitizer build of csrc: the C++ tests and the CPU op tests again; fails on any
# report (about 9 minutes on 2 cores, most of it the instrumented build).
bash scripts/sanitize_test.sh
