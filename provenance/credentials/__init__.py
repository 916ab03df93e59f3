"""Declarations a picture carries about where it came from: C2PA Content Credentials
(``c2pa``: verify, and sign from ``signing``; ``status``, ``chain``, ``signers`` and
``datahash`` behind verify; ``dev_ca``: a development certificate authority), AI labels
(``labels``: GB 45438-2025 and the IPTC digital source type, over ``containers``, the byte
surgery on JPEG, PNG and WebP files), and the ``ledger`` of generated pictures keyed by their
watermark payload.

    from aigcguard.provenance.credentials import make_dev_ca, read_labels, sign, verify
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigcguard.lazy import lazy_exports

# Loaded on first use (PEP 562): c2pa takes about 50 ms to import, and reading labels or the
# ledger needs none of it.
_PKG = "aigcguard.provenance.credentials"
_LAZY = {
    "CredentialCheck": f"{_PKG}.c2pa",
    "SignResult": f"{_PKG}.signing",
    "sign": f"{_PKG}.signing",
    "verify": f"{_PKG}.c2pa",
    "DevCa": f"{_PKG}.dev_ca",
    "make_dev_ca": f"{_PKG}.dev_ca",
    "LabelReport": f"{_PKG}.labels",
    "LabelWritten": f"{_PKG}.labels",
    "read_labels": f"{_PKG}.labels",
    "write_label": f"{_PKG}.labels",
    "Ledger": f"{_PKG}.ledger",
    "LedgerError": f"{_PKG}.ledger",
    "LedgerRecord": f"{_PKG}.ledger",
}

if TYPE_CHECKING:
    from aigcguard.provenance.credentials.c2pa import CredentialCheck, verify
    from aigcguard.provenance.credentials.dev_ca import DevCa, make_dev_ca
    from aigcguard.provenance.credentials.labels import (
        LabelReport,
        LabelWritten,
        read_labels,
        write_label,
    )
    from aigcguard.provenance.credentials.ledger import Ledger, LedgerError, LedgerRecord
    from aigcguard.provenance.credentials.signing import SignResult, sign


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "CredentialCheck",
    "DevCa",
    "LabelReport",
    "LabelWritten",
    "Ledger",
    "LedgerError",
    "LedgerRecord",
    "SignResult",
    "make_dev_ca",
    "read_labels",
    "sign",
    "verify",
    "write_label",
]
