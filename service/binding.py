"""Content binding: does a picture carrying a mark show the picture its ledger record is of?

A mark can be copied: a denoiser's residual of one marked picture, added to an unrelated
photo, carries the mark and its payload along, and no watermark design can stop that. What
the copy cannot carry is the picture itself. So the generation pipeline keeps, in each ledger
record, a content fingerprint of the marked picture (:func:`fingerprint`), and a mark read
from a suspect picture is trusted only when the suspect shows the recorded picture
(:func:`compare`): ``match``; a record of a different picture is a ``mismatch`` (possible
forgery); a recorded or suspect picture with too little detail to compare is
``unverifiable``.

The fingerprint is a small grey thumbnail, not a hash. Pictures travel re-encoded, shrunk,
cropped and slightly rotated; local features (SIFT) and a geometric check (RANSAC, from
:mod:`aigcguard.provenance.similarity.verify`) match a thumbnail across all of that, where a
perceptual hash would not survive a crop or a rotation. At 256 px and JPEG quality 90 it
costs about 13 KB a record. It is the key holder's own record of its own output, kept in its
own ledger and never in a lookup's or a check's JSON: a low-resolution grey copy of a picture
it generated and published anyway (docs/provenance.md, "Binding").

    record = LedgerRecord(..., binding=fingerprint(marked))
    compare(suspect_pixels, record.binding).state   # "match", "mismatch" or "unverifiable"

Composition layer: it uses the similarity domain's verification on records of the
credentials domain, which do not import each other.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aigcguard.results import JsonResult

#: what :func:`compare` can say
BINDING_STATES = ("match", "mismatch", "unverifiable")
FINGERPRINT_KIND, FINGERPRINT_VERSION = "grey-thumbnail", 1
#: the thumbnail's long side and JPEG quality: a Kodak photo's thumbnail (256 x 171) keeps
#: 137-773 SIFT keypoints (median 371) in 9.6-21 KB (median 13 KB; base64 a third more)
THUMBNAIL_SIDE, THUMBNAIL_QUALITY = 256, 90
#: the suspect is matched at this long side, about twice the thumbnail's: a crop keeping half
#: of the picture still shows its content at a scale SIFT matches across. On the 24 Kodak
#: photos the fewest inliers of a copy were 80 (JPEG 50), 66 (resize 0.5), 45 (central crop
#: keeping 50% of the area), 30 (corner crop, 50%), 73 (rotation 5 degrees), 28 (all four at
#: once); the most of 552 unrelated pairs 5, under MIN_INLIERS (12) as at full size.
SUSPECT_SIDE = 512
#: a thumbnail (or a suspect picture, at SUSPECT_SIDE) with fewer SIFT keypoints than this is
#: too plain to prove a different picture: not matching it is "unverifiable", not a
#: "mismatch". Measured on 204 plainer versions of the Kodak photos (Gaussian blur sigma
#: 3-12, contrast x0.02-0.3): copies of a thumbnail with up to 74 keypoints could fail to
#: match (a corner crop, a rotation); of those with 75 or more, none did (the fewest inliers
#: 14). 100 leaves a margin and stays under every Kodak photo's count (137 the fewest), so the
#: record of any of them can call another picture a mismatch. A Kodak photo shrunk to 96 px
#: keeps 40-70 keypoints, to 128 px 94-112: smaller copies are unverifiable unless they match.
MIN_KEYPOINTS = 100


@dataclass(frozen=True)
class Binding(JsonResult):
    """Whether a picture is the one its ledger record is of. ``state``: one of
    :data:`BINDING_STATES`; ``inliers``: local features agreeing on one geometric transform
    between the picture and the recorded thumbnail (None when not compared, as for the very
    file, found by its bytes); ``reason``: one sentence."""

    state: str
    inliers: int | None
    reason: str


#: the binding of a file whose bytes are the recorded ones: nothing to compare
SAME_FILE = Binding("match", None, "the very file the ledger records (same SHA-256)")


def fingerprint(pixels: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """What the ledger keeps of a uint8 3 x H x W picture (or H x W x 3 array): its grey
    thumbnail (long side :data:`THUMBNAIL_SIDE`, JPEG, base64), kind, version and size."""
    from PIL import Image

    from aigcguard.provenance.similarity.verify import grey_at_most

    grey, (w, h) = grey_at_most(pixels, THUMBNAIL_SIDE)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=THUMBNAIL_QUALITY)
    return {
        "kind": FINGERPRINT_KIND,
        "version": FINGERPRINT_VERSION,
        "size": [w, h],
        "thumbnail": base64.b64encode(buf.getvalue()).decode("ascii"),
    }


def compare(pixels: torch.Tensor | np.ndarray, fingerprint: dict[str, Any]) -> Binding:
    """Whether ``pixels`` (uint8 3 x H x W, or H x W x 3) show the picture ``fingerprint``
    was made of, possibly re-encoded, resized, cropped, rotated or mirrored."""
    from aigcguard.provenance.similarity.verify import MIN_INLIERS, extract, verify_features

    thumb = _thumbnail(fingerprint)
    if isinstance(thumb, str):
        return Binding("unverifiable", None, thumb)
    recorded = extract(thumb, max_side=THUMBNAIL_SIDE)
    suspect = extract(pixels, max_side=SUSPECT_SIDE)
    found = verify_features(suspect, recorded)
    if found.verified:
        return Binding(
            "match",
            found.inliers,
            f"{found.inliers} local features agree with the recorded picture",
        )
    # too little detail on either side, and even the recorded picture itself could fail
    # to match: a failed match then proves nothing
    for what, features in (("the recorded picture", recorded), ("the picture", suspect)):
        if len(features) < MIN_KEYPOINTS:
            return Binding(
                "unverifiable",
                found.inliers,
                f"{what} has too little detail to compare ({len(features)} keypoints, "
                f"under {MIN_KEYPOINTS})",
            )
    return Binding(
        "mismatch",
        found.inliers,
        f"a different picture from the recorded one ({found.inliers} local features agree, "
        f"{MIN_INLIERS} needed)",
    )


def bind(record: Any, pixels: Any, *, matched_by: str | None) -> Binding | None:
    """The binding of a ledger ``record`` found for ``pixels``: :data:`SAME_FILE` for one
    found by the file's bytes, a comparison for one found by its mark that has a fingerprint,
    else None (no record, or one recorded before fingerprints)."""
    if record is None:
        return None
    if matched_by == "file_hash":
        return SAME_FILE
    if record.binding is None:
        return None
    return compare(pixels, record.binding)


def _thumbnail(fp: Any) -> np.ndarray | str:
    """The fingerprint's thumbnail as an H x W x 3 array, or why there is none."""
    from aigcguard.imageio import ImageLoadError, load_image

    if not isinstance(fp, dict) or fp.get("kind") != FINGERPRINT_KIND:
        kind = fp.get("kind") if isinstance(fp, dict) else type(fp).__name__
        return f"a fingerprint of unknown kind {kind!r}"
    if fp.get("version") != FINGERPRINT_VERSION:
        return f"a {FINGERPRINT_KIND} fingerprint of unknown version {fp.get('version')!r}"
    try:
        data = base64.b64decode(fp.get("thumbnail", ""), validate=True)
        pixels = load_image(data, name="the recorded thumbnail").pixels
    except (binascii.Error, TypeError, ValueError, ImageLoadError) as exc:
        return f"the recorded thumbnail cannot be read ({exc})"
    return pixels.permute(1, 2, 0).numpy()
