#!/usr/bin/env bash
# The C++ kernels under AddressSanitizer + UndefinedBehaviorSanitizer; exits non-zero on any sanitizer report.
#
#   1. Copies the checkout's files (git ls-files: tracked and untracked-not-ignored) to build/sanitize/tree, so the
#      normal in-place build is untouched, and builds the extension there with LEVIT_KERNELS_SANITIZE=1 (setup.py:
#      -fsanitize=address,undefined -fno-sanitize-recover=all). Object files stay in build/sanitize/temp: reruns only
#      recompile what changed.
#   2. Runs the standalone C++ test programs (scripts/neon_test.sh --native) built with the same sanitizer flags.
#   3. Runs the CPU op tests (tests/test_cpu_*.py plus the reliability tests that drive the CPU kernels) in Python
#      against the sanitized extension. Python itself is not instrumented, so the ASan runtime is loaded first with
#      LD_PRELOAD; leak checking is off (CPython and torch keep allocations alive at exit by design).
#
# Usage: scripts/sanitize_test.sh [pytest args...]   (e.g. -k attention; default: the CPU test files below)
# Environment: PYTHON (default python3), MAX_JOBS (default 2) for the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
root=$PWD
work=$root/build/sanitize
tree=$work/tree
log=$work/pytest.log
flags="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
reports=$work/reports

# ---- 1. sanitized build in a copy of the checkout ----------------------------------------------------------------
rm -rf "$tree"
mkdir -p "$tree"
# tar keeps modification times, so ninja in build/sanitize/temp sees unchanged sources as up to date.
git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$tree"
echo "== sanitized build (build/sanitize)"
(cd "$tree" && LEVIT_KERNELS_SANITIZE=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" setup.py -q build_ext --inplace \
    --build-temp "$work/temp" >"$work/build.log" 2>&1) || { tail -n 40 "$work/build.log"; exit 1; }

# Reports go to files too: pytest captures fd 2, and a process the sanitizer halts never prints its capture.
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:exitcode=86:detect_odr_violation=0:log_path=$reports/asan
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87:log_path=$reports/ubsan

# Python is not instrumented: the ASan runtime must come first (LD_PRELOAD), and libstdc++ with it, or ASan's
# __cxa_throw interceptor finds no real __cxa_throw (python links no libstdc++) and aborts on the first C++ throw.
preload="$(${CXX:-g++} -print-file-name=libasan.so) $(${CXX:-g++} -print-file-name=libstdc++.so)"
for lib in $preload; do
    [ -e "$lib" ] || { echo "sanitize_test: $lib not found (install the compiler's ASan runtime)" >&2; exit 1; }
done

status=0
# Any report file means failure, whatever the exit status said (a report from a subprocess may not reach it).
check_reports() {
    if compgen -G "$reports/*" >/dev/null; then
        echo "!! sanitizer report(s) in $reports:" >&2
        head -n 60 "$reports"/* >&2
        status=1
    fi
}

# ---- 2. standalone C++ tests --------------------------------------------------------------------------------------
echo "== standalone C++ tests under ASan+UBSan"
(cd "$tree" && CXXFLAGS="$flags" scripts/neon_test.sh --native) || status=1
check_reports

# ---- 3. CPU op tests in Python --------------------------------------------------------------------------------------
# The reliability tests' triton cases add nothing here (no C++ runs in them) and are slow: left out.
tests=(tests/test_cpu_attention.py tests/test_cpu_gemm.py tests/test_cpu_isa.py tests/test_property.py
       tests/test_extremes.py tests/test_concurrency.py tests/test_norm_pool.py -k "not triton")
[ $# -gt 0 ] && tests=("$@")
echo "== pytest ${tests[*]} under ASan+UBSan"
(cd "$tree" && LD_PRELOAD=$preload PYTHONPATH=$tree "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}") || status=1
check_reports
[ $status -eq 0 ] && echo "sanitize_test: no sanitizer reports" || echo "sanitize_test: FAILED" >&2
exit $status
