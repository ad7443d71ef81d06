"""The manifest of an exported folder: what is in it, where it came from, how well it matches.

The format of exported folders, below every room that meets one: `deploy` writes it, `runtime` reads it,
and `models` and `api` recognise an exported folder by it."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_FILE = "lite_whisper_export.json"
FORMAT = "lite-whisper-export"
OPTIMUM_FORMAT = "optimum-onnx"  # `export --format optimum`: read by optimum and transformers.js, not by lite-whisper
VERSION = 1


class ExportedFolderError(ValueError):
    """An exported folder is incomplete or corrupt."""


def is_exported_folder(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(folder: str | Path) -> dict:
    """The manifest of `folder`, after checking that every file it names is there."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportedFolderError(f"{folder}: no {MANIFEST_FILE}; not a folder written by `lite-whisper export`") from None
    except (OSError, ValueError) as error:
        raise ExportedFolderError(f"{path}: unreadable ({error}); export the model again") from None
    if isinstance(manifest, dict) and manifest.get("format") == OPTIMUM_FORMAT:
        raise ExportedFolderError(f"{folder}: an optimum / transformers.js folder (export --format optimum); run it "
                                  "with optimum or transformers.js (its README.md says how), or give lite-whisper "
                                  "the model it was exported from")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportedFolderError(f"{path}: not a lite-whisper export manifest")
    if manifest.get("version", 0) > VERSION:
        raise ExportedFolderError(f"{path}: written by a newer lite-whisper (format version {manifest['version']}); "
                                  "upgrade lite-whisper")
    try:
        needed = [manifest["encoder"]["float32"], manifest["encoder"].get("int8"),
                  f"{manifest['decoder']['folder']}/model.bin", f"{manifest['decoder']['folder']}/config.json",
                  "generation_config.json", "tokenizer.json", "preprocessor_config.json"]
    except (KeyError, TypeError):
        raise ExportedFolderError(f"{path}: incomplete manifest; export the model again") from None
    missing = [name for name in needed if name is not None and not (folder / name).is_file()]
    if missing:
        raise ExportedFolderError(f"{folder}: incomplete export, missing {', '.join(missing)}; export the model again")
    return manifest
