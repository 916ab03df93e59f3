"""Reading the chips at a hypothesis: a geometry (scale and angle of the tile grid), a quarter
turn and a half-pixel shift. The whitened image is folded onto one tile, adding up every
repetition, and every chip is read at every shift and quarter turn at once by circular
correlation with the chip's matched filter.

Every hypothesis is judged by the known chips alone (pilot and sync, 128 keyed fair-coin
signs): its strength is the signed sum of their read-outs over its norm, so for a picture
without this mark, given the picture, P(strength >= t) is bounded as payload.signed_sum_sf
says. The search may look at as many hypotheses as it likes as long as it counts them: the
p-value is the bound times that count."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from aigcguard.watermark.tilemark.tile import CHIP_PX, CHIPS, PERIOD, _chip_kernel, tile_layout

SHIFTS = 2 * PERIOD  # shift hypotheses per tile side (half working pixels)


@dataclass(frozen=True)
class Geometry:
    """Where the tile grid lies in the working image: image = scale * R(angle) @ tile (row,
    column order), the folded tile turned ``quarter`` quarter turns and shifted by ``shift``
    half pixels; ``strength`` is the known chips' signed sum over its norm there."""

    scale: float
    angle: float  # degrees
    quarter: int
    shift: tuple[int, int]
    strength: float


AS_EMBEDDED = Geometry(1.0, 0.0, 0, (0, 0), 0.0)  # the grid as embedded, unmoved


def _matrix(scale: float, angle: float) -> torch.Tensor:
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return scale * torch.tensor([[c, -s], [s, c]])


def fold(
    w: torch.Tensor,
    scale: float,
    angle: float,
    period: int = PERIOD,
    offset: tuple[float, float] = (0.0, 0.0),
) -> torch.Tensor:
    """Average of one whitened image (h x w) over a moved grid of ``period`` (a tile, or the
    keyed format's super-tile), bilinear: period**2 values, 0 where the image does not reach.
    Pixel u lands at grid point M^-1 u - ``offset`` (M = scale x rotation by angle).
    (Folding several geometries in one vectorised pass was measured slower.)"""
    h, wd = w.shape
    bins = period * period
    if scale == 1.0 and angle == 0.0 and offset == (0.0, 0.0):  # as embedded: whole pixels
        ys = torch.arange(h, device=w.device) % period
        xs = torch.arange(wd, device=w.device) % period
        idx = (ys[:, None] * period + xs[None, :]).flatten()
        total = torch.bincount(idx, weights=w.flatten().double(), minlength=bins)
        return (total / torch.bincount(idx, minlength=bins).clamp(min=1)).float()
    inv = torch.linalg.inv(_matrix(scale, angle))
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(wd, dtype=torch.float32)
    ty = (inv[0, 0] * ys[:, None] + inv[0, 1] * xs[None, :]).flatten() - offset[0]
    tx = (inv[1, 0] * ys[:, None] + inv[1, 1] * xs[None, :]).flatten() - offset[1]
    fy, fx = torch.floor(ty), torch.floor(tx)
    dy, dx = ty - fy, tx - fx
    iy, ix = fy.long() % period, fx.long() % period
    vals = w.flatten()
    idx, wts = [], []
    for oy, wy in ((0, 1 - dy), (1, dy)):
        for ox, wx in ((0, 1 - dx), (1, dx)):
            idx.append(((iy + oy) % period) * period + (ix + ox) % period)
            wts.append(wy * wx)
    # one bincount per sum: index_add_ into few bins is several times slower on the CPU
    idx_all, wt_all = torch.cat(idx), torch.cat(wts)
    total = torch.bincount(idx_all, weights=wt_all * vals.repeat(4), minlength=bins)
    count = torch.bincount(idx_all, weights=wt_all, minlength=bins)
    return (total / count.clamp(min=1e-6)).float()


def _circular_xcorr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """corr[s] = sum_u a[u + s] b[u] over the torus."""
    return torch.fft.irfft2(torch.fft.rfft2(a) * torch.conj(torch.fft.rfft2(b)), s=a.shape)


def _upsample2(c: torch.Tensor) -> torch.Tensor:
    """A periodic n x n map at twice the resolution (spectrum zero-padded)."""
    spec = torch.fft.fftshift(torch.fft.fft2(c))
    spec[0, :] = 0  # the Nyquist row and column have no unique place in the larger grid
    spec[:, 0] = 0
    half = c.shape[-1] // 2
    big = F.pad(spec, (half, half, half, half))
    return torch.fft.ifft2(torch.fft.ifftshift(big)).real * 4


@lru_cache(maxsize=64)
def _known_maps(key: str | bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """The known chips' signs at their anchors on the half-pixel grid, and where they are."""
    signs = tile_layout(key).known.reshape(CHIPS, CHIPS)
    grid = torch.zeros(SHIFTS, SHIFTS)
    grid[:: 2 * CHIP_PX, :: 2 * CHIP_PX] = signs
    return grid, grid.abs()


def _chip_maps(folded: torch.Tensor, quarters=range(4)) -> dict[int, torch.Tensor]:
    """Per quarter turn, every chip read-out at every half-pixel shift: map[s + anchor]."""
    tile = folded.reshape(PERIOD, PERIOD)
    return {
        q: _upsample2(_circular_xcorr(torch.rot90(tile, -q, dims=(0, 1)), _chip_kernel()))
        for q in quarters
    }


def _strengths(c: torch.Tensor, key) -> torch.Tensor:
    """The strength of every shift hypothesis (SHIFTS x SHIFTS) on one quarter's chip map."""
    signs, where = _known_maps(key)
    return _circular_xcorr(c, signs) / _circular_xcorr(c * c, where).clamp(min=1e-12).sqrt()


class PictureMemo:
    """The key-free work on one whitened picture (folds, chip maps, candidates), kept so that
    detecting with many keys on it (calibration) does it once. Detection results are the
    same with or without it."""

    def __init__(self, w: torch.Tensor):
        self.w = w
        self._maps: dict[tuple[float, float], dict[int, torch.Tensor]] = {}
        self._values: dict[str, object] = {}

    def chip_maps(self, scale: float, angle: float, quarters) -> dict[int, torch.Tensor]:
        if (scale, angle) not in self._maps:
            self._maps[scale, angle] = _chip_maps(fold(self.w, scale, angle))
        return {q: self._maps[scale, angle][q] for q in quarters}

    def get(self, name: str, make):
        """The value kept under ``name``, made by ``make()`` the first time."""
        if name not in self._values:
            self._values[name] = make()
        return self._values[name]


def _strength_maps(w: torch.Tensor, key, scale: float, angle: float, quarters=range(4), memo=None):
    """Per quarter turn, the strength of every shift hypothesis at one geometry."""
    if memo is not None:
        maps = memo.chip_maps(scale, angle, quarters)
    else:
        maps = _chip_maps(fold(w, scale, angle), quarters)
    return {q: _strengths(c, key) for q, c in maps.items()}


def _best(strengths: dict[int, torch.Tensor], scale: float, angle: float) -> Geometry:
    """The strongest hypothesis over the given quarters and every shift, at one geometry."""
    best = Geometry(scale, angle, 0, (0, 0), -math.inf)
    for q, st in strengths.items():
        value, idx = st.flatten().max(0)
        if float(value) > best.strength:
            best = Geometry(scale, angle, q, divmod(int(idx), SHIFTS), float(value))
    return best


def read_geometry(w: torch.Tensor, geom: Geometry, memo: PictureMemo | None = None) -> torch.Tensor:
    """Chip values (N_CHIPS) of one whitened image at a located hypothesis."""
    if memo is not None:
        return _read_map(
            memo.chip_maps(geom.scale, geom.angle, (geom.quarter,))[geom.quarter], geom
        )
    return _read_folded(fold(w, geom.scale, geom.angle), geom)


def _read_folded(folded: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Chip values (N_CHIPS) of a folded tile at a hypothesis's quarter turn and shift."""
    return _read_map(_chip_maps(folded, (geom.quarter,))[geom.quarter], geom)


def _read_map(c: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Chip values (N_CHIPS) of a quarter's chip map at a hypothesis's shift."""
    rows = (geom.shift[0] + torch.arange(CHIPS) * 2 * CHIP_PX) % SHIFTS
    cols = (geom.shift[1] + torch.arange(CHIPS) * 2 * CHIP_PX) % SHIFTS
    return c[rows[:, None], cols[None, :]].flatten()
