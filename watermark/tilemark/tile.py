"""The tile: 16 x 16 chips, where the key puts the pilot and frame chips and their signs, and
how one chip looks once rendered and as the detector's matched filter sees it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from aigcguard.watermark.payload import SYNC_BITS, _ranks, _stream, bytes_to_bits, frame_layout

CHIPS = 16  # chips per tile side
CHIP_PX = 2  # working pixels per chip side
PERIOD = CHIPS * CHIP_PX  # tile period in working pixels
WORK_SHORT = 256  # the working size's short side: 8 tiles across
N_CHIPS = CHIPS * CHIPS
N_PILOT = 64
N_FRAME = N_CHIPS - N_PILOT  # 192 = 64 sync + 128 coded payload (64 bits, rate 1/2)


# ------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class TileLayout:
    """Key-derived constants: where the pilot and frame chips sit and their signs."""

    pilot_pos: torch.Tensor  # N_PILOT flat chip indices
    pilot_sign: torch.Tensor  # N_PILOT floats, +-1, keyed fair coins
    frame_pos: torch.Tensor  # N_FRAME flat chip indices, in frame order
    frame_flip: torch.Tensor  # N_FRAME bools XORed onto the frame bits
    known: torch.Tensor  # N_CHIPS floats: the sign of each pilot and sync chip, 0 elsewhere

    def chip_signs(self, frame_bits: torch.Tensor) -> torch.Tensor:
        """B x N_FRAME bits -> B x N_CHIPS chip signs (+-1)."""
        signs = torch.empty(frame_bits.shape[0], N_CHIPS, device=frame_bits.device)
        signs[:, self.pilot_pos.to(signs.device)] = self.pilot_sign.to(signs.device)
        flipped = frame_bits ^ self.frame_flip.to(frame_bits.device)
        signs[:, self.frame_pos.to(signs.device)] = flipped.float() * 2 - 1
        return signs


@lru_cache(maxsize=64)
def tile_layout(key: str | bytes) -> TileLayout:
    order = torch.argsort(_ranks(key, b"tile-chips", N_CHIPS))
    pilot = bytes_to_bits(_stream(key, b"tile-pilot", (N_PILOT + 7) // 8))[:N_PILOT]
    flip = bytes_to_bits(_stream(key, b"tile-flip", (N_FRAME + 7) // 8))[:N_FRAME]
    pilot_pos, frame_pos = order[:N_PILOT], order[N_PILOT:]
    pilot_sign = pilot.float() * 2 - 1
    known = torch.zeros(N_CHIPS)
    known[pilot_pos] = pilot_sign
    sync = frame_layout(key).sync ^ flip[:SYNC_BITS]
    known[frame_pos[:SYNC_BITS]] = sync.float() * 2 - 1
    return TileLayout(pilot_pos, pilot_sign, frame_pos, flip, known)


def frame_values(chips: torch.Tensor, key: str | bytes) -> torch.Tensor:
    """Soft frame values (positive = bit 1) from chip values (... x N_CHIPS)."""
    layout = tile_layout(key)
    vals = chips[..., layout.frame_pos]
    return torch.where(layout.frame_flip, -vals, vals)


# -------------------------------------------------------------------------------- rendering


def render(chips: torch.Tensor) -> torch.Tensor:
    """Chip values (B x n x n: a tile's CHIPS x CHIPS, or a keyed super-tile's) to one smooth
    periodic pattern (B x n CHIP_PX x n CHIP_PX)."""
    pad, side = 3, chips.shape[-1] * CHIP_PX
    grid = F.pad(chips[:, None], (pad, pad, pad, pad), mode="circular")
    big = F.interpolate(grid, scale_factor=CHIP_PX, mode="bicubic", align_corners=False)
    off = pad * CHIP_PX
    return big[:, 0, off : off + side, off : off + side]


def _highpass_tile(tiles: torch.Tensor) -> torch.Tensor:
    """The whitening's high-pass applied to periodic tiles (B x PERIOD x PERIOD)."""
    padded = F.pad(tiles[:, None], (2, 2, 2, 2), mode="circular")
    return tiles - F.avg_pool2d(padded, 5, stride=1)[:, 0]


@lru_cache(maxsize=1)
def _chip_footprint() -> torch.Tensor:
    """Chip (0, 0) of value 1, rendered and high-passed as the detector sees it
    (PERIOD x PERIOD); every other chip's is it moved by whole chips."""
    one = torch.zeros(1, CHIPS, CHIPS)
    one[0, 0, 0] = 1.0
    return _highpass_tile(render(one))[0]


@lru_cache(maxsize=1)
def _chip_kernel() -> torch.Tensor:
    """The matched filter of chip (0, 0) on a folded, whitened tile: its footprint, scaled to
    read 1 for a lone chip of value 1. (A least-squares inverse would cancel the neighbours'
    overlap but amplifies the picture's noise more than it gains: measured.)"""
    footprint = _chip_footprint()
    return footprint / footprint.pow(2).sum()


@lru_cache(maxsize=1)
def _kernel_power() -> torch.Tensor:
    """Power spectrum of the chip footprint over the tile's frequencies (PERIOD x PERIOD)."""
    spec = torch.fft.fft2(_chip_footprint())
    return spec.real**2 + spec.imag**2


def tile_pattern(tile: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """B x p x p periodic tiles repeated over h x w, from the top-left corner."""
    reps = (-(-h // tile.shape[-2]), -(-w // tile.shape[-1]))
    return tile.repeat(1, *reps)[:, :h, :w]
