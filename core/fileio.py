"""File I/O every part shares: atomic writes, file hashes, config files.

Atomic writes: a reader sees the old file or the whole new one, never half of it.

Everything that must survive (images, stores, indexes, calibrations, trained weights,
reports) is written to a temporary name beside its target, flushed to disk, then renamed
over it; a failure leaves the target as it was and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


def fsync_path(path: str | os.PathLike) -> None:
    """``path`` on disk: a file's bytes, or a folder's names (not every platform can open a
    folder: there it is a no-op)."""
    path = Path(path)
    with contextlib.suppress(OSError) if path.is_dir() else contextlib.nullcontext():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary name beside ``path`` for writers that want a file name (SQLite,
    faiss); when the block succeeds the file is synced and renamed over ``path``."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())  # on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace ``path`` when the block succeeds."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # Not tempfile.mkstemp: it creates files 0600; os.open with 0o666 lets the umask
        # decide, as open() does. O_EXCL: never write through someone else's file.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(tmp, flags, 0o666), "wb") as handle:
            yield handle
            handle.flush()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_config(path: str | os.PathLike, what: str) -> dict:
    """A TOML file (JSON when it ends in .json) as a dict; ValueError naming the file and
    ``what`` it should have been otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            import json

            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a valid {what} (expected a table at the top)")
    return data
