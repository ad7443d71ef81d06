"""Whisper's early end of text, caught and recovered: a window whose transcript stops while its audio goes on
talking is decoded again until the speech is covered.

Whisper sometimes ends the transcript after a first phrase ("Chapter 16." and nothing of the 12 s that
follow): dense base does it on 2 of the dev split's 13 chapter openings, base compressed to 75% on 5, and
they are most of the compressed model's extra errors on clean speech. The symptom is plain: far fewer
tokens than the speech Silero VAD hears. Measured on those 13 clips (base at 75%): whole transcripts
decode to 2.9-3.9 tokens per second of speech, cut-short ones to 0.22-0.79. Such a window is decoded
again, each step only if the one before still says too little:

1. with timestamps, going on from the last timestamp while speech remains after it (Whisper's own
   sequential walk: a timestamp before the end of the window means "go on from here");
2. its VAD regions apart (the heading the model stopped after is usually a region of its own).

The candidate with the most tokens wins; the window's text never gets shorter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.transcription.longform import Window, assemble, speech_regions
from lite_whisper.transcription.types import DecodingOptions, Transcription

MIN_TOKENS_PER_SECOND = 1.0  # of VAD speech; ordinary speech decodes to ~3 (English), more in most languages
MIN_SPEECH_SECONDS = 3.0  # shorter windows can be a word or two of real speech
MIN_SPEECH_AFTER = 2.0  # seconds of speech after the last timestamp that are worth another decoding
MAX_STEPS = 3  # continuations from the last timestamp

Decode = Callable[[Sequence[tuple[str, np.ndarray]], DecodingOptions], list[Transcription]]


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids) if text.strip() else 0


def says_too_little(tokens: int, speech_seconds: float) -> bool:
    """Fewer tokens than `MIN_TOKENS_PER_SECOND` for at least `MIN_SPEECH_SECONDS` of speech."""
    return speech_seconds >= MIN_SPEECH_SECONDS and tokens < MIN_TOKENS_PER_SECOND * speech_seconds


def might_be_cut_short(tokens: int, n_samples: int) -> bool:
    """The cheap test before the VAD runs: too few tokens even if the whole window were speech."""
    return says_too_little(tokens, n_samples / SAMPLE_RATE)


def recover(tokenizer, decode: Decode, name: str, samples: np.ndarray, part: Transcription,
            options: DecodingOptions) -> Transcription:
    """`part` (the transcription of the window `samples`), or a longer one if it was cut short (see above)."""
    regions = speech_regions(samples)
    speech = sum(end - start for start, end in regions) / SAMPLE_RATE
    best, best_tokens = part, token_count(tokenizer, part.text)
    if not says_too_little(best_tokens, speech):
        return part
    for attempt in (_continue_from_timestamps, _regions_apart):
        candidate = attempt(decode, name, samples, regions, options)
        tokens = token_count(tokenizer, candidate.text)
        if tokens > best_tokens:
            best, best_tokens = candidate, tokens
        if not says_too_little(best_tokens, speech):
            break
    if not options.timestamps:
        best = dataclasses.replace(best, segments=[])
    return dataclasses.replace(best, source=name)


def _continue_from_timestamps(decode: Decode, name: str, samples: np.ndarray, regions, options: DecodingOptions
                              ) -> Transcription:
    timed = dataclasses.replace(options, timestamps=True)
    windows, parts, start = [], [], 0
    for _ in range(MAX_STEPS + 1):
        window = Window(start, len(samples))
        (part,) = decode([(name, samples[window.start:window.end])], timed)
        windows.append(window)
        parts.append(part)
        if not part.segments:
            break
        start = window.start + int(part.segments[-1].end * SAMPLE_RATE)
        after = sum(max(0, end - max(begin, start)) for begin, end in regions) / SAMPLE_RATE
        if after < MIN_SPEECH_AFTER or start >= len(samples):
            break
    return assemble(name, len(samples), windows, parts, timestamps=True)


def _regions_apart(decode: Decode, name: str, samples: np.ndarray, regions, options: DecodingOptions
                   ) -> Transcription:
    windows = [Window(start, end) for start, end in regions]
    parts = decode([(name, samples[w.start:w.end]) for w in windows], options) if windows else []
    return assemble(name, len(samples), windows, parts, options.timestamps)
