"""A second vector store: Milvus, behind the :class:`~.protocol.Store` protocol, as FAISS.

For reference corpora beyond one machine. A store is a Milvus collection (with its settings
in a small companion collection ``NAME__meta``), addressed by URI:

    milvus://HOST:PORT/COLLECTION          a Milvus server (standalone or cluster)
    milvus-lite://PATH/TO/FILE.db/COLLECTION   Milvus Lite, a local file (tests, small set-ups)

Works (path, sha256, title, creator, licence, source, added) are scalar fields beside the
vector, so a store needs nothing on local disk. Scores are computed here from the stored raw
vectors, as in the FAISS store: Milvus only proposes candidates (``RERANK_FACTOR`` x k for
approximate indexes). Binary codes (PDQ) are stored as +-1 float vectors, whose cosine is
exactly ``1 - 2 * hamming / bits`` (Milvus Lite has no binary vectors). Ids come from a counter
in the meta collection and are never reused.

Requires ``pymilvus`` (``pip install 'aigc-guard[milvus]'``; Milvus Lite comes with it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from aigcguard.provenance.similarity.stores.protocol import (
    RERANK_FACTOR,
    STORE_FORMAT,
    Hit,
    NewWork,
    StoreError,
    StoreInfo,
    Work,
    utc_now,
)
from aigcguard.provenance.similarity.stores.schemes import STORES, store_scheme

SCHEMES = ("milvus", "milvus-lite")
_TEXT = ("path", "sha256", "title", "creator", "licence", "source", "added")
_MAX_TEXT = 4096
#: Milvus index types by request; FLAT is exact
INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW")


def is_milvus_uri(spec: str | Path) -> bool:
    return store_scheme(spec) in SCHEMES


def _parse(uri: str) -> tuple[str, str]:
    """(client URI, collection) of a store URI."""
    parsed = urlparse(uri)
    parts = (parsed.netloc + parsed.path).rstrip("/")
    if "/" not in parts:
        raise StoreError(f"{uri}: expected {parsed.scheme}://.../COLLECTION")
    where, collection = parts.rsplit("/", 1)
    if not collection.replace("_", "").isalnum():
        raise StoreError(f"{uri}: collection names are letters, digits and underscores")
    if parsed.scheme == "milvus":
        return f"http://{where}", collection
    return str(Path(where).expanduser()), collection


@STORES.register("milvus", form="milvus://HOST:PORT/COLLECTION")
@STORES.register("milvus-lite", form="milvus-lite://FILE.db/COLLECTION")
class MilvusStore:
    """A :class:`~.protocol.Store`: the same methods and results as the FAISS store."""

    def __init__(self, uri: str, client, collection: str, meta: dict):
        self.path = uri
        self._client = client
        self._name = collection
        self._meta_name = f"{collection}__meta"
        self._meta = meta
        self._dim = int(meta["dim"])
        self._binary = bool(meta["binary"])
        self._lock = threading.RLock()
        self._closed = False
        self._dirty = False  # inserts not yet flushed into sealed, indexed segments

    # ---- construction

    @staticmethod
    def _connect(uri: str):
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise StoreError(
                f"{uri}: Milvus stores need pymilvus (pip install 'aigc-guard[milvus]')"
            ) from None
        target, collection = _parse(uri)
        if not target.startswith("http"):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            return MilvusClient(target), collection
        except Exception as exc:  # pymilvus raises its own and gRPC kinds
            raise StoreError(f"{uri}: cannot connect to Milvus ({exc})") from None

    @classmethod
    def create(
        cls,
        uri: str,
        *,
        embedder: str,
        dim: int,
        binary: bool = False,
        index_type: str | None = None,
    ) -> MilvusStore:
        from pymilvus import DataType, MilvusClient

        index_type = (index_type or "FLAT").upper()
        if index_type not in INDEX_TYPES:
            raise ValueError(f"Milvus index type must be one of {INDEX_TYPES}, not {index_type}")
        if dim < 1 or (binary and dim % 8):
            raise ValueError(f"dim must be positive (a multiple of 8 for binary), got {dim}")
        client, name = cls._connect(uri)
        if client.has_collection(name) or client.has_collection(f"{name}__meta"):
            raise StoreError(f"{uri}: a collection of that name already exists")
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for f in _TEXT:
            schema.add_field(
                f,
                DataType.VARCHAR,
                max_length=_MAX_TEXT,
                nullable=f not in ("path", "sha256", "added"),
            )
        params = client.prepare_index_params()
        extra = {"nlist": 1024} if index_type == "IVF_FLAT" else {}
        if index_type == "HNSW":
            extra = {"M": 32, "efConstruction": 200}
        params.add_index("vector", index_type=index_type, metric_type="IP", params=extra)
        meta = {
            "format": STORE_FORMAT,
            "embedder": embedder,
            "dim": int(dim),
            "binary": bool(binary),
            "index_type": index_type,
            "created": utc_now(),
            "updated": utc_now(),
            "next_id": 1,
        }
        mschema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        mschema.add_field("id", DataType.INT64, is_primary=True)
        mschema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one
        mschema.add_field("meta", DataType.VARCHAR, max_length=65535)
        mparams = client.prepare_index_params()
        mparams.add_index("vector", index_type="FLAT", metric_type="L2")
        try:
            client.create_collection(name, schema=schema, index_params=params)
            client.create_collection(f"{name}__meta", schema=mschema, index_params=mparams)
            client.insert(
                f"{name}__meta", [{"id": 0, "vector": [0.0, 0.0], "meta": json.dumps(meta)}]
            )
        except Exception as exc:
            raise StoreError(f"{uri}: cannot create the collections ({exc})") from None
        return cls(uri, client, name, meta)

    @classmethod
    def open(cls, uri: str) -> MilvusStore:
        client, name = cls._connect(uri)
        if not client.has_collection(f"{name}__meta") or not client.has_collection(name):
            raise StoreError(f"{uri}: no aigc-guard store in that collection")
        try:  # a collection another process wrote is "released" until loaded
            client.load_collection(f"{name}__meta")
            client.load_collection(name)
        except Exception as exc:
            raise StoreError(f"{uri}: cannot load the collection ({exc})") from None
        rows = client.get(f"{name}__meta", ids=[0], output_fields=["meta"])
        if not rows:
            raise StoreError(f"{uri}: the store's settings are missing")
        meta = json.loads(rows[0]["meta"])
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{uri}: store format {meta.get('format')}, expected {STORE_FORMAT}")
        return cls(uri, client, name, meta)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    def _save_meta(self) -> None:
        self._meta["updated"] = utc_now()
        self._client.upsert(
            self._meta_name, [{"id": 0, "vector": [0.0, 0.0], "meta": json.dumps(self._meta)}]
        )

    def _as_float(self, vectors: np.ndarray, what: str, allow_1d: bool) -> np.ndarray:
        v = np.asarray(vectors)
        if v.ndim == 1 and allow_1d:
            v = v[None]
        if self._binary:
            if v.dtype != np.uint8 or v.ndim != 2 or v.shape[1] != self._dim // 8:
                raise ValueError(
                    f"{what} must be uint8 N x {self._dim // 8} (packed bits), got "
                    f"{v.dtype} {v.shape}"
                )
            bits = np.unpackbits(v, axis=1).astype(np.float32)
            return (2 * bits - 1) / np.sqrt(self._dim)  # unit +-1 vectors
        if v.ndim != 2 or v.shape[1] != self._dim:
            raise ValueError(f"{what} must be N x {self._dim}, got shape {v.shape}")
        v = v.astype(np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if not np.all(np.isfinite(v)) or np.any(norms == 0):
            raise ValueError(f"{what} must be finite and non-zero")
        return v / norms

    def _row_to_work(self, row: dict) -> Work:
        return Work(int(row["id"]), *(row.get(f) for f in _TEXT))

    # ---- writes

    def add(self, works: Sequence[NewWork], vectors: np.ndarray) -> list[int]:
        works = list(works)
        vecs = self._as_float(vectors, "vectors", allow_1d=False)
        if len(works) != len(vecs):
            raise ValueError(
                f"got {len(works)} works but {len(vecs)} vectors; expected one vector per work"
            )
        if not works:
            return []
        with self._lock:
            self._check_open()
            start = int(self._meta["next_id"])
            ids = list(range(start, start + len(works)))
            # the counter moves first: a crash after it wastes ids, never reuses one
            self._meta["next_id"] = start + len(works)
            self._save_meta()
            self._insert(ids, works, vecs, utc_now())
            return ids

    def _insert(self, ids, works, vecs, added) -> None:
        rows = [
            {
                "id": i,
                "vector": v.tolist(),
                "path": str(w.path),
                "sha256": str(w.sha256).lower(),
                "title": w.title,
                "creator": w.creator,
                "licence": w.licence,
                "source": w.source,
                "added": w.added if isinstance(w, Work) and w.added else added,
            }
            for i, w, v in zip(ids, works, vecs, strict=True)
        ]
        try:
            self._client.insert(self._name, rows)
        except Exception as exc:
            raise StoreError(f"{self.path}: insert failed ({exc})") from None
        self._dirty = True

    def remove(self, ids: Sequence[int]) -> int:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        with self._lock:
            self._check_open()
            found = self._client.get(self._name, ids=wanted, output_fields=["id"])
            if not found:
                return 0
            self._client.delete(self._name, ids=[int(r["id"]) for r in found])
            self._save_meta()
            return len(found)

    # ---- reads

    def search(
        self, queries: np.ndarray, k: int = 10, *, params: str | None = None
    ) -> list[list[Hit]]:
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._as_float(queries, "queries", allow_1d=True)
        exact = self._meta["index_type"] == "FLAT"
        fetch = int(k) if exact else int(k) * RERANK_FACTOR
        with self._lock:
            self._check_open()
            if len(q) == 0:
                return []
            try:
                if self._dirty:
                    # unsealed inserts are searched by brute force, slowly (1.3 s a query
                    # at 100k in Milvus Lite); one flush after a batch of adds seals them
                    self._client.flush(self._name)
                    self._dirty = False
                found = self._client.search(
                    self._name,
                    data=q.tolist(),
                    limit=min(fetch, 16384),
                    output_fields=["vector", *_TEXT],
                    search_params={"metric_type": "IP", "params": _search_params(params)},
                )
            except Exception as exc:
                raise StoreError(f"{self.path}: search failed ({exc})") from None
        out = []
        for qi, hits in zip(q, found, strict=True):
            if not hits:
                out.append([])
                continue
            vecs = np.array([h["entity"]["vector"] for h in hits], dtype=np.float64)
            scores = vecs @ qi.astype(np.float64)  # exact, from the stored vectors
            order = np.argsort(-scores, kind="stable")[: int(k)]
            res = []
            for j in order:
                entity = dict(hits[j]["entity"], id=hits[j]["id"])
                score = float(scores[j])
                hamming = None
                if self._binary:
                    hamming = round((1 - score) * self._dim / 2)
                    score = 1 - 2 * hamming / self._dim
                res.append(Hit(self._row_to_work(entity), score, hamming))
            out.append(res)
        return out

    def get(self, ids: Sequence[int]) -> list[Work]:
        wanted = [int(i) for i in ids]
        with self._lock:
            self._check_open()
            rows = self._client.get(self._name, ids=sorted(set(wanted)), output_fields=list(_TEXT))
        found = {int(r["id"]): self._row_to_work(r) for r in rows}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing[:10]))}")
        return [found[i] for i in wanted]

    def find(self, *, path: str | None = None, sha256: str | None = None) -> list[Work]:
        clauses = []
        if path is not None:
            clauses.append(f"path == {json.dumps(str(path))}")
        if sha256 is not None:
            clauses.append(f"sha256 == {json.dumps(str(sha256).lower())}")
        if not clauses:
            raise ValueError("find() needs path=, sha256= or both")
        with self._lock:
            self._check_open()
            rows = self._client.query(
                self._name, filter=" and ".join(clauses), output_fields=["id", *_TEXT]
            )
        return sorted((self._row_to_work(r) for r in rows), key=lambda w: w.id)

    def ids(self) -> list[int]:
        """Every registered work's id, ascending."""
        out: list[int] = []
        with self._lock:
            self._check_open()
            last = 0
            while True:  # in pages: a query returns at most 16,384 rows
                rows = self._client.query(
                    self._name, filter=f"id > {last}", output_fields=["id"], limit=16384
                )
                if not rows:
                    return sorted(out)
                page = [int(r["id"]) for r in rows]
                out += page
                last = max(page)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        wanted = [int(i) for i in ids]
        with self._lock:
            self._check_open()
            rows = self._client.get(self._name, ids=sorted(set(wanted)), output_fields=["vector"])
        found = {int(r["id"]): np.asarray(r["vector"], np.float32) for r in rows}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"{self.path}: no work with id {', '.join(map(str, missing[:10]))}")
        if not wanted:
            width = self._dim // 8 if self._binary else self._dim
            return np.zeros((0, width), np.uint8 if self._binary else np.float32)
        m = np.stack([found[i] for i in wanted])
        return np.packbits(m > 0, axis=1) if self._binary else m

    def info(self) -> StoreInfo:
        with self._lock:
            self._check_open()
            rows = self._client.query(self._name, filter="", output_fields=["count(*)"])
            count = int(rows[0]["count(*)"]) if rows else 0
            m = self._meta
            return StoreInfo(
                path=self.path,
                format=int(m["format"]),
                embedder=m["embedder"],
                dim=self._dim,
                binary=self._binary,
                count=count,
                index_type=f"milvus:{m['index_type']}",
                index_on_gpu=False,
                size_bytes=0,
                created=m["created"],
                updated=m["updated"],
                index_type_requested=m["index_type"],
                search_params="",
            )


def _search_params(params: str | None) -> dict:
    """``"nprobe=64"`` / ``"ef=128"`` style overrides for Milvus search."""
    out = {}
    for part in (params or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = int(float(value))
    return out


def export_store(source, uri: str, *, batch: int = 1000, progress=None) -> MilvusStore:
    """Copy a store (FAISS or Milvus) into a new Milvus collection at ``uri``, keeping ids,
    metadata and the time each work was added. Returns the new store (open)."""
    info = source.info()
    target = MilvusStore.create(uri, embedder=info.embedder, dim=info.dim, binary=info.binary)
    ids = source.ids()
    try:
        for start in range(0, len(ids), batch):
            part = ids[start : start + batch]
            works = source.get(part)
            vecs = target._as_float(source.vectors(part), "vectors", allow_1d=False)
            with target._lock:
                target._insert(part, works, vecs, utc_now())
            if progress is not None:
                progress(len(part))
        target._meta["next_id"] = max([0, *ids]) + 1
        target._save_meta()
    except BaseException:
        target.close()
        raise
    return target
