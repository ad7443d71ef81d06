"""Run the consumers of `export --format optimum` folders: optimum (Python) and transformers.js (Node).

Each runs in its own environment, made by scripts/setup_consumers.sh in a checkout: optimum-onnx pins
transformers < 4.58 (`.venv-optimum`), transformers.js is an npm package (`tests/consumers/node_modules`).
Clips go over as files (an .npz for Python, raw float32 for Node); texts and times come back as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lite_whisper.evaluation.wer import corpus_errors

CHECKOUT = Path(os.environ.get("LITE_WHISPER_CHECKOUT", Path(__file__).resolve().parents[3]))
CONSUMERS = CHECKOUT / "tests" / "consumers"
OPTIMUM_PYTHON = CHECKOUT / ".venv-optimum" / "bin" / "python"


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Percent word error rate over all clips."""
    return corpus_errors(references, hypotheses).wer


def identical(theirs: Sequence[str], ours: Sequence[str]) -> int:
    """Transcripts the same as ours, leading and trailing spaces aside (faster-whisper and transformers.js
    texts start with one)."""
    return sum(a.strip() == b.strip() for a, b in zip(theirs, ours, strict=True))


class ConsumerMissing(RuntimeError):
    """A consumer's environment is not set up."""


def _run(command: list[str], cwd: Path, timeout: int) -> dict:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_optimum(folder: str | Path, audio: Sequence[np.ndarray], pipeline: bool = False, timeout: int = 1200) -> dict:
    """optimum's ORTModelForSpeechSeq2Seq on `audio` (16 kHz): {"generate": texts, "pipeline": texts (through
    transformers' ASR pipeline too when `pipeline`, else empty)}."""
    if not OPTIMUM_PYTHON.exists():
        raise ConsumerMissing(f"{OPTIMUM_PYTHON} is missing: run scripts/setup_consumers.sh")
    with tempfile.TemporaryDirectory(prefix="lite-whisper-optimum-") as scratch:
        clips = Path(scratch) / "clips.npz"
        np.savez(clips, **{f"clip{i:04d}": a.astype(np.float32) for i, a in enumerate(audio)})
        return _run([str(OPTIMUM_PYTHON), str(CONSUMERS / "optimum_transcribe.py"), str(Path(folder).resolve()),
                     str(clips), *(["pipeline"] if pipeline else [])], CONSUMERS, timeout)


def optimum_declaration(folder: str | Path, timeout: int = 300) -> dict:
    """What optimum's WhisperOnnxConfig declares (names and dynamic axes of the encoder and the merged
    decoder), beside what the folder's ONNX files hold: {"declared": ..., "folder": ...}."""
    if not OPTIMUM_PYTHON.exists():
        raise ConsumerMissing(f"{OPTIMUM_PYTHON} is missing: run scripts/setup_consumers.sh")
    return _run([str(OPTIMUM_PYTHON), str(CONSUMERS / "optimum_declares.py"), str(Path(folder).resolve())],
                CONSUMERS, timeout)


def run_transformers_js(folder: str | Path, audio: Sequence[np.ndarray], dtype: str = "fp32", encoder_runs: int = 0,
                        timeout: int = 1200) -> dict:
    """transformers.js in Node on `audio` (16 kHz), `dtype` fp32 or q8: {"texts", "seconds" (per clip),
    "load_seconds", "encoder_seconds" (`encoder_runs` timed encoder runs on one window)}."""
    node = shutil.which("node")
    if node is None:
        raise ConsumerMissing("node is not on PATH: install Node.js 20 or later")
    if not (CONSUMERS / "node_modules" / "@huggingface" / "transformers").is_dir():
        raise ConsumerMissing(f"{CONSUMERS / 'node_modules'} lacks transformers.js: run scripts/setup_consumers.sh")
    with tempfile.TemporaryDirectory(prefix="lite-whisper-tjs-") as scratch:
        for i, samples in enumerate(audio):
            samples.astype("<f4").tofile(Path(scratch) / f"{i:04d}.f32")
        return _run([node, str(CONSUMERS / "transformers_js_transcribe.mjs"), str(Path(folder).resolve()), scratch,
                     dtype, str(encoder_runs)], CONSUMERS, timeout)
