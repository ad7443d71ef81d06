"""Save and load lite-whisper folders in the authors' Hugging Face layout.

A saved folder is self-contained: config.json (ranks in `low_rank_config`, `auto_map`
to the copied modeling file), model.safetensors (factors as weight1/weight2/bias, the
output projection stored once, tied), generation_config.json and the processor files.
It loads with `AutoModel.from_pretrained(folder, trust_remote_code=True)` anywhere, and
with `load_lite_whisper` without remote code.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

from lite_whisper import __version__
from lite_whisper.files import atomic_folder
from lite_whisper.lowrank import configuration_lite_whisper, modeling_lite_whisper
from lite_whisper.lowrank.modeling_lite_whisper import LiteWhisperConfig, LiteWhisperForConditionalGeneration

MODEL_TYPE = LiteWhisperConfig.model_type
# The self-contained files copied into every folder; the modeling file imports the configuration.
SHIPPED_FILES = tuple(Path(module.__file__) for module in (modeling_lite_whisper, configuration_lite_whisper))
MODELING_FILE = SHIPPED_FILES[0]
_MODEL_REF = f"{MODELING_FILE.stem}.{LiteWhisperForConditionalGeneration.__name__}"
AUTO_MAP = {
    "AutoConfig": f"{Path(configuration_lite_whisper.__file__).stem}.{LiteWhisperConfig.__name__}",
    "AutoModel": _MODEL_REF,
    "AutoModelForSpeechSeq2Seq": _MODEL_REF,
}

# transformers 5 writes processor_config.json; older folders have preprocessor_config.json.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


class LiteWhisperLoadError(ValueError):
    """A folder is not a loadable lite-whisper checkpoint."""


def is_lite_whisper_folder(path: str | Path) -> bool:
    """True if `path` is a folder whose config.json says model_type lite-whisper."""
    config_file = Path(path) / "config.json"
    try:
        return json.loads(config_file.read_text()).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def is_lite_whisper_model(model: torch.nn.Module) -> bool:
    """True for a lite-whisper model, from this package or loaded as remote code.

    Reads the config class: instances report model_type "whisper" (see modeling_lite_whisper).
    """
    return getattr(type(getattr(model, "config", None)), "model_type", None) == MODEL_TYPE


def save_lite_whisper(
    model: LiteWhisperForConditionalGeneration,
    processor: WhisperProcessor,
    folder: str | Path,
    dtype: torch.dtype = torch.float16,
    overwrite: bool = False,
    extra_files: dict[str, str] | None = None,
    compression: dict | None = None,
) -> Path:
    """Write `model` (weights cast to `dtype`) and `processor` to `folder`, atomically.

    `extra_files` (name -> text) are written into the same folder before it appears,
    e.g. the compression report. config.json records, under `lite_whisper`, the version of
    lite-whisper that wrote it and `compression` (the compression config, with its version).
    """
    if not is_lite_whisper_model(model):
        raise TypeError(f"expected a lite-whisper model, got {type(model).__name__} with {type(model.config).__name__}")
    config = copy.deepcopy(model.config)
    config.architectures = [LiteWhisperForConditionalGeneration.__name__]
    config.auto_map = AUTO_MAP
    # Files may hold float16 to halve their size, but `from_pretrained` should compute in
    # float32 by default, as for openai/whisper-*: half precision is slow on CPUs and the
    # processor's features are float32. Users on GPUs pass dtype=torch.float16.
    config.dtype = "float32"
    config.lite_whisper = {"version": __version__, "compression": compression}
    with atomic_folder(folder, overwrite=overwrite) as staging:
        model.save_pretrained(staging, state_dict=_cast_state_dict(model, dtype))
        config.save_pretrained(staging)  # replaces the config.json written above: auto_map, dtype
        processor.save_pretrained(staging)
        for shipped in SHIPPED_FILES:
            shutil.copyfile(shipped, staging / shipped.name)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
    return Path(folder)


def _cast_state_dict(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict in `dtype`; tensors that share storage (the tied output projection) stay shared."""
    cast: dict[tuple[int, torch.Size], torch.Tensor] = {}
    state = {}
    for key, tensor in model.state_dict().items():
        identity = (tensor.data_ptr(), tensor.shape)
        if identity not in cast:
            cast[identity] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        state[key] = cast[identity]
    return state


def load_lite_whisper(
    folder: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    processor_source: str | Path | None = None,
) -> tuple[LiteWhisperForConditionalGeneration, WhisperProcessor]:
    """Load a lite-whisper folder (ours or the authors' layout) with this package's classes.

    The authors' checkpoints ship no processor; pass `processor_source` (a folder or hub id
    of the Whisper model they were compressed from) for those.
    """
    folder = Path(folder)
    if not is_lite_whisper_folder(folder):
        raise LiteWhisperLoadError(f"{folder}: no config.json with model_type {MODEL_TYPE!r}")
    config = LiteWhisperConfig.from_pretrained(folder)
    model, info = LiteWhisperForConditionalGeneration.from_pretrained(
        folder, config=config, dtype=dtype, output_loading_info=True
    )
    # A missing or misshapen factor would otherwise stay randomly initialised without a word.
    problems = {kind: sorted(info[kind]) for kind in ("missing_keys", "mismatched_keys") if info[kind]}
    if problems:
        raise LiteWhisperLoadError(f"{folder}: weights do not match low_rank_config: {problems}")
    has_processor = any((folder / name).exists() for name in PROCESSOR_FILES)
    if processor_source is None and not has_processor:
        raise LiteWhisperLoadError(
            f"{folder}: no processor files; pass processor_source= the Whisper model it was compressed from"
        )
    return model.to(device).eval(), _load_processor(folder if has_processor else processor_source)


def _load_processor(source: str | Path) -> WhisperProcessor:
    # Built from its parts: WhisperProcessor.from_pretrained would read config.json through
    # AutoConfig and ask to run the folder's remote code.
    return WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor.from_pretrained(source),
        tokenizer=WhisperTokenizer.from_pretrained(source),
    )
