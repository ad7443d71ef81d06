"""The one protocol every transcription engine implements, and the loop that drives any of them.

An engine turns 16 kHz audio into tokens in three steps a caller can batch and time apart —
`features` (log-mel), `encode`, `decode` — plus `transcribe_long` for audio over 30 s, which
every engine walks window by window in its own way. The PyTorch engine
(`lite_whisper.runtime.pytorch`) and the exported-folder engine (`lite_whisper.runtime.exported`)
implement it; `lite_whisper.api` chooses one. Everything that transcribes (`transcribe`,
`evaluate`, `bench`, a server) talks to this protocol, never to an engine's class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, load_audio
from lite_whisper.transcription.policy import (
    check_options,
    compression_ratio,
    is_silent,
    needs_fallback,
    to_transcription,
)
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
        """Tokens (and the silence rule's scores) of every window of `encoded`; greedy or beam search at
        `options.temperature` 0, one sample from the distribution at that temperature above 0 (seeded by
        `options.seed`). With `options.fallback` the mean log-probability is always scored."""

    def take(self, encoded: Any, indices: Sequence[int]) -> Any:
        """The windows `indices` of `encoded` (repeats allowed), in the same form."""

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
    decoded = decode_with_fallback(engine, engine.encode(engine.features([samples for _, samples in batch])), options)
    return [window_transcription(engine, name, samples, window, options)
            for (name, samples), window in zip(batch, decoded)]


def window_transcription(engine: Engine, name: str, samples: np.ndarray, window: Decoded,
                         options: DecodingOptions) -> Transcription:
    """One decoded clip of at most 30 s as a transcription (empty when the silence rule calls it silent)."""
    if is_silent(window, options):
        return Transcription(name, "", len(samples) / SAMPLE_RATE)
    return to_transcription(engine.tokenizer, name, window.tokens, len(samples), options)


def decode_with_fallback(engine: Engine, encoded: Any, options: DecodingOptions,
                         first: list[Decoded] | None = None) -> list[Decoded]:
    """Whisper's temperature fallback over any engine: decode at the first temperature; windows that
    `needs_fallback` are decoded again at each next temperature, `best_of` samples each (the one with
    the highest mean log-probability kept), until they pass. A window that never passes keeps the
    attempt that passed the compression test with the highest mean log-probability (faster-whisper's
    choice), else the one with the lowest compression ratio. Without fallback: one plain decode.
    `first`: the windows' decoding at the first temperature, when the caller has it already."""
    decoded = list(first) if first is not None else engine.decode(encoded, first_pass(options))
    if not options.fallback:
        return decoded
    attempts: dict[int, list[Decoded]] = {}
    pending = [index for index, window in enumerate(decoded) if needs_fallback(engine.tokenizer, window, options)]
    for step, temperature in enumerate(options.temperatures[1:], start=1):
        if not pending:
            break
        for index in pending:
            attempts.setdefault(index, []).append(decoded[index])
        repeats = options.best_of if temperature > 0 else 1
        sampled = engine.decode(engine.take(encoded, [index for index in pending for _ in range(repeats)]),
                                dataclasses.replace(options, temperature=temperature, seed=options.seed + step))
        still = []
        for position, index in enumerate(pending):
            candidates = sampled[position * repeats:(position + 1) * repeats]
            decoded[index] = max(candidates, key=_mean_logprob)
            if needs_fallback(engine.tokenizer, decoded[index], options):
                still.append(index)
        pending = still
    for index in pending:  # never passed: keep the best attempt
        tried = attempts[index] + [decoded[index]]
        plausible = [window for window in tried if _compresses_well(engine.tokenizer, window, options)]
        decoded[index] = max(plausible, key=_mean_logprob) if plausible else min(
            tried, key=lambda window: _ratio(engine.tokenizer, window))
    return decoded


def first_pass(options: DecodingOptions) -> DecodingOptions:
    """The options of the first decoding: the first temperature of the fallback ladder."""
    return dataclasses.replace(options, temperature=options.temperatures[0])


def _mean_logprob(window: Decoded) -> float:
    return window.mean_logprob if window.mean_logprob is not None else float("-inf")


def _ratio(tokenizer, window: Decoded) -> float:
    return compression_ratio(tokenizer.decode(window.tokens, skip_special_tokens=True))


def _compresses_well(tokenizer, window: Decoded, options: DecodingOptions) -> bool:
    return _ratio(tokenizer, window) <= options.compression_ratio_threshold
