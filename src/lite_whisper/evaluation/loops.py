"""Telling a looping transcript from a long one: what a decoder stuck repeating itself leaves behind.

Two signs, either enough: the hypothesis has more than twice the reference's words (references
under `MIN_REFERENCE_WORDS` words count as that many, so "yes" -> "yes, yes, I did" is no loop), or
its text compresses like a repetition (zlib ratio above Whisper's own fallback threshold, 2.4;
ordinary English text stays below 2 and short text far below).
"""

from __future__ import annotations

from lite_whisper.transcription.policy import compression_ratio
from lite_whisper.transcription.types import DecodingOptions

COMPRESSION_RATIO_THRESHOLD = DecodingOptions.compression_ratio_threshold  # Whisper's fallback threshold
LENGTH_RATIO = 2.0
MIN_REFERENCE_WORDS = 3


def is_loop(reference_words: int, hypothesis: str) -> bool:
    """Whether `hypothesis` (normalised text) looks like a repetition loop against a reference of that many words."""
    words = len(hypothesis.split())
    return (words > LENGTH_RATIO * max(reference_words, MIN_REFERENCE_WORDS)
            or compression_ratio(hypothesis) > COMPRESSION_RATIO_THRESHOLD)
