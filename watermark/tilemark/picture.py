"""The picture as the mark sees it: luminance at the working size, the texture mask the
embedder shapes the mark with, and the matched whitening the detector reads it through."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aigcguard.budget import bounded_size
from aigcguard.watermark.dwt import _BY, _GY, _RY
from aigcguard.watermark.tilemark.tile import PERIOD, WORK_SHORT

# The working size's long side is capped: 20 times the short side, the loader's default
# aspect limit, so every picture the loader takes by default keeps the working size it always
# had, and a thinner one is scaled by its long side instead (down to one tile across), where
# scaling the short side alone took a 5 x 50,000 picture to 256 x 2,560,000 working pixels
# and 24 GB. At most 256 x 5120 = 1.3 M working pixels (5 MB a float plane) whatever the
# shape; the search's time grows with them (on the 2-core test machine a square picture's
# 256 x 256 takes 1.1 s, 64 x 300,000's 32 x 5120 1.0 s, a 20:1 picture's 256 x 5120 8 s).
WORK_LONG = 20 * WORK_SHORT

# The mark's amplitude goes as local deviation ** MASK_EXP: 1 would hide it best, 0 (flat)
# reads best, since flat areas let the mark through with little picture noise (the SSIM floor
# keeps mostly flat pictures in check). The detector weighs a pixel by amplitude over noise
# variance, hence its contrast normalisation's exponent. Per-chip SNR measured on nine photos
# with the SSIM floor (mean): exponent 0.6 -> 1.56, 0.4 -> 1.65, 0.2 -> 1.70, 0 -> 1.75.
MASK_EXP = 0.25
WHITEN_EXP = 2.0 - MASK_EXP
# Detection divides the spectrum by the picture's own smoothed power to this power. Measured
# strength (bench/tilemark_snr.py) at 0 / 0.5 / 1: gravel 7.26 / 7.47 / 7.50, grass 8.05 /
# 8.15 / 8.20, astronaut 10.07 / 9.86 / 9.37; at 1 photos also read fewer chips right and
# withhold their payload more often, at 0.5 they do not.
FLATTEN_EXP = 0.5
FLATTEN_FLOOR = 0.01


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luminance (as the DWT methods use) of B x 3 x H x W, float32. One channel is
    made float at a time: the same sums in the same order as converting the whole picture
    first, with a third of the memory (two float planes, 512 MB at 64 MP, not four)."""
    out = x[:, 0].to(torch.float32, copy=True).mul_(_RY)  # a copy even of a float picture
    out += x[:, 1].to(torch.float32, copy=True).mul_(_GY)
    out += x[:, 2].to(torch.float32, copy=True).mul_(_BY)
    return out


def working_size(height: int, width: int) -> tuple[int, int]:
    """The short side scaled to WORK_SHORT, the long side capped at WORK_LONG (a thinner
    picture is scaled by its long side), no side under one tile."""
    return bounded_size(height, width, short=WORK_SHORT, max_long=WORK_LONG, min_side=PERIOD)


def resize(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    # antialiased where either side shrinks (a thin picture may grow one way, shrink the other)
    down = size[0] < y.shape[-2] or size[1] < y.shape[-1]
    return F.interpolate(
        y[:, None], size=size, mode="bilinear", align_corners=False, antialias=down
    )[:, 0]


def upsample(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The working-size pattern at full size, bicubic: bilinear would soften the chips, so
    part of the PSNR budget would go on a mark the detector reads less of (measured per-chip
    SNR +3 to +7% on eight photos, gravel's strength 6.95 -> 7.21)."""
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    return F.interpolate(y[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]


def _box(y: torch.Tensor, k: int) -> torch.Tensor:
    """k x k box mean of B x h x w, same size (edges replicated), separably."""
    pad = k // 2
    padded = F.pad(y[:, None], (pad, pad, pad, pad), mode="replicate")
    return F.avg_pool2d(F.avg_pool2d(padded, (k, 1), stride=1), (1, k), stride=1)[:, 0]


def whiten(y: torch.Tensor) -> torch.Tensor:
    """High-pass and contrast-normalise a working-size luminance (B x h x w). The offset
    keeps the flattest areas, where JPEG rounds a weak mark away, from weighing the most
    (measured under JPEG 50: offset 1 beats 0.1 and 3). The 3 x 3 high-pass keeps less of a
    texture's own detail than 5 x 5 (gravel's per-chip SNR 0.66 -> 0.78, grass then found
    under every target attack; photos within +-3%)."""
    hp = y - _box(y, 3)
    energy = _box(hp * hp, 5).sqrt()
    return hp / (energy + 1.0) ** WHITEN_EXP


def local_variance(y: torch.Tensor, k: int) -> torch.Tensor:
    mean = _box(y, k)
    return (_box(y * y, k) - mean * mean).clamp_(min=0)


def texture_mask(var: torch.Tensor) -> torch.Tensor:
    """Where the picture is busy the mark can be stronger: local deviation to MASK_EXP,
    floored so flat areas still carry some, normalised to mean square 1 per image."""
    mask = (var + 16.0) ** (MASK_EXP / 2)
    return mask / mask.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()


def flatten_spectrum(w: torch.Tensor, window: int = 9) -> torch.Tensor:
    """Divide every frequency of a whitened working image (B x h x w) by the picture's own
    power around it (geometric mean over ``window`` x ``window`` bins, which the mark's
    narrow lattice peaks barely move): the matched filter is then weighted against where
    this picture's residual is strong, as the optimal detector in coloured noise is, to
    the power FLATTEN_EXP. Key-free, so the p-value holds."""
    spec = torch.fft.fft2(w - w.mean(dim=(1, 2), keepdim=True))
    logp = torch.fft.fftshift((spec.real**2 + spec.imag**2 + 1e-9).log(), dim=(1, 2))
    pad = window // 2
    padded = F.pad(logp[:, None], (pad, pad, pad, pad), mode="circular")
    local = F.avg_pool2d(F.avg_pool2d(padded, (window, 1), stride=1), (1, window), stride=1)[:, 0]
    # Relative to the typical frequency, floored: bands the picture does not have (above its
    # own Nyquist when it was enlarged to the working size, or blurred away) carry neither
    # picture nor mark, and lifting them would only lift rounding noise.
    local = (local - local.mean(dim=(1, 2), keepdim=True)).clamp(min=math.log(FLATTEN_FLOOR))
    power = torch.fft.ifftshift(local, dim=(1, 2)).exp()
    return torch.fft.ifft2(spec / power**FLATTEN_EXP).real


def working_whitened(x: torch.Tensor) -> torch.Tensor:
    return flatten_spectrum(whiten(resize(luma(x), working_size(*x.shape[-2:]))))
