"""Reading audio into what Whisper expects: 16 kHz, mono, float32 in [-1, 1].

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3 sample-exactly; anything else FFmpeg
reads (m4a/AAC, mp4, webm, mkv, ...) is decoded through PyAV, which faster-whisper brings. soxr
resamples with high quality. Every failure names the file and says what was wrong.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000  # Whisper's fixed input rate
WINDOW_SECONDS = 30.0  # Whisper pads or cuts every input to one 30 s window
MEL_FRAMES = 3000  # log-mel frames of a window (10 ms each)
HOP_LENGTH = 160  # samples per mel frame
ENCODER_FRAMES = 1500  # encoder frames of a window (the stem's stride-2 convolution: 20 ms each)
FORMATS = "wav, flac, ogg, opus, mp3, m4a, aac, mp4, webm, mkv, or anything else FFmpeg reads"


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
    samples, rate = read_samples(path, str(path))
    return prepare_samples(samples, rate, sample_rate, source=str(path))


def read_samples(source: str | Path | bytes, name: str) -> tuple[np.ndarray, int]:
    """(frames x channels float32 samples, rate) of a file or its bytes: libsndfile first, then FFmpeg (PyAV)."""
    try:
        samples, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else str(source), dtype="float32",
                                always_2d=True)
        return samples, rate
    except (sf.LibsndfileError, RuntimeError) as error:  # older soundfile raises RuntimeError
        # libsndfile's own words, without "Error opening <_io.BytesIO object at 0x...>"
        libsndfile = (getattr(error, "error_string", None) or str(error)).strip().rstrip(".")
    try:
        return _read_with_pyav(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except ImportError:
        raise AudioError(f"{name}: cannot decode audio ({libsndfile}); install PyAV (pip install av) for "
                         "m4a/mp4/webm") from None
    except Exception as error:  # noqa: BLE001 - PyAV raises FFmpeg's errors under many classes
        ffmpeg = getattr(error, "strerror", None) or str(error)
        raise AudioError(f"{name}: cannot decode audio (libsndfile: {libsndfile}; FFmpeg: {ffmpeg}). "
                         f"Supported: {FORMATS}") from None


def _read_with_pyav(source: str | BinaryIO) -> tuple[np.ndarray, int]:
    """The first audio stream as packed float32 at its own rate and channel count."""
    import av

    with av.open(source, mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioError("the file has no audio stream")
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels or 1
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout.name or None,
                                      rate=stream.codec_context.sample_rate)
        chunks = []
        for frame in container.decode(stream):
            frame.pts = None  # the resampler keeps its own clock; a container's gaps do not matter here
            chunks.extend(piece.to_ndarray().reshape(-1, channels) for piece in resampler.resample(frame))
        chunks.extend(piece.to_ndarray().reshape(-1, channels) for piece in resampler.resample(None))
        rate = stream.codec_context.sample_rate
    if not chunks:
        return np.zeros((0, channels), dtype=np.float32), rate
    return np.concatenate(chunks).astype(np.float32, copy=False), rate


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
