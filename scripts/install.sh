#!/usr/bin/env bash
# Idempotent set-up: torch (the pinned CPU wheel unless a torch is already installed), the dependencies, and the
# package with its C++ extension, built against that torch. `--dev` adds the test and benchmark tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=("$PY" -m pip install --disable-pip-version-check -q)

# A torch is kept if present (a CUDA build on a GPU machine, say); otherwise the 2.13.0 wheel, which on these
# CPU machines is the CPU build. A looser requirement would let pip fetch a multi-GB CUDA build.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -r requirements.txt
# The build backend (pyproject.toml's build-system.requires): --no-build-isolation below makes pip use what is
# installed rather than install it, and a fresh venv has an old setuptools (Python 3.11) or none (3.12+). A
# requirement already met is left alone, so reruns change nothing.
"${PIP[@]}" "setuptools>=64" wheel
if [ "${1:-}" = "--dev" ]; then
  "${PIP[@]}" -r requirements-dev.txt
  # timm is used by the tests only, to check drop-in support of its models. Its import needs torchvision, which
  # has no CPU wheel for this torch on PyPI (and a plain install would pull a CUDA torch): install timm without
  # dependencies; tests/support/timm_compat.py stands in for the torchvision symbols timm imports but LeViT never uses.
  "${PIP[@]}" --no-deps "timm==1.0.31"
  # vit-pytorch likewise, for the tests of optimize() on its LeViT (vit_pytorch.levit): its dependencies are torch,
  # torchvision (imported by its package __init__ for the DINO trainer only; tests/support/timm_compat.py stands in)
  # and einops, installed alongside.
  "${PIP[@]}" --no-deps "vit-pytorch==1.26.14" "einops==0.8.2"
fi
# --no-build-isolation: build against the torch installed above rather than one pip would download (an isolated
# build would fetch its own torch, possibly a multi-GB CUDA build, and link the extension against that one).
"${PIP[@]}" --no-build-isolation -e .
