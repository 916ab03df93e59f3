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
#: shipped weights, by the name ``--model`` takes: ``default`` is the spectral detector
#: retrained on pictures from the wild (data/README.md has each one's model card)
SHIPPED = {
    "default": "detector_spectral_wild.pt",
    "spectral": "detector_spectral.pt",
    "npr-cifake": "detector_npr.pt",
}
#: the band of a picture outside the detector's range (its ``score`` is null, ``reason`` why)
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Detection(JsonResult):
    """``score``: calibrated probability that the picture is generated; ``band`` reads it
    against the model's threshold (``likely_generated`` at or above it, ``likely_real`` below
    the typical real picture's score, ``uncertain`` between). A picture outside the
    detector's range (:mod:`aigcguard.detectors.scope`) is not scored: ``score`` null,
    ``band`` ``uncertain`` and a ``reason`` (in the JSON only when set, so other results keep
    their fields)."""

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
    detector: Detector,
    images: Sequence[torch.Tensor],
    paths: Sequence[str] | None = None,
    *,
    files: Sequence[str | None] | None = None,
) -> list[Detection]:
    """One :class:`Detection` per uint8 RGB 3 x H x W picture, any size. A picture outside
    the detector's range (:func:`aigcguard.detectors.scope.out_of_scope`: too small, a JPEG
    file compressed harder than it was trained on, mostly flat) gets the ``uncertain`` band,
    no score and the reason. ``paths`` name the pictures in the results; ``files``: the file
    each was decoded from (None: not from a file), whose JPEG tables are read; by default the
    ``paths`` themselves."""
    from aigcguard.detectors.scope import out_of_scope

    paths = list(paths) if paths is not None else [f"<image {i}>" for i in range(len(images))]
    files = paths if files is None else list(files)
    if not len(paths) == len(files) == len(images):
        raise ValueError(f"{len(paths)} paths and {len(files)} files for {len(images)} images")
    reasons = [out_of_scope(im, detector.min_side, f) for im, f in zip(images, files, strict=True)]
    scored = [im for im, r in zip(images, reasons, strict=True) if r is None]
    probs = iter(detector.probabilities(scored) if scored else ())
    cal = detector.calibration
    threshold = round(cal.threshold, 6)
    out = []
    for p, reason in zip(paths, reasons, strict=True):
        if reason is not None:
            out.append(
                Detection(p, None, UNCERTAIN, detector.spec, threshold, reason, cal.target_fpr)
            )
            continue
        s = float(next(probs))
        out.append(
            Detection(p, round(s, 6), cal.band(s), detector.spec, threshold, None, cal.target_fpr)
        )
    return out
