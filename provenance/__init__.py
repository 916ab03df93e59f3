"""Provenance: which registered works an image copies; Content Credentials, AI labels, the
ledger of generated pictures, and the generation pipeline that writes them all.

    from aigcguard.provenance import SimilarityIndex, Reference
    with SimilarityIndex.create("refs", embedder="vlad") as index:
        index.add([Reference("works/dawn.jpg", title="Dawn", creator="Ann")])
        [result] = index.search_files(["upload.jpg"])

``credentials`` signs and verifies C2PA manifests (``sign``, ``verify_credentials``,
``make_dev_ca``); ``labels`` writes and reads the GB 45438-2025 label and the IPTC digital
source type (``write_label``, ``read_labels``); ``Ledger`` records generated pictures by
watermark payload and ``lookup_images`` finds them again; ``ProvenancePipeline`` wraps a
generator and does all of it, batch by batch.

``create_embedder`` builds an embedder from a spec (``vlad``, ``pdq``, ``clip:ARCH/TAG``);
``Store`` is the vector store underneath; ``aigcguard.provenance.verify`` checks a candidate
copy with local features and RANSAC (``Verification``, ``match_picture``).
"""

from aigcguard.provenance.credentials import CredentialCheck, SignResult, make_dev_ca, sign
from aigcguard.provenance.credentials import verify as verify_credentials
from aigcguard.provenance.embedders import (
    DEFAULT_EMBEDDER,
    Embedder,
    EmbedderError,
    create_embedder,
    list_embedders,
    register_embedder,
)
from aigcguard.provenance.labels import LabelReport, LabelWritten, read_labels, write_label
from aigcguard.provenance.ledger import Ledger, LedgerRecord, Lookup, lookup_images
from aigcguard.provenance.pipeline import Generated, ProvenancePipeline, Signing
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
    "CredentialCheck",
    "Embedder",
    "EmbedderError",
    "Generated",
    "Hit",
    "LabelReport",
    "LabelWritten",
    "Ledger",
    "LedgerRecord",
    "Lookup",
    "Match",
    "NewWork",
    "ProvenancePipeline",
    "QueryResult",
    "Reference",
    "SignResult",
    "Signing",
    "SimilarityIndex",
    "Store",
    "StoreError",
    "StoreInfo",
    "Thresholds",
    "Verification",
    "Work",
    "create_embedder",
    "list_embedders",
    "lookup_images",
    "make_dev_ca",
    "match_picture",
    "read_labels",
    "register_embedder",
    "sign",
    "verify_credentials",
    "write_label",
]
