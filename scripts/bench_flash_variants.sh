#!/usr/bin/env bash
# Interleaved A/B timing of flash-kernel variants (AVX2 or AVX-512, 1 thread, torch-free, no extension rebuild): each argument
# is a source tree holding csrc/ (this checkout, another worktree, an edited copy); its csrc/flash is built into
# build/flash-variants/<n>.so with setup.py's flags and benchmarks/flash_variants/driver.cpp times them in turn.
#
#   scripts/bench_flash_variants.sh [--reps 15] [--shape N3136|N784|N197|all] [--isa avx2|avx512] TREE...
set -euo pipefail
cd "$(dirname "$0")/.."
reps=15
shape=all
isa=avx2
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    --isa) isa=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--reps N] [--shape NAME] [--isa avx2|avx512] TREE..." >&2; exit 2; }
case "$isa" in avx2|avx512) ;; *) echo "$0: --isa must be avx2 or avx512, got '$isa'" >&2; exit 2 ;; esac
out=build/flash-variants
mkdir -p "$out"
flags=(-O3 -std=c++17 -fno-math-errno -march=x86-64 -mtune=generic)
libs=()
i=0
for tree in "$@"; do
  lib="$out/$i-$(basename "$(realpath "$tree")")-$isa.so"
  g++ "${flags[@]}" -fPIC -shared -fvisibility=hidden -I"$tree/csrc" -DVARIANT_RUN="run_$isa" \
    benchmarks/flash_variants/entry.cpp "$tree/csrc/flash/flash_$isa.cpp" "$tree/csrc/flash/flash_plan.cpp" -o "$lib"
  libs+=("$(realpath "$lib")")
  i=$((i + 1))
done
g++ "${flags[@]}" -Icsrc benchmarks/flash_variants/driver.cpp -o "$out/driver" -ldl
"$out/driver" "$reps" "$shape" "${libs[@]}"
