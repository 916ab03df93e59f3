"""What every similarity store is: the :class:`Store` protocol and the results it returns.

A store keeps registered reference works, one vector each, and answers "which works are
nearest to these vectors?". Vectors are L2-normalised float32 (``dim`` floats, score = cosine)
or binary codes (``dim`` bits packed into ``dim / 8`` uint8 per row, e.g. 256-bit PDQ hashes;
score = 1 - 2 * hamming / bits, the cosine of the +-1 vectors). Scores always come from the
raw stored vectors, never from compressed codes: an approximate index only proposes
``RERANK_FACTOR`` x k candidates.

Implementations: :class:`~.faiss_store.FaissStore` (a directory) and
:class:`~.milvus.MilvusStore` (a Milvus collection). A new store implements :class:`Store`
and registers its URI scheme in :data:`~.schemes.STORES`; nothing else needs to know it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import numpy as np

from aigcguard.results import JsonResult

STORE_FORMAT = 1
#: An approximate index proposes this many candidates per requested hit; all are re-scored
#: exactly with the raw vectors.
RERANK_FACTOR = 10


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
    store was created with (``auto``: chosen by size, see
    :func:`~.faiss_policy.default_index_type`). They differ while a requested trainable index
    waits for enough vectors (exact search until then). ``search_params`` is the faiss
    parameter string applied to searches (``nprobe=..``, ``efSearch=..``; empty for exact
    indexes)."""

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


def utc_now() -> str:
    """The time a work was added or a store updated: ISO 8601 UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@runtime_checkable
class Store(Protocol):
    """What :class:`~aigcguard.provenance.similarity.index.SimilarityIndex` and the CLI need
    from a store. ``location`` is what :func:`~.schemes.open_store` was given: a directory
    path, or a URI of the store's scheme. ``embedder`` is the descriptor spec the vectors
    came from (the field keeps its old name: the on-disk format is unchanged)."""

    @classmethod
    def create(
        cls,
        location: str | os.PathLike,
        *,
        embedder: str,
        dim: int,
        binary: bool = False,
        index_type: str | None = None,
    ) -> Store:
        """A new, empty store; :class:`StoreError` when one is already there."""
        ...

    @classmethod
    def open(cls, location: str | os.PathLike) -> Store:
        """An existing store; :class:`StoreError` naming the location and the problem."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def add(self, works: Sequence[NewWork], vectors: np.ndarray) -> list[int]:
        """Register works with their vectors (row i is works[i]); the new ids, in order."""
        ...

    def remove(self, ids: Sequence[int]) -> int:
        """Remove works by id; how many existed. Ids are never reused."""
        ...

    def search(
        self, queries: np.ndarray, k: int = 10, *, params: str | None = None
    ) -> list[list[Hit]]:
        """The ``k`` best works per query (a 1-d vector is one query), best first."""
        ...

    def get(self, ids: Sequence[int]) -> list[Work]:
        """The works with these ids, in order; KeyError names any unknown id."""
        ...

    def find(self, *, path: str | None = None, sha256: str | None = None) -> list[Work]:
        """Works registered with this path and/or sha256, oldest first."""
        ...

    def ids(self) -> list[int]:
        """Every registered work's id, ascending."""
        ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these works, one row per id in order."""
        ...

    def info(self) -> StoreInfo: ...
