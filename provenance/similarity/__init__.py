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

from aigcguard.lazy import lazy_exports

_PKG = "aigcguard.provenance.similarity"
# loaded on first use: faiss and torch are heavy, and most callers want one part
_LAZY = {
    "SimilarityIndex": f"{_PKG}.index",
    "Reference": f"{_PKG}.index",
    "Store": f"{_PKG}.stores",
    "StoreError": f"{_PKG}.stores",
    "FaissStore": f"{_PKG}.stores",
    "STORES": f"{_PKG}.stores",
    "open_store": f"{_PKG}.stores",
    "create_store": f"{_PKG}.stores",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
