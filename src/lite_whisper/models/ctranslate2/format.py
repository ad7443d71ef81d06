"""The CTranslate2 `model.bin` format, read without CTranslate2 installed.

A folder holds `model.bin` (or `model.bin.part1`, `part2`, ... whose byte concatenation is
`model.bin`), CTranslate2's `config.json` (suppress ids, alignment heads) and `tokenizer.json`.

`model.bin` layout, little-endian (see docs/MODELS.md):
    uint32 binary version | string spec name | uint32 spec revision | uint32 n_variables
    n_variables x (string name | uint8 rank | rank x uint32 dims | uint8 dtype id | uint32 n_bytes | data)
    uint32 n_aliases | n_aliases x (string alias | string target)
A string is a uint16 length (counting a trailing NUL) then the bytes. Scalars are rank-0
variables. Int8 weights carry a per-output-row `weight_scale`: w = q / scale.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np

MODEL_BIN = "model.bin"
_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")
# Binary versions >= 4 store a dtype id per variable (older ones predate faster-whisper).
_MIN_VERSION, _MAX_VERSION = 4, 6
_BFLOAT16 = 5
# dtype id -> numpy dtype of the stored bytes (bfloat16 is read as uint16 and widened).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    _BFLOAT16: np.dtype("<u2"),
}


@dataclass
class CT2Model:
    """The contents of a CTranslate2 `model.bin`."""

    version: int
    spec_name: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. the tied `decoder/projection/weight`)."""
        return self.variables[self.aliases.get(name, name)]


# ---------------------------------------------------------------------------- reading


class _ChainedReader:
    """Reads several files as one byte stream, so split models need no concatenated copy."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self._index = 0
        self._file: BinaryIO | None = open(self.paths[0], "rb")
        self.offset = 0

    def read(self, size: int) -> bytes:
        chunks, missing = [], size
        while missing > 0 and self._file is not None:
            chunk = self._file.read(missing)
            chunks.append(chunk)
            missing -= len(chunk)
            if missing > 0:
                self._next_file()
        data = b"".join(chunks)
        self.offset += len(data)
        return data

    def at_end(self) -> bool:
        return self.read(1) == b""

    def _next_file(self) -> None:
        assert self._file is not None
        self._file.close()
        self._index += 1
        self._file = open(self.paths[self._index], "rb") if self._index < len(self.paths) else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Parser:
    """Typed reads with errors that name the file and the byte offset."""

    def __init__(self, reader: _ChainedReader, label: str):
        self.reader = reader
        self.label = label

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.label}: {message} (at byte {self.reader.offset})")

    def bytes(self, size: int, what: str) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            split = any(_part_number(path) is not None for path in self.reader.paths)
            hint = "; is a model.bin.part file missing?" if split else ""
            raise self.error(f"truncated file: expected {size} bytes for {what}, got {len(data)}{hint}")
        return data

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.uint("H", what)
        raw = self.bytes(size, what)
        if size == 0 or raw[-1] != 0:
            raise self.error(f"bad string for {what}: not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"bad string for {what}: not UTF-8") from None


def read_model_bin(paths: Path | str | Sequence[Path | str]) -> CT2Model:
    """Read a CTranslate2 `model.bin`, or its ordered parts read as one byte stream."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_model_bin: no files given")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: model file not found")
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more part(s))"
    reader = _ChainedReader(paths)
    try:
        return _parse(_Parser(reader, label))
    finally:
        reader.close()


def _parse(p: _Parser) -> CT2Model:
    version = p.uint("I", "the binary version")
    if not _MIN_VERSION <= version <= _MAX_VERSION:
        raise p.error(
            f"bad header: binary version {version} is not a supported CTranslate2 model.bin "
            f"(expected {_MIN_VERSION}..{_MAX_VERSION})"
        )
    spec_name = p.string("the spec name")
    revision = p.uint("I", "the spec revision")
    count = p.uint("I", "the number of variables")
    variables = {}
    for _ in range(count):
        name, value = _parse_variable(p)
        variables[name] = value
    aliases = {}
    for _ in range(p.uint("I", "the number of aliases")):
        alias = p.string("an alias name")
        aliases[alias] = p.string(f"the target of alias {alias}")
    if not p.reader.at_end():
        raise p.error("unexpected data after the aliases (wrong part order, or not a model.bin?)")
    return CT2Model(version, spec_name, revision, variables, aliases)


def _parse_variable(p: _Parser) -> tuple[str, np.ndarray]:
    name = p.string("a variable name")
    rank = p.uint("B", f"the rank of {name}")
    shape = tuple(p.uint("I", f"the shape of {name}") for _ in range(rank))
    dtype_id = p.uint("B", f"the dtype of {name}")
    if dtype_id not in _DTYPES:
        raise p.error(f"unknown dtype id {dtype_id} for variable {name} (known: {sorted(_DTYPES)})")
    size = p.uint("I", f"the byte count of {name}")
    stored = _DTYPES[dtype_id]
    expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
    if size != expected:
        raise p.error(f"variable {name}: {size} bytes for shape {shape} of dtype id {dtype_id}, expected {expected}")
    array = np.frombuffer(p.bytes(size, f"the data of {name}"), dtype=stored).reshape(shape)
    if dtype_id == _BFLOAT16:  # bfloat16 is the upper half of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array.astype(array.dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------------------------- folders


def _part_number(path: Path) -> int | None:
    match = _PART_RE.match(path.name)
    return int(match.group(1)) if match else None


def find_model_bin(folder: Path | str, extra_dirs: Iterable[Path | str] = ()) -> list[Path]:
    """`[folder/model.bin]`, or all `model.bin.partN` in `folder` and `extra_dirs` in numeric order."""
    folder = Path(folder)
    if (folder / MODEL_BIN).is_file():
        return [folder / MODEL_BIN]
    parts = [p for d in (folder, *map(Path, extra_dirs)) if d.is_dir() for p in d.iterdir()
             if p.is_file() and _part_number(p) is not None]
    if not parts:
        raise ValueError(f"{folder}: no {MODEL_BIN} or {MODEL_BIN}.partN files found")
    parts.sort(key=_part_number)
    numbers = [_part_number(p) for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise ValueError(f"{folder}: model.bin parts must be numbered 1..N without gaps or repeats, found {numbers}")
    return parts


def is_ctranslate2_folder(path: Path | str) -> bool:
    """True for a folder holding `model.bin` or `model.bin.part1` (not a Hugging Face checkpoint)."""
    path = Path(path)
    return path.is_dir() and ((path / MODEL_BIN).is_file() or (path / f"{MODEL_BIN}.part1").is_file())


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None
