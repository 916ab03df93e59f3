"""The FAISS store's catalogue: ``works.sqlite``, the source of truth.

One row per work (metadata and its raw vector), a log of removed ids, and a ``meta`` table
(format version, embedder spec, dimension, binary flag, index type, generation counter). Every
add or remove is one SQLite transaction that also increments ``generation``; each row records
the generation that added it and each removal is logged with its generation, so an index that
lags behind can be brought up to date from the delta (see :mod:`.faiss_store`).

Vectors are stored as raw bytes: little-endian float32 (``dim`` per row) or packed bits
(``dim / 8`` uint8 per row).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aigcguard.fileio import atomic_path
from aigcguard.provenance.similarity.stores.protocol import (
    STORE_FORMAT,
    NewWork,
    StoreError,
    Work,
    utc_now,
)

DB_NAME = "works.sqlite"

_READ_CHUNK = 20_000
_PAGE_SIZE = 16384
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WORK_COLUMNS = "id, path, sha256, title, creator, licence, source, added"
#: a list of ids as one JSON parameter: one statement however many ids, no variable limit
_IDS = "(SELECT value FROM json_each(?))"
_META_KEYS = (
    "format",
    "embedder",
    "dim",
    "binary",
    "index_type",
    "search_params",
    "created",
    "updated",
    "generation",
    "count",
)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE works (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    title TEXT,
    creator TEXT,
    licence TEXT,
    source TEXT,
    added TEXT NOT NULL,
    gen INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX works_sha256 ON works (sha256);
CREATE INDEX works_path ON works (path);
CREATE INDEX works_gen ON works (gen);
CREATE TABLE removed (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
CREATE INDEX removed_gen ON removed (gen);
"""


def _bump_generation(conn: sqlite3.Connection, generation: int, count: int) -> None:
    """Inside a write transaction: record the new generation, count and time."""
    conn.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(str(generation), "generation"), (str(count), "count"), (utc_now(), "updated")],
    )


def _connect(db: Path) -> sqlite3.Connection:
    # mode=rw: opening must never create an empty database where a store was expected.
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    conn = sqlite3.connect(
        f"{db.resolve().as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        check_same_thread=False,  # guarded by the store's lock instead
        timeout=30,
    )
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def new_meta(embedder: str, dim: int, binary: bool, index_type: str, params: str) -> dict:
    """The ``meta`` table of a new, empty store."""
    now = utc_now()
    return {
        "format": str(STORE_FORMAT),
        "embedder": embedder,
        "dim": str(dim),
        "binary": "1" if binary else "0",
        "index_type": index_type,
        "search_params": params,
        "created": now,
        "updated": now,
        "generation": "0",
        "count": "0",
    }


def create_catalogue(folder: Path, meta: dict[str, str]) -> None:
    """Write an empty ``works.sqlite`` with ``meta`` into ``folder``. Built under a temporary
    name and renamed: a crash never leaves a half-made store."""
    with atomic_path(folder / DB_NAME) as tmp:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # A 512-d row is ~2.2 KB: 4 KB pages hold one (half the file empty), 16 KB
            # pages hold seven.
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            conn.execute("BEGIN")
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        finally:
            conn.close()


def _read_meta(db: Path, conn: sqlite3.Connection) -> dict[str, str]:
    """The meta table, checked: the tables exist, every key is there, the values parse."""
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        conn.execute(
            "SELECT id, path, sha256, title, creator, licence, source, added, "
            "gen, vector FROM works LIMIT 0"
        ).fetchall()
        conn.execute("SELECT id, gen FROM removed LIMIT 0").fetchall()
    except sqlite3.DatabaseError as exc:
        if "no such" in str(exc):
            raise StoreError(f"{db}: not a similarity store database ({exc})") from None
        raise StoreError(f"{db}: corrupt or not an SQLite database ({exc})") from None
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise StoreError(f"{db}: not a similarity store database (meta lacks {', '.join(missing)})")
    if meta["format"] != str(STORE_FORMAT):
        raise StoreError(
            f"{db}: store format {meta['format']}; this version of aigcguard reads "
            f"format {STORE_FORMAT}"
        )
    try:
        dim, binary = int(meta["dim"]), meta["binary"]
        int(meta["generation"]), int(meta["count"])
        if dim <= 0 or binary not in ("0", "1") or (binary == "1" and dim % 8):
            raise ValueError
    except ValueError:
        values = f"dim={meta['dim']!r}, binary={meta['binary']!r}"
        raise StoreError(f"{db}: corrupt meta table ({values})") from None
    return meta


def check_work(work: Any, i: int) -> tuple:
    """``works[i]`` as a row (path, sha256, title, creator, licence, source), checked."""
    if not isinstance(work, NewWork):
        raise TypeError(f"works[{i}]: expected a NewWork, got {type(work).__name__}")
    sha = str(work.sha256).lower()
    if not _SHA256.fullmatch(sha):
        raise ValueError(f"works[{i}]: sha256 must be 64 hex digits, got {work.sha256!r}")
    path = str(work.path)
    if not path:
        raise ValueError(f"works[{i}]: path is empty")
    optional = (work.title, work.creator, work.licence, work.source)
    if any(v is not None and not isinstance(v, str) for v in optional):
        raise ValueError(f"works[{i}]: title, creator, licence and source must be str or None")
    return (path, sha, *optional)


def check_vectors(x: Any, what: str, *, dim: int, binary: bool, allow_1d: bool) -> np.ndarray:
    """Vectors as the catalogue stores them: packed uint8 codes, or float32 L2-normalised."""
    x = np.asarray(x)
    width = dim // 8 if binary else dim
    shape = f"(n, {width})"
    if binary:
        expected = f"uint8 binary codes of shape {shape} ({dim} bits packed 8 per byte)"
        if x.dtype != np.uint8:
            raise ValueError(f"{what}: expected {expected}, got dtype {x.dtype}")
    else:
        expected = f"float32 vectors of shape {shape}"
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{what}: expected {expected}, got dtype {x.dtype}")
    if allow_1d and x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{what}: expected {expected}, got shape {tuple(x.shape)}")
    if binary:
        return np.ascontiguousarray(x)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: vectors contain NaN or infinity")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what}: a zero vector has no direction; cannot be L2-normalised")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class Catalogue:
    """An open ``works.sqlite``. Not locked itself: the store holding it serialises calls."""

    def __init__(self, db_path: Path, conn: sqlite3.Connection, dim: int, binary: bool):
        self.db_path = db_path
        self._conn = conn
        self._dim = dim
        self._binary = binary
        self._width = dim // 8 if binary else dim

    @classmethod
    def open(cls, db: Path) -> tuple[Catalogue, dict[str, str]]:
        """The catalogue in ``db`` and its meta table; StoreError when it is not one."""
        try:
            conn = _connect(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{db}: corrupt or not an SQLite database ({exc})") from None
        try:
            meta = _read_meta(db, conn)
        except BaseException:
            conn.close()
            raise
        return cls(db, conn, int(meta["dim"]), meta["binary"] == "1"), meta

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """SQLite failures (corruption, a locked database) become StoreError naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path}: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: two writers never both read the same
        # generation and both think the next one is theirs.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ---- state

    @staticmethod
    def _read_state(conn: sqlite3.Connection) -> tuple[int, int]:
        query = "SELECT key, value FROM meta WHERE key IN ('generation', 'count')"
        meta = dict(conn.execute(query))
        return int(meta["generation"]), int(meta["count"])

    def generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def count(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
        return int(row[0])

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta"))

    # ---- writes: one transaction each, returning the generation they started from

    def insert(self, rows: Sequence[tuple], vectors: np.ndarray) -> tuple[int, list[int]]:
        """Add checked ``rows`` (see :func:`check_work`) with their checked vectors."""
        blobs = [v.tobytes() for v in (vectors.astype("<f4") if not self._binary else vectors)]
        added = utc_now()
        with self.write() as conn:
            generation, count = self._read_state(conn)
            (seq,) = conn.execute(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'works'), 0)"
            ).fetchone()
            (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM works").fetchone()
            # We hold the write lock, so ids seq+1.. are ours; AUTOINCREMENT never reuses
            # an id, not even the largest one after it was removed.
            start = max(seq, top) + 1
            ids = list(range(start, start + len(rows)))
            conn.executemany(
                "INSERT INTO works (id, path, sha256, title, creator, licence, source, "
                "added, gen, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (i, *r, added, generation + 1, b)
                    for i, r, b in zip(ids, rows, blobs, strict=True)
                ],
            )
            _bump_generation(conn, generation + 1, count + len(ids))
        return generation, ids

    def delete(self, wanted: Sequence[int]) -> tuple[int, list[int]]:
        """Remove the works among ``wanted`` that exist; (generation before, ids removed)."""
        with self.write() as conn:
            generation, count = self._read_state(conn)
            found = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM works WHERE id IN {_IDS}",
                    (json.dumps(list(wanted)),),
                )
            ]
            if not found:
                return generation, []
            conn.execute(
                f"DELETE FROM works WHERE id IN {_IDS}",
                (json.dumps(found),),
            )
            conn.executemany(
                "INSERT INTO removed (id, gen) VALUES (?, ?)",
                [(i, generation + 1) for i in found],
            )
            _bump_generation(conn, generation + 1, count - len(found))
        return generation, found

    # ---- reads

    def works(self, ids: Sequence[int]) -> dict[int, Work]:
        return {
            r[0]: Work(*r)
            for r in self._conn.execute(
                f"SELECT {_WORK_COLUMNS} FROM works WHERE id IN {_IDS}",
                (json.dumps(sorted(set(ids))),),
            )
        }

    def find(self, path: str | None, sha256: str | None) -> list[Work]:
        clauses, args = [], []
        if path is not None:
            clauses.append("path = ?")
            args.append(str(path))
        if sha256 is not None:
            clauses.append("sha256 = ?")
            args.append(str(sha256).lower())
        if not clauses:
            raise ValueError("find() needs path=, sha256= or both")
        rows = self._conn.execute(
            f"SELECT {_WORK_COLUMNS} FROM works WHERE {' AND '.join(clauses)} ORDER BY id", args
        ).fetchall()
        return [Work(*r) for r in rows]

    def ids(self) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT id FROM works ORDER BY id")]

    def works_with_vectors(self, ids: np.ndarray) -> tuple[list[Work], np.ndarray, np.ndarray]:
        """(works, their ids, their vectors) for the ``ids`` still registered, by id."""
        rows = self._conn.execute(
            f"SELECT {_WORK_COLUMNS}, vector FROM works WHERE id IN {_IDS}",
            (json.dumps(np.asarray(ids).tolist()),),
        ).fetchall()
        rows.sort(key=lambda r: r[0])
        found = np.array([r[0] for r in rows], dtype=np.int64)
        return [Work(*r[:-1]) for r in rows], found, self.decode([r[-1] for r in rows])

    def fetch_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, sorted; their vectors)."""
        rows = self._conn.execute(
            f"SELECT id, vector FROM works WHERE id IN {_IDS} ORDER BY id",
            (json.dumps(np.asarray(ids).tolist()),),
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), self.decode([r[1] for r in rows])

    def ids_up_to(self, generation: int) -> np.ndarray:
        """Ids of the works committed at or before ``generation``."""
        query = "SELECT id FROM works WHERE gen <= ?"
        return np.array([r[0] for r in self._conn.execute(query, (generation,))], dtype=np.int64)

    def vectors_up_to(self, generation: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (ids, vectors) of the works committed at or before ``generation``."""
        return self._iter_vectors(
            "SELECT id, vector FROM works WHERE id > ? AND gen <= ? ORDER BY id LIMIT ?",
            (generation,),
        )

    def added_between(self, after: int, upto: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (ids, vectors) of the works added in generations ``after`` < g <= ``upto``
        and still registered."""
        return self._iter_vectors(
            "SELECT id, vector FROM works WHERE id > ? AND gen > ? AND gen <= ? "
            "ORDER BY id LIMIT ?",
            (after, upto),
        )

    def removed_between(self, after: int, upto: int) -> np.ndarray:
        """Ids removed in generations ``after`` < g <= ``upto``."""
        query = "SELECT id FROM removed WHERE gen > ? AND gen <= ?"
        return np.array([r[0] for r in self._conn.execute(query, (after, upto))], dtype=np.int64)

    def _iter_vectors(self, query: str, args: tuple) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (ids, vectors) for ``query`` (which selects id, vector WHERE id > ? AND
        ... ORDER BY id LIMIT ?): keyset pagination, so no read lock is held for long."""
        last = 0
        while True:
            rows = self._conn.execute(query, (last, *args, _READ_CHUNK)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], dtype=np.int64), self.decode([r[1] for r in rows])

    def decode(self, blobs: list[bytes]) -> np.ndarray:
        dtype = np.uint8 if self._binary else np.dtype("<f4")
        if not blobs:
            return np.zeros((0, self._width), dtype=dtype)
        raw = np.frombuffer(b"".join(blobs), dtype=dtype)
        if raw.size != len(blobs) * self._width:
            raise StoreError(f"{self.db_path}: a stored vector is not {self._width} wide")
        return raw.reshape(len(blobs), self._width).astype(np.uint8 if self._binary else np.float32)
