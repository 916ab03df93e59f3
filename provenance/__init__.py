"""Provenance: which registered works an image copies (and, later, C2PA, labels, the ledger).

    from aigcguard.provenance import SimilarityIndex, Reference
    with SimilarityIndex.create("refs", embedder="vlad") as index:
        index.add([Reference("works/dawn.jpg", title="Dawn", creator="Ann")])
        [result] = index.search_files(["upload.jpg"])

``create_embedder`` builds an embedder from a spec (``vlad``, ``pdq``, ``clip:ARCH/TAG``);
``Store`` is the vector store underneath; ``aigcguard.provenance.verify`` checks a candidate
copy with local features and RANSAC (``Verification``, ``match_picture``).
"""

from aigcguard.provenance.embedders import (
    DEFAULT_EMBEDDER,
    Embedder,
    EmbedderError,
    create_embedder,
    list_embedders,
    register_embedder,
)
from aigcguard.provenance.similarity import (
    VERDICTS,
    Match,
    QueryResult,
    Reference,
    SimilarityIndex,
    Thresholds,
)
from aigcguard.provenance.store import Hit, NewWork, Store, StoreError, StoreInfo, Work
from aigcguard.provenance.verify import Verification, match_picture

__all__ = [
    "DEFAULT_EMBEDDER",
    "VERDICTS",
    "Embedder",
    "EmbedderError",
    "Hit",
    "Match",
    "NewWork",
    "QueryResult",
    "Reference",
    "SimilarityIndex",
    "Store",
    "StoreError",
    "StoreInfo",
    "Thresholds",
    "Verification",
    "Work",
    "create_embedder",
    "list_embedders",
    "match_picture",
    "register_embedder",
]
