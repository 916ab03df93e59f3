"""The FAISS store: which registered reference works does this image copy?

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

Describing images is not done here: the store takes vectors (see :mod:`.protocol`). The parts:
:mod:`.catalogue` (works.sqlite), :mod:`.faiss_policy` (which index, when to rebuild),
:mod:`.faiss_files` (index files), :mod:`.faiss_gpu` (searching on a GPU copy).

    store = FaissStore.create("refs", embedder="clip:ViT-B-32/openai", dim=512)
    ids = store.add([NewWork(path="a.jpg", sha256=digest)], vectors)   # vectors: N x 512
    hits = store.search(query_vectors, k=10)                             # best first
"""

from __future__ import annotations

import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aigcguard.provenance.similarity.stores import faiss_policy as policy
from aigcguard.provenance.similarity.stores.catalogue import (
    DB_NAME,
    Catalogue,
    check_vectors,
    check_work,
    create_catalogue,
    new_meta,
)
from aigcguard.provenance.similarity.stores.faiss_files import (
    INDEX_STATE,
    IndexState,
    index_file_name,
    read_index,
    read_state,
    write_index,
)
from aigcguard.provenance.similarity.stores.faiss_gpu import GpuSearch
from aigcguard.provenance.similarity.stores.protocol import (
    RERANK_FACTOR,
    Hit,
    NewWork,
    StoreError,
    StoreInfo,
    Work,
)
from aigcguard.provenance.similarity.stores.schemes import LOCAL_SCHEME, STORES

#: The index file is rewritten after every commit while it is this small; above it, once the
#: changes since the last write reach ``_PERSIST_FRACTION`` of the index (and on close). The
#: delta is replayed from works.sqlite on open, so a lazier write costs time, never data.
_PERSIST_SMALL_BYTES = 64 << 20
_PERSIST_FRACTION = 0.25


def _check_settings(
    embedder: str, dim: int, binary: bool, index_type: str | None, search_params: str | None
) -> tuple[str, str]:
    """ValueError for bad ``create`` arguments; else the (index type, search params) to save."""
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
        requested = policy.normalise_index_type(index_type, dim, binary)
    params = "auto"
    if search_params is not None and search_params.strip().lower() != "auto":
        params = search_params.strip()
        policy.check_search_params(params, requested, dim, binary)
    return requested, params


def _check_empty_dir(path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise StoreError(f"{path}: exists and is not a directory")
        if (path / DB_NAME).exists():
            raise StoreError(f"{path}: a store already exists here; open it instead")
        if any(path.iterdir()):
            raise StoreError(f"{path}: directory is not empty; a store needs its own")


@STORES.register(LOCAL_SCHEME, form="a directory path")
class FaissStore:
    """A directory of registered works searchable by vector. See the module docstring.

    Use :meth:`create` or :meth:`open`, and :meth:`close` (or ``with``) when done: closing
    writes the index if it lags behind. Methods are safe to call from several threads (one
    lock); several processes may share a store, each sees the others' commits on its next
    call.
    """

    def __init__(self, path: Path, catalogue: Catalogue, meta: dict[str, str]):
        # Not for direct use: create() and open() check the directory first.
        self.path = path
        self._cat = catalogue
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
        self._gpu = GpuSearch(path, self._binary)
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
    ) -> FaissStore:
        """Create an empty store in ``path`` (a new or empty directory).

        ``embedder`` is an opaque spec saved for callers to check (``clip:ViT-B-32/openai``,
        ``pdq``). ``dim`` is the vector length (bits for binary stores, a multiple of 8).
        ``index_type`` fixes a faiss factory string instead of the size policy
        (:func:`~.faiss_policy.default_index_type`); ``search_params`` fixes e.g.
        ``nprobe=64`` instead of the default for the index.
        """
        path = Path(path)
        requested, params = _check_settings(embedder, dim, binary, index_type, search_params)
        _check_empty_dir(path)
        path.mkdir(parents=True, exist_ok=True)
        create_catalogue(path, new_meta(embedder.strip(), int(dim), binary, requested, params))
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> FaissStore:
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
        catalogue, meta = Catalogue.open(db)
        try:
            store = cls(path, catalogue, meta)
            with store._lock, catalogue.guard():
                store._load_or_rebuild()
        except BaseException:
            catalogue.close()
            raise
        return store

    def __enter__(self) -> FaissStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._index_type}, generation {self._gen}"
        return f"FaissStore({str(self.path)!r}, {self._embedder!r}, {state})"

    def close(self) -> None:
        """Write the index if it lags behind the database, then release the database."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._pending and self._index is not None:
                    with self._cat.guard():
                        self._try_persist()
            finally:
                self._closed = True
                self._gpu.invalidate()
                self._cat.close()

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
        rows = [check_work(w, i) for i, w in enumerate(works)]
        if not rows:
            return []
        with self._lock, self._cat.guard():
            self._check_open()
            self._sync()
            generation, ids = self._cat.insert(rows, vecs)
            new = np.array(ids, dtype=np.int64)
            self._after_commit(generation, lambda: self._index_add(vecs, new))
            return ids

    def remove(self, ids: Sequence[int]) -> int:
        """Remove works by id in one transaction; returns how many existed. Unknown ids are
        ignored; removed ids are never reused."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        with self._lock, self._cat.guard():
            self._check_open()
            self._sync()
            generation, found = self._cat.delete(wanted)
            if not found:
                return 0
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
        with self._lock, self._cat.guard():
            self._check_open()
            self._sync()
            ntotal = self._index.ntotal
            if ntotal == 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            exact = self._index_type == policy.exact_type(self._binary)
            fetch = k if exact else k * RERANK_FACTOR
            fetch = min(ntotal, fetch + min(self._tombstones, fetch))
            params = "" if exact else (params or self._search_params())  # exact: nothing to tune
            _, labels = self._gpu.search(self._index, q, fetch, params)
            return self._rescore(q, labels, k)

    def get(self, ids: Sequence[int]) -> list[Work]:
        """The works with these ids, in the same order; KeyError names any unknown id."""
        wanted = [int(i) for i in ids]
        with self._lock, self._cat.guard():
            self._check_open()
            found = self._cat.works(wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing[:10]))}")
        return [found[i] for i in wanted]

    def find(
        self, *, path: str | os.PathLike | None = None, sha256: str | None = None
    ) -> list[Work]:
        """Works registered with this path and/or sha256 (both must match when both are
        given), oldest first."""
        if path is None and sha256 is None:
            raise ValueError("find() needs path=, sha256= or both")
        with self._lock, self._cat.guard():
            self._check_open()
            return self._cat.find(path, sha256)

    def ids(self) -> list[int]:
        """Every registered work's id, ascending."""
        with self._lock, self._cat.guard():
            self._check_open()
            return self._cat.ids()

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these works, one row per id in order (float32 N x dim, or
        uint8 N x dim/8 for binary stores); KeyError names any unknown id."""
        wanted = np.asarray([int(i) for i in ids], dtype=np.int64)
        with self._lock, self._cat.guard():
            self._check_open()
            found, matrix = self._cat.fetch_vectors(np.unique(wanted))
        pos = np.minimum(np.searchsorted(found, wanted), max(len(found) - 1, 0))
        ok = found[pos] == wanted if len(found) else np.zeros(len(wanted), dtype=bool)
        if not ok.all():
            missing = wanted[~ok][:10].tolist()
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing))}")
        return matrix[pos] if len(wanted) else matrix[:0]

    def info(self) -> StoreInfo:
        with self._lock, self._cat.guard():
            self._check_open()
            self._sync()
            meta = self._cat.meta()
            self._gpu.copy_of(self._index)
            size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
            return StoreInfo(
                path=str(self.path),
                format=int(meta["format"]),
                embedder=self._embedder,
                dim=self._dim,
                binary=self._binary,
                count=int(meta["count"]),
                index_type=self._index_type,
                index_on_gpu=self._gpu.enabled,
                size_bytes=size,
                created=self._created,
                updated=meta["updated"],
                index_type_requested=self._requested,
                search_params=self._search_params(),
            )

    # ---- internals: checks and scores

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    def _check_vectors(self, x, what: str, *, allow_1d: bool) -> np.ndarray:
        return check_vectors(x, what, dim=self._dim, binary=self._binary, allow_1d=allow_1d)

    def _search_params(self) -> str:
        if self._index_type == policy.exact_type(self._binary):
            return ""
        if self._params != "auto":
            return self._params
        return policy.default_search_params(self._index, self._binary)

    def _rescore(self, q: np.ndarray, labels: np.ndarray, k: int) -> list[list[Hit]]:
        """Exact scores from the raw vectors of every candidate, fetched in one query. Ids
        that are no longer in the database (tombstones) drop out here."""
        works, ids, matrix = self._cat.works_with_vectors(np.unique(labels[labels >= 0]))
        if not works:
            return [[] for _ in range(len(q))]
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
                        work=works[pos[j]],
                        score=float(scores[j]),
                        hamming=None if hamming is None else int(hamming[j]),
                    )
                    for j in order
                ]
            )
        return results

    # ---- internals: keeping the index in step with the catalogue

    def _index_add(self, vecs: np.ndarray, ids: np.ndarray) -> None:
        self._index.add_with_ids(vecs, ids)
        self._pending += len(ids)
        self._gpu.invalidate()

    def _index_remove(self, ids: np.ndarray) -> None:
        try:
            self._index.remove_ids(ids)
        except RuntimeError:  # HNSW cannot remove: leave tombstones, re-scoring drops them
            self._tombstones += len(ids)
        self._pending += len(ids)
        self._gpu.invalidate()

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

    def _sync(self) -> None:
        """Catch up with commits made by other processes (one cheap query when none)."""
        if self._index is None:
            self._load_or_rebuild()
        elif self._cat.generation() != self._gen:
            self._catch_up()
            self._maybe_rebuild()

    def _catch_up(self) -> None:
        target = self._cat.generation()
        if target == self._gen:
            return
        for ids, vecs in self._cat.added_between(self._gen, target):
            self._index_add(vecs, ids)
        gone = self._cat.removed_between(self._gen, target)
        if len(gone):
            self._index_remove(gone)
        self._gen = target

    def _wanted_type(self, count: int) -> str:
        """The index type a build of ``count`` vectors should use."""
        return policy.wanted_type(self._requested, count, self._dim, self._binary)

    def _maybe_rebuild(self) -> None:
        count = self._cat.count()
        if policy.should_rebuild(
            self._index,
            current=self._index_type,
            requested=self._requested,
            count=count,
            dim=self._dim,
            binary=self._binary,
            trained_count=self._trained_count,
            tombstones=self._tombstones,
        ):
            self._rebuild(self._wanted_type(count))

    def _rebuild(self, spec: str) -> None:
        """Build the index from the database. Reads rows of generation <= g in chunks (no long
        lock), then replays whatever was committed meanwhile."""
        generation = self._cat.generation()
        index = policy.make_index(spec, self._dim, self._binary)
        trained = 0
        if not index.is_trained:
            ids = self._cat.ids_up_to(generation)
            wanted = max(
                policy.min_train(index, self._binary), policy.max_train(index, self._binary)
            )
            rng = np.random.default_rng(generation)
            sample = np.sort(rng.choice(ids, size=min(len(ids), wanted), replace=False))
            _, train = self._cat.fetch_vectors(sample)
            ivf = policy.ivf_of(index, self._binary)
            if ivf is not None and not self._binary:
                ivf.cp.niter = 10  # k-means converges well enough for candidate generation
            index.train(train)
            trained = len(ids)
        for ids, vecs in self._cat.vectors_up_to(generation):
            index.add_with_ids(vecs, ids)
        self._index, self._index_type, self._gen = index, spec, generation
        self._trained_count, self._tombstones = trained, 0
        self._pending = max(1, index.ntotal)  # a rebuild is worth saving at once
        self._gpu.invalidate()
        self._catch_up()

    # ---- internals: the index files

    def _load_or_rebuild(self) -> None:
        """Load the saved index and replay the delta since it was written; rebuild when there
        is none (new store, deleted index, crash before the first write)."""
        state_path = self.path / INDEX_STATE
        if not (state_path.exists() and self._load_index(state_path)):
            self._rebuild(self._wanted_type(self._cat.count()))
        else:
            self._catch_up()
            self._maybe_rebuild()
        self._maybe_persist()

    def _load_index(self, state_path: Path) -> bool:
        """Load the index index.json points at; False when that file is gone."""
        state = read_state(state_path)
        index_path = self.path / state.file
        if not index_path.exists():
            return False
        index = read_index(
            index_path,
            state,
            dim=self._dim,
            binary=self._binary,
            generation=self._cat.generation(),
        )
        self._index, self._index_type, self._gen = index, state.index_type, state.generation
        self._trained_count, self._tombstones = state.trained_count, state.tombstones
        self._pending = 0
        self._saved_bytes_per_vector = index_path.stat().st_size / max(1, state.ntotal)
        self._gpu.invalidate()
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
        with self._cat.write():
            if self._cat.generation() != self._gen:
                return
            state = IndexState(
                file=index_file_name(self._gen),
                generation=self._gen,
                index_type=self._index_type,
                ntotal=int(self._index.ntotal),
                trained_count=self._trained_count,
                tombstones=self._tombstones,
            )
            size = write_index(self.path, self._index, self._binary, state)
        self._pending = 0
        self._saved_bytes_per_vector = size / max(1, self._index.ntotal)
