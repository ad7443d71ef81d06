"""Datasets of speech clips: (id, audio, reference text or None), in a stable order, lazily.

A dataset spec is one of:
- a folder: every audio file below it, sorted; references come from LibriSpeech
  `*.trans.txt` files or a `transcripts.tsv` (file, transcript, ...) beside the audio;
- a list file (`.txt`/`.lst`): one audio path per line, relative to the list's folder (or
  to a parent of it, for lists kept in a `splits/` folder), references looked up beside
  each file as above;
- a manifest (`.tsv` with a header naming a path and a text column, or `.jsonl` with
  e.g. `{"audio_filepath": ..., "text": ...}`), paths relative to the manifest;
- a single audio file (no reference);
- `hf:NAME[:CONFIG]:SPLIT`, streamed with the `datasets` library (optional extra).

Audio is decoded only when a clip is reached, so `limit` and early stops cost nothing.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, load_audio, prepare_samples
from lite_whisper.data.augment import BABBLE_TALKERS, Augmentation, rng_for

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",  # libsndfile
                  ".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".mka", ".wma"}  # FFmpeg (PyAV)
LIST_SUFFIXES = {".txt", ".lst", ".list"}
PATH_COLUMNS = ("path", "file", "audio", "audio_filepath", "audio_path", "filename")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "reference", "normalized_text")


def default_speech_dir() -> Path:
    """Real speech for the offline defaults: $LITE_WHISPER_SPEECH, else ../shared/speech.

    Without the variable, `../shared/speech` is looked for from the working directory first,
    then beside the source checkout this package runs from (so the defaults work from anywhere
    in a development checkout).
    """
    if "LITE_WHISPER_SPEECH" in os.environ:
        return Path(os.environ["LITE_WHISPER_SPEECH"])
    relative = Path("../shared/speech")
    beside_checkout = Path(__file__).resolve().parents[3].parent / "shared" / "speech"
    return relative if relative.is_dir() or not beside_checkout.is_dir() else beside_checkout


class DatasetError(ValueError):
    """A dataset spec could not be read."""


@dataclass(frozen=True)
class Clip:
    id: str
    audio: np.ndarray  # 16 kHz mono float32
    reference: str | None

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class _Entry:
    id: str
    path: Path
    reference: str | None


class SpeechDataset:
    """An ordered, lazily decoded collection of clips; iterate to get `Clip`s."""

    def __init__(self, spec: str, entries: list[_Entry] | None = None, stream=None, limit: int | None = None,
                 shard: tuple[int, int] = (0, 1), augmentation: Augmentation | None = None):
        self.spec = spec
        self._entries = entries
        self._stream = stream  # callable returning an iterator of Clip (hub datasets)
        self.limit = limit
        self.shard_index, self.shard_count = shard  # this dataset is every shard_count-th clip from shard_index
        self.augmentation = augmentation  # each clip is followed by its degraded copies

    @property
    def _per_source(self) -> int:
        return 1 + (self.augmentation.copies if self.augmentation else 0)

    def _like(self, entries=None, stream=None, limit=None, shard=None, augmentation=False) -> SpeechDataset:
        """A copy with some fields replaced (False: keep the augmentation)."""
        return SpeechDataset(self.spec, self._entries if entries is None else entries,
                             self._stream if stream is None else stream,
                             limit, shard or (self.shard_index, self.shard_count),
                             self.augmentation if augmentation is False else augmentation)

    def files(self) -> list[tuple[str, Path]]:
        """(clip id, audio path) of every listed clip, in order (not for hub datasets, which stream)."""
        if self._entries is None:
            raise TypeError(f"{self.spec} streams its clips; it has no files to list")
        return [(entry.id, entry.path) for entry in self._entries]

    def __len__(self) -> int:
        if self._entries is None:
            raise TypeError(f"the size of streamed dataset {self.spec} is not known in advance")
        total = len(self._entries) if self.limit is None else min(self.limit, len(self._entries))
        return len(range(self.shard_index, total, self.shard_count)) * self._per_source

    @property
    def description(self) -> str:
        """'SPEC (N clips)': what is read, said before long work."""
        if self.size is None:
            return f"{self.spec} (streamed{', ' + self.augmentation.description if self.augmentation else ''})"
        if self.augmentation:
            sources = self.size // (1 + self.augmentation.copies)
            return f"{self.spec} ({sources} clips {self.augmentation.description}: {self.size} in all)"
        return f"{self.spec} ({self.size} clips)"

    @property
    def size(self) -> int | None:
        """Number of clips (degraded copies included), or None when streamed without a limit."""
        if self._entries is None:
            if self.limit is None:
                return None
            return len(range(self.shard_index, self.limit, self.shard_count)) * self._per_source
        return len(self)

    def with_limit(self, limit: int | None) -> SpeechDataset:
        """The first `limit` source clips of this one (before any sharding; each with its degraded copies):
        a limit only ever narrows."""
        if self.limit is not None:
            limit = self.limit if limit is None else min(limit, self.limit)
        return self._like(limit=limit)

    def augmented(self, augmentation: Augmentation | None) -> SpeechDataset:
        """Every clip followed by `augmentation.copies` degraded copies (ids `ID~VARIANT`); None: plain again."""
        return self._like(limit=self.limit, augmentation=augmentation)

    def sharded(self, index: int, count: int) -> SpeechDataset:
        """Clips index, index + count, index + 2 count, ... of this (unsharded) dataset.

        Over index = 0 .. count-1 the shards hold every clip exactly once, in any order of
        processes: what torch.distributed ranks calibrate or evaluate on.
        """
        if not 0 <= index < count:
            raise ValueError(f"shard index must be in [0, {count}), got {index}")
        if self.shard_count != 1:
            raise ValueError("this dataset is already a shard")
        return self._like(limit=self.limit, shard=(index, count))

    def shuffled(self, seed: int, buffer_size: int = 10_000) -> SpeechDataset:
        """The same clips in an order fixed by `seed` (before `limit` and sharding).

        Listed datasets are permuted exactly; a streamed one is shuffled by `datasets`
        through a buffer of `buffer_size` rows (its own approximate shuffle).
        """
        if self._entries is not None:
            order = np.random.default_rng(seed).permutation(len(self._entries))
            entries = [self._entries[index] for index in order]
            return self._like(entries=entries, limit=self.limit)
        stream = self._stream
        return self._like(stream=lambda: stream(shuffle=(seed, buffer_size)), limit=self.limit)

    def __iter__(self) -> Iterator[Clip]:
        for clip, talkers in self._sources():
            yield clip
            if self.augmentation is not None:
                for variant, samples in self.augmentation.copies_of(clip.id, clip.audio, talkers(clip)):
                    yield Clip(f"{clip.id}~{variant.name}", samples, clip.reference)

    def _sources(self) -> Iterator[tuple[Clip, object]]:
        """(clip, talkers) where `talkers(clip)` gives other clips' audio for babble, chosen by the clip's id:
        from the whole listed dataset (so every shard draws the same), or the last clips of a stream."""
        if self._entries is not None:
            entries = self._entries

            def listed_talkers(clip: Clip) -> list[np.ndarray]:
                others = [entry for entry in entries if entry.id != clip.id] or list(entries)
                rng = rng_for(self.augmentation.seed, "talkers", clip.id)
                picked = rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)), replace=False)
                return [load_audio(others[index].path) for index in sorted(picked)]

            for entry in entries[: self.limit][self.shard_index :: self.shard_count]:
                yield Clip(entry.id, load_audio(entry.path), entry.reference), listed_talkers
            return
        recent: list[np.ndarray] = []
        for index, clip in enumerate(self._stream()):
            if self.limit is not None and index >= self.limit:
                return
            if index % self.shard_count == self.shard_index:
                yield clip, (lambda clip, pool=list(recent): pool or [clip.audio])
            recent = (recent + [clip.audio])[-BABBLE_TALKERS:] if self.augmentation else recent

    def __repr__(self) -> str:
        return f"SpeechDataset({self.spec!r}, clips={self.size})"


def load_dataset(spec: str | Path, limit: int | None = None) -> SpeechDataset:
    """Open a dataset spec (see the module docstring) without decoding any audio."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be a positive number of clips, got {limit}")
    text = str(spec)
    if text.startswith("hf:"):
        return _hub_dataset(text, limit)
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found (expected a folder, list file, manifest or audio file)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        entries = [_entry(p, path) for p in files]
    elif path.suffix.lower() in AUDIO_SUFFIXES:
        entries = [_Entry(path.stem, path, None)]
    elif path.suffix.lower() in LIST_SUFFIXES | {".tsv", ".jsonl"}:
        entries = _read_spec_file(path)
    else:
        raise DatasetError(
            f"{path}: unknown dataset type '{path.suffix}'; use a folder, a .txt list of audio paths, "
            "a .tsv/.jsonl manifest, an audio file, or hf:NAME[:CONFIG]:SPLIT"
        )
    if not entries:
        raise DatasetError(f"{path}: contains no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return SpeechDataset(text, entries=entries, limit=limit)


def _read_spec_file(path: Path) -> list[_Entry]:
    """Entries of a list file or manifest; any unreadable content is a DatasetError naming the file."""
    try:
        if path.suffix.lower() == ".tsv":
            return _manifest_entries(path, _read_tsv_rows(path))
        if path.suffix.lower() == ".jsonl":
            return _manifest_entries(path, _read_jsonl_rows(path))
        return _list_entries(path)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text (byte {error.start}); a dataset spec is a text file") from None
    except (ValueError, OSError) as error:  # e.g. a NUL byte or an over-long name in a path
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot use this file as a dataset spec ({error})") from None


def _entry(audio: Path, root: Path) -> _Entry:
    clip_id = audio.relative_to(root).with_suffix("").as_posix()
    return _Entry(clip_id, audio, lookup_reference(audio))


def _list_entries(list_file: Path) -> list[_Entry]:
    lines = [
        (number, line.strip())
        for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    root = _list_root(list_file, lines[0][1]) if lines else list_file.parent
    entries = []
    for number, line in lines:
        audio = Path(line) if Path(line).is_absolute() else root / line
        if not audio.exists():
            raise DatasetError(
                f"{list_file}:{number}: audio file {line} not found (looked in {root}; paths are relative "
                "to the list's folder or one of its two parents)"
            )
        entries.append(_Entry(Path(line).with_suffix("").as_posix(), audio, lookup_reference(audio)))
    return entries


def _list_root(list_file: Path, first: str) -> Path:
    """The folder that relative paths in a list start from.

    The list's own folder, or a parent of it for lists kept in a `splits/` subfolder
    (shared/speech/splits/*.txt name paths relative to shared/speech).
    """
    candidates = [list_file.parent, *list(list_file.resolve().parents)[1:3]]
    return next((folder for folder in candidates if (folder / first).exists()), list_file.parent)


def _read_tsv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = []
        for number, row in enumerate(reader, start=2):
            if None in row:  # more cells than header columns
                raise DatasetError(f"{path}:{number}: more tab-separated cells than the header has columns")
            rows.append(row)
        return rows


def _read_jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def _pick_column(row: dict, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in row), None)


def _manifest_entries(manifest: Path, rows: list[dict]) -> list[_Entry]:
    if not rows:
        return []
    path_key = _pick_column(rows[0], PATH_COLUMNS)
    text_key = _pick_column(rows[0], TEXT_COLUMNS)
    if path_key is None:
        raise DatasetError(
            f"{manifest}: no audio path column; expected one of {', '.join(PATH_COLUMNS)} "
            f"(found: {', '.join(rows[0])})"
        )
    entries = []
    for number, row in enumerate(rows, start=1):
        if row.get(path_key) in (None, ""):
            raise DatasetError(f"{manifest}: row {number}: no audio path in column {path_key!r}")
        relative = str(row[path_key])
        audio = Path(relative) if Path(relative).is_absolute() else manifest.parent / relative
        if not audio.is_file():
            raise DatasetError(f"{manifest}: row {number}: audio file {relative} not found")
        reference = row.get(text_key) if text_key else None
        reference = None if reference is None else str(reference)
        entries.append(_Entry(Path(relative).with_suffix("").as_posix(), audio, reference))
    return entries


def lookup_reference(audio: Path) -> str | None:
    """The transcript of `audio` from a `*.trans.txt` or `transcripts.tsv` in its folder."""
    table = _folder_references(audio.parent.resolve())
    return table.get(audio.name, table.get(audio.stem))


@lru_cache(maxsize=1024)
def _folder_references(folder: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for trans in sorted(folder.glob("*.trans.txt")):  # LibriSpeech: "<id> TRANSCRIPT"
        for line in trans.read_text().splitlines():
            clip_id, _, text = line.strip().partition(" ")
            if clip_id:
                table[clip_id] = text
    tsv = folder / "transcripts.tsv"
    if tsv.exists():
        for row in _read_tsv_rows(tsv):
            key = _pick_column(row, PATH_COLUMNS)
            text = _pick_column(row, TEXT_COLUMNS)
            if key and text:
                table[row[key]] = row[text]
    return table


def _hub_dataset(spec: str, limit: int | None) -> SpeechDataset:
    parts = spec[3:].split(":")
    if len(parts) == 2:
        name, config, split = parts[0], None, parts[1]
    elif len(parts) == 3:
        name, config, split = parts
    else:
        raise DatasetError(f"{spec}: expected hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            f"{spec}: hub datasets need the 'datasets' package: pip install 'lite-whisper[datasets]'"
        ) from None

    def stream(shuffle: tuple[int, int] | None = None) -> Iterator[Clip]:
        try:
            rows = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as error:  # network, auth, unknown name: say which spec failed
            raise DatasetError(f"{spec}: cannot open hub dataset ({type(error).__name__}: {error})") from error
        if shuffle is not None:
            rows = rows.shuffle(seed=shuffle[0], buffer_size=shuffle[1])
        for index, row in enumerate(rows):
            audio = row.get("audio")
            if not isinstance(audio, dict) or "array" not in audio:
                raise DatasetError(f"{spec}: rows have no decoded 'audio' column (found: {', '.join(row)})")
            clip_id = str(row.get("id", f"{split}-{index:06d}"))
            text_key = _pick_column(row, TEXT_COLUMNS)
            samples = prepare_samples(np.asarray(audio["array"]), int(audio["sampling_rate"]), source=f"{spec} row {index}")
            yield Clip(clip_id, samples, row[text_key] if text_key else None)

    return SpeechDataset(spec, stream=stream, limit=limit)
