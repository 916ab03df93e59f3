"""Whether a picture is inside what a detector was trained and measured on.

A score on a picture unlike any it learned from is not evidence: :func:`out_of_scope` names
why a picture falls outside, and :func:`aigcguard.detectors.api.score` then gives it the band
``uncertain``, no score and that reason, instead of a number that looks confident.

- **too small**: a side under the detector's ``min_side`` (128 px for the default, 16 px for
  the others);
- **heavily compressed**: a JPEG file whose quantisation tables are nearest libjpeg's at a
  quality under :data:`MIN_JPEG_QUALITY` (the default learned from files as stored and at
  JPEG 75, the residual CNN from qualities 60 to 95; below 50 the block statistics they read
  are mostly the quantiser's). The tables are read from the file's header, so this needs the
  file;
- **mostly flat**: at least :data:`MAX_FLAT_SHARE` of the picture's 8 x 8 blocks of luminance
  flat (standard deviation under 1 grey level): drawings, graphics, screenshots of text.
  Measured by :func:`flat_share` on 215 wild crops (every 7th): real photos as stored
  reach at most 0.62 (0.71 after JPEG 75), generated pictures 0.81.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

MIN_JPEG_QUALITY = 50
MAX_FLAT_SHARE = 0.75
FLAT_STD = 1.0
#: blocks measured at most, about (a 256 x 256 picture has 1,024; a larger one is sampled)
SAMPLED_ABOVE = 1024


def flat_share(image: torch.Tensor) -> float:
    """Share of the whole 8 x 8 blocks of a uint8 3 x H x W picture whose luminance has a
    standard deviation under :data:`FLAT_STD` (0..255 scale); 0.0 under one block. Above
    :data:`SAMPLED_ABOVE` blocks, a regular grid of about that many is measured (every k-th
    block row and column): a share over a thousand blocks is within a few points, and a
    1024 px picture costs about 1 ms, not 9."""
    hb, wb = (s // 8 for s in image.shape[-2:])
    if hb == 0 or wb == 0:
        return 0.0
    blocks = image[:, : hb * 8, : wb * 8].reshape(3, hb, 8, wb, 8)
    step = math.ceil(math.sqrt(hb * wb / SAMPLED_ABOVE))
    if step > 1:
        blocks = blocks[:, ::step, :, ::step, :]
    x = blocks.float()
    y = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]  # n_rows x 8 x n_cols x 8
    std = y.permute(0, 2, 1, 3).reshape(-1, 64).std(1)
    return float((std < FLAT_STD).float().mean())


def file_jpeg_quality(path: str | Path | None) -> int | None:
    """The libjpeg quality nearest a JPEG (or MPO) file's tables, read from its header as the
    shortcut baseline reads it (:func:`~aigcguard.detectors.grouped.metadata.file_metadata`);
    None for anything that is not a readable JPEG file."""
    if path is None or not Path(path).is_file():
        return None
    from aigcguard.detectors.grouped.metadata import file_metadata

    try:
        return file_metadata(path).jpeg_quality
    except ValueError:  # not a picture Pillow can open: nothing to say about its tables
        return None


def out_of_scope(image: torch.Tensor, min_side: int, path: str | Path | None = None) -> str | None:
    """Why ``image`` (uint8 3 x H x W, decoded from ``path`` when given) is outside a
    detector's range, or None when it is inside (module docstring)."""
    h, w = image.shape[-2:]
    if min(h, w) < min_side:
        return f"too small: {w}x{h} px, the detector needs {min_side} px a side"
    q = file_jpeg_quality(path)
    if q is not None and q < MIN_JPEG_QUALITY:
        return (
            f"heavily compressed: JPEG quality about {q}, the detector reads {MIN_JPEG_QUALITY} "
            "and above"
        )
    share = flat_share(image)
    if share >= MAX_FLAT_SHARE:
        return (
            f"mostly flat: {share:.0%} of the picture has no texture (a drawing, graphic or "
            "screenshot?), outside what the detector was trained on"
        )
    return None
