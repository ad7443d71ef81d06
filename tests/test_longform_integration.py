"""Long recordings on real tiny.en: joined clips with pauses transcribe to the clips' own words through every
engine, with segments on the recording's clock; a webm of speech transcribes as its WAV does."""

from __future__ import annotations

import numpy as np
import pytest

from lite_whisper import load_dataset, load_model
from lite_whisper.api import as_engine
from lite_whisper.evaluation.wer import normalize, word_errors
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions

pytestmark = pytest.mark.integration
RATE = 16_000


@pytest.fixture(scope="module")
def tiny_en():
    return load_model("tiny.en")


@pytest.fixture(scope="module")
def recording(speech_dir):
    """Five dev-clean clips with 2 s of near-silence between them (over 40 s), and the clips."""
    clips = list(load_dataset(speech_dir / "librispeech" / "dev-clean", limit=5))
    pause = (0.001 * np.random.default_rng(0).standard_normal(2 * RATE)).astype(np.float32)
    audio = np.concatenate([piece for clip in clips for piece in (clip.audio, pause)][:-1])
    assert len(audio) / RATE > 40
    return audio, clips


@pytest.mark.parametrize("decoder", ["transformers", "ctranslate2"])
def test_a_long_recording_gives_the_words_of_its_clips(tiny_en, recording, decoder):
    audio, clips = recording
    engine = as_engine(tiny_en, decoder=decoder)
    options = DecodingOptions(language="en", timestamps=True)
    alone = list(transcribe_clips(engine, [(clip.id, clip.audio) for clip in clips], options=options))
    (whole,) = transcribe_clips(engine, [("recording", audio)], options=options)
    separate = " ".join(result.text for result in alone)
    assert word_errors(normalize(separate), normalize(whole.text)).wer <= 3.0, (separate, whole.text)
    assert whole.seconds == pytest.approx(len(audio) / RATE)
    # segments on the recording's clock: inside it, in order, the last one in the last clip
    assert whole.segments and all(0 <= s.start <= s.end <= whole.seconds for s in whole.segments)
    assert all(a.end <= b.start for a, b in zip(whole.segments, whole.segments[1:]))
    assert whole.segments[-1].end > whole.seconds - len(clips[-1].audio) / RATE
    assert normalize(" ".join(s.text for s in whole.segments)) == normalize(whole.text)


def test_vad_and_sequential_long_forms_agree(tiny_en, recording):
    audio, clips = recording
    engine = as_engine(tiny_en)
    vad, sequential = (next(transcribe_clips(engine, [("r", audio)], options=DecodingOptions(long_form=form))).text
                       for form in ("vad", "sequential"))
    reference = normalize(" ".join(clip.reference for clip in clips))
    assert word_errors(reference, normalize(vad)).wer <= word_errors(reference, normalize(sequential)).wer + 2.0
    assert word_errors(reference, normalize(vad)).wer < 10.0, vad
