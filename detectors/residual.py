"""Noise-residual co-occurrence statistics (SPAM / SRM-like): features for a detector.

A camera's sensor, demosaicing and in-camera processing leave a fine-grained noise texture;
a generator's decoder leaves another. The joint statistics of a few neighbouring high-pass
residuals measure that texture (on the wild set they did not survive a platform's JPEG 75
better than the spectral features did: see Status below): the idea of the steganalysis
features SPAM (Pevny et al., 2010) and SRM (Fridrich and Kodovsky, 2012), here in a small
form measured over every pixel of the picture.

Feature vector (:func:`residual_features`, :data:`FEATURE_DIM` = 437 values, float64)
----------------------------------------------------------------------------------------

Planes: luminance ``Y`` and the chroma ``Cb``, ``Cr`` of JPEG (0..255 scale, float32).
Pictures with a long side above ``max_side`` are first shrunk (bicubic, antialiased).

Residuals (valid convolution, no padding), quantised by ``q`` and rounded, then truncated to
``[-T, T]`` with ``T`` = 2 (5 levels):

- ``Y``, orders 1, 2, 3: the differences ``[-1, 1]``, ``[1, -2, 1]``, ``[-1, 3, -3, 1]`` along
  rows (h) and columns (v), ``q`` = 1, 2, 3;
- ``Y``, the 3 x 3 "KB" kernel ``[[-1, 2, -1], [2, -4, 2], [-1, 2, -1]] / 4``, ``q`` = 1;
- ``Cb`` and ``Cr``, orders 1 and 2, ``q`` = 1, 2 (chroma is smoother).

Each quantised residual gives the histogram of its triples of neighbours (125 cells) along
rows and along columns. Triples are read *parallel* to the residual's direction (h residual
along rows, v along columns) and *across* it, summed over h and v; the KB residual sums both
scans. A histogram is folded by the two symmetries of natural pictures (the sign of the
residual, the order of the triple) into 39 cells and normalised to sum 1. Groups, 39 values
each, in this order: Y orders 1..3 parallel, Y orders 1..3 across, Y KB, Cb order 1 and 2
parallel, Cr order 1 and 2 parallel (11 groups, 429 values), then the log variance of the
unquantised Y residuals (orders 1..3, KB) and of the chroma ones (Cb, Cr, orders 1 and 2):
8 values. Cells are ``log(p + 1e-5)``.

Costs, measured on the shared 2-core development machine (other jobs running, one thread):
about 90 ms for a 512 x 512 picture and 0.3 to 0.5 s for 1024 x 1024.

Status (issue 21, part 2): a candidate, not a shipped detector. Under leave-one-family-out
nested CV on the 1,500 wild pictures (bench/detector_residual.py,
bench/results/detector_residual.md) these features alone reach AUC 0.67 under *platform*,
below the spectral reference's 0.72, and stacked with the spectral features 0.73, not clearly
above it; no detector kind uses them yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

#: bumped whenever the features change meaning; saved detectors of another version refuse to load
FEATURE_VERSION = 1
T = 2
LEVELS = 2 * T + 1
#: cells of a triple histogram after folding sign and order (Burnside: (125 + 1 + 25 + 5) / 4)
FOLDED = 39
N_GROUPS = 11
N_VARIANCES = 8
FEATURE_DIM = N_GROUPS * FOLDED + N_VARIANCES
#: pictures larger than this (long side) are shrunk first: 1024, the platform condition's own
#: bound, so a phone's 4,000 px photo costs what a shared copy does
MAX_SIDE = 1024
_EPS = 1e-5

_DIFFS = {1: (-1.0, 1.0), 2: (1.0, -2.0, 1.0), 3: (-1.0, 3.0, -3.0, 1.0)}
_KB = ((-1.0, 2.0, -1.0), (2.0, -4.0, 2.0), (-1.0, 2.0, -1.0))


@lru_cache(maxsize=1)
def _fold_index() -> np.ndarray:
    """125 triple codes -> 39 folded cells (same cell for (a,b,c), (-a,-b,-c), (c,b,a))."""
    cells: dict[tuple[int, int, int], int] = {}
    index = np.zeros(LEVELS**3, np.int64)
    vals = range(-T, T + 1)
    for a in vals:
        for b in vals:
            for c in vals:
                orbit = {(a, b, c), (-a, -b, -c), (c, b, a), (-c, -b, -a)}
                key = min(orbit)
                if key not in cells:
                    cells[key] = len(cells)
                index[(a + T) * LEVELS**2 + (b + T) * LEVELS + (c + T)] = cells[key]
    assert len(cells) == FOLDED
    return index


def _planes(image: torch.Tensor) -> torch.Tensor:
    x = image.float()
    r, g, b = x[0], x[1], x[2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, 128 + (b - y) / 1.772, 128 + (r - y) / 1.402])


def _shrink(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    h, w = image.shape[-2:]
    if not max_side or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    out = F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def _diff(plane: np.ndarray, order: int, axis: str) -> np.ndarray:
    """The order-th difference along rows (h) or columns (v), by slicing (valid part)."""
    x = plane if axis == "h" else plane.T
    n = x.shape[1]
    out = np.zeros((x.shape[0], n - order), np.float32)
    for k, w in enumerate(_DIFFS[order]):
        out += np.float32(w) * x[:, k : n - order + k]
    return out if axis == "h" else out.T


def _kb(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    out = np.zeros((h - 2, w - 2), np.float32)
    for i, row in enumerate(_KB):
        for j, k in enumerate(row):
            out += np.float32(k / 4) * plane[i : h - 2 + i, j : w - 2 + j]
    return out


def _quantise(res: np.ndarray, q: float) -> np.ndarray:
    out = np.rint(res * np.float32(1 / q))
    np.clip(out, -T, T, out=out)
    return (out + T).astype(np.uint8)


def _triples(code: np.ndarray, axis: str) -> np.ndarray:
    """Histogram (125 cells) of the triples of neighbours along rows (h) or columns (v)."""
    if axis == "h":
        a, b, c = code[:, :-2], code[:, 1:-1], code[:, 2:]
    else:
        a, b, c = code[:-2], code[1:-1], code[2:]
    # at most 124: the codes stay in uint8
    key = torch.from_numpy(np.ascontiguousarray((a * LEVELS + b) * LEVELS + c)).reshape(-1)
    return torch.bincount(key, minlength=LEVELS**3).numpy().astype(np.float64)


def _folded(hist: np.ndarray) -> np.ndarray:
    out = np.bincount(_fold_index(), weights=hist, minlength=FOLDED)
    return np.log(out / max(out.sum(), 1.0) + _EPS)


def _log_var(*res: np.ndarray) -> float:
    return float(np.log(np.mean([float(r.var(dtype=np.float64)) for r in res]) + _EPS))


def _one(image: torch.Tensor, max_side: int | None) -> np.ndarray:
    planes = _planes(_shrink(image, max_side)).numpy()
    y = planes[0]
    variances: list[float] = []
    parallel, across, groups = [], [], []
    for order, q in ((1, 1.0), (2, 2.0), (3, 3.0)):
        rh, rv = _diff(y, order, "h"), _diff(y, order, "v")
        variances.append(_log_var(rh, rv))
        ch, cv = _quantise(rh, q), _quantise(rv, q)
        parallel.append(_folded(_triples(ch, "h") + _triples(cv, "v")))
        across.append(_folded(_triples(ch, "v") + _triples(cv, "h")))
    groups += parallel + across
    kb = _kb(y)
    variances.append(_log_var(kb))
    ck = _quantise(kb, 1.0)
    groups.append(_folded(_triples(ck, "h") + _triples(ck, "v")))
    for plane in planes[1:]:
        for order, q in ((1, 1.0), (2, 2.0)):
            rh, rv = _diff(plane, order, "h"), _diff(plane, order, "v")
            variances.append(_log_var(rh, rv))
            groups.append(
                _folded(_triples(_quantise(rh, q), "h") + _triples(_quantise(rv, q), "v"))
            )
    return np.concatenate([*groups, np.asarray(variances)])


def residual_features(
    images: Sequence[torch.Tensor] | torch.Tensor, *, max_side: int | None = MAX_SIDE
) -> np.ndarray:
    """N x :data:`FEATURE_DIM` features of uint8 RGB 3 x H x W pictures (module docstring).
    A side under 8 px cannot be measured: ValueError naming its size."""
    out = np.zeros((len(images), FEATURE_DIM))
    with torch.no_grad():
        for i, im in enumerate(images):
            if im.dtype != torch.uint8 or im.ndim != 3 or im.shape[0] != 3:
                raise ValueError(
                    f"expected uint8 3 x H x W pictures, got {im.dtype} {tuple(im.shape)}"
                )
            if min(im.shape[-2:]) < 8:
                raise ValueError(
                    f"picture of {tuple(im.shape[-2:])} px: too small for residual features"
                )
            out[i] = _one(im.cpu(), max_side)
    return out
