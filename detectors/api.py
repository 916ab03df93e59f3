"""Load a detector by name or path and score pictures with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from aigcguard.detectors.base import Detector, load_detector
from aigcguard.device import pick_device
from aigcguard.results import OMIT_NONE, JsonResult

DEFAULT_MODEL = "default"
#: shipped weights, by the name ``--model`` takes
SHIPPED = {"default": "detector_npr.pt", "spectral": "detector_spectral.pt"}
#: the band of a picture too small for the detector (its ``score`` is null)
TOO_SMALL = "too_small"


@dataclass(frozen=True)
class Detection(JsonResult):
    """``score``: calibrated probability that the picture is generated; ``band`` reads it
    against the model's threshold (``likely_generated`` at or above it, ``likely_real`` below
    the typical real picture's score, ``uncertain`` between). A picture with a side under the
    detector's ``min_side`` is not scored: ``score`` null, ``band`` ``too_small`` and a
    ``reason`` (in the JSON only when set, so other results keep their fields)."""

    path: str
    score: float | None
    band: str
    model: str
    threshold: float
    reason: str | None = field(default=None, metadata=OMIT_NONE)
    #: the share of real validation pictures at or above ``threshold`` the model was
    #: calibrated to (None: unknown); a check lets the band decide only when it is small
    target_fpr: float | None = None


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
    """One :class:`Detection` per uint8 RGB 3 x H x W picture, any size; a picture with a side
    under ``detector.min_side`` gets the ``too_small`` band and no score."""
    paths = list(paths) if paths is not None else [f"<image {i}>" for i in range(len(images))]
    if len(paths) != len(images):
        raise ValueError(f"{len(paths)} paths given for {len(images)} images")
    small = [min(im.shape[-2:]) < detector.min_side for im in images]
    scored = [im for im, s in zip(images, small, strict=True) if not s]
    probs = iter(detector.probabilities(scored) if scored else ())
    cal = detector.calibration
    threshold = round(cal.threshold, 6)
    out = []
    for p, im, too_small in zip(paths, images, small, strict=True):
        if too_small:
            h, w = im.shape[-2:]
            reason = f"too small: {w}x{h} px, the detector needs {detector.min_side} px a side"
            out.append(
                Detection(p, None, TOO_SMALL, detector.spec, threshold, reason, cal.target_fpr)
            )
            continue
        s = float(next(probs))
        out.append(
            Detection(p, round(s, 6), cal.band(s), detector.spec, threshold, None, cal.target_fpr)
        )
    return out
