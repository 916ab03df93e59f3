"""What marking and reading picture files reports, one frozen result per file (``aigc watermark
embed | detect`` and their Python callers render these as JSON lines)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aigcguard.results import JsonResult


def psnr(original: torch.Tensor, marked: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 pictures of one size, to 2 decimals
    (infinite when they are equal). Summed a channel at a time in float64: the whole
    picture's float differences took 2.3 GB at 64 MP."""
    squares = 0.0
    for c in range(original.shape[-3]):
        d = original[..., c, :, :].float() - marked[..., c, :, :].float()
        squares += float(torch.sum(d * d, dtype=torch.float64))
    mse = squares / original.numel()
    return round(10 * math.log10(255.0**2 / mse), 2) if mse > 0 else float("inf")


@dataclass(frozen=True)
class MarkedFile(JsonResult):
    """A picture marked and written: from ``path`` to ``output``, the ``bits`` written and
    the ``payload`` (hex) they carry, and the distortion (``psnr``; null when unchanged)."""

    path: str
    output: str
    method: str
    bits: int
    payload: str
    psnr: float


@dataclass(frozen=True)
class FileDetection(JsonResult):
    """A detection of one file: its ``path``, then the detection's own fields."""

    path: str
    detection: JsonResult  # a WatermarkDetection

    def to_dict(self) -> dict:
        return {"path": self.path, **self.detection.to_dict()}
