"""End-to-end speed: the same clips transcribed by several engines, taking turns (`harness`); RTFx and encoder share."""

from __future__ import annotations

import time

from lite_whisper.benchmark.harness import Contender, run_interleaved
from lite_whisper.benchmark.results import EndToEndResult
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.data.datasets import SpeechDataset, load_dataset
from lite_whisper.transcription.engine import Engine, transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


class EncoderTimed:
    """`engine` with the wall time of its `encode` calls added up (queued GPU work waited for)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str):  # everything else is the engine's own
        return getattr(self.engine, name)

    def encode(self, features):
        self.engine.synchronize()
        start = time.perf_counter()
        encoded = self.engine.encode(features)
        self.engine.synchronize()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return encoded


def end_to_end_timing(engines: list[tuple[str, Engine]], data, *, limit: int | None = None, batch_size: int = 8,
                      options: DecodingOptions | None = None, log=None) -> dict[str, EndToEndResult]:
    """Transcribe the same clips with each `(name, engine)`; RTFx and encoder share.

    Audio is decoded once beforehand, so file reading is not timed. The engines take turns batch by
    batch after a warm-up (`harness.run_interleaved`), so background load hits them alike.
    `options`: default greedy English. Raises RuntimeError naming the engines that failed.
    """
    log = log or (lambda message: None)
    dataset = data if isinstance(data, SpeechDataset) else load_dataset(data, limit=limit)
    clips = [(clip.id, clip.audio) for clip in dataset][:limit]
    if not clips:
        raise ValueError("no clips to transcribe")
    audio_seconds = sum(len(audio) for _, audio in clips) / SAMPLE_RATE
    options = options or DecodingOptions(language="en")
    log(f"end to end: {', '.join(name for name, _ in engines)} transcribe {len(clips)} clips "
        f"({audio_seconds:.0f} s of audio)")
    timed = {name: EncoderTimed(engine) for name, engine in engines}

    def contender(name: str, engine: EncoderTimed) -> Contender:
        def transcribe(items):
            return [t.text for t in transcribe_clips(engine, items, batch_size=batch_size, options=options)]

        def after_warmup():
            engine.seconds, engine.calls = 0.0, 0

        return Contender(name, transcribe, after_warmup)

    timings = run_interleaved([contender(name, engine) for name, engine in timed.items()], clips,
                              chunk_size=batch_size, log=log)
    failed = [f"{timing.name}: {timing.failure}" for timing in timings if timing.failed]
    if failed:
        raise RuntimeError("end-to-end timing failed for " + "; ".join(failed))
    return {
        timing.name: EndToEndResult(
            clips=len(clips),
            audio_seconds=audio_seconds,
            wall_seconds=timing.wall_seconds,
            rtfx=audio_seconds / timing.wall_seconds,
            encoder_seconds=timed[timing.name].seconds,
            encoder_share=timed[timing.name].seconds / timing.wall_seconds,
        )
        for timing in timings
    }
