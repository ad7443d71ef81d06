"""Early ends of text: a window that says far too little for the speech in it is decoded again (scripted decoders,
known speech layouts)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lite_whisper.transcription import early_end
from lite_whisper.transcription.early_end import might_be_cut_short, recover, says_too_little
from lite_whisper.transcription.types import DecodingOptions, Segment, Transcription

S = 16_000


def word_tokenizer(text, add_special_tokens=False):
    return SimpleNamespace(input_ids=text.split())


SENTENCE = "isabel came back to florence but only after several months and intervals replete with incident"


class ScriptedDecoder:
    """Answers by the window's start (in samples) and the timestamp mode; records every call."""

    def __init__(self, samples, answers):
        self.samples, self.answers, self.calls = samples, answers, []

    def __call__(self, batch, options):
        results = []
        for name, clip in batch:
            start = len(self.samples) - len(clip)  # windows here always run to the end of the clip ...
            key = (round(start / S, 2), options.timestamps)
            if key not in self.answers:  # ... except the regions decoded apart, keyed by their length
                key = ("region", round(len(clip) / S, 2))
            self.calls.append(key)
            text, segments = self.answers[key]
            results.append(Transcription(name, text, len(clip) / S, segments))
        return results


@pytest.fixture
def heading_layout(monkeypatch):
    """A 14 s window: a heading at 0-2 s, a pause, then speech 3-14 s."""
    monkeypatch.setattr(early_end, "speech_regions", lambda samples: [(0, 2 * S), (3 * S, 14 * S)])


def test_the_rule_separates_whole_transcripts_from_cut_short_ones():
    assert says_too_little(3, 13.0)  # "Chapter 16." over 13 s of speech
    assert not says_too_little(40, 13.0)  # ~3 tokens a second: a whole transcript
    assert not says_too_little(1, 2.0)  # a word or two of short speech
    assert might_be_cut_short(3, 14 * S) and not might_be_cut_short(30, 14 * S)


def test_a_cut_short_window_goes_on_from_its_last_timestamp(heading_layout):
    samples = np.zeros(14 * S, np.float32)
    decode = ScriptedDecoder(samples, {
        (0.0, True): ("Chapter 31.", [Segment(0.0, 1.5, "Chapter 31.")]),
        (1.5, True): (SENTENCE, [Segment(0.5, 12.0, SENTENCE)]),
    })
    part = Transcription("clip", "Chapter 31.", 14.0)
    result = recover(word_tokenizer, decode, "clip", samples, part, DecodingOptions(timestamps=True))
    assert result.text == f"Chapter 31. {SENTENCE}"
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 1.5), (2.0, 13.5)]  # on the window's clock
    assert decode.calls == [(0.0, True), (1.5, True)]  # speech after 13.5 s: under 2 s, so no third decoding
    plain = recover(word_tokenizer, ScriptedDecoder(samples, decode.answers), "clip", samples, part, DecodingOptions())
    assert plain.text == result.text and plain.segments == []


def test_when_timestamps_do_not_help_the_speech_regions_are_decoded_apart(heading_layout):
    samples = np.zeros(14 * S, np.float32)
    decode = ScriptedDecoder(samples, {
        (0.0, True): ("Chapter 16.", [Segment(0.0, 14.0, "Chapter 16.")]),  # the heading stretched over it all
        ("region", 2.0): ("Chapter 16.", []),
        ("region", 11.0): (SENTENCE, []),
    })
    part = Transcription("clip", "Chapter 16.", 14.0)
    result = recover(word_tokenizer, decode, "clip", samples, part, DecodingOptions())
    assert result.text == f"Chapter 16. {SENTENCE}"
    assert decode.calls == [(0.0, True), ("region", 2.0), ("region", 11.0)]


def test_a_whole_transcript_is_left_alone_and_text_never_gets_shorter(heading_layout):
    samples = np.zeros(14 * S, np.float32)
    whole = Transcription("clip", SENTENCE + " " + SENTENCE, 14.0)
    decode = ScriptedDecoder(samples, {})
    assert recover(word_tokenizer, decode, "clip", samples, whole, DecodingOptions()) is whole
    assert decode.calls == []
    worse = ScriptedDecoder(samples, {(0.0, True): ("", []), ("region", 2.0): ("", []), ("region", 11.0): ("", [])})
    part = Transcription("clip", "Chapter 16.", 14.0)
    assert recover(word_tokenizer, worse, "clip", samples, part, DecodingOptions()).text == "Chapter 16."


def test_silence_is_not_recovered(monkeypatch):
    monkeypatch.setattr(early_end, "speech_regions", lambda samples: [])
    samples = np.zeros(20 * S, np.float32)
    decode = ScriptedDecoder(samples, {})
    empty = Transcription("quiet", "", 20.0)
    assert recover(word_tokenizer, decode, "quiet", samples, empty, DecodingOptions()) is empty
    assert decode.calls == []
