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
from dataclasses import dataclass
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


def _nonce_modulation(key: str | bytes, nonce: int) -> torch.Tensor:
    """``modulation(key)[nonce]`` without the other nonces' (a fresh key per trial in
    calibration made building all of them a fifth of a trial's time)."""
    signs = _nonce_signs(key)[0][nonce][:, None] * _tile_signs(key)  # chip x tile
    grid = signs.reshape(CHIPS, CHIPS, SUPER_TILES, SUPER_TILES)
    return grid.permute(2, 0, 3, 1).reshape(SUPER_CHIPS, SUPER_CHIPS)


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


def _chip_reads(cmap: torch.Tensor, sigmas: list[tuple[int, int]]) -> torch.Tensor:
    """Every chip of every tile at each shift within a tile (key-free), as the tile signs'
    correlation takes them: N_CHIPS x S x tiles.

    Chips sit every ``2 CHIP_PX`` half pixels, so a shift's read-outs are one of the chip
    map's ``2 CHIP_PX`` x ``2 CHIP_PX`` sub-grids (the shift's remainder), cyclically moved
    by the shift's whole steps: each shift copies one window of a sub-grid (extended by the
    steps a shift within a tile can take) instead of gathering every chip by its own index."""
    at = torch.tensor(sigmas) % SUPER_SHIFTS
    step = 2 * CHIP_PX
    cells = SUPER_SHIFTS // step  # chips per super-tile side
    grids = cmap.reshape(cells, step, cells, step).permute(1, 3, 0, 2)  # ry, rx, rows, cols
    rest, whole = at % step, at // step
    reach = int(whole.max()) if len(sigmas) else 0  # within a tile: 2 PERIOD / step at most
    ext = torch.cat([grids, grids[:, :, :reach]], dim=2)
    ext = torch.cat([ext, ext[:, :, :, :reach]], dim=3)
    windows = ext.unfold(2, cells, 1).unfold(3, cells, 1)  # ry, rx, qy, qx, rows, cols
    # rows and columns split into (tile, chip), chips first: one gather makes the layout
    split = windows.unflatten(5, (SUPER_TILES, CHIPS)).unflatten(4, (SUPER_TILES, CHIPS))
    split = split.permute(5, 7, 0, 1, 2, 3, 4, 6)  # cy, cx, ry, rx, qy, qx, ty, tx
    reads = split[:, :, rest[:, 0], rest[:, 1], whole[:, 0], whole[:, 1]]  # cy, cx, S, ty, tx
    return reads.reshape(N_CHIPS, len(sigmas), SUPER_TILES**2)


def tile_reads(cmap: torch.Tensor, sigmas: list[tuple[int, int]]) -> torch.Tensor:
    """Every chip of every tile at each shift within a tile (key-free):
    S x N_CHIPS x SUPER_TILES x SUPER_TILES."""
    reads = _chip_reads(cmap, sigmas).reshape(N_CHIPS, len(sigmas), SUPER_TILES, SUPER_TILES)
    return reads.transpose(0, 1)


def tile_strengths(
    cmap: torch.Tensor,
    key: str | bytes,
    sigmas: list[tuple[int, int]],
    reads: torch.Tensor | None = None,
) -> torch.Tensor:
    """The strength of every hypothesis whose shift within a tile is one of ``sigmas`` (half
    pixels, below 2 PERIOD): every nonce and every tile offset of the super-tile at once.
    A strength is the p-value's statistic: the known chips' signed sum over their norm,
    after the tile signs come off (a cyclic correlation over the tile grid, every tile
    offset) and the nonce signs (the Walsh-Hadamard rows as one matrix, every nonce).
    S x NONCES x SUPER_TILES x SUPER_TILES, where [s, n, i, j] is the shift
    sigmas[s] + 2 PERIOD (i, j). ``reads``: ``_chip_reads(cmap, sigmas)``, when kept."""
    known, energy, _ = _demodulated(cmap, key, sigmas, reads)  # known x pairs
    corr = _nonce_transform(known, key) / energy.clamp(min=1e-12).sqrt()  # NONCES x pairs
    shape = (NONCES, len(sigmas), SUPER_TILES, SUPER_TILES)
    return corr.reshape(shape).transpose(0, 1)


def _demodulated(cmap, key, sigmas, reads=None, own=None, every_tile=True):
    """Every chip at each shift in ``sigmas`` and each tile offset with the tile signs taken
    off (a cyclic correlation over the tile grid), for every (shift, tile offset) pair in
    (shift, tile row, tile column) order: the known chips, known x pairs; their energy,
    pairs; and each pair's balance, pairs (see ``PairScores``). ``every_tile`` False: tile
    offset 0 alone (the super-tile as embedded). ``reads`` and ``own``: ``_chip_reads`` and
    ``read_energy`` of this map and shifts, when kept."""
    where = tile_layout(key).known != 0
    reads = _chip_reads(cmap, sigmas) if reads is None else reads  # chips x S x tiles
    own = read_energy(cmap, sigmas) if own is None else own
    # tile offset 0's column of the circulants is the tile signs themselves
    circulants = _tile_circulants(key) if every_tile else _tile_signs(key)[:, :, None]
    # one matrix product per chip (its tile signs' circulant): several times faster on the
    # CPU than the same correlation by 8 x 8 FFTs
    tiled = torch.bmm(reads, circulants)  # chips x S x offsets
    known = tiled[where]
    known_energy = known.square().sum(dim=0)
    # every chip's demodulated energy against what its tiles' read-outs carry; both
    # squared, so the nonce's signs (the p-value's coins) play no part in it
    energy = tiled.square().sum(dim=0)
    balance = (energy.clamp(min=1e-12) / own[:, None]).log()
    return known.flatten(1), known_energy.flatten(), balance.flatten()


def read_energy(cmap: torch.Tensor, sigmas: list[tuple[int, int]]) -> torch.Tensor:
    """Every shift's read-outs' energy, over all chips and tiles (key-free): S. A shift
    reads a whole sub-grid of the chip map (see ``_chip_reads``), so its energy is the
    sub-grid's."""
    step = 2 * CHIP_PX
    cells = SUPER_SHIFTS // step
    grids = cmap.reshape(cells, step, cells, step).square().sum(dim=(0, 2))  # ry x rx
    at = torch.tensor(sigmas) % step
    return grids[at[:, 0], at[:, 1]].clamp(min=1e-12)


@lru_cache(maxsize=4)
def _tile_circulants(key: str | bytes) -> torch.Tensor:
    """Per chip, the matrix that correlates its read-outs over the tile grid with its tile
    signs cyclically, for every tile offset: N_CHIPS x tiles x offsets, [c, u, o] = the
    sign of tile u - o (per axis, modulo SUPER_TILES)."""
    t = torch.arange(SUPER_TILES)
    dy = (t[:, None, None, None] - t[None, None, :, None]) % SUPER_TILES  # u_y, -, o_y, -
    dx = (t[None, :, None, None] - t[None, None, None, :]) % SUPER_TILES  # -, u_x, -, o_x
    index = (dy * SUPER_TILES + dx).reshape(SUPER_TILES**2, SUPER_TILES**2)
    return _tile_signs(key)[:, index].contiguous()


@lru_cache(maxsize=16)
def _known_flips(key: str | bytes) -> torch.Tensor:
    """The known chips' signs times the nonce transform's keyed flips (known chips)."""
    where = tile_layout(key).known != 0
    return tile_layout(key).known[where] * _nonce_signs(key)[2]


@lru_cache(maxsize=4)
def _nonce_matrix(key: str | bytes) -> torch.Tensor:
    """known chips x NONCES: the nonce transform as one matrix (the chips' keyed places,
    then the Walsh-Hadamard rows)."""
    _, place, _ = _nonce_signs(key)
    return _hadamard(torch.eye(len(place)))[place].contiguous()  # [c, n] = H[n, place[c]]


@lru_cache(maxsize=4)
def _flipped_nonce_matrix(key: str | bytes) -> torch.Tensor:
    """NONCES x known chips: the nonce transform with the known chips' keyed flips in it."""
    return (_known_flips(key)[:, None] * _nonce_matrix(key)).T.contiguous()


def _nonce_transform(known: torch.Tensor, key: str | bytes) -> torch.Tensor:
    """Every nonce's signed sum of demodulated known chips (known x pairs -> NONCES x
    pairs), the known chips' signs and keyed flips applied."""
    return _flipped_nonce_matrix(key) @ known


@dataclass(frozen=True)
class PairScores:
    """Per (shift, tile offset) pair of one placement, flattened in (shift, tile row, tile
    column) order: the best nonce's strength, that nonce, and the pair's balance.

    The balance is the log of the energy every chip keeps once the tile signs are off, over
    the energy its tiles' read-outs carry: about 0 where nothing keyed is, far above where a
    mark's chips add up, and far below where informed embedding cancelled the picture's own
    read-out (busy textures: what the picture reads there is mostly gone). It uses the tile
    signs but not the nonces' signs, the coins the p-value bound is over (independent
    keyed streams), so picking pairs by it costs nothing in the p-value: a search that
    keeps only the pairs of most extreme balance counts their nonces alone."""

    strength: torch.Tensor
    nonce: torch.Tensor
    balance: torch.Tensor
    tiles: int  # tile offsets per shift (SUPER_TILES ** 2, or 1 as embedded)

    def locate(self, pair: int) -> tuple[int, int, int]:
        """(shift index, tile row, tile column) of a pair."""
        si, rest = divmod(pair, self.tiles)
        return (si, *divmod(rest, SUPER_TILES)) if self.tiles > 1 else (si, 0, 0)


def pair_scores(
    cmap: torch.Tensor,
    key: str | bytes,
    sigmas: list[tuple[int, int]],
    reads: tuple[torch.Tensor, torch.Tensor] | None = None,
    every_tile: bool = True,
) -> PairScores:
    """Every (shift, tile offset) pair's best nonce and its strength, as ``tile_strengths``
    would give them, and the pair's balance. ``reads``: ``_chip_reads`` and ``read_energy``
    of this map and shifts, when kept for many keys. ``every_tile`` False: only the
    super-tile where the embedder put the mark."""
    known, energy, balance = _demodulated(cmap, key, sigmas, *(reads or ()), every_tile=every_tile)
    norm = energy.clamp(min=1e-12).sqrt()
    strength, nonce = (_nonce_transform(known, key) / norm).max(dim=0)
    return PairScores(strength, nonce, balance, SUPER_TILES**2 if every_tile else 1)


def read_super(cmap: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """The super-tile's chips (SUPER_CHIPS x SUPER_CHIPS) read at one shift."""
    rows = (shift[0] + torch.arange(SUPER_CHIPS) * 2 * CHIP_PX) % SUPER_SHIFTS
    cols = (shift[1] + torch.arange(SUPER_CHIPS) * 2 * CHIP_PX) % SUPER_SHIFTS
    return cmap[rows[:, None], cols[None, :]]


def demodulate(chips: torch.Tensor, nonce: int, key: str | bytes) -> torch.Tensor:
    """A super-tile's chips (SUPER_CHIPS x SUPER_CHIPS) back to one tile's values (N_CHIPS):
    each tile's chips times their keyed signs, summed over the tiles."""
    signed = chips * _nonce_modulation(key, nonce)
    per_tile = signed.reshape(SUPER_TILES, CHIPS, SUPER_TILES, CHIPS)
    return per_tile.sum(dim=(0, 2)).flatten()
