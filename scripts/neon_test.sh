#!/usr/bin/env bash
# Standalone C++ kernel tests: every csrc/tests/*_test.cpp is its own program (no Python, no torch) that checks
# each ISA variant it can run against the scalar variant and a float64 reference, ending "N passed, M failed".
#
#   scripts/neon_test.sh            cross-compile for AArch64 (aarch64-linux-gnu-g++ -O2, static) and run under
#                                   qemu-aarch64: NEON vs scalar. Installs g++-aarch64-linux-gnu and qemu-user with
#                                   apt-get when they are missing.
#   scripts/neon_test.sh --native   host g++ and run natively (on x86: AVX2 / AVX-512 vs scalar).
#
# Environment: CXXFLAGS adds compiler flags (e.g. CXXFLAGS="-fsanitize=address,undefined -g" with --native);
# LEVIT_TEST_SEED pins the seed the programs draw their inputs from. Exit status non-zero if any program fails.
#
# Sources: every csrc/<dir>/*.cpp that includes no torch/ATen/c10 header (the kernels are torch-free by design)
# and is not a *_test.cpp, compiled once and linked into each test program.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=neon
case "${1:-}" in
  "") ;;
  --native) mode=native ;;
  *) echo "usage: $0 [--native]" >&2; exit 2 ;;
esac

flags=(-O2 -std=c++17 -Wall -Wno-maybe-uninitialized -Icsrc)
run=()
if [ "$mode" = neon ]; then
  missing=()
  command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
  command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  cxx=aarch64-linux-gnu-g++
  flags+=(-static)
  run=(qemu-aarch64)
else
  cxx=${CXX:-g++}
  case "$(uname -m)" in x86_64) flags+=(-march=x86-64) ;; esac  # baseline: AVX code only where a TU enables it
fi
# shellcheck disable=SC2206
flags+=(${CXXFLAGS:-})

build=build/kernel-tests-$mode
mkdir -p "$build"
mapfile -t support < <(grep -L -E '#include <(torch|ATen|c10)/' csrc/*/*.cpp | grep -v '_test\.cpp$')
objects=()
for src in "${support[@]}"; do objects+=("$build/$(echo "${src%.cpp}" | tr / _).o"); done
printf '%s\n' "${support[@]}" | xargs -P "$(nproc)" -I{} bash -c \
  'obj="$0/$(echo "${1%.cpp}" | tr / _).o"; exec "$2" "${@:3}" -c "$1" -o "$obj"' "$build" {} "$cxx" "${flags[@]}"

failed=0
for test_src in csrc/tests/*_test.cpp; do
  name=$(basename "${test_src%.cpp}")
  "$cxx" "${flags[@]}" "$test_src" "${objects[@]}" -o "$build/$name"
  echo "== $name ($mode)"
  if ! "${run[@]}" "$build/$name" ${LEVIT_TEST_SEED:+"$LEVIT_TEST_SEED"}; then
    echo "!! $name FAILED"
    failed=1
  fi
done
exit $failed
