"""How well a detector separates real from generated images, clean and after common edits.

:func:`binary_metrics` scores one set of probabilities; :func:`evaluate` runs a detector on
real and generated images under each of :data:`PERTURBATIONS` (re-encoding and downscaling,
which is what images meet on the way to a detector; defined in :mod:`aigcguard.perturb` and
re-exported here) and :func:`markdown_table` renders the result. Label 1 is "generated" throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aigcguard.perturb import PERTURBATIONS
from aigcguard.results import JsonResult

from .base import Detector

ECE_BINS = 15


@dataclass(frozen=True)
class Metrics(JsonResult):
    """Metrics on one labelled set. ``accuracy`` counts ``probability >= threshold`` as
    "generated" (the same rule as :meth:`Calibration.band`); ``tpr_at_1fpr`` and
    ``tpr_at_5fpr`` are the largest true-positive rates on the ROC curve whose false-positive
    rate is at most 1% and 5%; ``ece`` is the expected calibration error of the probability
    of "generated" over 15 equal-width bins."""

    n_real: int
    n_generated: int
    auc: float
    ap: float
    accuracy: float
    tpr_at_1fpr: float
    tpr_at_5fpr: float
    ece: float


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Naeini et al.'s binary ECE: the bin-size-weighted mean of
    ``|fraction generated - mean probability|`` over equal-width bins of the probability.
    Scored on P(generated) rather than top-label confidence so that the bins cover the whole
    range, including the region around a threshold that is not 0.5."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels, np.float64)
    # Bin i holds [i/bins, (i+1)/bins); 1.0 goes into the last bin.
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(
        np.bincount(idx, weights=y, minlength=bins) - np.bincount(idx, weights=p, minlength=bins)
    )
    # Per bin, |sum(y) - sum(p)| / n  ==  (n / N) * |mean(y) - mean(p)|.
    return float(gap.sum() / count.sum())


def binary_metrics(probabilities, labels, threshold: float) -> Metrics:
    """Metrics of ``probabilities`` (of "generated") against ``labels`` (1 = generated)."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    p = np.asarray(probabilities, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} probabilities but {len(y)} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (generated)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    y = y.astype(np.int64)
    n_generated = int(y.sum())
    n_real = len(y) - n_generated
    if n_real == 0 or n_generated == 0:
        raise ValueError(
            f"metrics need both classes; got {n_real} real and {n_generated} generated"
        )
    # All thresholds kept, so every corner of the ROC curve is there to pick from.
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return Metrics(
        n_real=n_real,
        n_generated=n_generated,
        auc=float(roc_auc_score(y, p)),
        ap=float(average_precision_score(y, p)),
        accuracy=float(np.mean((p >= threshold) == (y == 1))),
        tpr_at_1fpr=float(tpr[fpr <= 0.01].max()),
        tpr_at_5fpr=float(tpr[fpr <= 0.05].max()),
        ece=expected_calibration_error(p, y),
    )


def _probabilities(
    detector: Detector,
    images: Sequence[torch.Tensor],
    perturb: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
) -> np.ndarray:
    # Perturb one batch at a time, so only a batch of edited copies is ever held.
    out = [
        np.asarray(
            detector.probabilities([perturb(img) for img in images[i : i + batch]]),
            np.float64,
        ).reshape(-1)
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(
    detector: Detector,
    real_images: Sequence[torch.Tensor],
    generated_images: Sequence[torch.Tensor],
    *,
    perturbations: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = PERTURBATIONS,
    batch: int = 64,
) -> dict[str, Metrics]:
    """For each perturbation (in its order), apply it to every image of both classes, score
    with ``detector.probabilities`` and measure at ``detector.calibration.threshold``."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if len(real_images) == 0 or len(generated_images) == 0:
        raise ValueError(
            f"evaluation needs both classes; got {len(real_images)} real and "
            f"{len(generated_images)} generated images"
        )
    labels = np.concatenate([np.zeros(len(real_images)), np.ones(len(generated_images))])
    results = {}
    for name, perturb in perturbations.items():
        p = np.concatenate(
            [
                _probabilities(detector, real_images, perturb, batch),
                _probabilities(detector, generated_images, perturb, batch),
            ]
        )
        results[name] = binary_metrics(p, labels, detector.calibration.threshold)
    return results


_COLUMNS = (
    ("AUC", "auc"),
    ("AP", "ap"),
    ("Accuracy @ threshold", "accuracy"),
    ("TPR @ 1% FPR", "tpr_at_1fpr"),
    ("TPR @ 5% FPR", "tpr_at_5fpr"),
    ("ECE", "ece"),
)


@dataclass(frozen=True)
class Evaluation(JsonResult):
    """:func:`evaluate`'s metrics, by perturbation in report order. JSON: one object keyed
    by perturbation name (``{"clean": {...}, "JPEG 90": {...}, ...}``), each a
    :class:`Metrics`."""

    metrics: Mapping[str, Metrics]

    def to_dict(self) -> dict:
        # Keyed by perturbation rather than by field: the names are data, not a schema.
        return {name: m.to_dict() for name, m in self.metrics.items()}

    def markdown(self) -> str:
        return markdown_table(self.metrics)


def markdown_table(results: Mapping[str, Metrics]) -> str:
    """One row per perturbation, values to 3 decimals."""
    lines = [
        "| Perturbation | " + " | ".join(title for title, _ in _COLUMNS) + " |",
        "| --- |" + " ---: |" * len(_COLUMNS),
    ]
    for name, m in results.items():
        cells = " | ".join(f"{getattr(m, field):.3f}" for _, field in _COLUMNS)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"
