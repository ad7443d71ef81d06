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
    # Whisper's (and faster-whisper's) silence rule: a clip whose <|nospeech|> probability exceeds
    # no_speech_threshold and whose mean token log-probability is below logprob_threshold is
    # empty. Small models also hallucinate confidently on silence and hum (tiny.en: " you" at
    # log-prob -0.5, with P(no speech) 0.95), so a probability above certain_no_speech is enough on
    # its own (measured: dev-split speech stays below 0.25 on tiny.en). None turns it all off.
    no_speech_threshold: float | None = 0.6
    logprob_threshold: float = -1.0
    certain_no_speech: float = 0.8

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")
        if self.no_speech_threshold is not None and not 0.0 <= self.no_speech_threshold <= 1.0:
            raise ValueError(f"no-speech threshold must be between 0 and 1, got {self.no_speech_threshold}")


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
    """Transcribe `(name, audio)` pairs lazily, keeping their order.

    An exported model (`lite_whisper.deploy.ExportedWhisper`) decodes with its own engines."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if getattr(model, "is_exported", False):
        decode_short, decode_long = model.decode_short, model.decode_long
    else:
        def decode_short(processor, batch, options):
            return _decode_short(model, processor, batch, options)

        def decode_long(processor, name, samples, options):
            return _decode_long(model, processor, name, samples, options)
    batch: list[tuple[str, np.ndarray]] = []
    for name, item in clips:
        samples = load_audio(item) if isinstance(item, (str, Path)) else np.asarray(item, dtype=np.float32)
        if len(samples) > WINDOW_SECONDS * SAMPLE_RATE:
            yield from decode_short(processor, batch, options)
            batch = []
            yield decode_long(processor, name, samples, options)
            continue
        batch.append((name, samples))
        if len(batch) == batch_size:
            yield from decode_short(processor, batch, options)
            batch = []
    yield from decode_short(processor, batch, options)


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
    no_speech_id = _no_speech_token(processor.tokenizer)
    if options.no_speech_threshold is None or no_speech_id is None:
        tokens = model.generate(features, **generate_kwargs(model, options))
        silent = [False] * len(batch)
    else:  # the encoder runs once: its output serves the no-speech check and the decoding
        from transformers.modeling_outputs import BaseModelOutput

        encoded = model.get_encoder()(features).last_hidden_state
        if options.timestamps:  # transformers' timestamp decoding slices input_features as clips finish
            # (so the encoder runs a second time inside generate: the price of the no-speech rule here)
            tokens = model.generate(features, **generate_kwargs(model, options))
        else:
            tokens = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                                    **generate_kwargs(model, options))
        silent = _silent(model, encoded, tokens, no_speech_id, options)
    return [
        Transcription(name, "", len(samples) / SAMPLE_RATE) if quiet
        else _to_transcription(processor, name, sequence, len(samples), options)
        for (name, samples), sequence, quiet in zip(batch, tokens, silent)
    ]


def _no_speech_token(tokenizer) -> int | None:
    """The id of <|nospeech|> (<|nocaptions|> before large-v3), or None if the vocabulary has neither."""
    for token in ("<|nospeech|>", "<|nocaptions|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            return token_id
    return None


def _silent(model, encoded: torch.Tensor, tokens: torch.Tensor, no_speech_id: int, options: DecodingOptions) -> list[bool]:
    """Whisper's rule, per clip: P(<|nospeech|>) right after <|startoftranscript|> above the threshold,
    and the mean log-probability of the decoded tokens (end of text included) below `logprob_threshold`
    unless P(<|nospeech|>) alone is above `certain_no_speech`."""
    no_speech, mean_logprob = speech_scores(model, encoded, tokens, no_speech_id, options)
    return [bool(p > options.no_speech_threshold and (m < options.logprob_threshold or p > options.certain_no_speech))
            for p, m in zip(no_speech.tolist(), mean_logprob.tolist())]


def speech_scores(model, encoded: torch.Tensor, tokens: torch.Tensor, no_speech_id: int,
                  options: DecodingOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(P(<|nospeech|>) after <|startoftranscript|>, mean log-probability of the decoded tokens) per clip.

    One teacher-forced decoder pass over the prompt and the decoded tokens (generate returns
    the decoded tokens without the prompt). The mean runs through the first end of text, as in
    Whisper; the prompt's language token is the one asked for (none when detecting).
    """
    prompt = decoder_prompt(model, options)
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    batch = tokens.shape[0]
    head = torch.tensor(prompt, device=tokens.device).expand(batch, -1)
    logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.cat([head, tokens[:, :-1]], 1)).logits.float()
    no_speech = logits[:, 0].softmax(-1)[:, no_speech_id]
    logprobs = logits[:, len(prompt) - 1:].log_softmax(-1).gather(-1, tokens[:, :, None])[..., 0]
    is_end = (tokens == eos).int()
    through_end = (is_end.cumsum(1) - is_end) == 0  # every token up to and including the first end of text
    mean_logprob = (logprobs * through_end).sum(1) / through_end.sum(1).clamp_min(1)
    return no_speech, mean_logprob


def decoder_prompt(model, options: DecodingOptions) -> list[int]:
    """The tokens generate starts from: <|startoftranscript|> [language] [task] [<|notimestamps|>]."""
    config = model.generation_config
    prompt = [config.decoder_start_token_id]
    if getattr(config, "is_multilingual", False):
        language = getattr(config, "lang_to_id", {}).get(f"<|{options.language}|>") if options.language else None
        if language is not None:
            prompt.append(language)
        task = getattr(config, "task_to_id", {}).get(options.task)
        if task is not None:
            prompt.append(task)
    if not options.timestamps:
        prompt.append(config.no_timestamps_token_id)
    return prompt


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
