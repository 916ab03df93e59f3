"""Load a detector by name or path and score pictures with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from aigcguard.detectors.base import Detector, load_detector
from aigcguard.device import pick_device
from aigcguard.results import JsonResult

DEFAULT_MODEL = "default"
#: shipped weights, by the name ``--model`` takes
SHIPPED = {"default": "detector_npr.pt", "spectral": "detector_spectral.pt"}


@dataclass(frozen=True)
class Detection(JsonResult):
    """``score``: calibrated probability that the picture is generated; ``band`` reads it
    against the model's threshold (``likely_generated`` at or above it, ``likely_real`` below
    the typical real picture's score, ``uncertain`` between)."""

    path: str
    score: float
    band: str
    model: str
    threshold: float


def load(model: str = DEFAULT_MODEL, *, device: str | torch.device | None = "auto") -> Detector:
    """``default`` (or another shipped name) or the path of a saved detector."""
    if model in SHIPPED:
        ref = resources.files("aigcguard.data").joinpath(SHIPPED[model])
        with resources.as_file(ref) as path:
            if not Path(path).is_file():
                raise ValueError(f"the shipped detector {SHIPPED[model]} is not installed")
            det = load_detector(path)
        det.spec = model
    else:
        det = load_detector(model)
    if hasattr(det, "net"):
        dev = pick_device(device)
        det.net.to(dev)
        det.device = dev
    return det


def score(
    detector: Detector, images: Sequence[torch.Tensor], paths: Sequence[str] | None = None
) -> list[Detection]:
    """One :class:`Detection` per uint8 RGB 3 x H x W picture, any size."""
    paths = list(paths) if paths is not None else [f"<image {i}>" for i in range(len(images))]
    probs = detector.probabilities(images)
    cal = detector.calibration
    return [
        Detection(
            path=p,
            score=round(float(s), 6),
            band=cal.band(float(s)),
            model=detector.spec,
            threshold=round(cal.threshold, 6),
        )
        for p, s in zip(paths, probs, strict=True)
    ]
