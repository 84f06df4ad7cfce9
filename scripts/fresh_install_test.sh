#!/usr/bin/env bash
# Fresh-install check: the README's install in brand-new venvs, as a new user would run it, and every install kind.
#   venv A: Python's bundled pip (23.2.1 on 3.11) + the newest setuptools: scripts/install.sh (editable), then
#           `pip wheel --no-build-isolation --no-deps .`
#   venv B: the newest pip + the newest setuptools: `pip install --no-build-isolation .` (regular: _C in
#           site-packages), then the wheel from venv A (a second venv with the same torch), then `-e .`
# After each: `levit-kernels info` and an import + CPU-kernel call from outside the checkout, and a check that the
# package (and its _C) came from where that install kind puts it. torch is the pinned 2.13.0 CPU wheel in both
# (a looser spec would pull a multi-GB CUDA build). Works on a copy of the checkout in a temp dir (removed after),
# so the checkout's own in-place build is untouched.
# Cost: the four extension builds, made cheap by ccache (installed when missing): one cold build, three hits.
# CCACHE_BASEDIR rewrites the paths under WORK relative to the compiler's cwd, which is the build's temp dir, so a
# hit needs every build's temp dir at the same depth under the source tree: the regular and wheel builds use
# src/build/temp.*, and the editable (PEP 660) builds, which take a TemporaryDirectory, get TMPDIR=src/build so theirs
# lands beside it (measured: with the editable builds' temp dirs in /tmp, two of the four builds missed, ~4 min each
# on 2 cores). Both venvs live at the same path in turn (A is removed once its wheel is built), so the torch headers
# have the same relative path too. The rest is venv creation and torch's unpacking.
set -euo pipefail
# Nothing from the caller's environment may steer imports in the fresh venvs (a PYTHONPATH pointing at a checkout
# made the editable-install check import that checkout instead).
unset PYTHONPATH PYTHONHOME
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/levit-fresh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
step() { echo "fresh_install: [$((SECONDS - start))s] $*"; }

if ! command -v ccache >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  step "installing ccache"
  apt-get install -y -qq ccache >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq ccache >/dev/null; } \
    || step "ccache could not be installed: builds run uncached (four cold builds, ~4 min each on 2 cores)"
fi
if [ -d /usr/lib/ccache ]; then
  # Paths under WORK are hashed relative to it, and the cwd is left out of the hash, so the same sources built
  # from another temp dir (or another venv's torch headers at the same relative place) hit the cache.
  export PATH=/usr/lib/ccache:$PATH CCACHE_BASEDIR=$WORK CCACHE_NOHASHDIR=1
fi

# The checkout as git sees it (tracked + untracked-but-not-ignored files), without build outputs.
mkdir "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK/src")
else
  cp -a "$ROOT/." "$WORK/src" && rm -rf "$WORK/src/build" "$WORK/src"/levit_kernels/_C*.so
fi

VENV=$WORK/venv
new_venv() {  # new_venv LABEL [pip-upgrade]: a fresh venv at $VENV
  local venv=$VENV
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  if [ "${2:-}" = pip-upgrade ]; then "$venv/bin/python" -m pip install -q -U pip; fi
  "$venv/bin/python" -m pip install -q -U setuptools wheel
  # --no-compile: torch's thousands of .pyc would be most of the install's CPU time; Python compiles on import.
  "$venv/bin/python" -m pip install -q --no-compile "torch==2.13.0"
  step "$1: $("$venv/bin/python" -m pip --version | cut -d' ' -f1-2), setuptools" \
       "$("$venv/bin/python" -c 'import setuptools; print(setuptools.__version__)'), torch" \
       "$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
}

check() {  # check KIND (editable | site-packages): run from outside the checkout
  local venv=$VENV kind=$1
  (cd "$WORK" && "$venv/bin/levit-kernels" info | sed 's/^/    /')
  (cd "$WORK" && "$venv/bin/python" - "$kind" "$WORK/src" <<'PY'
import os, sys
import torch
import levit
import levit_kernels
from levit_kernels import _C, reference, tolerances

kind, src = sys.argv[1], os.path.realpath(sys.argv[2])
where = {m.__name__: os.path.realpath(m.__file__) for m in (levit, levit_kernels, _C)}
for name, path in where.items():
    inside = path.startswith(src + os.sep)
    if inside != (kind == "editable") or (kind != "editable" and "site-packages" not in path):
        sys.exit(f"fresh_install: {kind} install, but {name} was imported from {path}")
x, w, b = torch.randn(3, 196, 128), torch.randn(256, 128), torch.randn(256)
err = tolerances.max_rel_error(levit_kernels.linear(x, w, b, backend="cpu"), reference.linear(x.double(), w.double(), b.double()))
assert err <= tolerances.kernel_rtol(torch.float32), f"cpu linear differs from the float64 reference by {err:.2e}"
model = levit.create_model("levit_128s").eval()
with torch.no_grad():
    assert levit_kernels.optimize(model)(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
print(f"    {kind}: imports from {os.path.dirname(where['levit_kernels._C'])}, CPU kernels run ({levit_kernels.cpu_isa()})")
PY
  )
}

new_venv a
step "a: the README install (scripts/install.sh)"
mkdir -p "$WORK/src/build"
TMPDIR=$WORK/src/build PYTHON=$VENV/bin/python bash "$WORK/src/scripts/install.sh"
check editable
step "a: pip wheel"
(cd "$WORK/src" && "$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/dist" .)

new_venv b pip-upgrade
PIP_B=("$VENV/bin/python" -m pip)
"${PIP_B[@]}" install -q -r "$WORK/src/requirements.txt"
step "b: pip install --no-build-isolation ."
(cd "$WORK/src" && "${PIP_B[@]}" install -q --no-build-isolation .)
check site-packages
"${PIP_B[@]}" uninstall -q -y levit-kernels
step "b: the wheel built in venv a ($(basename "$WORK"/dist/*.whl))"
"${PIP_B[@]}" install -q "$WORK"/dist/*.whl
check site-packages
"${PIP_B[@]}" uninstall -q -y levit-kernels
step "b: pip install --no-build-isolation -e ."
(cd "$WORK/src" && TMPDIR=$WORK/src/build "${PIP_B[@]}" install -q --no-build-isolation -e .)
check editable
step "passed"
