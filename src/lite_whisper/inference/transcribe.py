"""Batched Whisper transcription on top of transformers' `generate`.

Clips up to 30 s are batched (Whisper pads every input to 30 s anyway). Longer clips go
through transformers' sequential long-form decoding, which walks the audio in 30 s windows
and moves on at the last predicted timestamp, so no word is cut at a window edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from lite_whisper.data.audio import SAMPLE_RATE, load_audio
from lite_whisper.models.loading import resolve_model

WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # None: the model detects it (multilingual models)
    task: str = "transcribe"  # or "translate"
    beam_size: int = 1  # 1 = greedy
    timestamps: bool = False
    max_new_tokens: int | None = None

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcription:
    source: str
    text: str
    seconds: float
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def transcribe(
    model,
    audio: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
    processor=None,
    *,
    batch_size: int = 8,
    options: DecodingOptions | None = None,
    **option_overrides,
) -> list[Transcription]:
    """Transcribe audio files or 16 kHz sample arrays.

    `model` is a model spec (see `load_model`), a `(model, processor)` pair, or a model with
    `processor` given. Options go in `options` or as keywords (`language="en"`, `beam_size=5`).
    """
    model, processor = resolve_model(model, processor)
    if options is None:
        options = DecodingOptions(**option_overrides)
    elif option_overrides:
        raise TypeError("give decoding options either as `options` or as keywords, not both")
    items = [audio] if isinstance(audio, (str, Path, np.ndarray)) else list(audio)
    named = [(_source_name(item, index), item) for index, item in enumerate(items)]
    return list(transcribe_iter(model, processor, named, batch_size=batch_size, options=options))


def transcribe_iter(
    model,
    processor,
    clips: Iterable[tuple[str, str | Path | np.ndarray]],
    *,
    batch_size: int = 8,
    options: DecodingOptions = DecodingOptions(),
) -> Iterable[Transcription]:
    """Transcribe `(name, audio)` pairs lazily, keeping their order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    batch: list[tuple[str, np.ndarray]] = []
    for name, item in clips:
        samples = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
        if len(samples) > WINDOW_SECONDS * SAMPLE_RATE:
            yield from _decode_short(model, processor, batch, options)
            batch = []
            yield _decode_long(model, processor, name, samples, options)
            continue
        batch.append((name, samples))
        if len(batch) == batch_size:
            yield from _decode_short(model, processor, batch, options)
            batch = []
    yield from _decode_short(model, processor, batch, options)


def generate_kwargs(model, options: DecodingOptions) -> dict:
    """Arguments for `model.generate` that respect English-only models."""
    kwargs: dict = {"num_beams": options.beam_size, "return_timestamps": options.timestamps}
    if options.max_new_tokens is not None:
        kwargs["max_new_tokens"] = options.max_new_tokens
    if getattr(model.generation_config, "is_multilingual", True):
        kwargs["task"] = options.task
        if options.language is not None:
            kwargs["language"] = options.language
    else:  # English-only checkpoints reject language/task arguments
        if options.task == "translate":
            raise ValueError("this model is English-only and cannot translate; use a multilingual model")
        if options.language not in (None, "en", "english", "English"):
            raise ValueError(f"this model is English-only; cannot transcribe language {options.language!r}")
    return kwargs


def _features(processor, samples: list[np.ndarray], model, long_form: bool = False):
    extra = {"truncation": False, "padding": "longest", "return_attention_mask": True} if long_form else {}
    inputs = processor.feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", **extra)
    features = inputs.input_features.to(device=model.device, dtype=model.dtype)
    mask = inputs.get("attention_mask")
    return features, (mask.to(model.device) if mask is not None else None)


@torch.inference_mode()
def _decode_short(model, processor, batch, options: DecodingOptions) -> list[Transcription]:
    if not batch:
        return []
    features, _ = _features(processor, [samples for _, samples in batch], model)
    tokens = model.generate(features, **generate_kwargs(model, options))
    return [
        _to_transcription(processor, name, sequence, len(samples), options)
        for (name, samples), sequence in zip(batch, tokens)
    ]


@torch.inference_mode()
def _decode_long(model, processor, name: str, samples: np.ndarray, options: DecodingOptions) -> Transcription:
    features, mask = _features(processor, [samples], model, long_form=True)
    kwargs = generate_kwargs(model, options)
    kwargs["return_timestamps"] = True  # long-form decoding advances by the predicted timestamps
    tokens = model.generate(features, attention_mask=mask, **kwargs)
    return _to_transcription(processor, name, tokens[0], len(samples), options)


def _to_transcription(processor, name: str, sequence, n_samples: int, options: DecodingOptions) -> Transcription:
    tokenizer = processor.tokenizer
    seconds = n_samples / SAMPLE_RATE
    if not options.timestamps:
        return Transcription(name, tokenizer.decode(sequence, skip_special_tokens=True).strip(), seconds)
    decoded = tokenizer.decode(sequence, skip_special_tokens=True, output_offsets=True)
    segments = [
        Segment(float(item["timestamp"][0]), float(item["timestamp"][1] if item["timestamp"][1] is not None else seconds), item["text"].strip())
        for item in decoded.get("offsets", [])
    ]
    return Transcription(name, decoded["text"].strip(), seconds, segments)


def _source_name(item, index: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"array-{index}"
