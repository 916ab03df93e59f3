"""Provenance, two domains side by side (they do not import each other):

- ``aigcguard.provenance.similarity``: copy detection. Which registered works a picture copies
  (descriptors, stores, geometric verification, calibrated grades, evaluation, audits).
- ``aigcguard.provenance.credentials``: what a file declares. C2PA Content Credentials, the GB
  45438-2025 and IPTC labels, and the ledger of generated pictures.

The most used names of both are exposed here, loaded on first use (faiss and c2pa are heavy
and most callers want only one of the two).

    from aigcguard.provenance import SimilarityIndex, Reference, verify_credentials
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigcguard.lazy import lazy_exports

_SIM = "aigcguard.provenance.similarity"
_CRED = "aigcguard.provenance.credentials"
_LAZY = {
    "DEFAULT_DESCRIPTOR": f"{_SIM}.descriptors",
    "Descriptor": f"{_SIM}.descriptors",
    "DescriptorError": f"{_SIM}.descriptors",
    "create_descriptor": f"{_SIM}.descriptors",
    "list_descriptors": f"{_SIM}.descriptors",
    "register_descriptor": f"{_SIM}.descriptors",
    "VERDICTS": f"{_SIM}.index",
    "Match": f"{_SIM}.index",
    "QueryResult": f"{_SIM}.index",
    "Reference": f"{_SIM}.index",
    "SimilarityIndex": f"{_SIM}.index",
    "Thresholds": f"{_SIM}.index",
    "Hit": f"{_SIM}.stores",
    "NewWork": f"{_SIM}.stores",
    "Store": f"{_SIM}.stores",
    "StoreError": f"{_SIM}.stores",
    "StoreInfo": f"{_SIM}.stores",
    "Work": f"{_SIM}.stores",
    "Verification": f"{_SIM}.verify",
    "match_picture": f"{_SIM}.verify",
    "CredentialCheck": f"{_CRED}.c2pa",
    "SignResult": f"{_CRED}.c2pa",
    "make_dev_ca": f"{_CRED}.c2pa",
    "sign": f"{_CRED}.c2pa",
    "verify_credentials": f"{_CRED}.c2pa:verify",
    "LabelReport": f"{_CRED}.labels",
    "LabelWritten": f"{_CRED}.labels",
    "read_labels": f"{_CRED}.labels",
    "write_label": f"{_CRED}.labels",
    "Ledger": f"{_CRED}.ledger",
    "LedgerRecord": f"{_CRED}.ledger",
}

if TYPE_CHECKING:
    from aigcguard.provenance.credentials.c2pa import (
        CredentialCheck,
        SignResult,
        make_dev_ca,
        sign,
    )
    from aigcguard.provenance.credentials.c2pa import verify as verify_credentials
    from aigcguard.provenance.credentials.labels import (
        LabelReport,
        LabelWritten,
        read_labels,
        write_label,
    )
    from aigcguard.provenance.credentials.ledger import Ledger, LedgerRecord
    from aigcguard.provenance.similarity.descriptors import (
        DEFAULT_DESCRIPTOR,
        Descriptor,
        DescriptorError,
        create_descriptor,
        list_descriptors,
        register_descriptor,
    )
    from aigcguard.provenance.similarity.index import (
        VERDICTS,
        Match,
        QueryResult,
        Reference,
        SimilarityIndex,
        Thresholds,
    )
    from aigcguard.provenance.similarity.stores import (
        Hit,
        NewWork,
        Store,
        StoreError,
        StoreInfo,
        Work,
    )
    from aigcguard.provenance.similarity.verify import Verification, match_picture


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_DESCRIPTOR",
    "VERDICTS",
    "CredentialCheck",
    "Descriptor",
    "DescriptorError",
    "Hit",
    "LabelReport",
    "LabelWritten",
    "Ledger",
    "LedgerRecord",
    "Match",
    "NewWork",
    "QueryResult",
    "Reference",
    "SignResult",
    "SimilarityIndex",
    "Store",
    "StoreError",
    "StoreInfo",
    "Thresholds",
    "Verification",
    "Work",
    "create_descriptor",
    "list_descriptors",
    "make_dev_ca",
    "match_picture",
    "read_labels",
    "register_descriptor",
    "sign",
    "verify_credentials",
    "write_label",
]
