"""A linear probe on CLIP image features (UnivFD, Ojha et al., CVPR 2023), for users with
CLIP weights.

Features of a frozen CLIP image tower separate real from generated pictures across generators
with only a linear classifier on top. The probe file stores the CLIP spec it was trained on
(``clip:ARCH/PRETRAINED``, an open_clip tag or a checkpoint path) and the probe's weights;
loading it builds that CLIP model, so the weights must be available on the machine (nothing
is downloaded when they are not: the error says which).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aigcguard.detectors.base import (
    DETECTORS,
    Calibration,
    Detector,
    MissingSettingError,
    TrainingError,
    TrainOptions,
    calibrate,
)
from aigcguard.detectors.data import TrainingSet


@DETECTORS.register("clip-probe")
class ClipProbeDetector(Detector):
    kind = "clip-probe"

    def __init__(
        self,
        clip_spec: str,
        coef: np.ndarray,
        intercept: float,
        *,
        calibration: Calibration | None = None,
        device: str | torch.device | None = "auto",
        _unfitted: bool = False,
    ):
        from aigcguard.clip import ClipTower, parse_clip_spec

        super().__init__(calibration)
        self.clip_spec = clip_spec
        name, _, arg = clip_spec.partition(":")
        if name != "clip":
            raise ValueError(f"clip-probe needs a clip:ARCH/PRETRAINED spec, got {clip_spec!r}")
        self.tower = ClipTower(*parse_clip_spec(arg), device)
        self.coef = np.asarray(coef, np.float64).ravel()
        if not _unfitted and self.coef.shape[0] != self.tower.dim:
            raise ValueError(
                f"probe has {self.coef.shape[0]} weights but {clip_spec} gives "
                f"{self.tower.dim}-d features"
            )
        self.intercept = float(intercept)

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> ClipProbeDetector:
        """:meth:`fit` on ``data``'s training part, calibrated on its validation part.
        Setting ``clip`` (required): the CLIP spec, ``clip:ARCH/PRETRAINED``."""
        from aigcguard.clip import ClipError

        clip_spec = options.settings.get("clip")
        if not clip_spec:
            raise MissingSettingError(cls.kind, "clip", "clip:ARCH/PRETRAINED")
        try:
            det = cls.fit(
                clip_spec,
                data.tensors("train"),
                data.part_labels("train"),
                seed=options.seed,
                device=options.device,
            )
        except ClipError as exc:  # weights missing or unreadable: the message says which
            raise TrainingError(str(exc)) from exc
        return calibrate(det, data, options.target_fpr)

    @classmethod
    def fit(
        cls,
        clip_spec: str,
        images: Sequence[torch.Tensor],
        labels: Sequence[int],
        *,
        C: float = 1.0,
        seed: int = 0,
        device: str | torch.device | None = "auto",
        batch: int = 64,
    ) -> ClipProbeDetector:
        """Logistic regression on the CLIP features of ``images`` (labels 1 = generated)."""
        from sklearn.linear_model import LogisticRegression

        probe = cls(clip_spec, np.zeros(0), 0.0, device=device, _unfitted=True)
        feats = probe.features(images, batch)
        lr = LogisticRegression(C=C, max_iter=5000, random_state=seed)
        lr.fit(feats, np.asarray(labels))
        probe.coef, probe.intercept = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
        return probe

    def features(self, images: Sequence[torch.Tensor], batch: int = 64) -> np.ndarray:
        parts = [
            self.tower.encode(list(images[i : i + batch])) for i in range(0, len(images), batch)
        ]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, self.tower.dim))

    def raw_scores(self, images: Sequence[torch.Tensor], batch: int = 64) -> np.ndarray:
        return self.features(images, batch) @ self.coef + self.intercept

    def state(self) -> dict:
        return {
            "clip": self.clip_spec,
            "coef": torch.from_numpy(self.coef.copy()),
            "intercept": self.intercept,
        }

    @classmethod
    def from_state(cls, state: dict, calibration: Calibration) -> ClipProbeDetector:
        return cls(
            state["clip"], state["coef"].numpy(), state["intercept"], calibration=calibration
        )
