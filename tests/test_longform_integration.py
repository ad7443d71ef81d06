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


@pytest.mark.parametrize("backend", ["pytorch", "hybrid"])
def test_a_long_recording_gives_the_words_of_its_clips(tiny_en, recording, backend):
    audio, clips = recording
    engine = as_engine(tiny_en, backend=backend)
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


def test_word_timestamps_agree_with_faster_whispers(tiny_en, speech_dir, tmp_path):
    """The hybrid engine (PyTorch encoder, CTranslate2 decoder) against faster-whisper on the same weights."""
    from faster_whisper import WhisperModel

    from lite_whisper import load_audio
    from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2

    model, processor = tiny_en
    audio = load_audio(speech_dir / "extra" / "jfk.flac")
    options = DecodingOptions(language="en", timestamps=True, word_timestamps=True)
    (ours,) = transcribe_clips(as_engine(tiny_en, backend="hybrid"), [("jfk", audio)], options=options)
    folder = convert_to_ctranslate2(model, processor, tmp_path / "ct2", quantization="float32")
    segments, _ = WhisperModel(str(folder), device="cpu", compute_type="float32", cpu_threads=2).transcribe(
        audio, beam_size=1, word_timestamps=True, condition_on_previous_text=False)
    theirs = [word for segment in segments for word in segment.words]
    bare = lambda words: [w.word.strip(" .,!?") for w in words]  # noqa: E731 - the model's punctuation may differ
    assert bare(ours.words) == bare(theirs)
    assert np.median([abs(a.start - b.start) for a, b in zip(ours.words, theirs)]) <= 0.08
    assert all(0 <= w.start <= w.end <= ours.seconds for w in ours.words)
    assert all(a.start <= b.start for a, b in zip(ours.words, ours.words[1:]))
    assert normalize(" ".join(w.word for w in ours.words)) == normalize(ours.text)


def test_pytorch_word_alignment_equals_ctranslate2s(tiny_en, speech_dir):
    """The PyTorch engine's own alignment (cross-attention heads + DTW in PyTorch) against CTranslate2's `align` on
    the same weights and the same tokens: the same words at the same frames, give or take a frame."""
    from lite_whisper import load_audio

    audio = load_audio(speech_dir / "extra" / "jfk.flac")
    options = DecodingOptions(language="en", timestamps=True, word_timestamps=True)
    (pytorch,) = transcribe_clips(as_engine(tiny_en, backend="pytorch"), [("jfk", audio)], options=options)
    (hybrid,) = transcribe_clips(as_engine(tiny_en, backend="hybrid"), [("jfk", audio)], options=options)
    assert [w.word for w in pytorch.words] == [w.word for w in hybrid.words] and len(pytorch.words) > 15
    differences = [abs(a.start - b.start) for a, b in zip(pytorch.words, hybrid.words)]
    assert np.median(differences) <= 0.02 and max(differences) <= 0.5, differences
    assert all(0 <= w.start <= w.end <= pytorch.seconds for w in pytorch.words)
    assert all(0.0 < w.probability <= 1.0 for w in pytorch.words)
