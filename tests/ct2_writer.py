"""Test-only: write CTranslate2 `model.bin` files (the package only reads them)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
              np.dtype(np.int32): 3, np.dtype(np.float16): 4}


def write_model_bin(
    path: Path | str,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    spec_name: str = "WhisperSpec",
    revision: int = 3,
    version: int = 6,
) -> Path:
    """Write variables (float32/float16/int8/int16/int32 arrays) in CTranslate2's format."""
    path = Path(path)
    with open(path, "wb") as out:
        out.write(struct.pack("<I", version))
        _write_string(out, spec_name)
        out.write(struct.pack("<II", revision, len(variables)))
        for name, value in variables.items():
            _write_variable(out, name, np.asarray(value))
        aliases = aliases or {}
        out.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            _write_string(out, alias)
            _write_string(out, target)
    return path


def _write_string(out: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    out.write(struct.pack("<H", len(raw)) + raw)


def _write_variable(out: BinaryIO, name: str, value: np.ndarray) -> None:
    if value.dtype not in _DTYPE_IDS:
        raise ValueError(f"{name}: cannot write dtype {value.dtype} (use {', '.join(map(str, _DTYPE_IDS))})")
    data = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
    _write_string(out, name)
    out.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
    out.write(struct.pack("<BI", _DTYPE_IDS[value.dtype], len(data)))
    out.write(data)


# ---------------------------------------------------------------------------- folders
