"""The built-in methods: the DWT-DCT family (``dwtdct``, ``dwtdctsvd``) and ``tilemark``."""

from __future__ import annotations

import torch

from aigcguard.watermark import tilemark  # noqa: F401  (registers tilemark)
from aigcguard.watermark.dwt import (
    STANDARD,
    STEP,
    ColourConvention,
    block_grid,
    embed_frame,
    read_votes,
)
from aigcguard.watermark.registry import WatermarkMethod, register_method


class _DwtFamily(WatermarkMethod):
    kernel = ""
    step = STEP

    def capacity(self, height: int, width: int) -> int:
        rows, cols = block_grid(height, width)
        return rows * cols

    def embed_frames(self, x, frames, out, key=None) -> None:
        embed_frame(x, frames, self.kernel, self.step, out=out)

    def read_votes(self, x: torch.Tensor, length: int, conv: ColourConvention = STANDARD):
        return read_votes(x, length, self.kernel, self.step, conv)


@register_method("dwtdct")
class DwtDct(_DwtFamily):
    description = (
        "Haar LL band of U, largest 4x4-block coefficient quantised (imwatermark dwtDct format)"
    )
    imwatermark_name = "dwtDct"
    kernel = "maxdct"


@register_method("dwtdctsvd")
class DwtDctSvd(_DwtFamily):
    description = (
        "Haar LL band of U, top singular value of each 4x4 block quantised "
        "(imwatermark dwtDctSvd format)"
    )
    imwatermark_name = "dwtDctSvd"
    kernel = "svd"
