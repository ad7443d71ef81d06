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


def load_engine(spec: str | Path, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
                encoder: str | None = None, decoder: str = "transformers", threads: int | None = None) -> Engine:
    """The engine for a model spec (see `load_model`). `decoder` "ctranslate2": a PyTorch model's decoder is
    converted to CTranslate2 and fed the PyTorch encoder's states (`runtime.hybrid`; on a GPU the encoder
    replays CUDA graphs and the decoder runs float16). `threads`: CPU threads of every engine the model runs on
    (torch's for the process, ONNX Runtime's and CTranslate2's for an export; default: the physical cores, or
    an export's recorded choice)."""
    if not is_exported_folder(Path(str(spec)).expanduser()):
        threads = use_threads(threads)
    return as_engine(load_model(spec, dtype=dtype, device=device, encoder=encoder, threads=threads), decoder=decoder)


def as_engine(model, processor=None, decoder: str = "transformers") -> Engine:
    """An engine for a spec, a `(model, processor)` pair, a model with its `processor`, or an engine
    (`decoder`: see `load_engine`)."""
    if decoder not in ("transformers", "ctranslate2"):
        raise ValueError(f"unknown decoder {decoder!r}; choose transformers or ctranslate2")
    if isinstance(model, (str, Path)):
        model, processor = load_model(model)
    elif isinstance(model, tuple):
        model, processor = model
    if isinstance(model, torch.nn.Module):
        if processor is None:
            raise ValueError("pass the processor with the model, a (model, processor) pair, or a model spec")
        if decoder == "ctranslate2":
            try:  # optional: CTranslate2 (pip install 'lite-whisper[deploy]')
                from lite_whisper.runtime.hybrid import HybridEngine
            except ImportError as error:
                raise ModelLoadError(f"the CTranslate2 decoder needs CTranslate2 ({error.name} is missing): "
                                     "pip install 'lite-whisper[deploy]'") from None
            return HybridEngine(model, processor)
        return PyTorchEngine(model, processor)
    if isinstance(model, Engine):
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
