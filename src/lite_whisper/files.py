"""Writing output folders so that a failure never leaves half a model behind."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class OutputExistsError(FileExistsError):
    """The output path exists and overwriting was not asked for."""


class OutputBusyError(FileExistsError):
    """Another process is writing the same output right now."""


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> how many times this process holds it (re-entrant)


@contextmanager
def output_lock(target: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `target` (a sibling `.NAME.lock` file) for as long as the block runs.

    A second process asking for the same target fails at once with OutputBusyError instead of
    waiting or interleaving its writes; the same process may nest the lock.
    """
    target = Path(target).absolute()
    lock_path = target.with_name(f".{target.name}.lock")
    if lock_path in _HELD_LOCKS:
        _HELD_LOCKS[lock_path] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[lock_path] -= 1
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputBusyError(
            f"{target}: another lite-whisper process is writing this output right now; wait for it or choose "
            f"another output (lock file {lock_path})"
        ) from None
    _HELD_LOCKS[lock_path] = 1
    try:
        yield
    finally:
        del _HELD_LOCKS[lock_path]
        Path(lock_path).unlink(missing_ok=True)  # while still locked: a later process makes a fresh one
        os.close(descriptor)


@contextmanager
def atomic_folder(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` in one rename.

    On any error the temporary folder is removed and `target` is left as it was. The target is
    locked meanwhile (`output_lock`), so two processes never write it at once.
    """
    target = Path(target)
    with output_lock(target):
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target}: already exists; choose another output folder or pass --overwrite")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        try:
            yield staging
            _normal_modes(staging)
            if target.exists():  # overwrite: move the old folder aside first so the swap is quick
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                staging.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _normal_modes(folder: Path) -> None:
    """The modes the user's umask gives a normally created folder and files, for `folder` and all it holds.

    Temporary folders and files are made private (0700 / 0600); a model folder must not stay so, or
    another user's process serving it could not read it.
    """
    umask = _umask()
    os.chmod(folder, 0o777 & ~umask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(Path(root) / name, 0o777 & ~umask)
        for name in files:
            os.chmod(Path(root) / name, 0o666 & ~umask)


def write_json_atomic(path: str | Path, data) -> Path:
    """Write `data` as indented JSON through a temporary sibling and one rename: never half a file."""
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces `path` in one rename.

    On any error (a full disk, an interrupt) the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp's 0600 would make results private; set after writing, since some writers
        # (safetensors) replace the file and its mode
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
