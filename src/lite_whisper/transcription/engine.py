"""The one protocol every transcription engine implements, and the loop that drives any of them.

An engine turns 16 kHz audio into tokens in three steps a caller can batch and time apart —
`features` (log-mel), `encode`, `decode` — plus `transcribe_long` for audio over 30 s, which
every engine walks window by window in its own way. The PyTorch engine
(`lite_whisper.runtime.pytorch`) and the exported-folder engine (`lite_whisper.runtime.exported`)
implement it; `lite_whisper.api` chooses one. Everything that transcribes (`transcribe`,
`evaluate`, `bench`, a server) talks to this protocol, never to an engine's class.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, load_audio
from lite_whisper.transcription.policy import check_options, is_silent, to_transcription
from lite_whisper.transcription.types import WINDOW_SECONDS, Decoded, DecodingOptions, Transcription


@runtime_checkable
class Engine(Protocol):
    name: str  # what reports call the model
    generation_config: Any  # transformers' GenerationConfig: prompt tokens, languages, English-only
    tokenizer: Any  # transformers' Whisper tokenizer: tokens -> text
    batched_timestamps: bool  # False: clips with timestamps go through `transcribe_long`

    def features(self, clips: Sequence[np.ndarray]) -> Any:
        """Log-mel features of clips of at most 30 s (16 kHz float32), batched, in the engine's own form."""

    def encode(self, features: Any) -> Any:
        """Encoder output of a batch of features, in the engine's own form (what `decode` takes)."""

    def decode(self, encoded: Any, options: DecodingOptions) -> list[Decoded]:
        """Tokens (and the silence rule's scores) of every window of `encoded`."""

    def transcribe_long(self, name: str, samples: np.ndarray, options: DecodingOptions) -> Transcription:
        """One clip of any length, walked window by window."""


def transcribe_clips(engine: Engine, clips: Iterable[tuple[str, str | Path | np.ndarray]], *, batch_size: int = 8,
                     options: DecodingOptions = DecodingOptions()) -> Iterator[Transcription]:
    """Transcribe `(name, audio)` pairs lazily, in order: clips up to 30 s in batches, longer ones alone."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    check_options(engine.generation_config, options)
    batch: list[tuple[str, np.ndarray]] = []
    for name, item in clips:
        samples = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
        if len(samples) > WINDOW_SECONDS * SAMPLE_RATE:
            yield from transcribe_batch(engine, batch, options)
            batch = []
            yield engine.transcribe_long(name, samples, options)
            continue
        batch.append((name, samples))
        if len(batch) == batch_size:
            yield from transcribe_batch(engine, batch, options)
            batch = []
    yield from transcribe_batch(engine, batch, options)


def transcribe_batch(engine: Engine, batch: Sequence[tuple[str, np.ndarray]],
                     options: DecodingOptions) -> list[Transcription]:
    """Clips of at most 30 s, encoded and decoded together; silent ones come back empty."""
    if not batch:
        return []
    if options.timestamps and not engine.batched_timestamps:
        return [engine.transcribe_long(name, samples, options) for name, samples in batch]
    decoded = engine.decode(engine.encode(engine.features([samples for _, samples in batch])), options)
    return [
        Transcription(name, "", len(samples) / SAMPLE_RATE) if is_silent(window, options)
        else to_transcription(engine.tokenizer, name, window.tokens, len(samples), options)
        for (name, samples), window in zip(batch, decoded)
    ]
