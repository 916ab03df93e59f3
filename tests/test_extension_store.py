"""Adding a store: its own class implementing the ``Store`` protocol, plus one registration.

The worked example of docs/architecture.md: a toy in-memory store is registered under the
``memory://`` scheme, a :class:`SimilarityIndex` is built on it, pictures are added, searched
and found again through the library and the CLI, then the scheme is removed. The FAISS and
Milvus stores are checked against the same protocol, member by member.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.provenance.similarity.index import Reference, SimilarityIndex
from aigcguard.provenance.similarity.stores import (
    STORE_FORMAT,
    STORES,
    FaissStore,
    Hit,
    MilvusStore,
    NewWork,
    Store,
    StoreError,
    StoreInfo,
    Work,
    is_local,
    open_store,
    store_scheme,
)
from aigcguard.provenance.similarity.stores.protocol import utc_now

#: the toy store's "server": location -> its works and vectors
_SERVER: dict[str, dict] = {}


class MemoryStore:
    """A toy store: works and vectors in a dict, exact search with numpy."""

    def __init__(self, location: str, data: dict):
        self.path = location
        self._data = data

    @classmethod
    def create(cls, location, *, embedder, dim, binary=False, index_type=None) -> MemoryStore:
        if str(location) in _SERVER:
            raise StoreError(f"{location}: a store already exists here")
        _SERVER[str(location)] = {
            "meta": {"embedder": embedder, "dim": dim, "binary": binary, "created": utc_now()},
            "works": {},
            "vectors": {},
            "next_id": 1,
        }
        return cls(str(location), _SERVER[str(location)])

    @classmethod
    def open(cls, location) -> MemoryStore:
        if str(location) not in _SERVER:
            raise StoreError(f"{location}: no such store")
        return cls(str(location), _SERVER[str(location)])

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add(self, works: Sequence[NewWork], vectors: np.ndarray) -> list[int]:
        ids = []
        for work, vector in zip(works, np.asarray(vectors), strict=True):
            i = self._data["next_id"]
            self._data["next_id"] += 1
            self._data["works"][i] = Work(
                i, work.path, work.sha256.lower(), work.title, work.creator, work.licence,
                work.source, utc_now(),
            )  # fmt: skip
            if not self._data["meta"]["binary"]:
                vector = vector / np.linalg.norm(vector)
            self._data["vectors"][i] = vector
            ids.append(i)
        return ids

    def remove(self, ids: Sequence[int]) -> int:
        gone = [i for i in set(ids) if i in self._data["works"]]
        for i in gone:
            del self._data["works"][i], self._data["vectors"][i]
        return len(gone)

    def search(self, queries, k: int = 10, *, params: str | None = None) -> list[list[Hit]]:
        q = np.atleast_2d(queries)
        ids = self.ids()
        if not ids:
            return [[] for _ in q]
        stored = np.stack([self._data["vectors"][i] for i in ids])
        out = []
        for query in q:
            if self._data["meta"]["binary"]:  # packed bits: score = 1 - 2 * hamming / bits
                hamming = np.unpackbits(stored ^ query, axis=1).sum(axis=1)
                scores = 1 - 2 * hamming / self._data["meta"]["dim"]
            else:
                hamming = None
                scores = stored @ (query / np.linalg.norm(query))
            best = np.argsort(-scores, kind="stable")[:k]
            work = self._data["works"]
            out.append(
                [
                    Hit(
                        work[ids[j]], float(scores[j]), None if hamming is None else int(hamming[j])
                    )
                    for j in best
                ]
            )
        return out

    def get(self, ids: Sequence[int]) -> list[Work]:
        missing = [i for i in ids if i not in self._data["works"]]
        if missing:
            raise KeyError(f"{self.path}: no work with id {missing[0]}")
        return [self._data["works"][i] for i in ids]

    def find(self, *, path: str | None = None, sha256: str | None = None) -> list[Work]:
        return [
            w
            for w in self._data["works"].values()
            if (path is None or w.path == str(path))
            and (sha256 is None or w.sha256 == sha256.lower())
        ]

    def ids(self) -> list[int]:
        return sorted(self._data["works"])

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        return np.stack([self._data["vectors"][i] for i in ids])

    def info(self) -> StoreInfo:
        meta = self._data["meta"]
        return StoreInfo(
            path=self.path,
            format=STORE_FORMAT,
            embedder=meta["embedder"],
            dim=meta["dim"],
            binary=meta["binary"],
            count=len(self._data["works"]),
            index_type="memory",
            index_on_gpu=False,
            size_bytes=0,
            created=meta["created"],
            updated=meta["created"],
            index_type_requested="memory",
            search_params="",
        )


# ------------------------------------------------------------------- protocol conformance

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _protocol_members() -> list[str]:
    """The methods the protocol declares (typing adds __init__ and __subclasshook__)."""
    return sorted(
        name
        for name, value in vars(Store).items()
        if (inspect.isfunction(value) or isinstance(value, classmethod))
        and name not in ("__init__", "__subclasshook__")
    )


def assert_implements_store(cls: type) -> None:
    """Every protocol member is there, of the same kind (class method or not), callable the
    same way: the same positional parameters (names may differ: path, uri) and defaults, the
    same keyword-only names and defaults; extra parameters only with defaults."""
    for name in _protocol_members():
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        is_classmethod = isinstance(vars(Store)[name], classmethod)
        declared = inspect.getattr_static(cls, name)
        assert isinstance(declared, classmethod) == is_classmethod, f"{cls.__name__}.{name}"
        want = inspect.signature(getattr(Store, name)).parameters.values()
        have = inspect.signature(getattr(cls, name)).parameters
        where = f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))}"
        w_pos = [p for p in want if p.kind in _POSITIONAL]
        h_pos = [p for p in have.values() if p.kind in _POSITIONAL]
        assert len(h_pos) >= len(w_pos), where
        assert [p.default for p in h_pos[: len(w_pos)]] == [p.default for p in w_pos], where
        assert all(p.default is not p.empty for p in h_pos[len(w_pos) :]), where
        if any(p.kind is p.VAR_POSITIONAL for p in want):
            assert any(p.kind is p.VAR_POSITIONAL for p in have.values()), where
        w_kw = {p.name: p.default for p in want if p.kind is p.KEYWORD_ONLY}
        h_kw = {p.name: p for p in have.values() if p.kind is p.KEYWORD_ONLY}
        for kw, default in w_kw.items():
            assert kw in h_kw and h_kw[kw].default == default, f"{where}: {kw}"
        assert all(p.default is not p.empty for n, p in h_kw.items() if n not in w_kw), where


def test_the_faiss_store_implements_the_protocol(tmp_path):
    assert_implements_store(FaissStore)
    with FaissStore.create(tmp_path / "s", embedder="e", dim=8) as store:
        assert isinstance(store, Store)
    assert STORES.get(store_scheme(tmp_path / "s")) is FaissStore


def test_the_milvus_store_implements_the_protocol(tmp_path):
    assert_implements_store(MilvusStore)
    assert STORES.get("milvus") is MilvusStore and STORES.get("milvus-lite") is MilvusStore
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    try:
        store = MilvusStore.create(f"milvus-lite://{tmp_path}/p.db/works", embedder="e", dim=8)
    except StoreError as exc:
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    with store:
        assert isinstance(store, Store)


def test_something_else_is_not_a_store():
    assert not isinstance(object(), Store)
    with pytest.raises(TypeError, match="does not implement the Store protocol"):
        SimilarityIndex(object(), None)


# ------------------------------------------------------------------------- a new store


@pytest.fixture
def memory_scheme():
    STORES.register("memory", form="memory://NAME")(MemoryStore)  # the one registration
    try:
        yield "memory"
    finally:
        STORES.remove("memory")
        _SERVER.clear()


def test_a_registered_store_serves_a_similarity_index(tmp_path, photos, memory_scheme):
    assert_implements_store(MemoryStore)
    assert store_scheme("memory://refs") == "memory" and not is_local("memory://refs")
    files = {}
    for name in ("astronaut", "coffee", "rocket"):
        files[name] = tmp_path / f"{name}.png"
        Image.fromarray(photos[name]).save(files[name])
    query = tmp_path / "q.jpg"
    Image.fromarray(photos["coffee"]).save(query, quality=80)

    with SimilarityIndex.create("memory://refs", descriptor="pdq", device="cpu") as index:
        assert isinstance(index.store, MemoryStore) and not index.local
        report = index.add([Reference(str(f), title=n) for n, f in files.items()])
        assert report.added == [1, 2, 3] and not report.errors
        exact, copy = index.search_files([files["rocket"], query], k=2)
        assert exact.verdict == "exact" and exact.matches[0].title == "rocket"
        assert copy.matches[0].title == "coffee" and copy.matches[0].cosine > 0.9
    with SimilarityIndex.open("memory://refs", device="cpu") as again:  # the data is kept
        assert again.store.info().count == 3 and again.store.info().embedder == "pdq"
    assert isinstance(open_store("memory://refs"), Store)

    # the CLI takes the new scheme as --index without knowing it
    r = CliRunner().invoke(main, ["index", "info", "--index", "memory://refs"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 3


def test_an_unknown_scheme_names_the_known_ones(memory_scheme):
    with pytest.raises(StoreError, match=r"unknown store scheme 'nosuch'; known: .*memory"):
        open_store("nosuch://refs")
    r = CliRunner().invoke(main, ["index", "info", "--index", "nosuch://refs"])
    assert r.exit_code == 2 and "unknown store scheme 'nosuch'" in r.output
    assert "milvus-lite (milvus-lite://" in r.output


def test_a_removed_scheme_is_unknown_again(tmp_path):
    STORES.register("memory")(MemoryStore)
    STORES.remove("memory")
    with pytest.raises(StoreError, match="unknown store scheme 'memory'"):
        open_store("memory://refs")
