"""Word error rate the way the Open ASR Leaderboard computes it.

Both sides go through Whisper's English text normaliser (transformers' implementation with
OpenAI's British->American spelling table), then jiwer aligns the words. Text in another
language goes through Whisper's basic normaliser instead (lower case, no punctuation or
bracketed asides, diacritics kept): the English one would rewrite its numbers and spellings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

import jiwer
from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer


@lru_cache(maxsize=1)
def english_normalizer():
    spelling = json.loads((files("whisper_normalizer") / "normalizers" / "english.json").read_text())
    return EnglishTextNormalizer(spelling)


@lru_cache(maxsize=1)
def basic_normalizer():
    return BasicTextNormalizer()


def normalize(text: str, language: str | None = "en") -> str:
    """`text` normalised for scoring; `language` None (not known) counts as English, as before."""
    if language in (None, "en"):
        return english_normalizer()(text)
    return " ".join(basic_normalizer()(text).split())


@dataclass(frozen=True)
class WordErrors:
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    # reference words deleted after the hypothesis's last word: where some deletions lie, not more errors
    # (so not compared); what tells a transcript cut short (`evaluation.loops.is_cut_short`)
    trailing_deletions: int = field(default=0, compare=False)

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float | None:
        """Percent; None when the reference has no words (WER is undefined)."""
        return 100.0 * self.errors / self.reference_words if self.reference_words else None

    def __add__(self, other: "WordErrors") -> "WordErrors":
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_words + other.reference_words,
            self.trailing_deletions + other.trailing_deletions,
        )


NO_ERRORS = WordErrors(0, 0, 0, 0)


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Align already-normalised word sequences and count the edits (and the deletions at the end)."""

    ref_words, hyp_words = reference.split(), hypothesis.split()
    if not ref_words:  # jiwer refuses empty references: everything said is an insertion
        return WordErrors(0, 0, len(hyp_words), 0)
    if not hyp_words:
        return WordErrors(0, len(ref_words), 0, len(ref_words), len(ref_words))
    out = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    last = out.alignments[0][-1]
    trailing = last.ref_end_idx - last.ref_start_idx if last.type == "delete" else 0
    return WordErrors(out.substitutions, out.deletions, out.insertions, len(ref_words), trailing)


def corpus_errors(references, hypotheses, language: str | None = "en") -> WordErrors:
    """Word errors summed over clips (corpus WER: `.wer`), both sides normalised as `eval` normalises them."""
    total = NO_ERRORS
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        total = total + word_errors(normalize(reference, language), normalize(hypothesis, language))
    return total
