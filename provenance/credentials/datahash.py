"""A narrow second look at a JPEG data hash that c2pa-rs rejects for its exclusion alone.

c2pa-rs (0.91) refuses a ``c2pa.hash.data`` whose exclusion covers more than the manifest
("data hash exclusion does not match the manifest location in the asset") and reports
``assertion.dataHash.mismatch``, even when the hash over the bytes outside the exclusion
matches. Truepic's libc2pa 2.5.1 wrote such files (the three Truepic conformance files): its
exclusion runs from byte 0 to the image data, EXIF and manifest alike. No c2pa setting relaxes
the check (``verify`` has none for it; ``strict_v1_validation`` changes nothing), and the
library does not expose the hash, so :func:`covers_only_metadata` and :func:`matches` recompute
it with hashlib. The caller reports such a file intact with the caveat code
``aigc.dataHash.exclusionTooWide``: the bytes inside the exclusion (EXIF: GPS, capture time)
are not protected. Only JPEG, and only when every excluded byte lies in the metadata segments
before the image data: a hash that leaves pixels unprotected is never excused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections.abc import Mapping
from typing import Any

from aigcguard.provenance.credentials.containers import jpeg_segments

__all__ = ["covers_only_metadata", "exclusions", "matches"]

# Markers of the segments that carry metadata only: APP0-APP15 (EXIF, XMP, JUMBF...) and COM.
_METADATA_MARKERS = frozenset(range(0xE0, 0xF0)) | {0xFE}
_ALGORITHMS = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


def exclusions(assertion: Mapping[str, Any], size: int) -> list[tuple[int, int]] | None:
    """The assertion's exclusions as sorted, non-overlapping ``(start, end)`` byte ranges
    inside a file of ``size`` bytes, or None when they are malformed."""
    spans = []
    for item in assertion.get("exclusions") or []:
        try:
            start, length = int(item["start"]), int(item["length"])
        except (KeyError, TypeError, ValueError):
            return None
        if start < 0 or length < 0 or start + length > size:
            return None
        spans.append((start, start + length))
    spans.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        return None
    return spans


def covers_only_metadata(data: bytes, spans: list[tuple[int, int]]) -> bool:
    """Whether ``data`` is a JPEG whose excluded ``spans`` hold nothing but the start-of-image
    marker and whole metadata segments, all before the first segment that shapes the pixels
    (quantisation or Huffman tables, frame header, scan)."""
    if not data.startswith(b"\xff\xd8") or not spans:
        return False
    segments, _ = jpeg_segments(data)
    image_from = next((start for marker, start, _ in segments if marker not in _METADATA_MARKERS),
                      None)  # fmt: skip
    if image_from is None:
        return False
    boundaries = {0, 2} | {start for _, start, _ in segments} | {end for _, _, end in segments}
    return all(end <= image_from and start in boundaries and end in boundaries
               for start, end in spans)  # fmt: skip


def matches(data: bytes, assertion: Mapping[str, Any]) -> bool:
    """Whether ``data``, less the assertion's exclusions, hashes to the assertion's hash, and
    those exclusions cover JPEG metadata only (:func:`covers_only_metadata`)."""
    name = _ALGORITHMS.get(str(assertion.get("alg", "sha256")).lower())
    spans = exclusions(assertion, len(data))
    if name is None or spans is None or not covers_only_metadata(data, spans):
        return False
    try:
        expected = base64.b64decode(str(assertion.get("hash", "")), validate=True)
    except (binascii.Error, ValueError):
        return False
    digest, view, at = hashlib.new(name), memoryview(data), 0
    for start, end in spans:
        digest.update(view[at:start])
        at = end
    digest.update(view[at:])
    return digest.digest() == expected
