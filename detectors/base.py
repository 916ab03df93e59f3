"""What every real-versus-generated detector shares: the interface, calibration, a registry.

A detector turns uint8 RGB images (3 x H x W tensors, any size) into raw scores, higher for
"generated"; it owns its preprocessing (crops, sizes, normalisation). Its :class:`Calibration`,
fitted on validation data, turns a raw score into a probability (temperature scaling) and
carries the threshold chosen for a stated false-positive rate. A detector saves itself to one
file that records its kind, so ``load_detector(path)`` needs nothing else.

Each kind registers its class in :data:`DETECTORS` under its ``kind``. The class's
:meth:`Detector.train` is the kind's training entry point: it takes a
:class:`~aigcguard.detectors.data.TrainingSet` and :class:`TrainOptions`, and
:func:`aigcguard.detectors.training.train_detector` calls it (so does ``aigc detector train
--kind KIND``, whose choices are ``DETECTORS.list()``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigcguard.detectors.data import TrainingError, TrainingSet
from aigcguard.fileio import atomic_write, file_sha256
from aigcguard.registry import Registry
from aigcguard.results import JsonResult

BANDS = ("likely_real", "uncertain", "likely_generated")


@dataclass(frozen=True)
class Calibration(JsonResult):
    """``probability = sigmoid((raw - bias) / temperature)``; ``threshold`` is on that
    probability, chosen so that at most ``target_fpr`` of validation real images reach it.
    Between ``uncertain_below`` and ``threshold`` the band is ``uncertain``."""

    temperature: float = 1.0
    bias: float = 0.0
    threshold: float = 0.5
    target_fpr: float | None = None
    uncertain_below: float = 0.5

    def probability(self, raw: np.ndarray) -> np.ndarray:
        z = (np.asarray(raw, np.float64) - self.bias) / self.temperature
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def band(self, probability: float) -> str:
        if probability >= self.threshold:
            return "likely_generated"
        if probability >= self.uncertain_below:
            return "uncertain"
        return "likely_real"


def fit_calibration(
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    target_fpr: float = 0.05,
    groups: np.ndarray | None = None,
) -> Calibration:
    """Temperature and bias by logistic regression of the labels on the raw scores (Platt
    scaling, which is temperature scaling with a shift), then the threshold: the smallest
    probability that at most ``target_fpr`` of the real (label 0) images reach. With
    ``groups`` (one name a score, e.g. the condition a picture was scored under) it is the
    strictest of the groups' thresholds, so that each group keeps ``target_fpr``.
    Probabilities below the real images' median are ``likely_real``; between that and the
    threshold, ``uncertain``."""
    from sklearn.linear_model import LogisticRegression

    raw = np.asarray(raw, np.float64).reshape(-1, 1)
    labels = np.asarray(labels).astype(int)
    if len(set(labels.tolist())) != 2:
        raise ValueError("calibration needs validation images of both classes")
    lr = LogisticRegression(C=1e6).fit(raw, labels)
    slope, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if slope <= 0:
        raise ValueError("the detector's scores do not separate the classes on validation data")
    cal = Calibration(temperature=1.0 / slope, bias=-intercept / slope)
    p = cal.probability(raw[:, 0])
    threshold = real_quantile_threshold(p, labels, target_fpr, groups)
    uncertain_below = min(float(np.median(p[labels == 0])), threshold)
    return replace(cal, threshold=threshold, target_fpr=target_fpr, uncertain_below=uncertain_below)


def real_quantile_threshold(
    probabilities: np.ndarray,
    labels: np.ndarray,
    target_fpr: float,
    groups: np.ndarray | None = None,
) -> float:
    """The smallest probability that at most ``target_fpr`` of the real (label 0) pictures
    reach: just above the one that (1 - target_fpr) of them stay under. With ``groups``, the
    strictest of the groups' own thresholds."""
    p, real = np.asarray(probabilities, np.float64), np.asarray(labels) == 0
    if groups is None:
        return _quantile_threshold(p[real], target_fpr)
    groups = np.asarray(groups)
    if len(groups) != len(p):
        raise ValueError(f"{len(groups)} groups for {len(p)} scores")
    return max(
        _quantile_threshold(p[real & (groups == g)], target_fpr) for g in np.unique(groups[real])
    )


def _quantile_threshold(real: np.ndarray, target_fpr: float) -> float:
    real = np.sort(real)
    k = math.floor(len(real) * (1 - target_fpr))
    return float(np.nextafter(real[min(k, len(real) - 1)], 1.0)) if k < len(real) else 1.0


def calibrate(detector: Detector, data: TrainingSet, target_fpr: float) -> Detector:
    """Fit ``detector``'s calibration on ``data``'s validation part (what a kind's
    :meth:`Detector.train` does last); returns the detector."""
    raw = detector.raw_scores(data.tensors("val"))
    detector.calibration = fit_calibration(raw, data.part_labels("val"), target_fpr=target_fpr)
    return detector


@dataclass(frozen=True)
class TrainOptions:
    """What every kind's training is given. ``out``: where the detector will be saved (a kind
    may keep files beside it, as npr keeps ``OUT.ckpt``). ``settings``: the kind's own
    options by name (npr reads ``epochs``, ``crop``, ``inputs``, ``init``; clip-probe reads
    ``clip``), so a new kind adds settings without changing this class."""

    out: Path
    target_fpr: float = 0.05
    seed: int = 0
    device: str | torch.device | None = "auto"
    settings: Mapping[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print


class MissingSettingError(TrainingError):
    """A kind's training needs a setting it was not given, such as clip-probe's ``clip``."""

    def __init__(self, kind: str, setting: str, example: str):
        super().__init__(f"detector kind {kind!r} needs the setting {setting}={example}")
        self.kind, self.setting, self.example = kind, setting, example


class Detector(ABC):
    #: registry kind, recorded in saved files
    kind: str = ""
    #: the shortest side a picture needs for a score that means anything: ``api.score`` gives
    #: smaller ones the ``uncertain`` band and no score instead (``raw_scores`` still computes
    #: one). Two 8 x 8 JPEG blocks: under that a picture is mostly the padding or interpolation a
    #: detector adds to reach its input size (the shipped NPR gave a 7 x 7 noise picture 0.999).
    min_side: int = 16

    def __init__(self, calibration: Calibration | None = None):
        self.calibration = calibration or Calibration()
        self.spec = self.kind
        #: the sha256 of the file it was loaded from (None: not loaded from a file); what ties
        #: a detector to its model card (:mod:`.cards`) whatever the file is called
        self.sha256: str | None = None

    @abstractmethod
    def raw_scores(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """One raw score per image (higher = generated), any image size."""

    def probabilities(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        return self.calibration.probability(self.raw_scores(images))

    @abstractmethod
    def state(self) -> dict:
        """What ``save`` writes besides the kind and the calibration."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict, calibration: Calibration) -> Detector: ...

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> Detector:
        """The kind's training entry point: fit on ``data``'s training part, calibrate on its
        validation part (at ``options.target_fpr``) and return the detector, not yet saved."""
        raise TrainingError(f"detector kind {cls.kind!r} cannot be trained")

    def save(self, path: str | Path) -> Path:
        """One file (torch.save of plain tensors and numbers), written atomically."""
        path = Path(path)
        with atomic_write(path) as f:
            torch.save(
                {
                    "format": DETECTOR_FORMAT,
                    "kind": self.kind,
                    "calibration": self.calibration.to_dict(),
                    "state": self.state(),
                    # how it was trained (epochs, validation AUC, seconds), for model cards
                    "training": getattr(self, "training", None),
                },
                f,
            )
        return path


DETECTOR_FORMAT = 1
#: detector classes by kind: ``@DETECTORS.register("npr")`` on the class; ``kind`` must match
DETECTORS: Registry[Detector] = Registry("detector")


def list_detectors() -> list[str]:
    """The registered kinds (``DETECTORS.list()``)."""
    return DETECTORS.list()


def load_detector(path: str | Path) -> Detector:
    """A detector saved by :meth:`Detector.save`; clear errors for anything else."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such detector file") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable detector file ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != DETECTOR_FORMAT:
        raise ValueError(f"{path}: not a detector file of format {DETECTOR_FORMAT}")
    kind = blob.get("kind")
    if not isinstance(kind, str) or not DETECTORS.is_registered(kind):
        raise ValueError(f"{path}: unknown detector kind {kind!r}")
    det = DETECTORS.get(kind).from_state(blob["state"], Calibration(**blob["calibration"]))
    det.spec = str(path)
    det.training = blob.get("training")
    det.sha256 = file_sha256(path)
    return det
