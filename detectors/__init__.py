"""Real-versus-generated image detectors.

    from aigcguard.detectors import load, score
    detector = load("default")                 # the shipped NPR network, or a saved file
    results = score(detector, images, paths)   # calibrated probability, band, threshold

Kinds (``list_detectors``): ``npr``, a small residual CNN on neighbouring-pixel relationships
(the default); ``spectral``, FFT and block-DCT statistics with a linear classifier;
``clip-probe``, a linear probe on open_clip image features (needs CLIP weights). Training:
``detectors.training.train_npr``, ``SpectralDetector.fit``; evaluation: ``detectors.metrics``;
videos: ``detectors.video.score_video``.
"""

from aigcguard.detectors import clip_probe as _clip_probe  # noqa: F401  (registers the kinds)
from aigcguard.detectors import npr as _npr  # noqa: F401
from aigcguard.detectors import spectral as _spectral  # noqa: F401
from aigcguard.detectors.api import DEFAULT_MODEL, Detection, load, score
from aigcguard.detectors.base import (
    BANDS,
    Calibration,
    Detector,
    fit_calibration,
    list_detectors,
    load_detector,
    register_detector,
)
from aigcguard.detectors.metrics import PERTURBATIONS, Metrics, binary_metrics, evaluate
from aigcguard.detectors.video import VIDEO_EXTENSIONS, VideoScore, score_video

__all__ = [
    "BANDS",
    "DEFAULT_MODEL",
    "PERTURBATIONS",
    "VIDEO_EXTENSIONS",
    "Calibration",
    "Detection",
    "Detector",
    "Metrics",
    "VideoScore",
    "binary_metrics",
    "evaluate",
    "fit_calibration",
    "list_detectors",
    "load",
    "load_detector",
    "register_detector",
    "score",
    "score_video",
]
