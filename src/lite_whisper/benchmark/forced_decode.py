"""End-to-end speed where the text means nothing: random weights, every 30 s window decodes exactly N tokens.

Random weights of large-v3's or turbo's shape time like the real ones, but their text ends at
random: a model that stops after 3 tokens would look fast. So every window decodes exactly
`tokens` tokens with end-of-text suppressed (`DecodingOptions.forced_tokens`; real English speech
yields ~100 per 30 s), on full 30 s windows cut from real speech, and each run checks the count.

Contenders, each in a process of its own (its peak memory is its own), taking turns through
`benchmark.harness` (warm-up until steady, then window chunks A B A B ...):
  export      a `lite-whisper export` folder: its encoder (ONNX Runtime int8 here; OpenVINO bfloat16
              where the CPU has it) + its CTranslate2 decoder; `batch` windows at a time
  faster-whisper          a CTranslate2 folder through faster-whisper's `transcribe()`, window by window
  faster-whisper-batched  the same through `BatchedInferencePipeline`, the windows given as clips

Measured: wall time of the timed chunks (features, encoder, decoder), encoder time (the engines'
encode calls), RTFx = audio seconds / wall seconds, decoder ms per token = (wall - encoder) / tokens,
tokens per window (must all equal N: otherwise the contender is reported as failed), peak RSS of
the process, and the weight files' bytes. A contender that fails or runs out of memory is reported;
the others finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from lite_whisper.benchmark.end_to_end import EncoderTimed
from lite_whisper.benchmark.harness import Contender, Timing, in_own_process, run_interleaved
from lite_whisper.data.audio import SAMPLE_RATE, WINDOW_SECONDS
from lite_whisper.memory import peak_rss_mb
from lite_whisper.runtime.exported import ExportedWhisper
from lite_whisper.runtime.faster_whisper_engine import FasterWhisperPipelines
from lite_whisper.transcription.types import DecodingOptions

KINDS = ("export", "faster-whisper", "faster-whisper-batched")


@dataclass
class ForcedContender:
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
    rtfx: float | None  # None (and the figures below too) when it failed
    encoder_seconds: float | None
    encoder_ms_per_window: float | None
    decoder_ms_per_token: float | None
    peak_rss_mb: float | None
    weight_mb: float | None
    token_counts: list[int]
    failure: str = ""  # what stopped it: an error, out of memory, or a token count other than N


def speech_windows(clips: list[np.ndarray], windows: int) -> list[np.ndarray]:
    """`windows` full 30 s windows of the clips' audio laid end to end (clips reused if they run out)."""
    if not clips:
        raise ValueError("no audio to cut windows from")
    size = int(WINDOW_SECONDS * SAMPLE_RATE)
    joined = np.concatenate(clips).astype(np.float32)
    while len(joined) < size * windows:
        joined = np.concatenate([joined, joined])
    return [joined[i * size:(i + 1) * size] for i in range(windows)]


def run_forced(contenders: list[ForcedContender], windows: list[np.ndarray], tokens: int, threads: int | None, *,
               own_process: bool = True, log=lambda message: None) -> list[ForcedResult]:
    """Time `contenders` on `windows`, taking turns (see the module's docstring); one result each, in order.

    `own_process`: each contender in a fresh process (its peak RSS its own); False runs them here (tests)."""
    clips = [(f"window {position}", window) for position, window in enumerate(windows)]
    made = []
    for contender in contenders:
        if own_process:
            made.append(in_own_process(contender.name, TokenCounter, clips, asdict(contender), tokens, threads))
        else:
            counter = TokenCounter(asdict(contender), tokens, threads)
            made.append(Contender(contender.name, counter, after_warmup=counter.after_warmup,
                                  details=lambda counter=counter: {**counter.details(), "peak_rss_mb": peak_rss_mb()}))
    timings = run_interleaved(made, clips, chunk_size=max(contender.batch for contender in contenders), log=log)
    return [_result(contender, timing, len(windows), tokens) for contender, timing in zip(contenders, timings)]


class TokenCounter:
    """One contender, built where it runs: clips in, each window's decoded token count out (as text: the
    harness keeps transcripts, and a random model's text means nothing)."""

    def __init__(self, contender: dict, tokens: int, threads: int | None):
        self.contender = ForcedContender(**contender)
        runner = {"export": _export_runner, "faster-whisper": _faster_whisper_runner,
                  "faster-whisper-batched": _faster_whisper_runner}[self.contender.kind]
        self.transcribe, self.timed, self.encoder_kind, self.weights = runner(self.contender, tokens, threads)

    def __call__(self, items) -> list[str]:
        return [str(count) for count in self.transcribe([audio for _, audio in items])]

    def after_warmup(self) -> None:
        self.timed.seconds = 0.0

    def details(self) -> dict:
        return {"encoder_seconds": self.timed.seconds, "encoder": self.encoder_kind, "weight_bytes": self.weights}


def _result(contender: ForcedContender, timing: Timing, windows: int, tokens: int) -> ForcedResult:
    audio = windows * float(WINDOW_SECONDS)
    counts = [int(text) for text in timing.hypotheses]
    failure = timing.failure or ("" if counts == [tokens] * windows else
                                 f"decoded {counts} tokens, not {tokens} a window")
    common = dict(name=contender.name, kind=contender.kind, folder=contender.folder, batch=contender.batch,
                  windows=windows, tokens_per_window=tokens, audio_seconds=audio, token_counts=counts)
    if failure:
        return ForcedResult(**common, encoder=contender.encoder, wall_seconds=round(timing.wall_seconds, 3), rtfx=None,
                            encoder_seconds=None, encoder_ms_per_window=None, decoder_ms_per_token=None,
                            peak_rss_mb=timing.details.get("peak_rss_mb"), weight_mb=None, failure=failure)
    wall, encoder = timing.wall_seconds, timing.details["encoder_seconds"]
    return ForcedResult(
        **common, encoder=timing.details["encoder"], wall_seconds=round(wall, 3), rtfx=round(audio / wall, 3),
        encoder_seconds=round(encoder, 3), encoder_ms_per_window=round(1000 * encoder / windows, 1),
        decoder_ms_per_token=round(1000 * (wall - encoder) / max(sum(counts), 1), 2),
        peak_rss_mb=round(timing.details["peak_rss_mb"]), weight_mb=round(timing.details["weight_bytes"] / 2**20, 1))


def forced_options(tokens: int) -> DecodingOptions:
    """Exactly `tokens` tokens a window, end of text suppressed, no silence rule: what every contender decodes."""
    return DecodingOptions(language="en", forced_tokens=tokens, no_speech_threshold=None)


def _export_runner(contender: ForcedContender, tokens: int, threads: int | None):
    engine = ExportedWhisper(contender.folder, encoder=contender.encoder, threads=threads)
    timed = EncoderTimed(engine)
    options = forced_options(tokens)

    def transcribe(windows: list[np.ndarray]) -> list[int]:
        counts = []
        for first in range(0, len(windows), contender.batch):
            encoded = timed.encode(engine.features(windows[first:first + contender.batch]))
            counts += [len(window.tokens) for window in engine.decode(encoded, options)]
        return counts

    files = [engine.encoder.path] if hasattr(engine.encoder, "path") else []
    return transcribe, timed, engine.encoder_kind, _bytes(files, Path(contender.folder) / "decoder" / "model.bin")


def _faster_whisper_runner(contender: ForcedContender, tokens: int, threads: int | None):
    options = forced_options(tokens)
    pipelines = FasterWhisperPipelines(contender.folder, options=options, threads=threads)
    # CTranslate2 on the CPU: synchronous, nothing to wait for
    timed = EncoderTimed(SimpleNamespace(encode=pipelines.model.encode, synchronize=lambda: None))
    pipelines.model.encode = timed.encode  # both pipelines encode through the model's encode

    def transcribe(windows: list[np.ndarray]) -> list[int]:
        if contender.kind == "faster-whisper":
            return [count for _, count in pipelines.sequential(windows)]
        return [count for _, count in pipelines.batched(windows, contender.batch)]

    return transcribe, timed, "ctranslate2 int8", _bytes([], Path(contender.folder) / "model.bin")


def _bytes(encoder_files: list[Path], decoder_file: Path) -> int:
    files = [Path(f) for f in encoder_files] + [decoder_file]
    files += [f.with_name(f.name + ".data") for f in encoder_files if f.with_name(f.name + ".data").exists()]
    return sum(f.stat().st_size for f in files)
