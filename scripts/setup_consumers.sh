#!/usr/bin/env bash
# The consumers that the tests run on `export --format optimum` folders, each in its own environment:
#   .venv-optimum/              optimum-onnx + ONNX Runtime (optimum-onnx pins transformers < 4.58; ours is 5.x)
#   tests/consumers/node_modules  transformers.js for Node (npm; --ignore-scripts keeps onnxruntime-node's
#                                 bundled CPU binaries and skips its download)
# Idempotent. Node 20 or later must be on PATH: without it this fails, and so do the tests that need it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-optimum/bin/python ] || "$PYTHON" -m venv .venv-optimum
bash scripts/install_torch.sh .venv-optimum
.venv-optimum/bin/python -c "import optimum.onnxruntime" 2>/dev/null \
    || .venv-optimum/bin/python -m pip install -q "optimum-onnx[onnxruntime]==0.1.0"
command -v node >/dev/null || { echo "setup_consumers: node (20 or later) is not on PATH; install Node.js" >&2; exit 1; }
[ -d tests/consumers/node_modules/@huggingface/transformers ] \
    || (cd tests/consumers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
