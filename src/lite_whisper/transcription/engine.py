"""The one protocol every transcription engine implements, and the loop that drives any of them.

An engine turns 16 kHz audio into tokens in three steps a caller can batch and time apart —
`features` (log-mel), `encode`, `decode` — plus `transcribe_long`, Whisper's sequential walk over audio
longer than 30 s, which every engine does in its own way. The PyTorch engine
(`lite_whisper.runtime.pytorch`) and the exported-folder engine (`lite_whisper.runtime.exported`)
implement it; `lite_whisper.api` chooses one. Everything that transcribes (`transcribe`,
`evaluate`, `bench`, a server) talks to this protocol, never to an engine's class. Long audio is cut
into windows at its pauses (`transcription.longform`) and batched like short clips, whatever the engine.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lite_whisper.data.audio import HOP_LENGTH, SAMPLE_RATE, load_audio
from lite_whisper.transcription.early_end import might_be_cut_short, recover, token_count
from lite_whisper.transcription.longform import Window, assemble, plan_windows, speech_regions
from lite_whisper.transcription.policy import (
    decoder_prompt,
    check_options,
    compression_ratio,
    is_silent,
    needs_fallback,
    to_transcription,
)
from lite_whisper.transcription.types import WINDOW_SECONDS, Decoded, DecodingOptions, Transcription
from lite_whisper.transcription.words import word_times


@runtime_checkable
class Engine(Protocol):
    name: str  # what reports call the model
    generation_config: Any  # transformers' GenerationConfig: prompt tokens, languages, English-only
    tokenizer: Any  # transformers' Whisper tokenizer: tokens -> text
    batches_windows: bool  # False: audio over 30 s goes whole to `transcribe_long` (faster-whisper's reference)
    aligns_words: bool  # True: `align` times words (word timestamps)

    def synchronize(self) -> None:
        """Wait for the engine's queued work (a GPU's), so that a timer reads finished work."""

    def align(self, encoded: Any, prompt: list[int], tokens: list[list[int]], frames: list[int]) -> list:
        """Per window of `encoded`: (the warping path of `tokens` over the audio frames as (token, frame) pairs,
        each token's probability), from the cross-attention alignment heads; engines with `aligns_words`."""

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
        """One clip of any length, walked window by window in the engine's own sequential way (each window starts
        at the last timestamp of the one before): `options.long_form` "sequential"."""


class EngineBase:
    """The defaults of the protocol's optional parts; every engine subclasses it and overrides what it has."""

    batches_windows = True
    aligns_words = False

    def synchronize(self) -> None:
        pass  # nothing runs asynchronously on the CPU

    def align(self, encoded, prompt, tokens, frames):
        raise NotImplementedError(f"{type(self).__name__} cannot align words (aligns_words is False)")


def transcribe_clips(engine: Engine, clips: Iterable[tuple[str, str | Path | np.ndarray]], *, batch_size: int = 8,
                     options: DecodingOptions = DecodingOptions()) -> Iterator[Transcription]:
    """Transcribe `(name, audio)` pairs lazily, in order. Clips up to 30 s are one window each; longer ones are
    cut at pauses into windows of at most 30 s (`longform`, with `options.long_form` "vad") or walked by the
    engine's own sequential decoding ("sequential"). Windows of all clips are decoded in batches of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    check_options(engine.generation_config, options)
    waiting: deque[_Recording] = deque()  # in input order, until every window is decoded
    queue: list[tuple[_Recording, int]] = []  # windows not yet decoded
    for name, item in clips:
        samples = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
        recording = _Recording(name, samples)
        if len(samples) <= WINDOW_SECONDS * SAMPLE_RATE:
            recording.windows = [Window(0, len(samples))]
        elif options.long_form == "sequential":
            recording.result = engine.transcribe_long(name, samples, options)
        else:
            recording.windows = plan_windows(speech_regions(samples))
        recording.parts = [None] * len(recording.windows)
        waiting.append(recording)
        queue.extend((recording, index) for index in range(len(recording.windows)))
        while len(queue) >= batch_size:
            _decode_windows(engine, queue[:batch_size], options)
            del queue[:batch_size]
            yield from _finished(waiting, options)
    _decode_windows(engine, queue, options)
    yield from _finished(waiting, options)


@dataclasses.dataclass
class _Recording:
    """One input on its way through `transcribe_clips`: its windows and, as they are decoded, their transcripts."""

    name: str
    samples: np.ndarray
    windows: list[Window] = dataclasses.field(default_factory=list)
    parts: list[Transcription | None] = dataclasses.field(default_factory=list)
    result: Transcription | None = None


def _decode_windows(engine: Engine, queue: Sequence[tuple[_Recording, int]], options: DecodingOptions) -> None:
    clips = [(recording.name, recording.samples[recording.windows[index].start:recording.windows[index].end])
             for recording, index in queue]
    for (recording, index), (name, samples), part in zip(queue, clips, transcribe_batch(engine, clips, options)):
        recording.parts[index] = recover_if_cut_short(engine, name, samples, part, options)


def recover_if_cut_short(engine: Engine, name: str, samples: np.ndarray, part: Transcription,
                         options: DecodingOptions) -> Transcription:
    """`part`, the transcription of one window, or — if it says far too little for the speech in it — the
    window decoded again (`early_end`; with `options.recover_early_end`, never with forced tokens)."""
    if not options.recover_early_end or options.forced_tokens is not None \
            or not might_be_cut_short(token_count(engine.tokenizer, part.text), len(samples)):
        return part
    return recover(engine.tokenizer, lambda batch, chosen: transcribe_batch(engine, batch, chosen), name, samples,
                   part, options)


def _finished(waiting: deque[_Recording], options: DecodingOptions) -> Iterator[Transcription]:
    """The transcriptions at the head of `waiting` whose windows are all decoded, in input order."""
    while waiting and (waiting[0].result is not None or all(part is not None for part in waiting[0].parts)):
        recording = waiting.popleft()
        if recording.result is not None:  # the engine's sequential walk: its segments held to the clip too
            whole = Window(0, len(recording.samples))
            yield assemble(recording.name, whole.end, [whole], [recording.result], options.timestamps)
        else:
            yield assemble(recording.name, len(recording.samples), recording.windows, recording.parts,
                           options.timestamps)


def transcribe_batch(engine: Engine, batch: Sequence[tuple[str, np.ndarray]],
                     options: DecodingOptions) -> list[Transcription]:
    """Clips of at most 30 s, encoded and decoded together; silent ones come back empty."""
    if not batch:
        return []
    encoded = engine.encode(engine.features([samples for _, samples in batch]))
    return window_transcriptions(engine, encoded, batch, decode_with_fallback(engine, encoded, options), options)


def window_transcriptions(engine: Engine, encoded: Any, batch: Sequence[tuple[str, np.ndarray]],
                          decoded: list[Decoded], options: DecodingOptions) -> list[Transcription]:
    """The decoded windows of `batch` as transcriptions, their words timed with `options.word_timestamps`."""
    results = [window_transcription(engine, name, samples, window, options)
               for (name, samples), window in zip(batch, decoded)]
    return with_words(engine, encoded, batch, decoded, results) if options.word_timestamps else results


def with_words(engine: Engine, encoded: Any, batch: Sequence[tuple[str, np.ndarray]], decoded: list[Decoded],
               results: list[Transcription]) -> list[Transcription]:
    """`results` with their words timed (`transcription.words`) from the engine's alignment of each window."""
    if not engine.aligns_words:
        raise ValueError(f"word timestamps need an engine that aligns words; {engine.name} does not")
    eos = engine.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    spoken = [index for index, result in enumerate(results) if result.text]
    if not spoken:
        return results
    tokens = [[token for token in decoded[index].tokens if token < eos] for index in spoken]
    prompt = decoder_prompt(engine.generation_config, DecodingOptions(timestamps=True))
    frames = [len(batch[index][1]) // HOP_LENGTH for index in spoken]
    alignments = engine.align(engine.take(encoded, spoken), prompt, tokens, frames)
    results = list(results)
    for index, window_tokens, (path, probabilities) in zip(spoken, tokens, alignments):
        words = word_times(engine.tokenizer, window_tokens, path, probabilities)
        results[index] = dataclasses.replace(results[index], words=words)
    return results


def window_transcription(engine: Engine, name: str, samples: np.ndarray, window: Decoded,
                         options: DecodingOptions) -> Transcription:
    """One decoded clip of at most 30 s as a transcription (empty when the silence rule calls it silent)."""
    if is_silent(window, options):
        return Transcription(name, "", len(samples) / SAMPLE_RATE)
    result = to_transcription(engine.tokenizer, name, window.tokens, len(samples), options)
    scored = [dataclasses.replace(segment, avg_logprob=window.mean_logprob, no_speech_prob=window.no_speech_prob,
                                  temperature=window.temperature) for segment in result.segments]
    return dataclasses.replace(result, segments=scored)


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
        sampled = [dataclasses.replace(window, temperature=temperature) for window in sampled]
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
