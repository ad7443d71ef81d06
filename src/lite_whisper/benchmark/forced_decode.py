"""End-to-end speed where the text means nothing: random weights, every 30 s window decodes exactly N tokens.

Random weights of large-v3's or turbo's shape time like the real ones, but their text ends at
random: a model that stops after 3 tokens would look fast. So every window decodes exactly
`tokens` tokens with end-of-text suppressed (`DecodingOptions.forced_tokens`; real English speech
yields ~100 per 30 s), on full 30 s windows cut from real speech, and each run checks the count.

Contenders, each in a process of its own (its peak memory is its own):
  export      a `lite-whisper export` folder: its encoder (ONNX Runtime int8 here; OpenVINO bfloat16
              where the CPU has it) + its CTranslate2 decoder; `batch` windows at a time
  faster-whisper          a CTranslate2 folder through faster-whisper's `transcribe()`, window by window
  faster-whisper-batched  the same through `BatchedInferencePipeline`, the windows given as clips

Measured: wall time of the whole set after a one-window warm-up (features, encoder, decoder),
encoder time (the engines' encode calls), RTFx = audio seconds / wall seconds, decoder ms per
token = (wall - encoder) / tokens, tokens per window (must all equal N), peak RSS of the process,
and the weight files' bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from transformers import GenerationConfig

from lite_whisper.benchmark.end_to_end import EncoderTimed
from lite_whisper.data.audio import SAMPLE_RATE, WINDOW_SECONDS
from lite_whisper.memory import peak_rss_mb
from lite_whisper.runtime.exported import ExportedWhisper, pipeline_limits
from lite_whisper.transcription.types import DecodingOptions

KINDS = ("export", "faster-whisper", "faster-whisper-batched")


@dataclass
class Contender:
    name: str
    kind: str  # one of KINDS
    folder: str
    batch: int = 1
    encoder: str = "auto"  # exports: which encoder runs


@dataclass
class ForcedResult:
    name: str
    kind: str
    folder: str
    batch: int
    encoder: str
    windows: int
    tokens_per_window: int
    audio_seconds: float
    wall_seconds: float
    rtfx: float
    encoder_seconds: float
    encoder_ms_per_window: float
    decoder_ms_per_token: float
    peak_rss_mb: float
    weight_mb: float
    token_counts: list[int]


def speech_windows(clips: list[np.ndarray], windows: int) -> list[np.ndarray]:
    """`windows` full 30 s windows of the clips' audio laid end to end (clips reused if they run out)."""
    if not clips:
        raise ValueError("no audio to cut windows from")
    size = int(WINDOW_SECONDS * SAMPLE_RATE)
    joined = np.concatenate(clips).astype(np.float32)
    while len(joined) < size * windows:
        joined = np.concatenate([joined, joined])
    return [joined[i * size:(i + 1) * size] for i in range(windows)]


def run_contender(contender: Contender, windows: list[np.ndarray], tokens: int, threads: int | None) -> ForcedResult:
    """Time one contender on `windows` in this process (see the module's docstring)."""
    runner = {"export": _export_runner, "faster-whisper": _faster_whisper_runner,
              "faster-whisper-batched": _faster_whisper_runner}[contender.kind]
    transcribe, timed, encoder_kind, weights = runner(contender, tokens, threads)
    transcribe(windows[:1])  # warm-up
    timed.seconds = 0.0
    start = time.perf_counter()
    counts = transcribe(windows)
    wall = time.perf_counter() - start
    audio = len(windows) * float(WINDOW_SECONDS)
    return ForcedResult(
        name=contender.name, kind=contender.kind, folder=contender.folder, batch=contender.batch, encoder=encoder_kind,
        windows=len(windows), tokens_per_window=tokens, audio_seconds=audio, wall_seconds=round(wall, 3),
        rtfx=round(audio / wall, 3), encoder_seconds=round(timed.seconds, 3),
        encoder_ms_per_window=round(1000 * timed.seconds / len(windows), 1),
        decoder_ms_per_token=round(1000 * (wall - timed.seconds) / max(sum(counts), 1), 2),
        peak_rss_mb=round(peak_rss_mb()), weight_mb=round(weights / 2**20, 1), token_counts=counts)


def _export_runner(contender: Contender, tokens: int, threads: int | None):
    engine = ExportedWhisper(contender.folder, encoder=contender.encoder, threads=threads)
    timed = EncoderTimed(engine)
    options = DecodingOptions(language="en", forced_tokens=tokens, no_speech_threshold=None)

    def transcribe(windows: list[np.ndarray]) -> list[int]:
        counts = []
        for first in range(0, len(windows), contender.batch):
            encoded = timed.encode(engine.features(windows[first:first + contender.batch]))
            counts += [len(window.tokens) for window in engine.decode(encoded, options)]
        return counts

    files = [engine.encoder.path] if hasattr(engine.encoder, "path") else []
    return transcribe, timed, engine.encoder_kind, _bytes(files, Path(contender.folder) / "decoder" / "model.bin")


def _faster_whisper_runner(contender: Contender, tokens: int, threads: int | None):
    model = WhisperModel(contender.folder, device="cpu", compute_type="int8", cpu_threads=threads or 0)
    # CTranslate2 on the CPU: synchronous, nothing to wait for
    timed = EncoderTimed(SimpleNamespace(encode=model.encode, synchronize=lambda: None))
    model.encode = timed.encode  # both pipelines encode through the model's encode
    generation = GenerationConfig(is_multilingual=model.model.is_multilingual,
                                  eos_token_id=model.hf_tokenizer.token_to_id("<|endoftext|>"),
                                  no_timestamps_token_id=model.hf_tokenizer.token_to_id("<|notimestamps|>"))
    options = DecodingOptions(language="en", forced_tokens=tokens, no_speech_threshold=None)
    settings = dict(language="en" if model.model.is_multilingual else None, beam_size=1, temperature=[0.0],
                    without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                    **pipeline_limits(generation, options))

    def transcribe(windows: list[np.ndarray]) -> list[int]:
        if contender.kind == "faster-whisper":
            return [sum(len(s.tokens) for s in model.transcribe(window, **settings)[0]) for window in windows]
        audio = np.concatenate(windows)
        clips = [{"start": i * WINDOW_SECONDS, "end": (i + 1) * WINDOW_SECONDS} for i in range(len(windows))]
        segments, _ = BatchedInferencePipeline(model=model).transcribe(audio, batch_size=contender.batch,
                                                                      clip_timestamps=clips, **settings)
        return [len(s.tokens) for s in segments]

    return transcribe, timed, "ctranslate2 int8", _bytes([], Path(contender.folder) / "model.bin")


def _bytes(encoder_files: list[Path], decoder_file: Path) -> int:
    files = [Path(f) for f in encoder_files] + [decoder_file]
    files += [f.with_name(f.name + ".data") for f in encoder_files if f.with_name(f.name + ".data").exists()]
    return sum(f.stat().st_size for f in files)


def run_in_subprocess(contender: Contender, windows_file: Path, tokens: int, threads: int | None,
                      timeout: float | None = None) -> ForcedResult:
    """`run_contender` in a fresh Python process (so its peak RSS is its own); windows read from an .npy file."""
    args = [sys.executable, "-m", "lite_whisper.benchmark.forced_decode", json.dumps(asdict(contender)),
            str(windows_file), str(tokens), str(threads or 0)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"{contender.name} failed:\n{done.stderr[-3000:]}")
    return ForcedResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> None:
    contender = Contender(**json.loads(argv[0]))
    windows = list(np.load(argv[1]))
    result = run_contender(contender, windows, int(argv[2]), int(argv[3]) or None)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
