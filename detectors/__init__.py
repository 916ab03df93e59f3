"""Real-versus-generated image detectors.

    from aigcguard.detectors import load, score
    detector = load("default")                 # the shipped residual CNN, or a saved file
    results = score(detector, images, paths)   # calibrated probability, band, threshold

Kinds (``DETECTORS.list()``): ``spectral``, FFT and block-DCT statistics of every tile
with a linear classifier (the default, ``detector_spectral_wild.pt``, is one retrained on
pictures from the wild); ``residual-cnn``, a light fully convolutional network on
neighbouring-pixel residuals (a candidate: not shipped); ``npr``, a small CNN on 32 px crops
(shipped as ``npr-cifake``); ``clip-probe``, a linear probe on open_clip image features
(needs CLIP weights). A picture outside a
detector's range gets the ``uncertain`` band and the reason (``detectors.scope``).
Training any kind: ``load_training_set`` then ``train_detector(kind, data, TrainOptions(...))``
(each kind's ``Detector.train``; the NPR loop is ``detectors.npr.train_npr``);
evaluation: ``detectors.metrics``; by generator family and source, with intervals, grouped
cross-validation and the shortcut baseline: ``detectors.grouped``; videos:
``detectors.video.score_video``; a shipped checkpoint's model card in one line:
``model_card(detector)`` (``detectors.cards``, from data/model_cards.json).
"""

from aigcguard.detectors import clip_probe as _clip_probe  # noqa: F401  (registers the kinds)
from aigcguard.detectors import npr as _npr  # noqa: F401
from aigcguard.detectors import residual_cnn as _residual_cnn  # noqa: F401
from aigcguard.detectors import spectral as _spectral  # noqa: F401
from aigcguard.detectors.api import DEFAULT_MODEL, Detection, load, score
from aigcguard.detectors.base import (
    BANDS,
    DETECTORS,
    Calibration,
    Detector,
    MissingSettingError,
    TrainingError,
    TrainOptions,
    fit_calibration,
    list_detectors,
    load_detector,
)
from aigcguard.detectors.cards import model_card
from aigcguard.detectors.data import TrainingSet, load_training_set
from aigcguard.detectors.metrics import (
    PERTURBATIONS,
    Evaluation,
    Metrics,
    binary_metrics,
    evaluate,
)
from aigcguard.detectors.training import TrainedDetector, train_detector
from aigcguard.detectors.video import (
    VIDEO_EXTENSIONS,
    VideoDetection,
    VideoScore,
    detect_video,
    score_video,
)

__all__ = [
    "BANDS",
    "DEFAULT_MODEL",
    "DETECTORS",
    "PERTURBATIONS",
    "VIDEO_EXTENSIONS",
    "Calibration",
    "Detection",
    "Detector",
    "Evaluation",
    "Metrics",
    "MissingSettingError",
    "TrainOptions",
    "TrainedDetector",
    "TrainingError",
    "TrainingSet",
    "VideoDetection",
    "VideoScore",
    "binary_metrics",
    "detect_video",
    "evaluate",
    "fit_calibration",
    "list_detectors",
    "load",
    "load_detector",
    "load_training_set",
    "model_card",
    "score",
    "score_video",
    "train_detector",
]
