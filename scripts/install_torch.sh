#!/usr/bin/env bash
# Install torch 2.13.0 (CPU build) into the virtual environment $1, unless it is there: a CPU wheel from pip's
# find-links where there is one (offline machines), else from PyTorch's CPU index ($TORCH_INDEX_URL to use
# another). Pinned and first, so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
venv=$1
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.0'))" 2>/dev/null; then
    links="${PIP_FIND_LINKS:-$("$venv/bin/python" -m pip config get global.find-links 2>/dev/null || true)}"
    if compgen -G "${links:-/nonexistent}/torch-2.13.0*" >/dev/null; then
        "$venv/bin/python" -m pip install -q "torch==2.13.0"
    else
        "$venv/bin/python" -m pip install -q "torch==2.13.0" \
            --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" --extra-index-url https://pypi.org/simple
    fi
fi
