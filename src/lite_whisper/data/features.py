"""From clips to what the encoder reads: batches of 30 s log-mel features and the frames that carry audio."""

from __future__ import annotations

import math
import warnings
from typing import Iterator

import numpy as np
import torch

from lite_whisper.data.audio import ENCODER_FRAMES, HOP_LENGTH, SAMPLE_RATE, WINDOW_SECONDS, AudioError
from lite_whisper.data.datasets import SpeechDataset

WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)


def encoder_frames(n_samples: int) -> int:
    """Encoder frames (20 ms each) that carry audio in a clip of `n_samples` samples."""
    mel_frames = math.ceil(min(n_samples, WINDOW_SAMPLES) / HOP_LENGTH)
    return max(1, min(ENCODER_FRAMES, math.ceil(mel_frames / 2)))


def feature_batches(dataset: SpeechDataset, processor, batch_size: int, device, dtype, skipped: list[str]) -> Iterator:
    """(input_features, n_frames) batches; clips are padded (or cut) to 30 s as Whisper does.

    Unreadable clips are skipped with a warning and listed in `skipped`.
    """
    clips = iter(dataset)
    while True:
        audio: list[np.ndarray] = []
        while len(audio) < batch_size:
            try:
                clip = next(clips)
            except StopIteration:
                break
            except AudioError as error:
                skipped.append(str(error))
                warnings.warn(f"skipping {error}", stacklevel=2)
                continue
            audio.append(clip.audio[:WINDOW_SAMPLES])
        if not audio:
            return
        features = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        frames = torch.tensor([encoder_frames(len(a)) for a in audio], dtype=torch.long)  # stays on the host
        if torch.device(device).type == "cuda":  # pinned: the copy to the GPU need not wait
            features = features.pin_memory()
        yield features.to(device=device, dtype=dtype, non_blocking=True), frames


def first_clips_features(dataset: SpeechDataset, processor, clips: int, device="cpu", dtype=torch.float32) -> torch.Tensor | None:
    """Log-mel features (clips x n_mels x 3000) of the first `clips` readable clips; None if none is readable."""
    skipped: list[str] = []
    batch = next(feature_batches(dataset.with_limit(clips),
                                 processor, clips, device, dtype, skipped), None)
    return None if batch is None else batch[0]
