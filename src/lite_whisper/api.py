"""The top of the stack: any model spec in, a model or an engine out, and `transcribe`.

The one place that knows every backend. A spec is anything `lite_whisper.models.loading` reads
(a short name, a Hugging Face or CTranslate2 folder, a hub id) or a folder written by
`lite-whisper export`; what comes back runs as the engine protocol (`transcription.engine`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lite_whisper.export_manifest import is_exported_folder
from lite_whisper.models.loading import ModelLoadError, load_pytorch_model, resolve_dtype
from lite_whisper.runtime.pytorch import PyTorchEngine, prepare_for_inference
from lite_whisper.runtime.threads import use_threads
from lite_whisper.transcription.engine import Engine, transcribe_clips
from lite_whisper.transcription.types import DecodingOptions, Transcription


def load_model(spec: str | Path, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
               encoder: str | None = None, threads: int | None = None):
    """Load a Whisper model and its processor from any supported spec.

    Returns `(model, processor)`: a transformers `WhisperForConditionalGeneration` (or its
    lite-whisper subclass, put on the fast CPU route on the CPU in float32) in eval mode on
    `device`, or for a folder written by `lite-whisper export` an `ExportedWhisper`.
    `encoder` and `threads` apply to exported folders only: which encoder runs ('auto', 'float32', 'int8',
    'bfloat16'; `lite_whisper.runtime.encoders`), and the cores of both its engines (default: the manifest's).
    """
    torch_dtype = resolve_dtype(dtype)
    path = Path(str(spec)).expanduser()
    if is_exported_folder(path):
        return _load_exported(path, torch_dtype, device, encoder, threads)
    if encoder not in (None, "auto"):
        raise ModelLoadError(f"{spec}: --encoder {encoder} applies to exported folders (lite-whisper export) only; "
                             "use --dtype for a PyTorch model")
    model, processor = load_pytorch_model(spec, dtype=torch_dtype, device=device)
    return prepare_for_inference(model), processor


def _load_exported(path: Path, dtype: torch.dtype, device, encoder: str | None, threads: int | None):
    if dtype != torch.float32 or torch.device(device).type != "cpu":
        raise ModelLoadError(f"{path}: an exported folder runs on the CPU in its own precision (ONNX Runtime + "
                             "CTranslate2); drop --dtype/--device, or load the PyTorch model it came from")
    try:  # optional: the deployment engines (pip install 'lite-whisper[deploy]')
        from lite_whisper.runtime.exported import ExportedWhisper
    except ImportError as error:
        raise ModelLoadError(f"{path}: exported folders need the deployment packages ({error.name} is missing): "
                             "pip install 'lite-whisper[deploy]'") from None
    from lite_whisper.runtime.encoders import EncoderUnavailableError

    try:
        model = ExportedWhisper(path, encoder=encoder, threads=threads)
    except EncoderUnavailableError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    return model, model.processor


BACKENDS = {  # what runs a model: the one choice every caller (CLI, server, benchmarks, scripts) makes here
    "auto": "an exported folder on its own engine, any other model on PyTorch",
    "pytorch": "transformers in PyTorch (a lite model on the fast CPU route)",
    "hybrid": "the PyTorch encoder feeding a CTranslate2 decoder (graphed encoder and float16 decoder on a GPU)",
    "exported": "a folder written by lite-whisper export (ONNX Runtime or OpenVINO encoder, CTranslate2 decoder)",
    "faster-whisper": "a dense model converted to CTranslate2 int8 and run by faster-whisper (the reference)",
}


def load_engine(spec: str | Path, backend: str = "auto", *, dtype: str | torch.dtype = "float32",
                device: str | torch.device = "cpu", encoder: str | None = None, threads: int | None = None) -> Engine:
    """The engine for a model spec (see `load_model`) on `backend` (`BACKENDS`). `threads`: CPU threads of every
    engine the model runs on (torch's for the process, ONNX Runtime's and CTranslate2's for an export and for
    faster-whisper; default: the physical cores, or an export's recorded choice)."""
    check_backend(backend)
    exported = is_exported_folder(Path(str(spec)).expanduser())
    if backend == "exported" and not exported:
        raise ModelLoadError(f"{spec}: not a folder written by lite-whisper export; export it first, or choose "
                             "backend auto, pytorch or hybrid")
    if exported and backend not in ("auto", "exported"):
        raise ModelLoadError(f"{spec}: an exported folder runs on its own engine (backend auto or exported); give "
                             f"the PyTorch model it came from for backend {backend}")
    if not exported:
        threads = use_threads(threads)
    return as_engine(load_model(spec, dtype=dtype, device=device, encoder=encoder, threads=threads), backend=backend,
                     threads=threads)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def as_engine(model, processor=None, backend: str = "auto", threads: int | None = None) -> Engine:
    """An engine for a spec, a `(model, processor)` pair, a model with its `processor`, or an engine, on
    `backend` (see `load_engine`; an engine or an exported folder is its own backend)."""
    check_backend(backend)
    if isinstance(model, (str, Path)):
        model, processor = load_model(model)
    elif isinstance(model, tuple):
        model, processor = model
    if isinstance(model, torch.nn.Module):
        if processor is None:
            raise ValueError("pass the processor with the model, a (model, processor) pair, or a model spec")
        if backend in ("auto", "pytorch"):
            return PyTorchEngine(model, processor)
        if backend == "exported":
            raise ModelLoadError("backend exported runs a folder written by lite-whisper export, not a PyTorch model")
        try:  # optional: CTranslate2 and faster-whisper (pip install 'lite-whisper[deploy]')
            from lite_whisper.runtime.faster_whisper_engine import FasterWhisperEngine
            from lite_whisper.runtime.hybrid import HybridEngine
        except ImportError as error:
            raise ModelLoadError(f"backend {backend} needs CTranslate2 ({error.name} is missing): "
                                 "pip install 'lite-whisper[deploy]'") from None
        if backend == "hybrid":
            return HybridEngine(model, processor, threads=threads or 0)
        return FasterWhisperEngine.from_model(model, processor, threads=threads)
    if isinstance(model, Engine):
        if backend not in ("auto", "exported"):
            raise ModelLoadError(f"{model.name} is an engine already, on its own backend: give a model spec or a "
                                 f"PyTorch model to choose backend {backend}")
        return model
    raise TypeError(f"not a Whisper model or engine: {type(model).__name__}")


def transcribe(
    model,
    audio: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
    processor=None,
    *,
    batch_size: int = 8,
    options: DecodingOptions | None = None,
    **option_overrides,
) -> list[Transcription]:
    """Transcribe audio files or 16 kHz mono float32 sample arrays.

    `model` is a model spec (see `load_model`), a `(model, processor)` pair, a model with
    `processor` given, or an engine. Options go in `options` or as keywords (`language="en"`,
    `beam_size=5`).
    """
    if options is None:
        options = DecodingOptions(**option_overrides)
    elif option_overrides:
        raise TypeError("give decoding options either as `options` or as keywords, not both")
    engine = as_engine(model, processor)
    items = [audio] if isinstance(audio, (str, Path, np.ndarray)) else list(audio)
    named = [(str(item) if isinstance(item, (str, Path)) else f"array-{index}", item) for index, item in enumerate(items)]
    return list(transcribe_clips(engine, named, batch_size=batch_size, options=options))
