"""The organisation behind a signing certificate, from the shipped table of known signers
(``aigcguard.data/known_signers.json``; what it holds and where each name comes from: the
data folder's README). For display only: a name in the table is not trust, which comes from
trust anchors alone (:func:`~aigcguard.provenance.credentials.c2pa.verify`).

    organisation({"O": "OpenAI", "CN": "Truepic Lens CLI in Sora"}, {})   # "OpenAI"
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources

__all__ = ["FIELDS", "KNOWN_SIGNERS_FILE", "known_signers", "organisation"]

KNOWN_SIGNERS_FILE = "known_signers.json"
_FORMAT = 1
#: Certificate name fields a table entry can match, in the order they decide: the leaf's own
#: organisation first (OpenAI signs through Truepic's software: the leaf says O=OpenAI), then
#: its common name, then its issuer's.
FIELDS = ("subject_o", "subject_cn", "issuer_o", "issuer_cn")
_ATTRIBUTE = {"subject_o": ("subject", "O"), "subject_cn": ("subject", "CN"),
              "issuer_o": ("issuer", "O"), "issuer_cn": ("issuer", "CN")}  # fmt: skip


def _norm(value: object) -> str:
    return " ".join(str(value).split()).casefold()


@functools.cache
def known_signers() -> tuple[dict, ...]:
    """The table's entries (loaded once), each with ``organisation``, ``match`` (field -> exact
    names), ``kind`` and ``source``. ValueError names the file when it is not the format."""
    text = resources.files("aigcguard.data").joinpath(KNOWN_SIGNERS_FILE).read_text("utf-8")
    data = json.loads(text)
    if data.get("version") != _FORMAT:
        raise ValueError(
            f"aigcguard.data/{KNOWN_SIGNERS_FILE}: format {data.get('version')!r}, "
            f"this version reads {_FORMAT}"
        )
    entries = tuple(data["signers"])
    for entry in entries:
        unknown = set(entry["match"]) - set(FIELDS)
        if unknown or not entry.get("source"):
            raise ValueError(
                f"aigcguard.data/{KNOWN_SIGNERS_FILE}: entry {entry.get('organisation')!r} "
                f"has unknown fields {sorted(unknown)} or no source"
            )
    return entries


@functools.cache
def _index() -> dict[str, dict[str, str]]:
    """field -> normalised name -> organisation (the first entry naming it wins)."""
    index: dict[str, dict[str, str]] = {field: {} for field in FIELDS}
    for entry in known_signers():
        for field, names in entry["match"].items():
            for name in names:
                index[field].setdefault(_norm(name), entry["organisation"])
    return index


def organisation(subject: Mapping[str, str], issuer: Mapping[str, str]) -> str | None:
    """The organisation of the first table entry whose names match the certificate's subject
    or issuer (distinguished-name attributes ``O``, ``CN``), or None. Names match exactly,
    ignoring case and runs of white space."""
    names = {"subject": subject or {}, "issuer": issuer or {}}
    index = _index()
    for field in FIELDS:
        part, attribute = _ATTRIBUTE[field]
        value = names[part].get(attribute)
        if value:
            found = index[field].get(_norm(value))
            if found is not None:
                return found
    return None
