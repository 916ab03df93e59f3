"""Key-free synchronisation: the template of sinusoids off the tile's lattice, and the match
of its peaks (or the lattice's) over the power spectrum at every scale and rotation at once,
giving a few candidate geometries that say nothing about the key's signs."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from aigcguard.watermark.tilemark.tile import PERIOD, _kernel_power

# Cancelling the picture at the chips also cancels it at the tile's frequency lattice, where
# the key-free spectral search looks for the mark: in busy textures the lattice then reads
# as a notch, not a peak. A fixed template of sinusoids off the lattice (half-integer
# cycles per tile, so folding over the tiles cancels them) carries the geometry instead:
# four frequencies in the half plane, a quarter turn of each other, with TEMPLATE_SHARE of
# the working-size mark's power. High frequencies stand out more over a picture's falling
# spectrum: the true geometry's score over the best other candidate's, on five photos under
# six attacks, was 1.51 on average (and missed after crop 50%) at about 6.5 cycles per tile,
# 2.00 (1.37 at least, never missed) at 11; at 11 a share of 0.10 still ranked it first
# everywhere (1.04 at least), 0.15 gains margin but takes it from the chips.
TEMPLATE_FREQS = ((11.5, 2.5), (-2.5, 11.5), (3.5, -10.5), (10.5, 3.5))  # cycles per tile
TEMPLATE_PHASES = (0.0, 1.9, 3.7, 5.3)  # fixed, so the sinusoids' crests do not line up
TEMPLATE_SHARE = 0.12

# The spectral search grid: scales 0.7-2.3 (a 30% shrink to a 50% crop blown up, and more),
# every rotation; its steps (1% and half a degree) leave the rest to the refinement.
_SCALES = torch.exp(torch.linspace(math.log(0.7), math.log(2.3), 120))
_ANGLES = torch.arange(-45.0, 45.0, 0.5)  # the tile is square: quarter turns do the rest


def template(h: int, w: int) -> torch.Tensor:
    """The synchronisation template at a working size (h x w), mean square 1. Key-free."""
    u = torch.arange(h, dtype=torch.float32)[:, None]
    v = torch.arange(w, dtype=torch.float32)[None, :]
    out = torch.zeros(h, w)
    for (k1, k2), phase in zip(TEMPLATE_FREQS, TEMPLATE_PHASES, strict=True):
        out += torch.cos(2 * math.pi * (k1 * u + k2 * v) / PERIOD + phase)
    return out / math.sqrt(len(TEMPLATE_FREQS) / 2)


@lru_cache(maxsize=1)
def _lattice_points() -> tuple[torch.Tensor, torch.Tensor]:
    """Tile frequencies (cycles per tile, half plane) that carry mark power, weighted by a
    chip's power there. Key-free, so the candidates it gives say nothing about the signs."""
    power = _kernel_power()
    ks = torch.arange(PERIOD) - PERIOD // 2
    k1, k2 = torch.meshgrid(ks, ks, indexing="ij")
    weight = power[k1 % PERIOD, k2 % PERIOD]
    half = (k1 > 0) | ((k1 == 0) & (k2 > 0))
    keep = half & (weight > 0.02 * weight.max())
    return torch.stack([k1[keep], k2[keep]], dim=1).float(), weight[keep]


@lru_cache(maxsize=1)
def _template_points() -> tuple[torch.Tensor, torch.Tensor]:
    """The template's frequencies (cycles per tile, half plane), equally weighted."""
    return torch.tensor(TEMPLATE_FREQS), torch.ones(len(TEMPLATE_FREQS))


def _flat_log_spectrum(w: torch.Tensor) -> torch.Tensor:
    """Log power of a whitened image (centred, zero-padded to twice the size) against its
    local average: the picture's smooth spectrum flattens out while the mark's narrow peaks,
    being few in any neighbourhood, barely move the average. No window (a taper smears the
    peaks); the padding samples the spectrum finely enough for peaks between the bins."""
    h, wd = 2 * w.shape[0], 2 * w.shape[1]
    spec = torch.fft.fftshift(torch.fft.fft2(w - w.mean(), s=(h, wd)))
    logp = (spec.real**2 + spec.imag**2 + 1e-9).log()
    return logp - _box_mean(logp, 31)


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k x k mean around every point of a plane (k odd, edges reflected), by running
    sums in float64: the same as two passes of ``avg_pool2d`` to float32 rounding, at a
    seventh of the time for k = 31 (the spectrum's window; 7 of the gate's 13 ms a picture
    went there)."""
    pad = k // 2
    padded = F.pad(x[None, None], (pad, pad, pad, pad), mode="reflect")[0, 0].double()
    rows = F.pad(padded.cumsum(0), (0, 0, 1, 0))
    rows = rows[k:] - rows[:-k]
    cols = F.pad(rows.cumsum(1), (1, 0, 0, 0))
    return ((cols[:, k:] - cols[:, :-k]) / (k * k)).to(x.dtype)


def _template_spectrum(flat: torch.Tensor) -> torch.Tensor:
    """The template's few strong peaks are matched on the power ratio itself, not its log,
    which would squash them to the level of the many chance bumps: the true geometry's rank
    among the first template's candidates (about 6.5 cycles per tile), grass / gravel /
    kodak 05 after crop 10%, rotation and none, was 4, >20, 2 / 0, 0, 0 / 0, 0, 0 on the log,
    0, 2, 0 / 0, 0, 0 / 0, 0, 0 here."""
    return flat.clamp(max=6.0).exp() - 1


def spectral_candidates(
    flat: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor],
    scales: torch.Tensor,
    angles: torch.Tensor,
    top: int = 4,
) -> list[tuple[float, float, float]]:
    """(scale, angle, score) of the ``top`` best matches of a set of tile frequencies
    (``points``: cycles per tile and weights) in a flattened log spectrum (or its power
    ratio, see ``_template_spectrum``)."""
    h, wd = flat.shape
    ks, weight = points
    sc, an = torch.meshgrid(scales, angles, indexing="ij")
    rad = torch.deg2rad(an)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # frequency (cycles/pixel) of tile frequency k under image = s R t: R k / (s PERIOD)
    fy = (cos[..., None] * ks[:, 0] - sin[..., None] * ks[:, 1]) / (sc[..., None] * PERIOD)
    fx = (sin[..., None] * ks[:, 0] + cos[..., None] * ks[:, 1]) / (sc[..., None] * PERIOD)
    by, bx = fy * h, fx * wd  # bins from the centre
    near_dc = (by.abs() < 5) & (bx.abs() < 5)
    gy = 2 * (by + h // 2) / (h - 1) - 1
    gx = 2 * (bx + wd // 2) / (wd - 1) - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, ks.shape[0], 2)
    sampled = F.grid_sample(flat[None, None], grid, align_corners=True, padding_mode="zeros")
    sampled = sampled.reshape(*sc.shape, ks.shape[0])
    wts = weight * (~near_dc)
    score = (sampled * wts).sum(-1) / wts.pow(2).sum(-1).sqrt().clamp(min=1e-9)
    peaks = score == F.max_pool2d(score[None, None], 3, stride=1, padding=1)[0, 0]
    vals = torch.where(peaks, score, torch.full_like(score, -math.inf)).flatten()
    best = torch.topk(vals, min(top, vals.numel()))
    out = []
    for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True):
        si, ai = divmod(i, len(angles))
        out.append((float(scales[si]), float(angles[ai]), v))
    return out


def template_dft(w: torch.Tensor, geometries: list[tuple[float, float]]) -> torch.Tensor:
    """The exact Fourier transform of a whitened image at the template's four frequencies as
    each (scale, angle) moves them (no bins): G x 4 complex."""
    h, wd = w.shape
    ks = torch.tensor(TEMPLATE_FREQS, dtype=torch.float64)
    geo = torch.tensor(geometries, dtype=torch.float64)
    rad = torch.deg2rad(geo[:, 1])[:, None]
    cos, sin, sc = torch.cos(rad), torch.sin(rad), geo[:, 0][:, None]
    fy = ((cos * ks[:, 0] - sin * ks[:, 1]) / (sc * PERIOD)).flatten()
    fx = ((sin * ks[:, 0] + cos * ks[:, 1]) / (sc * PERIOD)).flatten()
    ey = torch.exp(-2j * math.pi * fy[:, None] * torch.arange(h, dtype=torch.float64))
    ex = torch.exp(-2j * math.pi * fx[:, None] * torch.arange(wd, dtype=torch.float64))
    rows = ey @ w.to(torch.complex128)  # (G*4) x wd
    return (rows * ex).sum(dim=1).reshape(len(geometries), len(TEMPLATE_FREQS))
