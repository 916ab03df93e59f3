"""Train a detector of any registered kind: the workflow behind ``aigc detector train``.

    from aigcguard.detectors.base import TrainOptions
    from aigcguard.detectors.data import load_training_set
    from aigcguard.detectors.training import train_detector

    data = load_training_set("real/", "fake/", val_fraction=0.15)
    result = train_detector("spectral", data, TrainOptions(out=Path("mine.pt")))
    result.detector.probabilities(images); result.to_dict()  # what the CLI prints

The kind's class (``DETECTORS.get(kind)``) trains and calibrates through its
:meth:`~aigcguard.detectors.base.Detector.train`; this saves the result and reports it. The
NPR network's own training loop is :func:`aigcguard.detectors.npr.train_npr`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aigcguard.detectors.base import DETECTORS, Calibration, Detector, TrainOptions
from aigcguard.detectors.data import TrainingSet
from aigcguard.results import NOT_JSON, JsonResult


@dataclass(frozen=True)
class TrainedDetector(JsonResult):
    """A trained, calibrated and saved detector. JSON: where it was saved (``model``), its
    ``kind``, how many pictures trained (``train``) and calibrated it (``validation``), and
    its ``calibration``; ``detector`` is the detector itself (not in the JSON)."""

    model: str
    kind: str
    train: int
    validation: int
    calibration: Calibration
    detector: Detector = field(metadata=NOT_JSON, repr=False, compare=False)


def train_detector(kind: str, data: TrainingSet, options: TrainOptions) -> TrainedDetector:
    """Train a detector of ``kind`` on ``data``, calibrate it on the validation part at
    ``options.target_fpr``, and save it to ``options.out``. An unknown kind raises
    :class:`~aigcguard.registry.RegistryError` naming the known ones; a kind that cannot run
    with what it was given raises :class:`~aigcguard.detectors.base.TrainingError`."""
    out = Path(options.out)
    detector = DETECTORS.get(kind).train(data, options)
    # npr saves as it trains (its checkpoint sits beside OUT); saving again writes the same
    # file, and keeps "trained means saved" true for every kind.
    detector.save(out)
    return TrainedDetector(
        model=str(out),
        kind=kind,
        train=len(data.train),
        validation=len(data.val),
        calibration=detector.calibration,
        detector=detector,
    )
