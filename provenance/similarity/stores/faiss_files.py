"""The FAISS store's index files: ``index.<gen>.faiss`` and ``index.json``.

The index is a cache derived from ``works.sqlite``: ``index.json`` says which index file is
current, the generation it reflects and its type. Index files are written whole under a new
name, then ``index.json`` is switched to them atomically, and older files are deleted; a
missing index is rebuilt from the catalogue, a lagging one brought up to date from it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import faiss

from aigcguard.fileio import atomic_path, atomic_write
from aigcguard.provenance.similarity.stores.catalogue import DB_NAME
from aigcguard.provenance.similarity.stores.faiss_policy import faiss_message
from aigcguard.provenance.similarity.stores.protocol import STORE_FORMAT, StoreError, utc_now

INDEX_STATE = "index.json"

_INDEX_FILE = re.compile(r"index\.(\d+)\.faiss")
_REMEDY = f"delete it to rebuild the index from {DB_NAME}"


@dataclass(frozen=True)
class IndexState:
    """What ``index.json`` records about the current index file."""

    file: str
    generation: int
    index_type: str
    ntotal: int
    trained_count: int
    tombstones: int


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _write_index_file(index, path: Path, binary: bool) -> None:
    """Write a faiss index atomically: to a temporary file beside it, fsync, rename."""
    with atomic_path(path) as tmp:
        (faiss.write_index_binary if binary else faiss.write_index)(index, str(tmp))


def read_state(state_path: Path) -> IndexState:
    """``index.json``, checked; StoreError when it is corrupt or of another format."""
    try:
        state = json.loads(state_path.read_text())
        file_name = state["file"]
        generation, ntotal = int(state["generation"]), int(state["ntotal"])
        fmt, spec = state["format"], str(state["index_type"])
        trained, tombstones = int(state["trained_count"]), int(state["tombstones"])
        if not _INDEX_FILE.fullmatch(file_name):
            raise ValueError(f"bad index file name {file_name!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{state_path}: corrupt index state ({exc}); {_REMEDY}") from None
    if fmt != STORE_FORMAT:
        raise StoreError(
            f"{state_path}: index format {fmt}; this version of aigcguard reads format "
            f"{STORE_FORMAT}"
        )
    return IndexState(file_name, generation, spec, ntotal, trained, tombstones)


def read_index(index_path: Path, state: IndexState, *, dim: int, binary: bool, generation: int):
    """The index file ``state`` points at, checked against it and against the catalogue's
    current ``generation``; StoreError when it cannot be used."""
    if state.generation > generation:
        raise StoreError(
            f"{index_path}: index is newer than {DB_NAME} (generation {state.generation}); "
            f"{_REMEDY}"
        )
    try:
        index = (faiss.read_index_binary if binary else faiss.read_index)(str(index_path))
    except RuntimeError as exc:
        reason = faiss_message(exc)
        raise StoreError(f"{index_path}: corrupt index file ({reason}); {_REMEDY}") from None
    if index.d != dim or index.ntotal != state.ntotal:
        raise StoreError(
            f"{index_path}: index holds {index.ntotal} vectors of dimension {index.d}, "
            f"{INDEX_STATE} says {state.ntotal} of dimension {dim}; {_REMEDY}"
        )
    return index


def write_index(folder: Path, index, binary: bool, state: IndexState) -> int:
    """Write ``index`` as ``state.file``, point ``index.json`` at it, delete older index
    files; returns the new file's size."""
    _write_index_file(index, folder / state.file, binary)
    record = {
        "format": STORE_FORMAT,
        "file": state.file,
        "generation": state.generation,
        "index_type": state.index_type,
        "ntotal": state.ntotal,
        "trained_count": state.trained_count,
        "tombstones": state.tombstones,
        "written": utc_now(),
    }
    _write_atomic(folder / INDEX_STATE, (json.dumps(record, indent=1) + "\n").encode())
    for old in folder.glob("index.*.faiss"):
        if old.name != state.file:
            old.unlink(missing_ok=True)
    return (folder / state.file).stat().st_size


def index_file_name(generation: int) -> str:
    return f"index.{generation}.faiss"
