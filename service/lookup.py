"""Finding a picture's ledger record from its pixels: decode our watermark, then look its
payload up (or, for an untouched copy, the file's bytes), and check that the picture is the
one the record is of (:mod:`aigcguard.service.binding`: a mark can be copied onto another
picture). Composes the watermark domain with the ledger, so it lives above both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aigcguard.provenance.credentials.ledger import (
    Ledger,
    LedgerRecord,
    find_record,
    key_fingerprint,
)
from aigcguard.results import JsonResult
from aigcguard.service.binding import Binding, bind

#: what :func:`lookup` can say about a picture
LOOKUP_STATES = ("found", "not_in_ledger", "payload_unreadable", "no_watermark")


@dataclass(frozen=True)
class Lookup(JsonResult):
    """What the ledger knows about a picture: ``state`` is one of :data:`LOOKUP_STATES`;
    ``watermark`` is the detection behind it; ``record`` is set when ``state == "found"``;
    ``binding`` says whether the picture is the one the record is of: ``match`` for the very
    file (found by its bytes) or a picture showing the recorded one, ``mismatch`` for a
    different picture (its mark was copied: possible forgery), ``unverifiable``; None when
    there is no record or the record has no fingerprint (made before them)."""

    path: str
    state: str
    watermark: JsonResult | None
    record: LedgerRecord | None = None
    matched_by: str | None = None  # "watermark", or "file_hash" for an untouched copy
    binding: Binding | None = None


def lookup(
    images: Sequence, ledger: Ledger, *, key: str | bytes, method: str | None = None, device=None
) -> list[Lookup]:
    """Decode each loaded picture's watermark (made with ``key``) and find its record;
    ``images`` are :class:`aigcguard.imageio.LoadedImage` (pixels and source)."""
    from aigcguard.watermark import DEFAULT_METHOD, detect

    if not images:
        return []
    kid = key_fingerprint(key)
    detections = detect(
        [img.pixels for img in images], key=key, method=method or DEFAULT_METHOD, device=device
    )
    out = []
    for img, det in zip(images, detections, strict=True):
        rec, matched_by = find_record(ledger, det, img.source, key_id=kid)
        if rec is not None:
            binding = bind(rec, img.pixels, matched_by=matched_by)
            out.append(Lookup(img.source, "found", det, rec, matched_by, binding))
        elif not det.detected:
            out.append(Lookup(img.source, "no_watermark", det))
        elif det.payload is None:
            out.append(Lookup(img.source, "payload_unreadable", det))
        else:
            out.append(Lookup(img.source, "not_in_ledger", det))
    return out


def lookup_images(
    paths: Sequence[str | Path], ledger: Ledger, *, key: str | bytes, **kw
) -> tuple[list[Lookup], list[str]]:
    """:func:`lookup` on files; returns the lookups and one error message per unreadable
    file (the others go on)."""
    from aigcguard.imageio import load_images

    loaded, failed = load_images(paths)
    return lookup(loaded, ledger, key=key, **kw), [str(e) for e in failed]
