"""Audio reading: resampling, downmixing, and one specific error per kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from lite_whisper.data.audio import AudioError, load_audio, prepare_samples


def _tone(rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
def test_any_rate_becomes_16k(tmp_path, rate):
    path = tmp_path / f"tone{rate}.wav"
    sf.write(path, _tone(rate), rate)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 2
    # a resampled 440 Hz tone keeps its frequency: the spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / len(samples) - 440) < 3


def test_stereo_is_averaged(tmp_path):
    left = _tone(16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 16000)
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-4)


def test_ogg_is_read(tmp_path):
    path = tmp_path / "tone.ogg"
    sf.write(path, _tone(16000), 16000, format="OGG", subtype="VORBIS")
    assert abs(len(load_audio(path)) - 16000) < 200


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nothere.wav: audio file not found"):
        load_audio(tmp_path / "nothere.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    with pytest.raises(AudioError, match="broken.wav: cannot decode audio"):
        load_audio(path)


def test_not_audio_at_all(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is text, not sound")
    with pytest.raises(AudioError, match="notes.mp3: cannot decode audio"):
        load_audio(path)


def test_zero_length(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: audio is empty"):
        load_audio(path)


def test_non_finite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    samples = _tone(16000)
    samples[100:103] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains 3 non-finite samples"):
        load_audio(path)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(tmp_path)


def test_prepare_rejects_bad_shape():
    with pytest.raises(AudioError, match="shape"):
        prepare_samples(np.zeros((2, 2, 2)), 16000)
