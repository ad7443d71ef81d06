"""faster-whisper on a CTranslate2 folder, behind the engine protocol: the reference users run today.

`load_engine(MODEL, backend="faster-whisper")` (`lite-whisper serve MODEL --faster-whisper`) converts MODEL
(dense) to CTranslate2 int8 with CTranslate2's own converter and runs it through faster-whisper's
`transcribe()`: a server takes one request at a time (`batches_windows = False`: the scheduler sends every request to `transcribe_long`),
as the faster-whisper servers do. Same decoding rules as the exported engine (it is one, with
CTranslate2's own encoder in place of ours).
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from lite_whisper.lowrank.cost import has_low_rank
from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2
from lite_whisper.models.loading import ModelLoadError
from lite_whisper.runtime.exported import ExportedWhisper
from lite_whisper.transcription.types import DecodingOptions


class FasterWhisperEngine(ExportedWhisper):
    """The CTranslate2 `folder` (e.g. written by `models.ctranslate2.decoder.convert_to_ctranslate2`) as faster-whisper
    runs it, with the `processor` and `generation_config` of the model it came from."""

    batches_windows = False

    def __init__(self, folder: str | Path, processor, generation_config, *, threads: int | None = None,
                 compute_type: str = "int8", name: str | None = None):
        self.folder = Path(folder)
        self.manifest = {}
        self.pipeline = WhisperModel(str(folder), device="cpu", compute_type=compute_type, cpu_threads=threads or 0)
        self.decoder = self.pipeline.model
        self.encoder = self._encode_ct2
        self.encoder_kind = f"ctranslate2 {compute_type}"
        self.processor, self.tokenizer = processor, processor.tokenizer
        self.generation_config = generation_config
        self.name = name or f"faster-whisper {compute_type} ({folder})"

    @classmethod
    def from_model(cls, model, processor, *, threads: int | None = None, name: str | None = None):
        """`model` (a dense transformers Whisper model) converted to CTranslate2 int8 by CTranslate2's converter, in a
        scratch folder removed at exit, and run by faster-whisper."""
        if has_low_rank(model):
            raise ModelLoadError("faster-whisper runs dense models: export a compressed one (lite-whisper export) and "
                             "run the folder, which faster-whisper also runs through lite_whisper.runtime.faster_whisper")
        scratch = tempfile.TemporaryDirectory(prefix="lite-whisper-fw-")
        atexit.register(scratch.cleanup)
        folder = convert_to_ctranslate2(model, processor, Path(scratch.name) / "ct2", quantization="int8")
        source = getattr(model.config, "_name_or_path", "") or type(model).__name__
        return cls(folder, processor, model.generation_config, threads=threads,
                   name=name or f"faster-whisper int8 ({source})")

    def __repr__(self) -> str:
        return f"FasterWhisperEngine({self.name!r})"

    def pipeline_without_timestamps(self, options: DecodingOptions) -> bool:
        """Timestamp tokens only when the request wants segments: the same decoding work as the batched path."""
        return not options.timestamps or options.forced_tokens is not None

    def _encode_ct2(self, features: np.ndarray) -> np.ndarray:
        states = self.decoder.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), to_cpu=True)
        return np.array(states)
