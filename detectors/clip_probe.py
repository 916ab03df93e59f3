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

from aigcguard.detectors.base import Calibration, Detector, register_detector


@register_detector
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
        from aigcguard.provenance.embedders import create_embedder

        super().__init__(calibration)
        self.clip_spec = clip_spec
        self.embedder = create_embedder(clip_spec, device)
        self.coef = np.asarray(coef, np.float64).ravel()
        if not _unfitted and self.coef.shape[0] != self.embedder.dim:
            raise ValueError(
                f"probe has {self.coef.shape[0]} weights but {clip_spec} gives "
                f"{self.embedder.dim}-d features"
            )
        self.intercept = float(intercept)

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
            self.embedder.embed(list(images[i : i + batch])) for i in range(0, len(images), batch)
        ]
        return (
            np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, self.embedder.dim))
        )

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
