"""The similarity store: which registered reference works does this image copy?

A store is a directory::

    works.sqlite        the source of truth: one row per work (metadata and its raw vector),
                        a log of removed ids, and a ``meta`` table (format version, embedder
                        spec, dimension, binary flag, index type, generation counter)
    index.json          which index file is current, the generation it reflects, its type
    index.<gen>.faiss   the FAISS index: a cache derived from works.sqlite

Every add or remove is one SQLite transaction that also increments ``generation``; a crash
before the commit leaves the previous state, a crash after it loses nothing, because the index
is only a cache. Each row records the generation that added it and each removal is logged with
its generation, so an index that lags behind (the process died before writing it, or another
process wrote to the store) is brought up to date from that delta, not rebuilt. Index files
are written whole under a new name, then ``index.json`` is switched to them atomically.

Embedding images is not done here: the store takes vectors, either L2-normalised float32
(``dim`` floats, score = cosine = inner product) or binary codes (``dim`` bits packed into
``dim / 8`` uint8 per row, e.g. 256-bit PDQ hashes; score = 1 - 2 * hamming / bits, the cosine
of the +-1 vectors). Scores always come from the raw vectors in works.sqlite, never from
compressed codes: an approximate index only proposes ``RERANK_FACTOR`` x k candidates.

    store = Store.create("refs", embedder="clip:ViT-B-32/openai", dim=512)
    ids = store.add([NewWork(path="a.jpg", sha256=digest)], vectors)   # vectors: N x 512
    hits = store.search(query_vectors, k=10)                             # best first
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from aigcguard.fileio import atomic_path, atomic_write
from aigcguard.results import JsonResult

STORE_FORMAT = 1

DB_NAME = "works.sqlite"
INDEX_STATE = "index.json"

#: Float stores use an exact index up to this many vectors. Exact search at 512-d scans
#: 2 KiB per vector per query: measured about 70 ms per query at 100k on the 2-core machine,
#: so a million would take most of a second. Beyond it, IVF with 8-bit scalar codes (d bytes
#: a vector; candidates re-scored exactly, recall@10 >= 0.95 measured), and beyond
#: ``PQ_ABOVE`` product quantisation (d/8 bytes), where SQ8 would need > 5 GB RAM.
EXACT_MAX_FLOAT = 250_000
PQ_ABOVE = 10_000_000
#: Binary codes are 32 bytes (PDQ) and compared by popcount, so exact search stays cheap for
#: ten times longer: 10 M x 256 bits is 320 MB scanned per query.
EXACT_MAX_BINARY = 10_000_000
#: An approximate index proposes this many candidates per requested hit; all are re-scored
#: exactly with the raw vectors.
RERANK_FACTOR = 10

# k-means wants ~39 points per list at least (faiss warns below) and gains little above ~64.
_TRAIN_MIN_PER_LIST = 39
_TRAIN_MAX_PER_LIST = 64
_TRAIN_MIN_OTHER = 10_000  # a trainable index without lists (PQ, OPQ): enough for 256 centroids
_TRAIN_MAX_OTHER = 65_536
#: An IVF index is retrained (rebuilt) when the store has grown this many times past the
#: size it was trained at: centroids learnt on the first works drift from the collection.
_RETRAIN_GROWTH = 4
#: Indexes that cannot remove (HNSW) keep removed ids as tombstones, dropped at re-scoring;
#: past this fraction of the index the index is rebuilt.
_TOMBSTONE_MAX = 0.10
#: The index file is rewritten after every commit while it is this small; above it, once the
#: changes since the last write reach ``_PERSIST_FRACTION`` of the index (and on close). The
#: delta is replayed from works.sqlite on open, so a lazier write costs time, never data.
_PERSIST_SMALL_BYTES = 64 << 20
_PERSIST_FRACTION = 0.25
_READ_CHUNK = 20_000
_PAGE_SIZE = 16384

_SHA256 = re.compile(r"[0-9a-f]{64}")
_INDEX_FILE = re.compile(r"index\.(\d+)\.faiss")
_WORK_COLUMNS = "id, path, sha256, title, creator, licence, source, added"
#: a list of ids as one JSON parameter: one statement however many ids, no variable limit
_IDS = "(SELECT value FROM json_each(?))"

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


class StoreError(Exception):
    """A store cannot be used as asked: missing, not a store, wrong format, corrupt, closed.
    The message names the path and the problem."""


@dataclass(frozen=True)
class NewWork:
    """A reference work to register; the store assigns its id and the time it was added."""

    path: str
    sha256: str
    title: str | None = None
    creator: str | None = None
    licence: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Work(JsonResult):
    """A registered work. JSON fields: id, path, sha256 (lowercase hex), title, creator,
    licence, source, added (ISO 8601 UTC)."""

    id: int
    path: str
    sha256: str
    title: str | None = None
    creator: str | None = None
    licence: str | None = None
    source: str | None = None
    added: str | None = None


@dataclass(frozen=True)
class Hit(JsonResult):
    """One search result. ``score`` comes from the raw vectors: the cosine for float stores,
    1 - 2 * hamming / bits for binary ones, where ``hamming`` is also given."""

    work: Work
    score: float
    hamming: int | None = None


@dataclass(frozen=True)
class StoreInfo(JsonResult):
    """What a store holds and how it searches.

    ``index_type`` is the faiss factory string in use; ``index_type_requested`` is what the
    store was created with (``auto``: chosen by size, see :func:`default_index_type`). They
    differ while a requested trainable index waits for enough vectors (exact search until
    then). ``search_params`` is the faiss parameter string applied to searches (``nprobe=..``,
    ``efSearch=..``; empty for exact indexes)."""

    path: str
    format: int
    embedder: str
    dim: int
    binary: bool
    count: int
    index_type: str
    index_on_gpu: bool
    size_bytes: int
    created: str
    updated: str
    index_type_requested: str
    search_params: str


# ------------------------------------------------------------------------------ index policy


def _nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest sqrt(n), 64..65536."""
    return int(min(65536, max(64, 2 ** round(math.log2(max(n, 1)) / 2))))


def default_index_type(n: int, dim: int, binary: bool) -> str:
    """The faiss factory string the store uses for ``n`` vectors (the ``auto`` policy).

    Float vectors (inner product): ``IDMap2,Flat`` (exact) up to ``EXACT_MAX_FLOAT`` (1 M);
    then ``IVF{nlist},SQ8`` (d bytes a vector) up to ``PQ_ABOVE`` (10 M); then
    ``IVF{nlist},PQ{m}`` with m = d/8 sub-quantisers. Binary codes (Hamming): ``IDMap2,BFlat``
    up to ``EXACT_MAX_BINARY`` (10 M), then ``BIVF{nlist}``. nlist is the power of two nearest
    sqrt(n). All of these remove by id without a rebuild; every score is re-computed exactly.
    """
    if n < 0 or dim <= 0:
        raise ValueError(f"need n >= 0 and dim > 0, got n={n}, dim={dim}")
    if binary:
        return "IDMap2,BFlat" if n <= EXACT_MAX_BINARY else f"BIVF{_nlist(n)}"
    if n <= EXACT_MAX_FLOAT:
        return "IDMap2,Flat"
    if n <= PQ_ABOVE:
        return f"IVF{_nlist(n)},SQ8"
    m = max(s for s in range(1, max(1, dim // 8) + 1) if dim % s == 0)
    return f"IVF{_nlist(n)},PQ{m}"


def _exact_type(binary: bool) -> str:
    return "IDMap2,BFlat" if binary else "IDMap2,Flat"


def _make_index(spec: str, dim: int, binary: bool):
    if binary:
        return faiss.index_binary_factory(dim, spec)
    return faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)


def _ivf_of(index, binary: bool):
    """The inverted-file index inside ``index``, or None."""
    if binary:
        if isinstance(index, faiss.IndexBinaryIDMap):
            index = faiss.downcast_IndexBinary(index.index)
        return index if isinstance(index, faiss.IndexBinaryIVF) else None
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw_of(index, binary: bool):
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap)):
        index = (faiss.downcast_IndexBinary if binary else faiss.downcast_index)(index.index)
    return getattr(index, "hnsw", None)


def _faiss_message(exc: BaseException) -> str:
    """faiss errors start with the C++ function and source line; keep what follows."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", text)


def _normalise_index_type(spec: str, dim: int, binary: bool) -> str:
    """Check ``spec`` builds and give it ids: non-IVF indexes get an ``IDMap2,`` wrapper (they
    have no ids of their own); IVF keeps ids itself, and IDMap around it would break removal."""
    spec = spec.strip()
    try:
        index = _make_index(spec, dim, binary)
    except RuntimeError as exc:
        kind = "binary" if binary else "float"
        raise ValueError(
            f"index_type {spec!r} is not a faiss factory string for {kind} vectors of "
            f"dimension {dim}: {_faiss_message(exc)}"
        ) from None
    wrapped = isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap))
    if _ivf_of(index, binary) is not None:
        return spec.split(",", 1)[1] if wrapped else spec
    return spec if wrapped else f"IDMap2,{spec}"


def _min_train(index, binary: bool) -> int:
    if index.is_trained:
        return 0
    ivf = _ivf_of(index, binary)
    return _TRAIN_MIN_PER_LIST * ivf.nlist if ivf is not None else _TRAIN_MIN_OTHER


def _max_train(index, binary: bool) -> int:
    ivf = _ivf_of(index, binary)
    return _TRAIN_MAX_PER_LIST * ivf.nlist if ivf is not None else _TRAIN_MAX_OTHER


def _default_search_params(index, binary: bool) -> str:
    """nprobe: 1/32 of the lists, at least 16 (the candidates are re-ranked exactly, so the
    lists scanned decide recall, not the codes). efSearch 128 for HNSW."""
    ivf = _ivf_of(index, binary)
    if ivf is not None:
        return f"nprobe={min(ivf.nlist, max(16, ivf.nlist // 32))}"
    if _hnsw_of(index, binary) is not None:
        return "efSearch=128"
    return ""


def _parse_params(params: str) -> list[tuple[str, float]]:
    out = []
    for item in filter(None, (p.strip() for p in params.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(
                f"search params {params!r}: expected name=value pairs such as 'nprobe=32'"
            ) from None
    return out


def _apply_params(index, params: str, binary: bool, gpu: bool = False) -> None:
    if not params:
        return
    if not binary:
        space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
        try:
            space.set_index_parameters(index, params)
        except RuntimeError as exc:
            raise ValueError(f"search params {params!r}: {_faiss_message(exc)}") from None
        return
    for name, value in _parse_params(params):  # faiss has no ParameterSpace for binary
        ivf, hnsw = _ivf_of(index, True), _hnsw_of(index, True)
        if name == "nprobe" and ivf is not None:
            ivf.nprobe = int(value)
        elif name == "efSearch" and hnsw is not None:
            hnsw.efSearch = int(value)
        else:
            raise ValueError(f"search params {params!r}: {name!r} does not apply to this index")


# ------------------------------------------------------------------------------- file helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _write_index_file(index, path: Path, binary: bool) -> None:
    """Write a faiss index atomically: to a temporary file beside it, fsync, rename."""
    with atomic_path(path) as tmp:
        (faiss.write_index_binary if binary else faiss.write_index)(index, str(tmp))


def _bump_generation(conn: sqlite3.Connection, generation: int, count: int) -> None:
    """Inside a write transaction: record the new generation, count and time."""
    conn.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(str(generation), "generation"), (str(count), "count"), (_now(), "updated")],
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


# ------------------------------------------------------------------------------------ store


class Store:
    """A directory of registered works searchable by vector. See the module docstring.

    Use :meth:`create` or :meth:`open`, and :meth:`close` (or ``with``) when done: closing
    writes the index if it lags behind. Methods are safe to call from several threads (one
    lock); several processes may share a store, each sees the others' commits on its next
    call.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        # Not for direct use: create() and open() check the directory first.
        self.path = path
        self._db_path = path / DB_NAME
        self._conn = conn
        self._lock = threading.RLock()
        self._embedder = meta["embedder"]
        self._dim = int(meta["dim"])
        self._binary = meta["binary"] == "1"
        self._requested = meta["index_type"]
        self._params = meta["search_params"]
        self._created = meta["created"]
        self._width = self._dim // 8 if self._binary else self._dim
        self._index = None
        self._index_type = ""
        self._gen = -1  # generation the in-memory index reflects
        self._trained_count = 0
        self._tombstones = 0
        self._pending = 0  # vectors added or removed since the index file was written
        self._saved_bytes_per_vector: float | None = None
        self._gpu_index = None
        self._use_gpu = not self._binary and faiss.get_num_gpus() > 0
        self._applied: tuple | None = None  # (index, params) last set for searching
        self._closed = False

    # ---- construction

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        embedder: str,
        dim: int,
        binary: bool = False,
        index_type: str | None = None,
        search_params: str | None = None,
    ) -> Store:
        """Create an empty store in ``path`` (a new or empty directory).

        ``embedder`` is an opaque spec saved for callers to check (``clip:ViT-B-32/openai``,
        ``pdq``). ``dim`` is the vector length (bits for binary stores, a multiple of 8).
        ``index_type`` fixes a faiss factory string instead of the size policy
        (:func:`default_index_type`); ``search_params`` fixes e.g. ``nprobe=64`` instead of
        the default for the index.
        """
        path = Path(path)
        if not isinstance(embedder, str) or not embedder.strip():
            raise ValueError("embedder must be a non-empty spec string, e.g. 'pdq'")
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if binary and dim % 8:
            raise ValueError(
                f"binary codes are packed in bytes: dim must be a multiple of 8 bits, got {dim}"
            )
        dim = int(dim)
        requested = "auto"
        if index_type is not None and index_type.strip().lower() != "auto":
            requested = _normalise_index_type(index_type, dim, binary)
        params = "auto"
        if search_params is not None and search_params.strip().lower() != "auto":
            params = search_params.strip()
            # checked against the approximate index the store will use: a ValueError now
            # rather than at search time
            limit = EXACT_MAX_BINARY if binary else EXACT_MAX_FLOAT
            spec = default_index_type(limit + 1, dim, binary) if requested == "auto" else requested
            _apply_params(_make_index(spec, dim, binary), params, binary)
        if path.exists():
            if not path.is_dir():
                raise StoreError(f"{path}: exists and is not a directory")
            if (path / DB_NAME).exists():
                raise StoreError(f"{path}: a store already exists here; open it instead")
            if any(path.iterdir()):
                raise StoreError(f"{path}: directory is not empty; a store needs its own")
        path.mkdir(parents=True, exist_ok=True)

        now = _now()
        meta = {
            "format": str(STORE_FORMAT),
            "embedder": embedder.strip(),
            "dim": str(dim),
            "binary": "1" if binary else "0",
            "index_type": requested,
            "search_params": params,
            "created": now,
            "updated": now,
            "generation": "0",
            "count": "0",
        }
        # Built under a temporary name and renamed: a crash never leaves a half-made store.
        db = path / DB_NAME
        with atomic_path(db) as tmp:
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
        store = cls.open(path)
        return store

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        """Open an existing store; raises :class:`StoreError` naming the path and the problem
        when it is missing, not a store, of another format version, or corrupt."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such directory")
        if not path.is_dir():
            raise StoreError(f"{path}: not a directory")
        db = path / DB_NAME
        if not db.is_file():
            raise StoreError(f"{path}: not a similarity store (no {DB_NAME})")
        try:
            conn = _connect(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{db}: corrupt or not an SQLite database ({exc})") from None
        try:
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
            required = (
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
            missing = [k for k in required if k not in meta]
            if missing:
                raise StoreError(
                    f"{db}: not a similarity store database (meta lacks {', '.join(missing)})"
                )
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
            store = cls(path, conn, meta)
            with store._lock, store._guard():
                store._load_or_rebuild()
        except BaseException:
            conn.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._index_type}, generation {self._gen}"
        return f"Store({str(self.path)!r}, {self._embedder!r}, {state})"

    def close(self) -> None:
        """Write the index if it lags behind the database, then release the database."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._pending and self._index is not None:
                    with self._guard():
                        self._try_persist()
            finally:
                self._closed = True
                self._gpu_index = None
                self._conn.close()

    # ---- writes

    def add(self, works: Sequence[NewWork], vectors: np.ndarray) -> list[int]:
        """Register ``works`` with their vectors (row i belongs to works[i]) in one
        transaction; returns the new ids in order. Float vectors are L2-normalised here."""
        works = list(works)
        vecs = self._check_vectors(vectors, "vectors", allow_1d=False)
        if len(works) != len(vecs):
            raise ValueError(
                f"got {len(works)} works but {len(vecs)} vectors; expected one vector per work"
            )
        rows = [self._check_work(w, i) for i, w in enumerate(works)]
        if not rows:
            return []
        blobs = [v.tobytes() for v in (vecs.astype("<f4") if not self._binary else vecs)]
        with self._lock, self._guard():
            self._check_open()
            self._sync()
            added = _now()
            with self._write() as conn:
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
            new = np.array(ids, dtype=np.int64)
            self._after_commit(generation, lambda: self._index_add(vecs, new))
            return ids

    def remove(self, ids: Sequence[int]) -> int:
        """Remove works by id in one transaction; returns how many existed. Unknown ids are
        ignored; removed ids are never reused."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        with self._lock, self._guard():
            self._check_open()
            self._sync()
            with self._write() as conn:
                generation, count = self._read_state(conn)
                found = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM works WHERE id IN {_IDS}",
                        (json.dumps(wanted),),
                    )
                ]
                if not found:
                    return 0
                conn.execute(
                    f"DELETE FROM works WHERE id IN {_IDS}",
                    (json.dumps(found),),
                )
                conn.executemany(
                    "INSERT INTO removed (id, gen) VALUES (?, ?)",
                    [(i, generation + 1) for i in found],
                )
                _bump_generation(conn, generation + 1, count - len(found))
            gone = np.array(found, dtype=np.int64)
            self._after_commit(generation, lambda: self._index_remove(gone))
            return len(found)

    # ---- reads

    def search(
        self, queries: np.ndarray, k: int = 10, *, params: str | None = None
    ) -> list[list[Hit]]:
        """The ``k`` best works for each query (a 1-d vector is one query), best first.

        Scores are computed from the stored raw vectors; an approximate index only proposes
        candidates (``RERANK_FACTOR`` x k). ``params`` overrides the store's faiss search
        parameters for this call, e.g. ``"nprobe=64"``; exact indexes have none to set.
        """
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = self._check_vectors(queries, "queries", allow_1d=True)
        with self._lock, self._guard():
            self._check_open()
            self._sync()
            ntotal = self._index.ntotal
            if ntotal == 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            exact = self._index_type == _exact_type(self._binary)
            fetch = k if exact else k * RERANK_FACTOR
            fetch = min(ntotal, fetch + min(self._tombstones, fetch))
            params = "" if exact else (params or self._search_params())  # exact: nothing to tune
            _, labels = self._index_search(q, fetch, params)
            return self._rescore(q, labels, k)

    def get(self, ids: Sequence[int]) -> list[Work]:
        """The works with these ids, in the same order; KeyError names any unknown id."""
        wanted = [int(i) for i in ids]
        with self._lock, self._guard():
            self._check_open()
            found = {
                r[0]: Work(*r)
                for r in self._conn.execute(
                    f"SELECT {_WORK_COLUMNS} FROM works WHERE id IN {_IDS}",
                    (json.dumps(sorted(set(wanted))),),
                )
            }
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing[:10]))}")
        return [found[i] for i in wanted]

    def find(
        self, *, path: str | os.PathLike | None = None, sha256: str | None = None
    ) -> list[Work]:
        """Works registered with this path and/or sha256 (both must match when both are
        given), oldest first."""
        clauses, args = [], []
        if path is not None:
            clauses.append("path = ?")
            args.append(str(path))
        if sha256 is not None:
            clauses.append("sha256 = ?")
            args.append(str(sha256).lower())
        if not clauses:
            raise ValueError("find() needs path=, sha256= or both")
        with self._lock, self._guard():
            self._check_open()
            rows = self._conn.execute(
                f"SELECT {_WORK_COLUMNS} FROM works WHERE {' AND '.join(clauses)} ORDER BY id", args
            ).fetchall()
        return [Work(*r) for r in rows]

    def ids(self) -> list[int]:
        """Every registered work's id, ascending."""
        with self._lock, self._guard():
            self._check_open()
            return [r[0] for r in self._conn.execute("SELECT id FROM works ORDER BY id")]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these works, one row per id in order (float32 N x dim, or
        uint8 N x dim/8 for binary stores); KeyError names any unknown id."""
        wanted = np.asarray([int(i) for i in ids], dtype=np.int64)
        with self._lock, self._guard():
            self._check_open()
            found, matrix = self._fetch_vectors(np.unique(wanted))
        pos = np.minimum(np.searchsorted(found, wanted), max(len(found) - 1, 0))
        ok = found[pos] == wanted if len(found) else np.zeros(len(wanted), dtype=bool)
        if not ok.all():
            missing = wanted[~ok][:10].tolist()
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing))}")
        return matrix[pos] if len(wanted) else matrix[:0]

    def info(self) -> StoreInfo:
        with self._lock, self._guard():
            self._check_open()
            self._sync()
            meta = dict(self._conn.execute("SELECT key, value FROM meta"))
            self._gpu()
            size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
            return StoreInfo(
                path=str(self.path),
                format=int(meta["format"]),
                embedder=self._embedder,
                dim=self._dim,
                binary=self._binary,
                count=int(meta["count"]),
                index_type=self._index_type,
                index_on_gpu=self._use_gpu,
                size_bytes=size,
                created=self._created,
                updated=meta["updated"],
                index_type_requested=self._requested,
                search_params=self._search_params(),
            )

    # ---- internals: checks

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite failures (corruption, a locked database) become StoreError naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self._db_path}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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

    def _read_state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        query = "SELECT key, value FROM meta WHERE key IN ('generation', 'count')"
        meta = dict(conn.execute(query))
        return int(meta["generation"]), int(meta["count"])

    def _check_vectors(self, x: Any, what: str, *, allow_1d: bool) -> np.ndarray:
        x = np.asarray(x)
        shape = f"(n, {self._width})"
        if self._binary:
            expected = f"uint8 binary codes of shape {shape} ({self._dim} bits packed 8 per byte)"
            if x.dtype != np.uint8:
                raise ValueError(f"{what}: expected {expected}, got dtype {x.dtype}")
        else:
            expected = f"float32 vectors of shape {shape}"
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"{what}: expected {expected}, got dtype {x.dtype}")
        if allow_1d and x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self._width:
            raise ValueError(f"{what}: expected {expected}, got shape {tuple(x.shape)}")
        if self._binary:
            return np.ascontiguousarray(x)
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: vectors contain NaN or infinity")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{what}: a zero vector has no direction; cannot be L2-normalised")
        return np.ascontiguousarray(x / norms, dtype=np.float32)

    @staticmethod
    def _check_work(work: Any, i: int) -> tuple:
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

    # ---- internals: the index

    def _search_params(self) -> str:
        if self._index_type == _exact_type(self._binary):
            return ""
        if self._params != "auto":
            return self._params
        return _default_search_params(self._index, self._binary)

    def _gpu(self):
        """A GPU copy of the index for searching, made on first use after each change; None
        without a GPU or when faiss has no GPU version of this index type."""
        if self._use_gpu and self._gpu_index is None and self._index.ntotal:
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
            except (RuntimeError, AttributeError) as exc:
                message = f"{self.path}: searching on the CPU: {_faiss_message(exc)}"
                warnings.warn(message, stacklevel=4)
                self._use_gpu = False
        return self._gpu_index

    def _index_search(self, q: np.ndarray, k: int, params: str) -> tuple[np.ndarray, np.ndarray]:
        gpu = self._gpu()
        on_gpu = gpu is not None and k <= 2048  # GPU top-k selection stops at 2048
        index = gpu if on_gpu else self._index
        # setting parameters costs about as much as a small search: only when they change
        if self._applied is None or self._applied[0] is not index or self._applied[1] != params:
            _apply_params(index, params, self._binary, gpu=on_gpu)
            self._applied = (index, params)
        return index.search(q, k)

    def _rescore(self, q: np.ndarray, labels: np.ndarray, k: int) -> list[list[Hit]]:
        """Exact scores from the raw vectors of every candidate, fetched in one query. Ids
        that are no longer in the database (tombstones) drop out here."""
        candidates = np.unique(labels[labels >= 0])
        rows = self._conn.execute(
            f"SELECT {_WORK_COLUMNS}, vector FROM works WHERE id IN {_IDS}",
            (json.dumps(candidates.tolist()),),
        ).fetchall()
        if not rows:
            return [[] for _ in range(len(q))]
        rows.sort(key=lambda r: r[0])
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = self._decode([r[-1] for r in rows])
        results = []
        for qi in range(len(q)):
            lab = labels[qi][labels[qi] >= 0]
            pos = np.searchsorted(ids, lab)
            pos = np.unique(pos[(pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == lab)])
            if self._binary:
                hamming = np.bitwise_count(matrix[pos] ^ q[qi]).sum(axis=1, dtype=np.int64)
                scores = 1.0 - 2.0 * hamming / self._dim
            else:
                hamming = None
                scores = matrix[pos].astype(np.float64) @ q[qi].astype(np.float64)
            order = np.lexsort((ids[pos], -scores))[:k]  # best score first, then oldest id
            results.append(
                [
                    Hit(
                        work=Work(*rows[pos[j]][:-1]),
                        score=float(scores[j]),
                        hamming=None if hamming is None else int(hamming[j]),
                    )
                    for j in order
                ]
            )
        return results

    def _decode(self, blobs: list[bytes]) -> np.ndarray:
        dtype = np.uint8 if self._binary else np.dtype("<f4")
        if not blobs:
            return np.zeros((0, self._width), dtype=dtype)
        raw = np.frombuffer(b"".join(blobs), dtype=dtype)
        if raw.size != len(blobs) * self._width:
            raise StoreError(f"{self._db_path}: a stored vector is not {self._width} wide")
        return raw.reshape(len(blobs), self._width).astype(np.uint8 if self._binary else np.float32)

    def _fetch_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, sorted; their vectors)."""
        rows = self._conn.execute(
            f"SELECT id, vector FROM works WHERE id IN {_IDS} ORDER BY id",
            (json.dumps(np.asarray(ids).tolist()),),
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), self._decode([r[1] for r in rows])

    def _iter_vectors(self, query: str, args: tuple) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (ids, vectors) for ``query`` (which selects id, vector WHERE id > ? AND
        ... ORDER BY id LIMIT ?): keyset pagination, so no read lock is held for long."""
        last = 0
        while True:
            rows = self._conn.execute(query, (last, *args, _READ_CHUNK)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield np.array([r[0] for r in rows], dtype=np.int64), self._decode([r[1] for r in rows])

    def _index_add(self, vecs: np.ndarray, ids: np.ndarray) -> None:
        self._index.add_with_ids(vecs, ids)
        self._pending += len(ids)
        self._gpu_index = None

    def _index_remove(self, ids: np.ndarray) -> None:
        try:
            self._index.remove_ids(ids)
        except RuntimeError:  # HNSW cannot remove: leave tombstones, re-scoring drops them
            self._tombstones += len(ids)
        self._pending += len(ids)
        self._gpu_index = None

    def _after_commit(self, generation: int, apply) -> None:
        """Bring the index from ``generation`` to the one just committed: apply our own change
        when nobody else wrote in between, else replay the delta from the database."""
        try:
            if generation == self._gen:
                apply()
                self._gen = generation + 1
            else:
                self._catch_up()
            self._maybe_rebuild()
        except BaseException:
            self._index = None  # inconsistent now; rebuilt from the database on next use
            raise
        self._maybe_persist()

    def _current_generation(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def _sync(self) -> None:
        """Catch up with commits made by other processes (one cheap query when none)."""
        if self._index is None:
            self._load_or_rebuild()
        elif self._current_generation() != self._gen:
            self._catch_up()
            self._maybe_rebuild()

    def _catch_up(self) -> None:
        target = self._current_generation()
        if target == self._gen:
            return
        n = 0
        for ids, vecs in self._iter_vectors(
            "SELECT id, vector FROM works WHERE id > ? AND gen > ? AND gen <= ? "
            "ORDER BY id LIMIT ?",
            (self._gen, target),
        ):
            self._index_add(vecs, ids)
            n += len(ids)
        gone = np.array(
            [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM removed WHERE gen > ? AND gen <= ?", (self._gen, target)
                )
            ],
            dtype=np.int64,
        )
        if len(gone):
            self._index_remove(gone)
        self._gen = target

    def _count(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
        return int(row[0])

    def _wanted_type(self, count: int) -> str:
        """The index type a build of ``count`` vectors should use."""
        spec = self._requested
        if spec == "auto":
            spec = default_index_type(count, self._dim, self._binary)
        probe = _make_index(spec, self._dim, self._binary)
        return spec if count >= _min_train(probe, self._binary) else _exact_type(self._binary)

    def _maybe_rebuild(self) -> None:
        count = self._count()
        wanted = self._wanted_type(count)
        current = self._index_type
        rebuild = self._tombstones > _TOMBSTONE_MAX * max(1, self._index.ntotal)
        if wanted != current:
            exact = _exact_type(self._binary)
            if self._requested != "auto" or current == exact:
                rebuild = True  # a requested index became trainable, or the store outgrew exact
            elif wanted == exact:
                # shrunk back: only well below the threshold, so a store hovering around it
                # does not flip between index types
                limit = EXACT_MAX_BINARY if self._binary else EXACT_MAX_FLOAT
                rebuild = rebuild or count < limit // 2
            # approximate -> approximate with other lists: left to the growth rule below
        # retrain on a larger sample while that still adds points per list (auto: nlist grows)
        grown = count >= _RETRAIN_GROWTH * max(1, self._trained_count)
        if grown and _ivf_of(self._index, self._binary) is not None:
            cap = _max_train(self._index, self._binary)
            rebuild = rebuild or self._requested == "auto" or self._trained_count < cap
        if rebuild:
            self._rebuild(self._wanted_type(count))

    def _rebuild(self, spec: str) -> None:
        """Build the index from the database. Reads rows of generation <= g in chunks (no long
        lock), then replays whatever was committed meanwhile."""
        generation = self._current_generation()
        index = _make_index(spec, self._dim, self._binary)
        trained = 0
        if not index.is_trained:
            query = "SELECT id FROM works WHERE gen <= ?"
            ids = np.array([r[0] for r in self._conn.execute(query, (generation,))], dtype=np.int64)
            n = min(len(ids), max(_min_train(index, self._binary), _max_train(index, self._binary)))
            rng = np.random.default_rng(generation)
            sample = np.sort(rng.choice(ids, size=n, replace=False))
            _, train = self._fetch_vectors(sample)
            ivf = _ivf_of(index, self._binary)
            if ivf is not None and not self._binary:
                ivf.cp.niter = 10  # k-means converges well enough for candidate generation
            index.train(train)
            trained = len(ids)
        for ids, vecs in self._iter_vectors(
            "SELECT id, vector FROM works WHERE id > ? AND gen <= ? ORDER BY id LIMIT ?",
            (generation,),
        ):
            index.add_with_ids(vecs, ids)
        self._index, self._index_type, self._gen = index, spec, generation
        self._trained_count, self._tombstones = trained, 0
        self._pending = max(1, index.ntotal)  # a rebuild is worth saving at once
        self._gpu_index = None
        self._catch_up()

    def _load_or_rebuild(self) -> None:
        """Load the saved index and replay the delta since it was written; rebuild when there
        is none (new store, deleted index, crash before the first write)."""
        state_path = self.path / INDEX_STATE
        if not (state_path.exists() and self._load_index(state_path)):
            self._rebuild(self._wanted_type(self._count()))
        else:
            self._catch_up()
            self._maybe_rebuild()
        self._maybe_persist()

    def _load_index(self, state_path: Path) -> bool:
        """Load the index index.json points at; False when that file is gone."""
        remedy = f"delete it to rebuild the index from {DB_NAME}"
        try:
            state = json.loads(state_path.read_text())
            file_name = state["file"]
            generation, ntotal = int(state["generation"]), int(state["ntotal"])
            fmt, spec = state["format"], str(state["index_type"])
            trained, tombstones = int(state["trained_count"]), int(state["tombstones"])
            if not _INDEX_FILE.fullmatch(file_name):
                raise ValueError(f"bad index file name {file_name!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{state_path}: corrupt index state ({exc}); {remedy}") from None
        if fmt != STORE_FORMAT:
            raise StoreError(
                f"{state_path}: index format {fmt}; this version of aigcguard reads format "
                f"{STORE_FORMAT}"
            )
        index_path = self.path / file_name
        if not index_path.exists():
            return False
        if generation > self._current_generation():
            raise StoreError(
                f"{index_path}: index is newer than {DB_NAME} (generation {generation}); {remedy}"
            )
        try:
            index = (faiss.read_index_binary if self._binary else faiss.read_index)(str(index_path))
        except RuntimeError as exc:
            reason = _faiss_message(exc)
            raise StoreError(f"{index_path}: corrupt index file ({reason}); {remedy}") from None
        if index.d != self._dim or index.ntotal != ntotal:
            raise StoreError(
                f"{index_path}: index holds {index.ntotal} vectors of dimension {index.d}, "
                f"{INDEX_STATE} says {ntotal} of dimension {self._dim}; {remedy}"
            )
        self._index, self._index_type, self._gen = index, spec, generation
        self._trained_count, self._tombstones, self._pending = trained, tombstones, 0
        self._saved_bytes_per_vector = index_path.stat().st_size / max(1, ntotal)
        self._gpu_index = None
        return True

    def _maybe_persist(self) -> None:
        if not self._pending:
            return
        ntotal = self._index.ntotal
        per_vector = self._saved_bytes_per_vector or (self._width * (1 if self._binary else 4) + 8)
        small = ntotal * per_vector <= _PERSIST_SMALL_BYTES
        if small or self._pending >= _PERSIST_FRACTION * ntotal:
            self._try_persist()

    def _try_persist(self) -> None:
        try:
            self._persist()
        except (OSError, RuntimeError, sqlite3.OperationalError) as exc:
            # works.sqlite already holds every change; the index is replayed from it later
            message = f"{self.path}: could not write the index ({exc}); will retry"
            warnings.warn(message, stacklevel=4)

    def _persist(self) -> None:
        """Write the index under a new name, then point index.json at it; both atomic. Done
        under the database write lock, and only if no other process has moved the store on
        (its own index is then the one to save)."""
        with self._write():
            if self._current_generation() != self._gen:
                return
            name = f"index.{self._gen}.faiss"
            _write_index_file(self._index, self.path / name, self._binary)
            state = {
                "format": STORE_FORMAT,
                "file": name,
                "generation": self._gen,
                "index_type": self._index_type,
                "ntotal": int(self._index.ntotal),
                "trained_count": self._trained_count,
                "tombstones": self._tombstones,
                "written": _now(),
            }
            _write_atomic(self.path / INDEX_STATE, (json.dumps(state, indent=1) + "\n").encode())
            for old in self.path.glob("index.*.faiss"):
                if old.name != name:
                    old.unlink(missing_ok=True)
        self._pending = 0
        size = (self.path / name).stat().st_size
        self._saved_bytes_per_vector = size / max(1, self._index.ntotal)
