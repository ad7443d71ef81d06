"""faster-whisper with lite-whisper's exported encoder in front of CTranslate2's decoder.

faster-whisper runs the encoder in one place, `WhisperModel.encode()`; everything else (VAD,
batching, temperature fallback, no-speech suppression, word timestamps) goes through it. So a
subclass that encodes with ONNX Runtime or OpenVINO keeps all of that:

    from lite_whisper.runtime.faster_whisper import LiteWhisperModel
    model = LiteWhisperModel("tiny.en-export", cpu_threads=2)
    segments, info = model.transcribe("talk.flac", beam_size=1, vad_filter=True)
"""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from lite_whisper.export_manifest import read_manifest
from lite_whisper.runtime.encoders import choose_encoder, open_encoder


class LiteWhisperModel(WhisperModel):
    """A faster-whisper `WhisperModel` for a folder written by `lite-whisper export`.

    `encoder`: 'auto' (default), 'float32', 'int8' or 'bfloat16' (`lite_whisper.runtime.encoders`).
    `cpu_threads` serves both engines (they run one after the other). `decoder`: another
    CTranslate2 decoder folder than the export's own (e.g. a float32 one for parity checks).
    """

    def __init__(self, folder: str | Path, *, encoder: str | None = "auto", cpu_threads: int = 0,
                 decoder: str | Path | None = None, **kwargs):
        folder = Path(folder)
        manifest = read_manifest(folder)
        decoder = Path(decoder) if decoder is not None else folder / manifest["decoder"]["folder"]
        super().__init__(str(decoder), device="cpu", compute_type="default", cpu_threads=cpu_threads, **kwargs)
        self.encoder_kind = choose_encoder(manifest, encoder)
        self.lite_encoder = open_encoder(folder, manifest, self.encoder_kind, threads=cpu_threads or None)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if features.ndim == 2:
            features = np.expand_dims(features, 0)
        return ctranslate2.StorageView.from_array(self.lite_encoder(features))
