"""faster-whisper on a dense model, behind the engine protocol: the reference users run today.

`lite-whisper serve MODEL --faster-whisper` converts MODEL (dense) to CTranslate2 int8 with
CTranslate2's own converter and serves it through faster-whisper's `transcribe()`, one request
at a time (`batches_windows = False`: the scheduler sends every request to `transcribe_long`),
as the faster-whisper servers do. Same decoding rules as the exported engine (it is one, with
CTranslate2's own encoder in place of ours).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from transformers import WhisperConfig

from lite_whisper.deploy.ct2_decoder import convert_to_ctranslate2
from lite_whisper.runtime.exported import ExportedWhisper
from lite_whisper.transcription.types import DecodingOptions


class FasterWhisperEngine(ExportedWhisper):
    """A dense transformers Whisper `model` (with its `processor`) as faster-whisper int8 runs it."""

    batches_windows = False

    def __init__(self, model, processor, *, threads: int | None = None, quantization: str = "int8"):
        self._scratch = tempfile.TemporaryDirectory(prefix="lite-whisper-fw-")  # removed with the engine
        folder = convert_to_ctranslate2(model, processor, Path(self._scratch.name) / "ct2", quantization=quantization)
        self.folder = folder
        self.manifest = {}
        self.pipeline = WhisperModel(str(folder), device="cpu", compute_type=quantization, cpu_threads=threads or 0)
        self.decoder = self.pipeline.model
        self.encoder = self._encode_ct2
        self.encoder_kind = f"ctranslate2 {quantization}"
        self.processor, self.tokenizer = processor, processor.tokenizer
        self.generation_config = model.generation_config
        self.config = WhisperConfig.from_dict(model.config.to_dict())
        self.name = f"faster-whisper {quantization} ({getattr(model.config, '_name_or_path', '') or 'model'})"

    def __repr__(self) -> str:
        return f"FasterWhisperEngine({self.name!r})"

    def pipeline_without_timestamps(self, options: DecodingOptions) -> bool:
        """Timestamp tokens only when the request wants segments: the same decoding work as the batched path."""
        return not options.timestamps

    def _encode_ct2(self, features: np.ndarray) -> np.ndarray:
        states = self.decoder.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), to_cpu=True)
        return np.array(states)
