#!/usr/bin/env bash
# GPU checks of the Triton backend, for a session with a CUDA GPU (each stage fits the device tool's 10-minute
# command limit; run them one by one there):
#   bash scripts/gpu_check.sh tests      # tests/test_triton.py natively, then every LeViT shape at batch 1-2048
#                                        # in fp32/fp16/bf16 (tests/test_triton_gpu.py)
#   bash scripts/gpu_check.sh memcheck   # compute-sanitizer memcheck of each kernel (LeViT-256 and odd shapes)
#   bash scripts/gpu_check.sh bench      # benchmarks/bench_gpu_ops.py → benchmarks/results/<gpu>.json
#   bash scripts/gpu_check.sh            # all three
# Without a GPU it says so and exits 0. Extra arguments after the stage go to pytest (e.g. -k levit_256 -x).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stage=${1:-all}
shift || true

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU visible to torch: skipped"
    exit 0
fi
unset TRITON_INTERPRET
"$PY" -c "import torch, triton
print('gpu_check:', torch.cuda.get_device_name(), 'torch', torch.__version__, 'triton', triton.__version__)"

run_tests() {
    # One config per kernel for the shape sweep (autotuning every shape would take hours); the
    # test_every_autotune_config tests run each GPU candidate on its own.
    LEVIT_KERNELS_TRITON_AUTOTUNE=0 "$PY" -m pytest -q -p no:cacheprovider --durations=10 \
        tests/test_triton.py tests/test_triton_gpu.py "$@"
}

run_memcheck() {
    local sanitizer
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 ||
                true)
    if [ -z "$sanitizer" ]; then
        echo "gpu_check: memcheck NOT RUN: compute-sanitizer not found (install the CUDA toolkit's sanitizer)" >&2
        return 3
    fi
    # No caching allocator: every tensor is its own allocation, so an out-of-bounds access cannot land in a
    # neighbour's cached block unseen.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 LEVIT_KERNELS_TRITON_AUTOTUNE=0 \
        "$sanitizer" --tool memcheck --error-exitcode 1 --target-processes all \
        "$PY" -m pytest -q -p no:cacheprovider tests/test_triton_gpu.py -k memcheck_workload "$@"
}

run_bench() {
    "$PY" benchmarks/bench_gpu_ops.py
}

case "$stage" in
    tests) run_tests "$@" ;;
    memcheck) run_memcheck "$@" ;;
    bench) run_bench ;;
    all) run_tests "$@"; run_memcheck; run_bench ;;
    *) echo "usage: $0 [tests|memcheck|bench|all] [pytest args...]" >&2; exit 2 ;;
esac
