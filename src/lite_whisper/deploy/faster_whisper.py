"""faster-whisper with lite-whisper's ONNX encoder in front of CTranslate2's decoder.

faster-whisper runs the encoder in one place, `WhisperModel.encode()`; everything else (VAD,
batching, temperature fallback, no-speech suppression, word timestamps) goes through it. So a
subclass that encodes with ONNX Runtime keeps all of that:

    from lite_whisper.deploy.faster_whisper import LiteWhisperModel
    model = LiteWhisperModel("tiny.en-export", cpu_threads=2)
    segments, info = model.transcribe("talk.flac", beam_size=1, vad_filter=True)
"""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from lite_whisper.deploy.onnx_encoder import OnnxEncoder


class LiteWhisperModel(WhisperModel):
    """A faster-whisper `WhisperModel` for a folder written by `lite-whisper export`.

    `int8`: use the int8-weight encoder (default: the one the export recommends, see its
    manifest). `cpu_threads` serves both engines (they run one after the other). `decoder`: another
    CTranslate2 decoder folder than the export's own (e.g. a float32 one for parity checks).
    """

    def __init__(self, folder: str | Path, *, int8: bool | None = None, cpu_threads: int = 0,
                 decoder: str | Path | None = None, **kwargs):
        from lite_whisper.deploy.manifest import read_manifest

        folder = Path(folder)
        manifest = read_manifest(folder)
        decoder = Path(decoder) if decoder is not None else folder / manifest["decoder"]["folder"]
        super().__init__(str(decoder), device="cpu", compute_type="default", cpu_threads=cpu_threads, **kwargs)
        encoder_file = manifest["encoder"]["int8" if (manifest["encoder"]["default"] == "int8" if int8 is None
                                                     else int8) else "float32"]
        if encoder_file is None:
            raise ValueError(f"{folder}: exported without an int8 encoder (lite-whisper export --int8)")
        self.lite_encoder = OnnxEncoder(folder / encoder_file, threads=cpu_threads or None)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if features.ndim == 2:
            features = np.expand_dims(features, 0)
        return ctranslate2.StorageView.from_array(self.lite_encoder(features))
