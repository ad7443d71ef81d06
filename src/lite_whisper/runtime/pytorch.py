"""The PyTorch engine: a transformers Whisper model (dense or lite-whisper) behind the engine protocol.

Windows of up to 30 s are batched (Whisper pads every input to 30 s anyway): the encoder runs
once, its output feeds the silence rule and transformers' `generate`. Longer clips go through
transformers' sequential long-form decoding, which walks the audio in 30 s windows and moves on
at the last predicted timestamp, so no word is cut at a window edge. A lite-whisper model on
the CPU in float32 is put on lite-whisper's fast CPU route when the engine is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import CompileConfig
from transformers.modeling_outputs import BaseModelOutput

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.lowrank.cost import has_low_rank
from lite_whisper.runtime.cpu_route import apply_cpu_route
from lite_whisper.runtime.fast_encoder import FastEncoder
from lite_whisper.runtime.pytorch_alignment import align_tokens
from lite_whisper.transcription.engine import EngineBase
from lite_whisper.transcription.policy import (
    decoder_prompt,
    forced_suppression,
    no_speech_token,
    previous_tokens,
    to_transcription,
)
from lite_whisper.transcription.types import Decoded, DecodingOptions, Transcription


DECODER_MODES = ("eager", "compiled")


@dataclass(frozen=True)
class Encoded:
    """The encoder's states, and the features they came from (timestamp decoding re-reads them)."""

    features: torch.Tensor
    states: torch.Tensor


class PyTorchEngine(EngineBase):
    """`model` (a transformers Whisper model) with its `processor`, as an engine.

    `encoder_mode` (`fast_encoder.ENCODER_MODES`): auto replays the encoder from CUDA graphs on a GPU
    (eager passes are launch-bound there) and runs it eagerly elsewhere. `decoder_mode` "compiled":
    greedy decoding from the encoder's states runs transformers' static cache and its own compiled
    decode step (`generate`'s `compile_config`; "reduce-overhead" on CUDA: the step replayed from CUDA
    graphs), compiled once per batch size; "eager" (default): transformers as it is."""

    def __init__(self, model, processor, name: str | None = None, encoder_mode: str = "auto",
                 decoder_mode: str = "eager"):
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        self.generation_config = model.generation_config
        self.name = name or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        self.no_speech_id = no_speech_token(self.tokenizer)
        prepare_for_inference(model)
        self.encoder = FastEncoder(model, encoder_mode)
        if decoder_mode not in DECODER_MODES:
            raise ValueError(f"unknown decoder mode {decoder_mode!r}; choose one of {', '.join(DECODER_MODES)}")
        self.decoder_mode = decoder_mode
        # transformers' compiled decode step ("reduce-overhead": CUDA graphs); it compiles on CUDA only unless told
        self._compile_config = CompileConfig(mode="reduce-overhead" if self.device.type == "cuda" else "default")
        self._compile_config._compile_all_devices = True

    def __repr__(self) -> str:
        return f"PyTorchEngine({self.name!r}, {self.device}, {self.model.dtype})"

    @property
    def device(self) -> torch.device:
        return self.model.device

    def synchronize(self) -> None:
        """Wait for queued GPU work (timings)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def features(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        """Log-mel features; on CUDA the STFT runs there too (transformers' torch extractor, device argument)."""
        on_gpu = {"device": str(self.device)} if self.device.type == "cuda" else {}
        inputs = self.processor.feature_extractor(list(clips), sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                  **on_gpu)
        return inputs.input_features.to(device=self.device, dtype=self.model.dtype)

    @torch.inference_mode()
    def encode(self, features: torch.Tensor) -> Encoded:
        return Encoded(features, self.encoder(features))

    aligns_words = True  # cross-attention alignment in PyTorch (`pytorch_alignment`)

    def align(self, encoded: Encoded, prompt: list[int], tokens: list[list[int]], frames: list[int]) -> list:
        return align_tokens(self.model, encoded.states, prompt, tokens, frames)

    def take(self, encoded: Encoded, indices: Sequence[int]) -> Encoded:
        index = torch.as_tensor(list(indices), dtype=torch.long, device=encoded.states.device)
        return Encoded(encoded.features[index], encoded.states[index])

    @torch.inference_mode()
    def decode(self, encoded: Encoded, options: DecodingOptions) -> list[Decoded]:
        kwargs = generate_kwargs(self.model, options, self.tokenizer)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(options.seed)  # samples at a temperature are reproducible; the caller's RNG is untouched
            if options.timestamps or options.temperature > 0:
                # transformers' timestamp and sampled decoding slice input_features as clips finish (so the
                # encoder runs a second time inside generate: the price of the no-speech rule and the fallback)
                tokens = self.model.generate(encoded.features, **kwargs)
            else:
                tokens = self._generate_from_states(encoded.states, kwargs)
        # transformers' sampled decoding of a batch can return over 448 tokens (windows stitched after a
        # clip ends); Whisper's decoder holds 448 positions, prompt included: nothing beyond is a transcript
        head = previous_tokens(self.tokenizer, options) + decoder_prompt(self.generation_config, options)
        tokens = tokens[:, :self.model.config.max_target_positions - len(head)]
        scored = options.no_speech_threshold is not None or options.fallback
        if not scored or self.no_speech_id is None:
            return [Decoded(sequence.tolist()) for sequence in tokens]
        no_speech, mean_logprob = speech_scores(self.model, encoded.states, tokens, self.no_speech_id, options,
                                                self.tokenizer)
        return [Decoded(sequence.tolist(), p, m)
                for sequence, p, m in zip(tokens, no_speech.tolist(), mean_logprob.tolist())]

    def _generate_from_states(self, states: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """generate() from encoder states; with decoder_mode "compiled" and greedy search, on the static cache with
        transformers' compiled decode step (the model's forward is never replaced: calls may overlap)."""
        encoder_outputs = BaseModelOutput(last_hidden_state=states)
        if self.decoder_mode != "compiled" or kwargs.get("num_beams", 1) != 1:
            return self.model.generate(encoder_outputs=encoder_outputs, **kwargs)
        return self.model.generate(encoder_outputs=encoder_outputs, cache_implementation="static",
                                   compile_config=self._compile_config, **kwargs)

    @torch.inference_mode()
    def transcribe_long(self, name: str, samples: np.ndarray, options: DecodingOptions) -> Transcription:
        inputs = self.processor.feature_extractor([samples], sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                  truncation=False, padding="longest", return_attention_mask=True)
        features = inputs.input_features.to(device=self.device, dtype=self.model.dtype)
        kwargs = generate_kwargs(self.model, options, self.tokenizer)
        kwargs["return_timestamps"] = True  # long-form decoding advances by the predicted timestamps
        if options.fallback:  # transformers' own fallback (its compression ratio is of token bytes: 1.35 ~ 2.4 of text)
            kwargs.update(temperature=options.temperatures, logprob_threshold=options.logprob_threshold,
                          compression_ratio_threshold=1.35, do_sample=False)
        tokens = self.model.generate(features, attention_mask=inputs.attention_mask.to(self.device), **kwargs)
        return to_transcription(self.tokenizer, name, tokens[0], len(samples), options)


def prepare_for_inference(model):
    """`model` as lite-whisper runs it: a lite-whisper model on the CPU in float32 goes on the fast CPU
    route (once; see `cpu_route`). Dense models stay stock transformers, so their results are transformers'."""
    if has_low_rank(model):
        apply_cpu_route(model)
    return model


def generate_kwargs(model, options: DecodingOptions, tokenizer=None) -> dict:
    """Arguments for transformers' `generate` (English-only models take no language or task; a prompt needs
    the `tokenizer`)."""
    kwargs: dict = {"return_timestamps": options.timestamps}
    if options.prompt and options.prompt.strip():
        if tokenizer is None:
            raise ValueError("a prompt needs the tokenizer")
        kwargs["prompt_ids"] = torch.tensor(previous_tokens(tokenizer, options), device=model.device)
    if options.temperature > 0:  # one sample from the distribution at that temperature
        kwargs.update(do_sample=True, temperature=options.temperature, top_k=0, top_p=1.0, num_beams=1)
    else:
        kwargs.update(num_beams=options.beam_size, do_sample=False)
    if options.max_new_tokens is not None:
        kwargs["max_new_tokens"] = options.max_new_tokens
    if options.forced_tokens is not None:  # exactly that many: end of text (and timestamps) never chosen
        kwargs["max_new_tokens"] = options.forced_tokens
        kwargs["suppress_tokens"] = list(model.generation_config.suppress_tokens or []) + forced_suppression(
            model.generation_config)
    if getattr(model.generation_config, "is_multilingual", True):
        kwargs["task"] = options.task
        if options.language is not None:
            kwargs["language"] = options.language
    return kwargs


def speech_scores(model, encoded: torch.Tensor, tokens: torch.Tensor, no_speech_id: int,
                  options: DecodingOptions, tokenizer=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(P(<|nospeech|>) after <|startoftranscript|>, mean log-probability of the decoded tokens) per clip.

    One teacher-forced decoder pass over the prompt and the decoded tokens (generate returns
    the decoded tokens without the prompt). The mean runs through the first end of text, as in
    Whisper; the prompt's language token is the one asked for (none when detecting).
    """
    if options.prompt and tokenizer is None:
        raise ValueError("scoring a prompted decoding needs the tokenizer")
    previous = previous_tokens(tokenizer, options) if tokenizer is not None else []
    prompt = previous + decoder_prompt(model.generation_config, options)
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    head = torch.tensor(prompt, device=tokens.device).expand(tokens.shape[0], -1)
    logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.cat([head, tokens[:, :-1]], 1)).logits.float()
    no_speech = logits[:, len(previous)].softmax(-1)[:, no_speech_id]  # after <|startoftranscript|>
    logprobs = logits[:, len(prompt) - 1:].log_softmax(-1).gather(-1, tokens[:, :, None])[..., 0]
    is_end = (tokens == eos).int()
    through_end = (is_end.cumsum(1) - is_end) == 0  # every token up to and including the first end of text
    mean_logprob = (logprobs * through_end).sum(1) / through_end.sum(1).clamp_min(1)
    return no_speech, mean_logprob
