"""Geometric verification: does a query image contain a copy of (part of) a reference?

A similarity search proposes candidates; this module decides with local features. Keypoints
matched by descriptor (Lowe's ratio test, mutual nearest neighbours) must also agree on one
geometric transform (RANSAC), which unrelated images almost never do. The result is evidence
an audit can show: how many correspondences agree, where the copied part lies in each image,
the transform, and a side-by-side picture of the matches (:func:`match_picture`).

Coordinates are continuous pixel coordinates of the original images: (0, 0) is the top-left
corner of the top-left pixel and pixel (i, j) covers [i, i+1) x [j, j+1), so an image's
outline is (0, 0)-(w, h). In this frame resizing is a plain scale and mirroring is x -> w - x.

For several candidates, extract the query once::

    qf = extract(query)
    results = [verify_features(qf, extract(ref)) for ref in candidates]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cv2
import numpy as np
import torch

from aigcguard.results import JsonResult

__all__ = [
    "MIN_INLIERS",
    "Features",
    "Verification",
    "extract",
    "grey_at_most",
    "match_picture",
    "verify",
    "verify_features",
]

#: RANSAC inliers needed to call a pair a copy. Measured with verify_features as is (mirror
#: tried on every miss) over 946 unrelated pairs (24 Kodak + 20 scikit-image photos, textures
#: and documents included): at most 5 inliers with SIFT (99th percentile 4), 6 with ORB, and
#: 5 / 6 on 276 Kodak pairs upscaled to fill max_side 1024. Copies (234: crops keeping 8-60%
#: of the area, rescaled 0.4-1.5x, some rotated up to 15 degrees, mirrored, recoloured or
#: blurred, JPEG 50-90) had median 207 (SIFT) / 248 (ORB); at 12, 10 (SIFT) / 14 (ORB) are
#: missed, nearly all crops under 15% shrunk below 0.8x or near-textureless (skimage cell).
#: Twice the unrelated maximum costs one copy in 234 over a threshold of 8.
MIN_INLIERS = 12

_KINDS = ("sift", "orb")
_MAX_KEYPOINTS = 4000  # strongest responses kept; beyond this matching costs more than it adds
_SIFT_CONTRAST = 0.02  # OpenCV's 0.04 finds a few hundred points in smooth photos (sky, moon)
_ORB_FAST = 10  # likewise for ORB's 20: 10 gives smooth photos 2-10x the inliers
# Below this many pixels across there is nothing to match, and ORB's pyramid fails outright.
_MIN_SIDE = 16
_RATIO = 0.8  # Lowe's ratio: second-nearest neighbour must be this much farther
_PANEL_ASPECT = 32  # widest evidence panel, in heights (the loader's default limit is 20:1)
_RANSAC_PX = 4.0  # reprojection threshold in working pixels (long side <= max_side)
# A model scaling the reference by more than this (or less than its inverse) is beyond what SIFT
# or ORB can match across, so it comes from coincidences.
_MAX_SCALE = 20.0
# Inliers crowded into a patch smaller than this (working pixels, as an area's side) pin down
# no model: it extrapolates wildly, and one repeated motif can produce them.
_MIN_SPREAD = 16


@dataclass(frozen=True)
class Verification(JsonResult):
    """Outcome of geometric verification; coordinates in the original pixel frames.

    ``homography`` maps reference pixels to query pixels (also when ``flipped``: it then
    contains the mirror). ``query_region`` is the reference's outline mapped into the query,
    so it may reach past the query's borders when the query is a crop. ``pairs`` holds the
    inlier correspondences (query x, y, reference x, y) for :func:`match_picture`; it is left
    out of ``to_dict()`` because the regions and the homography summarise it.
    """

    inliers: int  # RANSAC inliers (0 when no model)
    matches: int  # ratio-test matches (mutual, one per location pair) before RANSAC
    flipped: bool  # the query matched as a mirror image of the reference
    query_region: list[list[float]] | None  # 4 corners (x, y) of the reference, in the query
    reference_region: list[list[float]] | None  # convex hull of the inliers in the reference
    homography: list[list[float]] | None  # 3 x 3, reference -> query
    pairs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def verified(self) -> bool:
        """Enough inliers, and a model that keeps the outline a convex, properly oriented quad."""
        return (
            self.inliers >= MIN_INLIERS
            and self.query_region is not None
            and _proper_quad(np.asarray(self.query_region, np.float64), self.flipped)
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        del d["pairs"]
        d["verified"] = self.verified
        return d


@dataclass(frozen=True, eq=False)
class Features:
    """Local features of one image: extract once, verify against many references."""

    kind: str  # "sift" (RootSIFT descriptors) or "orb"
    size: tuple[int, int]  # (width, height) of the original image
    points: np.ndarray  # N x 2 float32 keypoint positions, original pixel frame
    descriptors: np.ndarray  # N x D: float32 RootSIFT or uint8 ORB
    _scale: tuple[float, float] = field(repr=False)  # working / original size, per axis
    _gray: np.ndarray = field(repr=False)  # the grey working image, kept for the mirror

    def __len__(self) -> int:
        return len(self.points)

    @cached_property
    def _mirrored(self) -> Features:
        """Features of the mirrored image, with points put back in this (unmirrored) frame,
        so a model fitted to them maps straight into the real query. Computed on first use."""
        pts, desc = _detect(self._gray[:, ::-1], self.kind)
        pts[:, 0] = self._gray.shape[1] - pts[:, 0]
        return Features(
            self.kind, self.size, pts / np.float32(self._scale), desc, self._scale, self._gray
        )


def extract(
    image: np.ndarray | torch.Tensor, *, features: str = "sift", max_side: int = 1024
) -> Features:
    """Local features of an H x W x 3 uint8 array or a 3 x H x W uint8 tensor, detected after
    shrinking the image so its long side is at most ``max_side``."""
    if features not in _KINDS:
        raise ValueError(f"features must be one of {_KINDS}, not {features!r}")
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16, not {max_side}")
    gray, (w, h) = grey_at_most(image, max_side)
    scale = (gray.shape[1] / w, gray.shape[0] / h)
    pts, desc = _detect(gray, features)
    return Features(features, (w, h), pts / np.float32(scale), desc, scale, gray)


def grey_at_most(image: np.ndarray | torch.Tensor, max_side: int) -> tuple[np.ndarray, tuple]:
    """The grey version of an H x W x 3 uint8 array or a 3 x H x W uint8 tensor, shrunk (area
    averaging) so its long side is at most ``max_side``, and the original (width, height)."""
    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    f = min(1.0, max_side / max(h, w))
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, (w, h)


def verify(
    query: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    *,
    features: str = "sift",
    max_side: int = 1024,
) -> Verification:
    """Does ``query`` contain a copy of (part of) ``reference``, possibly mirrored?"""
    return verify_features(
        extract(query, features=features, max_side=max_side),
        extract(reference, features=features, max_side=max_side),
    )


def verify_features(query: Features, reference: Features) -> Verification:
    """:func:`verify` on extracted features. The mirrored query is tried only when the direct
    match does not verify; its features are computed once and kept on ``query``."""
    if query.kind != reference.kind:
        raise ValueError(f"cannot match {query.kind} features against {reference.kind}")
    best = _verify_one(query, reference, flipped=False)
    if not best.verified:
        mirror = _verify_one(query._mirrored, reference, flipped=True)
        if mirror.inliers > best.inliers:
            best = mirror
    return best


def match_picture(
    query: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    verification: Verification,
    *,
    height: int = 400,
) -> np.ndarray:
    """Query (left) and reference (right) at the same ``height``, side by side, with the inlier
    correspondences drawn as lines and the matched region outlined in both. Without a model
    it is just the two pictures. Returns an H x W x 3 uint8 RGB array."""
    if height < 8:
        raise ValueError(f"height must be at least 8, not {height}")
    panels, factors = [], []
    for img in (_as_rgb(query), _as_rgb(reference)):
        h, w = img.shape[:2]
        # at most _PANEL_ASPECT times as wide as high: a 50,000 x 5 strip would otherwise
        # make a 4,000,000 px wide canvas (4.8 GB); a thinner one is squeezed, not clipped
        size = (min(_PANEL_ASPECT * height, max(1, round(w * height / h))), height)
        interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
        panels.append(np.ascontiguousarray(cv2.resize(img, size, interpolation=interp)))
        factors.append(np.array([size[0] / w, size[1] / h]))
    q_panel, r_panel = panels
    gap = max(4, height // 50)
    offset = np.array([q_panel.shape[1] + gap, 0.0])
    v = verification
    thick = max(1, round(height / 200))
    if v.homography is not None and v.query_region is not None and v.reference_region:
        # The copied part (inlier hull) outlined in both pictures, and thinner, the whole
        # reference's outline in the query. Drawn on each panel before pasting, so an outline
        # reaching past the query's borders is clipped there, not drawn over the reference.
        part = np.asarray(v.reference_region, np.float64)[None]
        in_query = cv2.perspectiveTransform(part, np.asarray(v.homography, np.float64))[0]
        _polyline(q_panel, np.asarray(v.query_region) * factors[0], (0, 200, 255), thick)
        _polyline(q_panel, in_query * factors[0], (255, 215, 0), 2 * thick)
        _polyline(r_panel, part[0] * factors[1], (255, 215, 0), 2 * thick)
    canvas = np.full((height, offset[0].astype(int) + r_panel.shape[1], 3), 255, np.uint8)
    canvas[:, : q_panel.shape[1]] = q_panel
    canvas[:, int(offset[0]) :] = r_panel
    if v.pairs is not None and len(v.pairs):
        # A few dozen lines show the agreement; hundreds only hide the pictures.
        pairs = v.pairs[np.linspace(0, len(v.pairs) - 1, min(len(v.pairs), 60)).astype(int)]
        hues = np.linspace(0, 179, len(pairs), endpoint=False).astype(np.uint8)
        colours = cv2.cvtColor(
            np.stack([hues, np.full_like(hues, 220), np.full_like(hues, 255)], 1)[None],
            cv2.COLOR_HSV2RGB,
        )[0]
        for (qx, qy, rx, ry), c in zip(pairs, colours, strict=True):
            a = np.array([qx, qy]) * factors[0]
            b = np.array([rx, ry]) * factors[1] + offset
            cv2.line(
                canvas, _fixed(a), _fixed(b), tuple(int(x) for x in c), thick, cv2.LINE_AA, shift=4
            )
    return canvas


# --------------------------------------------------------------------------- internals


def _as_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a 3 x H x W tensor, got shape {tuple(image.shape)}")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _detect(gray: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N x 2, working frame, corner convention) and descriptors of a grey image."""
    gray = np.ascontiguousarray(gray)
    dim, dtype = (128, np.float32) if kind == "sift" else (32, np.uint8)
    if min(gray.shape) < _MIN_SIDE:
        return np.zeros((0, 2), np.float32), np.zeros((0, dim), dtype)
    if kind == "sift":
        detector = cv2.SIFT_create(nfeatures=_MAX_KEYPOINTS, contrastThreshold=_SIFT_CONTRAST)
    else:
        detector = cv2.ORB_create(nfeatures=_MAX_KEYPOINTS, fastThreshold=_ORB_FAST)
    kps, desc = detector.detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, dim), dtype)
    # OpenCV puts pixel centres on integers; +0.5 moves them to this module's frame.
    pts = np.array([kp.pt for kp in kps], np.float32) + np.float32(0.5)
    if kind == "sift":
        # RootSIFT (Arandjelovic & Zisserman 2012): Hellinger kernel by L1-normalise + sqrt;
        # the result has unit L2 norm, so plain L2 matching applies.
        desc = np.sqrt(desc / (desc.sum(axis=1, keepdims=True) + 1e-7))
    return pts, desc


def _match(q: Features, r: Features) -> np.ndarray:
    """Index pairs (query, reference) passing the ratio test that are mutual nearest
    neighbours; each pair of keypoint locations is used once."""
    if len(q) < 2 or len(r) < 2:
        return np.zeros((0, 2), np.intp)
    # Brute force as one matrix product: several times faster than OpenCV's BFMatcher at
    # 4000 points. The mutual check then needs reverse neighbours only of the few survivors.
    qd, rd = torch.from_numpy(_as_unit(q)), torch.from_numpy(_as_unit(r))
    top, idx = (qd @ rd.T).topk(2, dim=1)
    # SIFT: unit vectors, squared L2 distance 2 - 2 cos; ORB: 256 +-1 bits, Hamming (256 - dot) / 2
    dist = (2 - 2 * top).clamp_(min=0).sqrt_() if q.kind == "sift" else (256 - top) / 2
    qi = torch.nonzero(dist[:, 0] < _RATIO * dist[:, 1]).ravel()
    ri = idx[qi, 0]
    mutual = (rd[ri] @ qd.T).argmax(dim=1) == qi
    qi, ri, d = qi[mutual].numpy(), ri[mutual].numpy(), dist[qi[mutual], 0].numpy()
    # SIFT repeats a keypoint once per dominant orientation; such twins would count one
    # piece of evidence twice, so keep the closest match per pair of locations.
    order = np.argsort(d, kind="stable")
    loc = np.round(np.hstack([q.points[qi[order]], r.points[ri[order]]]), 1)
    _, first = np.unique(loc, axis=0, return_index=True)
    chosen = order[np.sort(first)]
    return np.stack([qi[chosen], ri[chosen]], axis=1).astype(np.intp)


def _as_unit(f: Features) -> np.ndarray:
    """Descriptors as float32 rows whose dot products rank neighbours: RootSIFT as is, ORB's
    bits as +-1."""
    if f.kind == "sift":
        return f.descriptors
    return np.unpackbits(f.descriptors, axis=1).astype(np.float32) * 2 - 1


def _verify_one(q: Features, r: Features, *, flipped: bool) -> Verification:
    pairs = _match(q, r)
    none = Verification(0, len(pairs), flipped, None, None, None)
    if len(pairs) < 3:
        return none
    # RANSAC runs in the working frames, where keypoint accuracy (and the threshold) is known.
    qs, rs = np.float32(q._scale), np.float32(r._scale)
    qw, rw = q.points[pairs[:, 0]] * qs, r.points[pairs[:, 1]] * rs
    ref_outline = _outline(r.size) * rs
    model = None
    if len(pairs) >= 4:
        h, mask = cv2.findHomography(
            rw, qw, cv2.USAC_MAGSAC, _RANSAC_PX, maxIters=2000, confidence=0.999
        )
        if h is not None and _plausible(h, ref_outline, flipped):
            model = h, mask
    if model is None:
        # Few or nearly collinear inliers let a homography swing wildly; an affine model has
        # fewer degrees of freedom to do so.
        a, mask = cv2.estimateAffine2D(
            rw,
            qw,
            method=cv2.USAC_MAGSAC,
            ransacReprojThreshold=_RANSAC_PX,
            maxIters=2000,
            confidence=0.999,
        )
        if a is not None:
            h = np.vstack([a, [0.0, 0.0, 1.0]])
            if _plausible(h, ref_outline, flipped):
                model = h, mask
    if model is None:
        return none
    h, mask = model
    inl = mask.ravel().astype(bool)
    if inl.sum() < 3 or cv2.contourArea(cv2.convexHull(rw[inl])) < _MIN_SPREAD**2:
        return none
    # Back to original frames: query = Sq^-1 . H_work . Sr
    h = np.diag([1 / qs[0], 1 / qs[1], 1.0]) @ h @ np.diag([rs[0], rs[1], 1.0])
    h /= h[2, 2]
    quad = cv2.perspectiveTransform(_outline(r.size)[None].astype(np.float64), h)[0]
    r_in = r.points[pairs[inl, 1]]
    hull = cv2.convexHull(r_in.astype(np.float32))[:, 0]
    return Verification(
        inliers=int(inl.sum()),
        matches=len(pairs),
        flipped=flipped,
        query_region=quad.tolist(),
        reference_region=hull.astype(np.float64).tolist(),
        homography=h.tolist(),
        pairs=np.hstack([q.points[pairs[inl, 0]], r_in]).astype(np.float32),
    )


def _outline(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)


def _signed_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _proper_quad(quad: np.ndarray, flipped: bool) -> bool:
    """The outline stays a convex quad, mirrored exactly when the match is."""
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        return False
    area = _signed_area(quad)
    if area == 0 or (area < 0) != flipped:
        return False
    # Convex with this orientation: every turn has the sign of the area.
    d = np.roll(quad, -1, axis=0) - quad
    turns = d[:, 0] * np.roll(d, -1, axis=0)[:, 1] - d[:, 1] * np.roll(d, -1, axis=0)[:, 0]
    return bool(np.all(turns * np.sign(area) > 0))


def _plausible(h: np.ndarray, ref_outline: np.ndarray, flipped: bool) -> bool:
    """A model (working frames) that a real copy could produce: finite, keeping the outline a
    convex quad of the right orientation, and scaling within what features can match."""
    if not np.isfinite(h).all() or abs(h[2, 2]) < 1e-12:
        return False
    quad = cv2.perspectiveTransform(ref_outline[None], h)[0]
    if not _proper_quad(quad, flipped):
        return False
    scale = np.sqrt(abs(_signed_area(quad)) / _signed_area(ref_outline))
    return 1 / _MAX_SCALE < scale < _MAX_SCALE


def _polyline(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int], thick: int):
    if len(pts) >= 2:
        fixed = np.round(np.clip(pts, -1e5, 1e5) * 16).astype(np.int32)
        cv2.polylines(img, [fixed], True, colour, thick, cv2.LINE_AA, shift=4)


def _fixed(p: np.ndarray) -> tuple[int, int]:
    """A point for OpenCV drawing with shift=4 (1/16 pixel)."""
    x, y = np.round(np.asarray(p, np.float64) * 16)
    return int(x), int(y)
