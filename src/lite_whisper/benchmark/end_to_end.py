"""End-to-end speed: the same clips transcribed by several engines, taking turns; RTFx and encoder share."""

from __future__ import annotations

import time

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

    Audio is decoded once beforehand, so file reading is not timed. Each engine first
    transcribes one clip as a warm-up; then the engines take turns batch by batch
    (A B A B ...), like the encoder timings, so background load hits them alike.
    `options`: default greedy English.
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
    wall = dict.fromkeys(timed, 0.0)
    for engine in timed.values():
        list(transcribe_clips(engine.engine, clips[:1], batch_size=1, options=options))  # warm-up
    for first in range(0, len(clips), batch_size):
        chunk = clips[first:first + batch_size]
        for name, engine in timed.items():
            start = time.perf_counter()
            for _ in transcribe_clips(engine, chunk, batch_size=batch_size, options=options):
                pass
            wall[name] += time.perf_counter() - start
    return {
        name: EndToEndResult(
            clips=len(clips),
            audio_seconds=audio_seconds,
            wall_seconds=wall[name],
            rtfx=audio_seconds / wall[name],
            encoder_seconds=engine.seconds,
            encoder_share=engine.seconds / wall[name],
        )
        for name, engine in timed.items()
    }
