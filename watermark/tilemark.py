"""``tilemark``: a keyed, periodic luminance mark that finds its own geometry.

The mark is a tile of 16 x 16 chips repeated over the whole picture, eight tiles across the
short side, so it scales with the image. Each chip is a smooth bump whose sign carries one
value: 128 chips are *known* (64 keyed pilot signs and the key's 64 sync bits), 128 carry the
64-bit payload under a rate-1/2 code; every frame chip is XORed with a keyed mask.

Embedding is informed: each chip's value is its sign less part of what the picture itself
already reads there, so busy textures do not drown the payload. The tiles, plus a fixed
template of a few sinusoids off the tile's frequency lattice (for synchronisation), are added
to R, G and B alike, shaped by local texture (amplitude as local deviation to the power
MASK_EXP) and scaled per image to a target PSNR.

Detection needs only the key:

1. the luminance is brought to a working size (short side 256), high-pass filtered,
   contrast-normalised (weighing each pixel as the mask and the picture's noise there say)
   and its spectrum partly flattened (weighing each frequency against the picture's power);
2. the template's peaks (and, for marks made before the template, the lattice of
   frequencies the repeating tile puts its power on) are matched over the power spectrum at
   every scale and rotation at once (translation does not change the power spectrum),
   giving a few candidate geometries (key-free);
3. for each candidate the image is folded onto one tile, adding up every repetition; every
   chip is read at every half-pixel shift and quarter turn by circular correlation, and each
   such hypothesis is scored by the known chips; the strongest candidates are refined on a
   fine grid of scale and angle;
4. the payload chips are read at the best hypothesis and decoded (BP + OSD).

For a picture without this mark the known chips' signs are fair coins given the picture, so
each hypothesis's strength t obeys P <= min(exp(-t^2 / 2), 3.18 P(N(0,1) >= t)) (Hoeffding;
Bentkus & Dzindzalieta); ``detect`` multiplies that bound by the number of hypotheses the
search could have chosen from, over the share of the false-positive budget spent on them:
the grid as embedded (what re-encoding, resizing and colour edits leave) gets a small family
of its own, so it needs less strength than the searched geometries (see ``locate``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from aigcguard.watermark import ecc
from aigcguard.watermark.dwt import _BY, _GY, _RY
from aigcguard.watermark.payload import (
    PAYLOAD_BITS,
    SYNC_BITS,
    _ranks,
    _stream,
    bytes_to_bits,
    frame_layout,
    signed_sum_sf,
    split_frames,
)
from aigcguard.watermark.registry import SoftReading, WatermarkMethod, register_method

CHIPS = 16  # chips per tile side
CHIP_PX = 2  # working pixels per chip side
PERIOD = CHIPS * CHIP_PX  # tile period in working pixels
WORK_SHORT = 256  # the working size's short side: 8 tiles across
N_CHIPS = CHIPS * CHIPS
N_PILOT = 64
N_FRAME = N_CHIPS - N_PILOT  # 192 = 64 sync + 128 coded payload (64 bits, rate 1/2)
TARGET_PSNR = 40.2  # after rounding, 40.13 at least on the benchmark's 38 photos
MIN_SSIM = 0.983  # per image, with a margin for rounding: pictures that are mostly flat get less
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
# Informed embedding: each chip's value is its sign minus INFORMED x what the picture alone
# already reads there (in units of the mark's gain), so the picture's own pattern at the
# chips, the noise that limits busy textures, is mostly cancelled instead of fought with
# power. Capped so a strongly periodic picture cannot take the whole budget. Measured on
# gravel and grass with a uniformly weighted read-out (coded-chip SNR, 64 bits needs about
# 1): 0.75 -> 1.3 as embedded, 1.0 to 1.1 after rotation or the combined attack, 0.8 to 0.95
# after crop 10%; 0.65 cancels less and 1.0 leaves less for crops.
INFORMED = 0.8
INFORMED_CAP = 2.0
# What a crop keeps is cancelled only in part (the cancelled quantity is the sum over every
# tile), so the read-out cancelled is a weighted fold: full weight in the central
# INFORMED_BOX of each side, INFORMED_BORDER outside. Coded-chip SNR, gravel / grass: uniform
# 1.36 / 1.31 as embedded, 1.00 / 0.84 after crop 10%; this 1.26 / 1.20 and 1.10 / 0.89;
# rotation and the combined attack unchanged (1.1).
INFORMED_BOX, INFORMED_BORDER = 0.78, 0.5
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


# -------------------------------------------------------------------------------- rendering


def render(chips: torch.Tensor) -> torch.Tensor:
    """Chip values (B x CHIPS x CHIPS) to one smooth periodic tile (B x PERIOD x PERIOD)."""
    pad = 3
    grid = F.pad(chips[:, None], (pad, pad, pad, pad), mode="circular")
    big = F.interpolate(grid, scale_factor=CHIP_PX, mode="bicubic", align_corners=False)
    off = pad * CHIP_PX
    return big[:, 0, off : off + PERIOD, off : off + PERIOD]


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


# ---------------------------------------------------------------------------- image basics


def luma(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return _RY * x[:, 0] + _GY * x[:, 1] + _BY * x[:, 2]  # BT.601, as the DWT methods use


def working_size(height: int, width: int) -> tuple[int, int]:
    s = WORK_SHORT / min(height, width)
    return max(WORK_SHORT, round(height * s)), max(WORK_SHORT, round(width * s))


def resize(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    down = size[0] < y.shape[-2]
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


# ------------------------------------------------------------------------------------ folding


def tile_pattern(tile: torch.Tensor, h: int, w: int) -> torch.Tensor:
    reps = (-(-h // PERIOD), -(-w // PERIOD))
    return tile.repeat(1, *reps)[:, :h, :w]


def template(h: int, w: int) -> torch.Tensor:
    """The synchronisation template at a working size (h x w), mean square 1. Key-free."""
    u = torch.arange(h, dtype=torch.float32)[:, None]
    v = torch.arange(w, dtype=torch.float32)[None, :]
    out = torch.zeros(h, w)
    for (k1, k2), phase in zip(TEMPLATE_FREQS, TEMPLATE_PHASES, strict=True):
        out += torch.cos(2 * math.pi * (k1 * u + k2 * v) / PERIOD + phase)
    return out / math.sqrt(len(TEMPLATE_FREQS) / 2)


# ---------------------------------------------------------------------------------- embedding


def embed_tilemark(
    x: torch.Tensor,
    frame_bits: torch.Tensor,
    key: str | bytes,
    out: torch.Tensor,
    *,
    target_psnr: float = TARGET_PSNR,
    min_ssim: float = MIN_SSIM,
    informed: float = INFORMED,
    template_share: float = TEMPLATE_SHARE,
) -> None:
    """Mark ``out`` (a uint8 copy of ``x``, B x 3 x H x W) with ``frame_bits`` (B x N_FRAME).

    The chip values (signs, less ``informed`` times the picture's own read-out, see
    ``informed_values``) are rendered into tiles, the synchronisation template added with
    ``template_share`` of the power, the whole shaped by the texture mask and scaled to the
    target PSNR, or lower where that would take SSIM below ``min_ssim`` (mostly flat
    pictures). ``informed=0, template_share=0`` gives the marks of earlier versions, which
    ``detect`` still finds. Tried and dropped: leaning mostly flat pictures' mask on texture
    instead (it costs them more under JPEG than the lower amplitude does)."""
    _, _, height, width = x.shape
    signs = tile_layout(key).chip_signs(frame_bits.bool())
    y = luma(x)
    size = working_size(height, width)
    scale = height / size[0]  # full-resolution pixels per working pixel
    mask = texture_mask(local_variance(y, max(3, 2 * round(CHIP_PX * scale / 2) + 1)))
    target_mse = 255.0**2 / 10 ** (target_psnr / 10)
    sync = template(*size).to(x.device) if template_share > 0 else None

    def mark(values: torch.Tensor) -> torch.Tensor:
        tiles = tile_pattern(render(values.reshape(-1, CHIPS, CHIPS)), *size)
        if sync is not None:
            power = tiles.pow(2).mean(dim=(1, 2), keepdim=True)
            tiles = tiles + (template_share / (1 - template_share) * power).sqrt() * sync
        delta = upsample(tiles, (height, width)) * mask
        return (
            delta
            * (target_mse / delta.pow(2).mean(dim=(1, 2), keepdim=True).clamp(min=1e-9)).sqrt()
        )

    delta = mark(signs)
    if informed > 0:
        delta = mark(informed_values(y, delta, signs, informed))
    delta *= _WindowStats(x).scale_for(delta, min_ssim)[:, None, None]
    # The mark is added to R, G and B alike, so grey stays grey and the luminance gets it all.
    out.copy_((x.float() + delta[:, None]).round_().clamp_(0, 255).to(torch.uint8))


def informed_values(
    y: torch.Tensor, delta: torch.Tensor, signs: torch.Tensor, strength: float
) -> torch.Tensor:
    """Chip values that cancel part of what the picture itself reads at each chip.

    ``y`` is the luminance (B x H x W), ``delta`` the mark its signs would add at the target
    PSNR: both are read as the detector reads them at the embedded grid, and each chip's
    value becomes sign - strength x (picture's read-out / the mark's gain), capped. Scaling
    the result back to the same PSNR shrinks the signs where the picture's own read-out is
    large, so busy textures cancel about half of it and smooth photos most of it, close to
    the best trade for each (Costa's). The read-outs weigh the centre more (INFORMED_BOX)."""
    size = working_size(*y.shape[-2:])
    both = flatten_spectrum(whiten(resize(torch.cat([y, y + delta]), size))).cpu()
    host, marked = both[: len(y)], both[len(y) :]
    values = signs.float().cpu().clone()
    hh, ww = host.shape[-2:]
    inside_y = (torch.arange(hh) - (hh - 1) / 2).abs() <= INFORMED_BOX * hh / 2
    inside_x = (torch.arange(ww) - (ww - 1) / 2).abs() <= INFORMED_BOX * ww / 2
    weight = torch.where(inside_y[:, None] & inside_x[None, :], 1.0, INFORMED_BORDER)
    norm = fold(weight, 1.0, 0.0)
    for i in range(len(y)):
        h = _read_folded(fold(host[i] * weight, 1.0, 0.0) / norm, AS_EMBEDDED)
        marked_read = _read_folded(fold(marked[i] * weight, 1.0, 0.0) / norm, AS_EMBEDDED)
        gain = float(((marked_read - h) * values[i]).mean())
        if gain > 0:
            values[i] -= (strength * h / gain).clamp(-INFORMED_CAP, INFORMED_CAP)
    return values.to(signs.device)


def _window_mean(t: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """7 x 7 uniform window means (B x C x H x W -> valid part), separably, every
    ``stride``-th window."""
    return F.avg_pool2d(F.avg_pool2d(t, (7, 1), stride=(stride, 1)), (1, 7), stride=(1, stride))


_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_COV = 49 / 48  # sample covariances, as scikit-image uses by default


def _ssim_map(ma, mb, va, vb, vab) -> torch.Tensor:
    return ((2 * ma * mb + _C1) * (2 * vab * _COV + _C2)) / (
        (ma * ma + mb * mb + _C1) * ((va + vb) * _COV + _C2)
    )


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (B x C x H x W, 0-255) as scikit-image computes it by default:
    7 x 7 uniform windows, sample covariances, the border of half a window left out."""
    a, b = a.float(), b.float()
    shift = a.mean(dim=(1, 2, 3), keepdim=True)  # variances in float32 need centred values
    ac, bc = a - shift, b - shift
    ma, mb = _window_mean(ac), _window_mean(bc)
    va = _window_mean(ac * ac) - ma * ma
    vb = _window_mean(bc * bc) - mb * mb
    vab = _window_mean(ac * bc) - ma * mb
    return _ssim_map(ma + shift, mb + shift, va, vb, vab).mean(dim=(1, 2, 3))


class _WindowStats:
    """SSIM(x, x + alpha * delta) for any per-image alpha and any grey mark delta (the same
    on every channel, B x H x W), from window sums of x computed once. Every fourth window
    in each direction: the mean over a sixteenth of the windows is SSIM to 3e-4 at most
    (measured on 13 benchmark photos; every other window: 1.3e-4), far inside the floor's
    margin over 0.98, at under half the cost of every other window."""

    stride = 4

    def __init__(self, x: torch.Tensor):
        a = x.float()
        self.shift = a.mean(dim=(1, 2, 3), keepdim=True)
        self.a = a - self.shift
        self.ma = _window_mean(self.a, self.stride)
        self.va = _window_mean(self.a * self.a, self.stride) - self.ma * self.ma

    def scale_for(self, delta: torch.Tensor, floor: float) -> torch.Tensor:
        """The largest alpha <= 1 per image keeping SSIM(x, x + alpha delta) >= floor:
        1 - SSIM grows about as alpha squared, so proportional steps settle it."""
        a, ma, va = self.a, self.ma, self.va
        d = delta[:, None]
        md = _window_mean(d, self.stride)
        vd = _window_mean(d * d, self.stride) - md * md
        cad = _window_mean(a * d, self.stride) - ma * md
        ma = ma + self.shift
        alpha = torch.ones(delta.shape[0], device=delta.device)
        for _ in range(3):
            al = alpha[:, None, None, None]
            vb = va + 2 * al * cad + al * al * vd
            value = _ssim_map(ma, ma + al * md, va, vb, va + al * cad)
            loss = (1 - value.mean(dim=(1, 2, 3))).clamp(min=1e-9)
            step = ((1 - floor) / loss).sqrt()
            if bool((step >= 1).all()) and bool((alpha == 1).all()):
                break  # the floor does not bind (most pictures): nothing to settle
            alpha = (alpha * step).clamp(max=1.0)
        return alpha


# ---------------------------------------------------------------------------------- detection
#
# Every hypothesis (a geometry, a quarter turn and a half-pixel shift of the tile) is judged by
# the known chips alone (pilot and sync, 128 keyed fair-coin signs): its strength is the
# signed sum of their read-outs over its norm, so for a picture without this mark, given the
# picture, P(strength >= t) is bounded as payload.signed_sum_sf says. The search may look at as many
# hypotheses as it likes as long as it counts them: the p-value is the bound times that count.

SHIFTS = 2 * PERIOD  # shift hypotheses per tile side (half working pixels)
FINE = 9  # refinement grid per candidate: FINE x FINE scales x angles


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


def fold(w: torch.Tensor, scale: float, angle: float) -> torch.Tensor:
    """Average of one whitened image (h x w) over a moved tile grid, bilinear: PERIOD**2.
    (Folding several geometries in one vectorised pass was measured slower.)"""
    h, wd = w.shape
    if scale == 1.0 and angle == 0.0:  # the grid as embedded: whole pixels, no interpolation
        ys = torch.arange(h, device=w.device) % PERIOD
        xs = torch.arange(wd, device=w.device) % PERIOD
        idx = (ys[:, None] * PERIOD + xs[None, :]).flatten()
        total = torch.bincount(idx, weights=w.flatten().double(), minlength=PERIOD * PERIOD)
        return (total / torch.bincount(idx, minlength=PERIOD * PERIOD)).float()
    inv = torch.linalg.inv(_matrix(scale, angle))
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(wd, dtype=torch.float32)
    ty = (inv[0, 0] * ys[:, None] + inv[0, 1] * xs[None, :]).flatten()
    tx = (inv[1, 0] * ys[:, None] + inv[1, 1] * xs[None, :]).flatten()
    fy, fx = torch.floor(ty), torch.floor(tx)
    dy, dx = ty - fy, tx - fx
    iy, ix = fy.long() % PERIOD, fx.long() % PERIOD
    vals = w.flatten()
    total = torch.zeros(PERIOD * PERIOD)
    count = torch.zeros(PERIOD * PERIOD)
    for oy, wy in ((0, 1 - dy), (1, dy)):
        for ox, wx in ((0, 1 - dx), (1, dx)):
            idx = ((iy + oy) % PERIOD) * PERIOD + (ix + ox) % PERIOD
            wt = wy * wx
            total.index_add_(0, idx, vals * wt)
            count.index_add_(0, idx, wt)
    return total / count.clamp(min=1e-6)


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
    padded = F.pad(logp[None, None], (15, 15, 15, 15), mode="reflect")
    local = F.avg_pool2d(F.avg_pool2d(padded, (31, 1), stride=1), (1, 31), stride=1)
    return logp - local[0, 0]


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


def _circular_xcorr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """corr[s] = sum_u a[u + s] b[u] over the torus."""
    return torch.fft.irfft2(torch.fft.rfft2(a) * torch.conj(torch.fft.rfft2(b)), s=a.shape)


def _upsample2(c: torch.Tensor) -> torch.Tensor:
    """A periodic PERIOD x PERIOD map at twice the resolution (spectrum zero-padded)."""
    spec = torch.fft.fftshift(torch.fft.fft2(c))
    spec[0, :] = 0  # the Nyquist row and column have no unique place in the larger grid
    spec[:, 0] = 0
    half = PERIOD // 2
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


def _strength_maps(w: torch.Tensor, key, scale: float, angle: float, quarters=range(4)):
    """Per quarter turn, the strength of every shift hypothesis at one geometry."""
    return {q: _strengths(c, key) for q, c in _chip_maps(fold(w, scale, angle), quarters).items()}


def _best(strengths: dict[int, torch.Tensor], scale: float, angle: float) -> Geometry:
    """The strongest hypothesis over the given quarters and every shift, at one geometry."""
    best = Geometry(scale, angle, 0, (0, 0), -math.inf)
    for q, st in strengths.items():
        value, idx = st.flatten().max(0)
        if float(value) > best.strength:
            best = Geometry(scale, angle, q, divmod(int(idx), SHIFTS), float(value))
    return best


# The false-positive budget is spent on three families of hypotheses (weighted Bonferroni):
# each family's best hypothesis is judged by the bound times the family's size over its
# share, and a detection takes the smallest. The shares sum to 1, so the rate holds. Most of
# what platforms do (re-encoding, resizing, colour and tone) leaves the grid where it was
# embedded, and a test of those few hypotheses needs strength 6.2 at 1e-6 instead of 7.5;
# crops and tilts keep the tile upright; quarter turns are rarer.
SHARE_AS_EMBEDDED = 0.01  # scale 1, angle 0, upright, within half a working pixel of no shift
SHARE_UPRIGHT = 0.89  # every searched geometry, upright
SHARE_TURNED = 0.10  # every searched geometry, any quarter turn
_NEAR = (-1, 0, 1)  # the as-embedded family's shifts per axis, in half pixels
TOP_TEMPLATE = 3  # spectral candidates from the template (the true one: first in 30 probes)
TOP_LATTICE = 4  # and from the lattice


def locate(
    w: torch.Tensor, key: str | bytes, *, search: bool = True, refine: int = 2
) -> list[tuple[Geometry, float]]:
    """The best hypothesis of each family for one whitened working image (h x w), with its
    cost: the family's size over its share of the false-positive budget (the p-value is
    the bound times the cost).

    Candidates are the unmoved grid and the best matches of the template (TOP_TEMPLATE) and
    of the tile's lattice (TOP_LATTICE: marks made without a template, and pictures the
    informed embedding left a lattice peak) in the spectrum, key-free; the ``refine``
    strongest upright ones (and the strongest turned one) are refined on a FINE x FINE grid
    of scale and angle around them, coarse to fine. Every point of that grid, around every
    candidate there could have been, is counted."""
    cands = [(1.0, 0.0)]
    if search:
        flat = _flat_log_spectrum(w)
        for spectrum, points, top in (
            (_template_spectrum(flat), _template_points(), TOP_TEMPLATE),
            (flat, _lattice_points(), TOP_LATTICE),
        ):
            found = spectral_candidates(spectrum, points, _SCALES, _ANGLES, top=top)
            cands += [(s, a) for s, a, _ in found if (s, a) not in cands]
    searched = (1 + TOP_TEMPLATE + TOP_LATTICE if search else 1) * FINE * FINE * SHIFTS * SHIFTS
    upright, turned = [], []
    for i, (s, a) in enumerate(cands):
        strengths = _strength_maps(w, key, s, a)
        if i == 0:
            near = strengths[0][_NEAR, :][:, _NEAR]
            value, idx = near.flatten().max(0)
            r, c = divmod(int(idx), len(_NEAR))
            shift = (_NEAR[r] % SHIFTS, _NEAR[c] % SHIFTS)
            as_embedded = Geometry(s, a, 0, shift, float(value))
        upright.append(_best({0: strengths[0]}, s, a))
        turned.append(_best(strengths, s, a))
    refined: dict[tuple[float, float, int], Geometry] = {}

    def best_refined(scored: list[Geometry], n: int) -> Geometry:
        best = None
        for g in sorted(scored, key=lambda g: -g.strength)[:n]:
            if (g.scale, g.angle, g.quarter) not in refined:
                refined[g.scale, g.angle, g.quarter] = _refine(w, g, key)
            r = refined[g.scale, g.angle, g.quarter]
            best = r if best is None or r.strength > best.strength else best
        return best

    return [
        (as_embedded, len(_NEAR) ** 2 / SHARE_AS_EMBEDDED),
        (best_refined(upright, refine), searched / SHARE_UPRIGHT),
        # a quarter-turned mark is nearly always the strongest candidate: refining one keeps
        # unmarked pictures (where the best is turned three times in four) from paying twice
        (best_refined(turned, 1), 4 * searched / SHARE_TURNED),
    ]


# The spectral search grid: scales 0.7-2.3 (a 30% shrink to a 50% crop blown up, and more),
# every rotation; its steps (1% and half a degree) leave the rest to the refinement.
_SCALES = torch.exp(torch.linspace(math.log(0.7), math.log(2.3), 120))
_ANGLES = torch.arange(-45.0, 45.0, 0.5)  # the tile is square: quarter turns do the rest
_STEP_SCALE, _STEP_ANGLE = 0.0025, 0.125  # the FINE grid's spacing, around each candidate


def _refine(w: torch.Tensor, g: Geometry, key) -> Geometry:
    """Coarse to fine on the FINE x FINE grid around ``g`` (quarter turn kept): a 3 x 3 step
    of three grid spacings, then one of one spacing around the best."""
    reach = FINE // 2
    i0 = j0 = 0
    best = g
    for step in (3, 1):
        centre = (i0, j0)
        grid = [
            (centre[0] + di, centre[1] + dj)
            for di in (-step, 0, step)
            for dj in (-step, 0, step)
            if (di or dj) and abs(centre[0] + di) <= reach and abs(centre[1] + dj) <= reach
        ]
        geometries = [(g.scale * (1 + i * _STEP_SCALE), g.angle + j * _STEP_ANGLE) for i, j in grid]
        for (i, j), (s, a) in zip(grid, geometries, strict=True):
            moved = _best(_strength_maps(w, key, s, a, (g.quarter,)), s, a)
            if moved.strength > best.strength:
                best, i0, j0 = moved, i, j
    return best


def read_geometry(w: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Chip values (N_CHIPS) of one whitened image at a located hypothesis."""
    return _read_folded(fold(w, geom.scale, geom.angle), geom)


def _read_folded(folded: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Chip values (N_CHIPS) of a folded tile at a hypothesis's quarter turn and shift."""
    c = _chip_maps(folded, (geom.quarter,))[geom.quarter]
    rows = (geom.shift[0] + torch.arange(CHIPS) * 2 * CHIP_PX) % SHIFTS
    cols = (geom.shift[1] + torch.arange(CHIPS) * 2 * CHIP_PX) % SHIFTS
    return c[rows[:, None], cols[None, :]].flatten()


def frame_values(chips: torch.Tensor, key: str | bytes) -> torch.Tensor:
    """Soft frame values (positive = bit 1) from chip values (... x N_CHIPS)."""
    layout = tile_layout(key)
    vals = chips[..., layout.frame_pos]
    return torch.where(layout.frame_flip, -vals, vals)


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


FAMILIES = ("as embedded", "upright", "turned")  # locate's order


@dataclass(frozen=True)
class FamilyReading:
    """One family's best hypothesis, read: its known chips, its coded chips, the evidence the
    p-value is taken on (the known chips, and the expected codeword's chips when given) and
    that p-value (the bound times the family's cost)."""

    family: str
    geometry: Geometry
    cost: float
    known: torch.Tensor
    coded: torch.Tensor
    evidence: torch.Tensor
    p_value: float


def read_families(
    w: torch.Tensor, key: str | bytes, code: torch.Tensor | None = None
) -> list[FamilyReading]:
    """Every family's best hypothesis for one whitened working image, read and judged;
    ``code`` (+-1 per coded chip) adds the expected message's chips to the evidence."""
    layout = tile_layout(key)
    chips_at: dict[Geometry, torch.Tensor] = {}  # families often agree: fold once
    out = []
    for family, (geom, cost) in zip(FAMILIES, locate(w, key), strict=True):
        if geom not in chips_at:
            chips_at[geom] = read_geometry(w, geom)
        chips = chips_at[geom]
        known = (chips * layout.known)[layout.known != 0]
        coded = frame_values(chips, key)[SYNC_BITS:]
        evidence = known if code is None else torch.cat([known, coded * code])
        p = signed_sum_sf(evidence) * cost
        out.append(FamilyReading(family, geom, cost, known, coded, evidence, p))
    return out


def working_whitened(x: torch.Tensor) -> torch.Tensor:
    return flatten_spectrum(whiten(resize(luma(x), working_size(*x.shape[-2:]))))


# ------------------------------------------------------------------------------------- method


@register_method("tilemark")
class TileMark(WatermarkMethod):
    description = (
        "keyed periodic luminance tiles, 64-bit payload with a rate-1/2 code; finds its own "
        "scale, rotation and shift; survives JPEG, resizing, crops and rotation"
    )
    needs_key = True
    soft = True

    def capacity(self, height: int, width: int) -> int:
        return SYNC_BITS + PAYLOAD_BITS if min(height, width) >= 64 else 0

    def embed_frames(self, x, frames, out, key=None) -> None:
        sync, payload = split_frames(frames, key, unscramble=False)
        chips = torch.cat([sync, ecc.encode(payload)], dim=1)
        embed_tilemark(x, chips, key, out)

    def read_soft(self, x, key, expected=None) -> list[SoftReading]:
        whitened = working_whitened(x.cpu())
        readings = []
        for i in range(x.shape[0]):
            code = None
            if expected is not None:
                code = ecc.encode(expected[i : i + 1].cpu())[0].float() * 2 - 1
            # The p-value is the smallest over the families' best hypotheses; the payload is
            # read where the mark reads strongest (a searched placement may fit better than
            # the as-embedded one that needs less evidence).
            families = read_families(whitened[i], key, code)
            judged = min(families, key=lambda r: r.p_value)
            strongest = max(families, key=lambda r: r.geometry.strength)
            decoded = ecc.read(strongest.coded, strongest.known)
            readings.append(
                SoftReading(
                    judged.evidence, decoded.bits, trials=judged.cost, payload_error=decoded.error
                )
            )
        return readings
