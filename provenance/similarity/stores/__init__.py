"""Similarity stores: registered works and their vectors, searchable by vector.

Every store implements :class:`Store` (a ``typing.Protocol``) and is chosen by the location's
URI scheme through :data:`STORES`: a plain path is a FAISS store directory
(:class:`FaissStore`), ``milvus://HOST:PORT/COLLECTION`` and
``milvus-lite://FILE.db/COLLECTION`` a Milvus collection (:class:`MilvusStore`).

    store = open_store("refs")                         # or "milvus://host:19530/refs"
    hits = store.search(vectors, k=10)

Modules: ``protocol`` (the protocol and result types), ``schemes`` (the registry),
``catalogue`` (the FAISS store's SQLite catalogue), ``faiss_policy`` (index choice and
rebuilds), ``faiss_files`` (index files), ``faiss_gpu`` (GPU search), ``faiss_store``, ``milvus``.
"""

# the built-in stores register their schemes in STORES when imported
from aigcguard.provenance.similarity.stores.faiss_store import FaissStore
from aigcguard.provenance.similarity.stores.milvus import MilvusStore
from aigcguard.provenance.similarity.stores.protocol import (
    RERANK_FACTOR,
    STORE_FORMAT,
    Hit,
    NewWork,
    Store,
    StoreError,
    StoreInfo,
    Work,
)
from aigcguard.provenance.similarity.stores.schemes import (
    LOCAL_SCHEME,
    STORES,
    create_store,
    is_local,
    open_store,
    store_class,
    store_scheme,
)

__all__ = [
    "LOCAL_SCHEME",
    "RERANK_FACTOR",
    "STORES",
    "STORE_FORMAT",
    "FaissStore",
    "Hit",
    "MilvusStore",
    "NewWork",
    "Store",
    "StoreError",
    "StoreInfo",
    "Work",
    "create_store",
    "is_local",
    "open_store",
    "store_class",
    "store_scheme",
]
