"""The exported-folder engine: ONNX Runtime or OpenVINO encodes, CTranslate2 decodes.

`lite_whisper.load_model(DIR)` returns an `ExportedWhisper` and its processor for a folder
written by `lite-whisper export`. Clips up to 30 s are batched through the two engines (greedy
or beam search, timestamps and word alignment included; the silence rule is `transcription.policy`'s, as for
PyTorch); longer clips are cut into such windows by `transcription.longform`, or with `long_form`
"sequential" go through faster-whisper's own pipeline with the same encoder (`LiteWhisperModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ctranslate2
import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.export_manifest import read_manifest
from lite_whisper.runtime.ct2_decoding import CTranslate2Decoding, suppressed_tokens
from lite_whisper.runtime.faster_whisper import LiteWhisperModel
from lite_whisper.runtime.threads import physical_cores
from lite_whisper.transcription.policy import is_multilingual
from lite_whisper.transcription.types import DecodingOptions, Segment, Transcription


class ExportedWhisper(CTranslate2Decoding):
    """An exported folder as an engine.

    `encoder`: which encoder runs, 'auto' (default), 'float32', 'int8' or 'bfloat16'
    (`lite_whisper.runtime.encoders`). `threads`: cores for both engines (default: the manifest's,
    else the physical cores). `decoder`: another CTranslate2 decoder folder (parity checks).
    """

    def __init__(self, folder: str | Path, *, encoder: str | None = "auto", threads: int | None = None,
                 decoder: str | Path | None = None):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        threads = threads or self.manifest.get("threads") or physical_cores()
        self.pipeline = LiteWhisperModel(self.folder, encoder=encoder, cpu_threads=threads, decoder=decoder)
        self.encoder = self.pipeline.lite_encoder
        self.decoder = self.pipeline.model  # ctranslate2.models.Whisper
        self.encoder_kind = self.pipeline.encoder_kind
        self.processor = WhisperProcessor.from_pretrained(self.folder)
        self.tokenizer = self.processor.tokenizer
        self.generation_config = GenerationConfig.from_pretrained(self.folder)
        self.config = WhisperConfig.from_pretrained(self.folder)
        self.config._name_or_path = str(self.folder)
        self.name = str(self.folder)

    def __repr__(self) -> str:
        return f"ExportedWhisper({str(self.folder)!r}, encoder={self.encoder_kind})"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def features(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        return self.processor.feature_extractor(list(clips), sampling_rate=SAMPLE_RATE,
                                                return_tensors="np").input_features

    def encode(self, features: np.ndarray) -> np.ndarray:
        return self.encoder(features)

    def take(self, encoded: np.ndarray, indices: Sequence[int]) -> np.ndarray:
        return encoded[list(indices)]

    def storage(self, encoded: np.ndarray) -> ctranslate2.StorageView:
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded, dtype=np.float32))

    def pipeline_without_timestamps(self, options: DecodingOptions) -> bool:
        """Whether faster-whisper's pipeline decodes without timestamp tokens: only with forced tokens (long
        clips move on at the last timestamp, as Whisper does)."""
        return options.forced_tokens is not None

    def transcribe_long(self, name: str, samples: np.ndarray, options: DecodingOptions) -> Transcription:
        """One clip of any length through faster-whisper's sequential pipeline (timestamps, 30 s windows)."""
        segments, _ = self.pipeline.transcribe(
            samples, language=options.language if is_multilingual(self.generation_config) else None,
            task=options.task, beam_size=options.beam_size, temperature=list(options.temperatures),
            best_of=options.best_of, without_timestamps=self.pipeline_without_timestamps(options),
            condition_on_previous_text=False, **pipeline_limits(self.generation_config, options),
            initial_prompt=options.prompt.strip() if options.prompt and options.prompt.strip() else None)
        eos = self.tokenizer.eos_token_id
        parts = [Segment(float(s.start), float(s.end), s.text.strip(), s.avg_logprob, s.no_speech_prob, s.temperature,
                         [token for token in s.tokens if token < eos]) for s in segments]
        return Transcription(name, " ".join(part.text for part in parts if part.text).strip(),
                             len(samples) / SAMPLE_RATE, parts if options.timestamps else [])


def pipeline_limits(generation_config, options: DecodingOptions) -> dict:
    """faster-whisper `transcribe()`'s length, fallback and silence settings for `options`.

    With forced tokens (always decoded without timestamps): `forced_suppression`'s tokens suppressed,
    every threshold off, and `max_new_tokens` such that CTranslate2 decodes exactly that many
    (faster-whisper asks for max_length = prompt + max_new_tokens, of which CTranslate2 decodes at most
    half: 2 x forced - prompt gives `forced`; faster-whisper's prompt is <|startoftranscript|>, language
    and task on multilingual models, and <|notimestamps|>).
    """
    if options.forced_tokens:
        prompt = 2 + 2 * is_multilingual(generation_config)
        return {"max_new_tokens": max(options.forced_tokens, 2 * options.forced_tokens - prompt),
                "suppress_tokens": suppressed_tokens(generation_config, options),
                "compression_ratio_threshold": None, "log_prob_threshold": None, "no_speech_threshold": None}
    return {"max_new_tokens": options.max_new_tokens, "compression_ratio_threshold": options.compression_ratio_threshold,
            "log_prob_threshold": options.logprob_threshold,
            "no_speech_threshold": options.no_speech_threshold if options.no_speech_threshold is not None else 1.0}
