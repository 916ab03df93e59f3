"""Informed embedding: the chips' values (their signs, less part of what the picture itself
already reads there), rendered into tiles with the synchronisation template, shaped by the
texture mask, scaled to a target PSNR and held above an SSIM floor."""

from __future__ import annotations

import torch

from aigcguard.watermark.tilemark.keyed import (
    SUPER,
    chip_map,
    demodulate,
    nonce_for,
    read_super,
    super_chips,
)
from aigcguard.watermark.tilemark.picture import (
    flatten_spectrum,
    local_variance,
    luma,
    resize,
    texture_mask,
    upsample,
    whiten,
    working_size,
)
from aigcguard.watermark.tilemark.readout import AS_EMBEDDED, _read_folded, fold
from aigcguard.watermark.tilemark.ssim_guard import _WindowStats
from aigcguard.watermark.tilemark.sync import TEMPLATE_SHARE, template
from aigcguard.watermark.tilemark.tile import (
    CHIP_PX,
    CHIPS,
    PERIOD,
    render,
    tile_layout,
    tile_pattern,
)

FORMATS = ("keyed", "legacy")  # what embed_tilemark writes; detection reads both

TARGET_PSNR = 40.2  # after rounding, 40.13 at least on the benchmark's 38 photos
MIN_SSIM = 0.983  # per image, with a margin for rounding: pictures that are mostly flat get less
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
    fmt: str = "keyed",
) -> None:
    """Mark ``out`` (a uint8 copy of ``x``, B x 3 x H x W) with ``frame_bits`` (B x N_FRAME).

    The chip values (signs, less ``informed`` times the picture's own read-out, see
    ``informed_values``) are rendered into tiles, the synchronisation template added with
    ``template_share`` of the power, the whole shaped by the texture mask and scaled to the
    target PSNR, or lower where that would take SSIM below ``min_ssim`` (mostly flat
    pictures). ``fmt="keyed"`` modulates every tile by keyed signs that depend on the picture's
    nonce and the tile's place (see ``keyed``); ``"legacy"`` repeats one tile everywhere, as
    earlier versions did (and ``informed=0, template_share=0`` their first marks), all of which
    ``detect`` still finds. Tried and dropped: leaning mostly flat pictures' mask on texture
    instead (it costs them more under JPEG than the lower amplitude does)."""
    _, _, height, width = x.shape
    if fmt not in FORMATS:
        raise ValueError(f"unknown tilemark format {fmt!r}; known: {list(FORMATS)}")
    signs = tile_layout(key).chip_signs(frame_bits.bool())
    nonces = nonce_for(x, key) if fmt == "keyed" else None
    y = luma(x)
    size = working_size(height, width)
    scale = height / size[0]  # full-resolution pixels per working pixel
    mask = texture_mask(local_variance(y, max(3, 2 * round(CHIP_PX * scale / 2) + 1)))
    target_mse = 255.0**2 / 10 ** (target_psnr / 10)
    sync = template(*size).to(x.device) if template_share > 0 else None

    def mark(values: torch.Tensor) -> torch.Tensor:
        if nonces is None:
            tiles = tile_pattern(render(values.reshape(-1, CHIPS, CHIPS)), *size)
        else:
            tiles = tile_pattern(render(super_chips(values, nonces, key)), *size)
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
        reader = _reader(key, nonces)
        delta = mark(informed_values(y, delta, signs, informed, reader))
    delta *= _WindowStats(x).scale_for(delta, min_ssim)[:, None, None]
    # The mark is added to R, G and B alike, so grey stays grey and the luminance gets it all
    # (a channel at a time: one float plane held, not three).
    for c in range(x.shape[1]):
        out[:, c].copy_((x[:, c].float() + delta).round_().clamp_(0, 255).to(torch.uint8))


def _reader(key, nonces: list[int] | None):
    """(period, read): how the detector reads picture i's chips as embedded, from a fold onto
    ``period``: the legacy tile, or the keyed super-tile demodulated with i's nonce."""
    if nonces is None:
        return PERIOD, lambda folded, i: _read_folded(folded, AS_EMBEDDED)
    return SUPER, lambda folded, i: demodulate(
        read_super(chip_map(folded, 0), (0, 0)), nonces[i], key
    )


def informed_values(
    y: torch.Tensor, delta: torch.Tensor, signs: torch.Tensor, strength: float, reader=None
) -> torch.Tensor:
    """Chip values that cancel part of what the picture itself reads at each chip.

    ``y`` is the luminance (B x H x W), ``delta`` the mark its signs would add at the target
    PSNR: both are read as the detector reads them at the embedded grid, and each chip's
    value becomes sign - strength x (picture's read-out / the mark's gain), capped. Scaling
    the result back to the same PSNR shrinks the signs where the picture's own read-out is
    large, so busy textures cancel about half of it and smooth photos most of it, close to
    the best trade for each (Costa's). The read-outs weigh the centre more (INFORMED_BOX)."""
    period, read = reader or _reader(None, None)
    size = working_size(*y.shape[-2:])
    both = flatten_spectrum(whiten(resize(torch.cat([y, y + delta]), size))).cpu()
    host, marked = both[: len(y)], both[len(y) :]
    values = signs.float().cpu().clone()
    hh, ww = host.shape[-2:]
    inside_y = (torch.arange(hh) - (hh - 1) / 2).abs() <= INFORMED_BOX * hh / 2
    inside_x = (torch.arange(ww) - (ww - 1) / 2).abs() <= INFORMED_BOX * ww / 2
    weight = torch.where(inside_y[:, None] & inside_x[None, :], 1.0, INFORMED_BORDER)
    norm = fold(weight, 1.0, 0.0, period).clamp(min=1e-6)
    for i in range(len(y)):
        h = read(fold(host[i] * weight, 1.0, 0.0, period) / norm, i)
        marked_read = read(fold(marked[i] * weight, 1.0, 0.0, period) / norm, i)
        gain = float(((marked_read - h) * values[i]).mean())
        if gain > 0:
            values[i] -= (strength * h / gain).clamp(-INFORMED_CAP, INFORMED_CAP)
    return values.to(signs.device)
