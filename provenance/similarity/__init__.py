"""Copy detection: which registered works a picture copies.

Descriptors turn pictures into vectors (``create_descriptor``: ``vlad``, ``pdq``,
``clip:ARCH/TAG``); a store keeps them (``stores.open_store``: a plain path is a FAISS store,
``milvus://`` or ``milvus-lite://`` a Milvus collection, chosen by URI scheme through the
``stores.STORES`` registry; every store implements the ``stores.Store`` protocol);
:class:`SimilarityIndex` searches, verifies candidates with local features and RANSAC
(``verify``), and grades each match with calibrated thresholds; ``copyeval`` measures a
configuration on a query set and ``audit`` writes a corpus-wide report.

    from aigcguard.provenance.similarity import SimilarityIndex, Reference
    with SimilarityIndex.create("refs", descriptor="vlad") as index:
        index.add([Reference("works/dawn.jpg", title="Dawn", creator="Ann")])
        [result] = index.search_files(["upload.jpg"])
"""

from __future__ import annotations

import importlib

# loaded on first use: faiss and torch are heavy, and most callers want one part
_LAZY = {
    "SimilarityIndex": "index",
    "Reference": "index",
    "Store": "stores",
    "StoreError": "stores",
    "FaissStore": "stores",
    "STORES": "stores",
    "open_store": "stores",
    "create_store": "stores",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
