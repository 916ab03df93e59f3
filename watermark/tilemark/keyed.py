"""The keyed format: a pattern that differs per picture and per tile, so that averaging
marked pictures or a picture's own tiles does not isolate it.

The legacy format repeats one key-derived tile in every tile of every picture: averaging the
high-pass residuals of 20 marked pictures, or folding one picture onto its tile period,
estimates that tile, which can then be added to any photo (forgery) or subtracted (removal).
Here every chip of every tile is multiplied by a keyed sign that depends on

- the tile's place in a super-tile of SUPER_TILES x SUPER_TILES tiles (the whole short side
  of the working size: a picture holds its pattern once across, not 64 times), and
- the picture's nonce, one of NONCES, drawn per picture from its pixels and the key.

A chip's sign in a tile is a keyed tile sign (balanced over the super-tile's tiles for every
chip, so folding onto the tile period cancels the pattern exactly) times a keyed nonce sign
(the same in every tile; on the known chips a Walsh-Hadamard row, so the nonces' patterns are
orthogonal where the p-value reads). Pictures with different nonces carry patterns that
average out; only the key-free template stays common, and it gives the geometry and proves
nothing. The detector reads every chip of the super-tile through the same matched filter as
before, takes the tile signs off for every tile offset at once (a cyclic correlation over the
tile grid) and the nonce signs for every nonce at once (one Walsh-Hadamard transform), and
counts those hypotheses in the p-value (see ``keyed_search``)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from aigcguard.watermark.payload import _stream
from aigcguard.watermark.tilemark.tile import (
    CHIP_PX,
    CHIPS,
    N_CHIPS,
    PERIOD,
    _chip_footprint,
    tile_layout,
)

SUPER_TILES = 8  # tiles per super-tile side: the working size's short side (256 / 32)
SUPER = SUPER_TILES * PERIOD  # super-tile period, working pixels
SUPER_CHIPS = SUPER_TILES * CHIPS  # chips per super-tile side
SUPER_SHIFTS = 2 * SUPER  # shift hypotheses per super-tile side (half working pixels)
# Nonces per key: one Walsh-Hadamard row over the tile's 128 known chips each, so the detector
# scores every nonce at once with a fast transform. Averaging N marked pictures leaves each
# nonce's pattern at its colluders' share of the average: about 1/N of them while N is under
# NONCES (measured: docs/watermark.md, attacks).
NONCES = 128


def _keyed_signs(key: str | bytes, label: bytes, shape: tuple[int, ...]) -> torch.Tensor:
    raw = _stream(key, label, (int(np.prod(shape)) + 7) // 8)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[: int(np.prod(shape))]
    return torch.from_numpy(bits.astype(np.float32) * 2 - 1).reshape(shape)


@lru_cache(maxsize=16)
def _tile_signs(key: str | bytes) -> torch.Tensor:
    """N_CHIPS x tiles: each chip's keyed signs over the super-tile's tiles, half +1, so a
    fold onto the tile period sums them to zero."""
    tiles = SUPER_TILES * SUPER_TILES
    raw = _stream(key, b"keyed-tiles", 8 * N_CHIPS * tiles)
    ranks = torch.from_numpy(np.frombuffer(raw, dtype=">u8").astype(np.int64) >> 1)
    order = ranks.reshape(N_CHIPS, tiles).argsort(dim=-1).argsort(dim=-1)
    return torch.where(order < tiles // 2, 1.0, -1.0)


@lru_cache(maxsize=16)
def _nonce_signs(key: str | bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NONCES x N_CHIPS: each nonce's sign per chip, the same in every tile. On the known
    chips it is a keyed sign times a Walsh-Hadamard row at a keyed place (so nonces are
    orthogonal there and ``_hadamard`` scores them all); elsewhere keyed coins. Also the
    known chips' places in the transform and their keyed signs."""
    known = tile_layout(key).known != 0
    n_known = int(known.sum())
    place = torch.argsort(
        torch.from_numpy(
            np.frombuffer(_stream(key, b"keyed-nonce-order", 8 * n_known), dtype=">u8").astype(
                np.int64
            )
            >> 1
        )
    )
    flip = _keyed_signs(key, b"keyed-nonce-flip", (n_known,))
    idx = torch.arange(NONCES)
    hadamard = (-1.0) ** _popcount(idx[:, None] & place[None, :]).float()  # NONCES x known
    signs = _keyed_signs(key, b"keyed-nonce-coded", (NONCES, N_CHIPS))
    signs[:, known] = hadamard * flip
    return signs, place, flip


def _popcount(x: torch.Tensor) -> torch.Tensor:
    count = torch.zeros_like(x)
    while bool((x > 0).any()):
        count += x & 1
        x = x >> 1
    return count


def _hadamard(x: torch.Tensor) -> torch.Tensor:
    """The Walsh-Hadamard transform (natural order, unnormalised) along the last axis."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < n:
        pairs = x.reshape(*lead, n // (2 * h), 2, h)
        x = torch.stack(
            (pairs[..., 0, :] + pairs[..., 1, :], pairs[..., 0, :] - pairs[..., 1, :]), dim=-2
        )
        x = x.reshape(*lead, n)
        h *= 2
    return x


@lru_cache(maxsize=16)
def modulation(key: str | bytes) -> torch.Tensor:
    """NONCES x SUPER_CHIPS x SUPER_CHIPS keyed signs (+-1): a chip's sign in a tile is its
    tile sign times its nonce sign, so for every nonce and chip the signs over the
    super-tile's tiles are balanced."""
    tiles = _tile_signs(key)  # chip x tile
    nonce = _nonce_signs(key)[0]  # nonce x chip
    signs = nonce[:, :, None] * tiles[None]  # nonce x chip x tile
    # tile t = (ty, tx), chip c = (cy, cx)  ->  super chip (ty * CHIPS + cy, tx * CHIPS + cx)
    grid = signs.reshape(NONCES, CHIPS, CHIPS, SUPER_TILES, SUPER_TILES)
    return grid.permute(0, 3, 1, 4, 2).reshape(NONCES, SUPER_CHIPS, SUPER_CHIPS).contiguous()


def nonce_for(x: torch.Tensor, key: str | bytes) -> list[int]:
    """Each picture's nonce (B x 3 x H x W uint8): a keyed hash of its pixels, so the same
    picture always gets the same mark and different pictures independent ones."""
    key_bytes = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    out = []
    for img in x:
        h = hashlib.blake2b(img.contiguous().cpu().numpy().tobytes(), key=key_bytes[:64])
        out.append(int.from_bytes(h.digest()[:4], "big") % NONCES)
    return out


def super_chips(values: torch.Tensor, nonces: list[int], key: str | bytes) -> torch.Tensor:
    """Tile chip values (B x N_CHIPS) spread over the super-tile and modulated by each
    picture's nonce: B x SUPER_CHIPS x SUPER_CHIPS."""
    tiled = values.reshape(-1, CHIPS, CHIPS).repeat(1, SUPER_TILES, SUPER_TILES)
    return tiled * modulation(key).to(values.device)[torch.tensor(nonces)]


@lru_cache(maxsize=1)
def _super_kernel() -> torch.Tensor:
    """The chip matched filter on the super-tile's torus: the tile's footprint (its support is
    a few pixels, well inside half a tile) placed around the origin, normalised to read 1."""
    foot = _chip_footprint()
    half = PERIOD // 2
    big = torch.zeros(SUPER, SUPER)
    offsets = torch.arange(-half, half)
    big[offsets[:, None] % SUPER, offsets[None, :] % SUPER] = foot[
        offsets[:, None] % PERIOD, offsets[None, :] % PERIOD
    ]
    return big / big.pow(2).sum()


def chip_map(folded: torch.Tensor, quarter: int) -> torch.Tensor:
    """Every chip read-out of a super-folded image (SUPER x SUPER) at every half-pixel shift,
    turned ``quarter`` quarter turns: SUPER_SHIFTS x SUPER_SHIFTS. (The matched filter and
    the zero-padded upsampling share one transform.)"""
    tile = torch.rot90(folded.reshape(SUPER, SUPER), -quarter, dims=(0, 1))
    spec = torch.fft.fftshift(torch.fft.fft2(tile) * _kernel_spectrum())
    spec[0, :] = 0  # the Nyquist row and column have no unique place in the larger grid
    spec[:, 0] = 0
    half = SUPER // 2
    big = F.pad(spec, (half, half, half, half))
    return torch.fft.ifft2(torch.fft.ifftshift(big)).real * 4


@lru_cache(maxsize=1)
def _kernel_spectrum() -> torch.Tensor:
    return torch.conj(torch.fft.fft2(_super_kernel()))


@lru_cache(maxsize=16)
def _known_tiles(key: str | bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the known chips are in a tile, and the conjugate spectra over the super-tile's
    tile grid of their tile signs: known chips x SUPER_TILES x (rfft)."""
    where = tile_layout(key).known != 0
    tiles = _tile_signs(key)[where].reshape(-1, SUPER_TILES, SUPER_TILES)
    return where, torch.conj(torch.fft.rfft2(tiles))


def tile_reads(
    cmap: torch.Tensor, sigmas: list[tuple[int, int]], chips: torch.Tensor | None = None
) -> torch.Tensor:
    """Every chip of every tile (or the ``chips`` a mask over N_CHIPS picks) at each shift
    within a tile: S x chips x SUPER_TILES x SUPER_TILES."""
    at = torch.tensor(sigmas)
    tile_step = torch.arange(SUPER_TILES) * 2 * PERIOD
    chip_step = torch.arange(CHIPS) * 2 * CHIP_PX
    cy, cx = torch.meshgrid(chip_step, chip_step, indexing="ij")
    cy, cx = cy.flatten(), cx.flatten()
    if chips is not None:
        cy, cx = cy[chips], cx[chips]
    rows = (at[:, 0, None, None] + cy[:, None] + tile_step) % SUPER_SHIFTS  # S x C x T
    cols = (at[:, 1, None, None] + cx[:, None] + tile_step) % SUPER_SHIFTS
    return cmap[rows[:, :, :, None], cols[:, :, None, :]]  # S x C x T x T


def tile_strengths(
    cmap: torch.Tensor,
    key: str | bytes,
    sigmas: list[tuple[int, int]],
    reads: torch.Tensor | None = None,
) -> torch.Tensor:
    """The strength of every hypothesis whose shift within a tile is one of ``sigmas`` (half
    pixels, below 2 PERIOD): every nonce and every tile offset of the super-tile at once.
    The tile signs come off by a cyclic correlation over the tile grid (every tile offset),
    the nonce signs by one Walsh-Hadamard transform (every nonce).
    S x NONCES x SUPER_TILES x SUPER_TILES, where [s, n, i, j] is the shift
    sigmas[s] + 2 PERIOD (i, j). ``reads``: ``tile_reads(cmap, sigmas)``, when kept."""
    signed, norm = _demodulated(cmap, key, sigmas, reads)  # S x T x T x known, S
    corr = _nonce_transform(signed, key).permute(0, 3, 1, 2)  # S x NONCES x T x T
    return corr / norm[:, None, None, None]


def _demodulated(cmap, key, sigmas, reads=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The known chips at each shift in ``sigmas`` and each tile offset with the tile signs
    taken off (a cyclic correlation over the tile grid) and the nonce transform's keyed
    flips applied, S x T x T x known chips; and each shift's norm (S)."""
    where, spectra = _known_tiles(key)
    _, _, flip = _nonce_signs(key)
    known = tile_layout(key).known[where]
    reads = tile_reads(cmap, sigmas, where) if reads is None else reads[:, where]
    tiled = torch.fft.irfft2(torch.fft.rfft2(reads) * spectra, s=(SUPER_TILES, SUPER_TILES))
    signed = (tiled * (known * flip)[None, :, None, None]).permute(0, 2, 3, 1)
    return signed, reads.pow(2).sum(dim=(1, 2, 3)).clamp(min=1e-12).sqrt()


def _nonce_transform(signed: torch.Tensor, key: str | bytes) -> torch.Tensor:
    """Every nonce's signed sum of demodulated known chips (... x known -> ... x NONCES):
    the chips put at their keyed places, one Walsh-Hadamard transform."""
    _, place, _ = _nonce_signs(key)
    placed = torch.empty_like(signed)
    placed[..., place] = signed
    return _hadamard(placed)


# (shift, tile offset) pairs kept, by the energy of their demodulated known chips, for the
# nonce transform: every nonce's strength has that energy as its upper bound (Parseval: the
# squared strengths of all nonces sum to NONCES times it), so a strong mark is kept; the
# p-value still counts every hypothesis.
PRESCREEN = 64


def tile_best(
    cmap: torch.Tensor,
    key: str | bytes,
    sigmas: list[tuple[int, int]],
    reads: torch.Tensor | None = None,
    every_tile: bool = True,
) -> tuple[float, int, int, int, int]:
    """The strongest hypothesis ``tile_strengths`` would give, as (strength, shift index,
    nonce, tile row, tile column), with the nonce transform only on the PRESCREEN (shift,
    tile offset) pairs whose demodulated known chips carry the most energy. ``every_tile``
    False: only the super-tile where the embedder put the mark."""
    signed, norm = _demodulated(cmap, key, sigmas, reads)
    if not every_tile:
        signed = signed[:, :1, :1]
    offsets = signed.shape[1] * signed.shape[2]
    flat = signed.reshape(-1, signed.shape[-1])  # (S x offsets) x known
    norm = norm.repeat_interleave(offsets)
    keep = torch.arange(flat.shape[0])
    if flat.shape[0] > PRESCREEN:
        keep = torch.topk(flat.pow(2).sum(dim=1) / norm.pow(2), PRESCREEN).indices
    strengths = _nonce_transform(flat[keep], key) / norm[keep][:, None]
    value, idx = strengths.flatten().max(0)
    row, nonce = divmod(int(idx), NONCES)
    si, rest = divmod(int(keep[row]), offsets)
    i, j = divmod(rest, signed.shape[2])
    return float(value), si, nonce, i, j


def read_super(cmap: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """The super-tile's chips (SUPER_CHIPS x SUPER_CHIPS) read at one shift."""
    rows = (shift[0] + torch.arange(SUPER_CHIPS) * 2 * CHIP_PX) % SUPER_SHIFTS
    cols = (shift[1] + torch.arange(SUPER_CHIPS) * 2 * CHIP_PX) % SUPER_SHIFTS
    return cmap[rows[:, None], cols[None, :]]


def demodulate(chips: torch.Tensor, nonce: int, key: str | bytes) -> torch.Tensor:
    """A super-tile's chips (SUPER_CHIPS x SUPER_CHIPS) back to one tile's values (N_CHIPS):
    each tile's chips times their keyed signs, summed over the tiles."""
    signed = chips * modulation(key)[nonce]
    per_tile = signed.reshape(SUPER_TILES, CHIPS, SUPER_TILES, CHIPS)
    return per_tile.sum(dim=(0, 2)).flatten()
