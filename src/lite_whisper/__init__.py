"""lite-whisper: calibrated low-rank compression of Whisper encoders (LiteASR).

The public API is imported lazily so that `import lite_whisper` stays fast and the
command-line tool starts quickly.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (no name may equal a subpackage's: importing the
# subpackage would replace the attribute; bench timing is lite_whisper.benchmark.bench.benchmark)
_EXPORTS = {
    "load_model": "lite_whisper.api",
    "load_engine": "lite_whisper.api",
    "load_audio": "lite_whisper.data.audio",
    "load_dataset": "lite_whisper.data.datasets",
    "transcribe": "lite_whisper.api",
    "DecodingOptions": "lite_whisper.transcription.types",
    "evaluate": "lite_whisper.evaluation.evaluate",
    "save_model": "lite_whisper.models.loading",
    "CompressionConfig": "lite_whisper.compression.config",
    "calibrate": "lite_whisper.calibration.calibrate",
    "compress": "lite_whisper.compression.compress",
    "save_lite_whisper": "lite_whisper.lowrank.checkpoint",
    "sweep": "lite_whisper.experiments.sweep",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lite_whisper' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
