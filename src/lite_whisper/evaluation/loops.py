"""The two ways a decoder fails a whole utterance: it loops, or it stops early.

Loops: what a decoder stuck repeating itself leaves behind.

Two signs, either enough: the hypothesis has more than twice the reference's words (references
under `MIN_REFERENCE_WORDS` words count as that many, so "yes" -> "yes, yes, I did" is no loop), or
its text compresses like a repetition (zlib ratio above Whisper's own fallback threshold, 2.4;
ordinary English text stays below 2 and short text far below).

Cut short: the transcript ends while the audio still holds speech — the end-of-text token chosen too early
(base stops after a chapter heading, "CHAPTER XII", and drops the sentence that follows). Against a
reference: the last `CUT_SHORT_SHARE` or more of the reference's words, and at least `CUT_SHORT_WORDS`, are
deleted after the hypothesis's last word. Missing words inside the utterance are ordinary errors, not this.
"""

from __future__ import annotations

from lite_whisper.evaluation.wer import WordErrors
from lite_whisper.transcription.policy import compression_ratio
from lite_whisper.transcription.types import DecodingOptions

COMPRESSION_RATIO_THRESHOLD = DecodingOptions.compression_ratio_threshold  # Whisper's fallback threshold
LENGTH_RATIO = 2.0
MIN_REFERENCE_WORDS = 3
CUT_SHORT_SHARE = 0.3
CUT_SHORT_WORDS = 4


def is_loop(reference_words: int, hypothesis: str) -> bool:
    """Whether `hypothesis` (normalised text) looks like a repetition loop against a reference of that many words."""
    words = len(hypothesis.split())
    return (words > LENGTH_RATIO * max(reference_words, MIN_REFERENCE_WORDS)
            or compression_ratio(hypothesis) > COMPRESSION_RATIO_THRESHOLD)


def is_cut_short(errors: WordErrors) -> bool:
    """Whether an utterance with these word errors stops early, as the module docstring says."""
    missing = errors.trailing_deletions
    return missing >= CUT_SHORT_WORDS and missing >= CUT_SHORT_SHARE * errors.reference_words
