"""Reading audio files into what Whisper expects: 16 kHz, mono, float32 in [-1, 1].

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3; soxr resamples with
high quality. Every failure names the file and says what was wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000  # Whisper's fixed input rate
WINDOW_SECONDS = 30.0  # Whisper pads or cuts every input to one 30 s window
MEL_FRAMES = 3000  # log-mel frames of a window (10 ms each)
ENCODER_FRAMES = 1500  # encoder frames of a window (the stem's stride-2 convolution: 20 ms each)


class AudioError(ValueError):
    """An audio file could not be turned into usable samples."""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read `path` as mono float32 samples at `sample_rate` Hz.

    Multi-channel audio is averaged to mono; any input rate is resampled.
    """

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        formats = ", ".join(sorted(sf.available_formats()))
        raise AudioError(
            f"{path}: cannot decode audio ({error}). Supported formats: {formats}"
        ) from None
    except RuntimeError as error:  # older soundfile raises RuntimeError
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
    return prepare_samples(samples, rate, sample_rate, source=str(path))


def prepare_samples(
    samples: np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE, source: str = "audio"
) -> np.ndarray:
    """Downmix (frames x channels, or 1-D) samples to mono, resample, and validate."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    elif samples.ndim != 1:
        raise AudioError(f"{source}: expected 1-D or (frames, channels) samples, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{source}: audio is empty (zero samples)")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{source}: audio contains {bad} non-finite samples (NaN or infinity)")
    if rate != sample_rate:

        samples = soxr.resample(samples, rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(samples)
