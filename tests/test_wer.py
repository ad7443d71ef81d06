"""Normaliser and WER arithmetic against hand-computed cases."""

from __future__ import annotations

import pytest

from lite_whisper.evaluation.wer import WordErrors, normalize, word_errors


def test_normaliser_matches_whisper_english_rules():
    assert normalize("Mr. Smith's colour, 1,000 dollars!") == "mister smith is color $1000"  # Whisper expands 's
    assert normalize("HELLO, World.") == "hello world"
    assert normalize("I'm   here [noise] (uh)") == "i am here"


def test_other_languages_keep_their_words_and_letters():
    # the English rules would rewrite "Mr." and numbers; other languages only lose case and punctuation
    assert normalize("Können Sie mir sagen, wo die Apotheke ist?", "de") == "können sie mir sagen wo die apotheke ist"
    assert normalize("J'aimerais apprendre à jouer du piano.", "fr") == "j aimerais apprendre à jouer du piano"
    assert normalize("Mr. Smith", None) == normalize("Mr. Smith", "en") == "mister smith"  # unknown: English


@pytest.mark.parametrize(
    "reference, hypothesis, expected",
    [
        ("a b c d", "a b c d", WordErrors(0, 0, 0, 4)),
        ("a b c d", "a x c d", WordErrors(1, 0, 0, 4)),  # one substitution
        ("a b c d", "a c d", WordErrors(0, 1, 0, 4)),  # one deletion
        ("a b c d", "a b y c d", WordErrors(0, 0, 1, 4)),  # one insertion
        ("a b c d", "", WordErrors(0, 4, 0, 4)),
        ("", "a b", WordErrors(0, 0, 2, 0)),
    ],
)
def test_word_error_counts(reference, hypothesis, expected):
    assert word_errors(reference, hypothesis) == expected


def test_wer_percent_and_sum():
    a = word_errors("the cat sat", "the cat sat down")  # 1 insertion / 3 words
    b = word_errors("on the mat", "on a mat")  # 1 substitution / 3 words
    assert a.wer == pytest.approx(100 / 3)
    total = a + b
    assert (total.errors, total.reference_words) == (2, 6)
    assert total.wer == pytest.approx(100 * 2 / 6)
    assert WordErrors(0, 0, 3, 0).wer is None  # undefined without reference words
