#!/usr/bin/env bash
# Every GPU check of the Triton backend in ONE call that fits a lent GPU's budget (H200: 15 device-minutes per
# session, every start and idle wait counted): under 8 minutes of wall time in all, each stage time-boxed so a slow
# one cannot starve the rest, from a plain checkout (no install, no C++ build: the GPU path needs neither).
#   1. tests     (≤ 190 s) tests/test_triton.py natively and tests/test_triton_gpu.py: every LeViT shape at batch
#                1/37/2048 in fp32/fp16/bf16, TF32, CUDA graphs, torch.compile, every autotune candidate
#   2. memcheck  (≤ 80 s)  compute-sanitizer memcheck of one launch per kernel (LeViT-256 and odd shapes)
#   3. bench     (≤ 160 s) levit-kernels bench --preset paper (bf16, batch 2048) for levit_128s and levit_256,
#                every GPU baseline (eager, torch.compile, SDPA, FlexAttention)
# Results: benchmarks/results/<hardware-id>.json/.png (the bench) and benchmarks/results/gpu-check/ (each stage's
# log and summary.txt with its status and time). Exits 1 if any stage failed or ran out of time. Without a GPU it
# says so and exits 0. `bash scripts/gpu_check.sh tests|memcheck|bench [pytest args]` runs one stage, untimed.
# The device machine has no network: pytest (and hypothesis, which tests/ import) must already be on its image.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stage=${1:-all}
shift || true
LOGS=benchmarks/results/gpu-check
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the checkout, uninstalled
unset TRITON_INTERPRET

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU visible to torch: skipped"
    exit 0
fi
mkdir -p "$LOGS"
"$PY" -c "import sys, torch, triton
print('gpu_check:', torch.cuda.get_device_name(), '| python', sys.version.split()[0], '| torch', torch.__version__,
      '| triton', triton.__version__)" | tee "$LOGS/summary.txt"
for module in pytest hypothesis; do
    "$PY" -c "import $module" 2>/dev/null || echo "gpu_check: WARNING: $module is not installed here" | tee -a "$LOGS/summary.txt"
done

run_tests() {
    # The shape sweep runs one config per kernel (autotuning every shape would take hours; test_triton_gpu.py sets
    # LEVIT_KERNELS_TRITON_AUTOTUNE=0); test_every_autotune_config runs each GPU candidate on its own.
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
    "$PY" -m levit_kernels bench --preset paper --device cuda --model levit_128s levit_256 \
        --output-dir benchmarks/results "$@"
}

failed=0
timed() {  # timed NAME SECONDS: run stage NAME under a time box, log it, record status and time in summary.txt
    local name=$1 box=$2 begin=$SECONDS rc
    echo "gpu_check: == $name (time box ${box}s)"
    timeout --signal=TERM --kill-after=10 "$box" bash -c "$(declare -f "run_$name"); PY='$PY'; run_$name" \
        2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    local status=passed
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="OUT OF TIME"; elif [ "$rc" != 0 ]; then status="FAILED (rc $rc)"; fi
    [ "$status" = passed ] || failed=1
    echo "gpu_check: $name: $status in $((SECONDS - begin))s" | tee -a "$LOGS/summary.txt"
}

case "$stage" in
    tests) run_tests "$@" ;;
    memcheck) run_memcheck "$@" ;;
    bench) run_bench "$@" ;;
    all)
        # 190 + 80 + 160 = 430 s of boxes (+ 10 s kill grace each at worst) leaves the 8 minutes a margin for
        # python/torch start-up here.
        timed tests 190
        timed memcheck 80
        timed bench 160
        echo "gpu_check: total $SECONDS s; logs and summary in $LOGS/" | tee -a "$LOGS/summary.txt"
        exit $failed ;;
    *) echo "usage: $0 [all|tests|memcheck|bench] [args for that stage...]" >&2; exit 2 ;;
esac
