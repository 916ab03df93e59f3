"""Detector metrics on hand-computed cases, the perturbations, and evaluate() end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigcguard.detectors.base import Calibration, Detector
from aigcguard.detectors.metrics import (
    PERTURBATIONS,
    Metrics,
    binary_metrics,
    evaluate,
    expected_calibration_error,
    markdown_table,
)


class BrightnessDetector(Detector):
    """Scores mean brightness: a stand-in whose behaviour the tests can predict."""

    kind = "test-brightness"

    def __init__(self, calibration=None):
        super().__init__(calibration)
        self.batch_sizes = []

    def raw_scores(self, images):
        self.batch_sizes.append(len(images))
        return np.array([float(img.float().mean()) / 255 for img in images])

    def state(self):
        return {}

    @classmethod
    def from_state(cls, state, calibration):
        return cls(calibration)


def test_perfect_separation():
    m = binary_metrics([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], threshold=0.5)
    assert (m.n_real, m.n_generated) == (2, 2)
    assert (m.auc, m.ap, m.accuracy, m.tpr_at_1fpr, m.tpr_at_5fpr) == (1, 1, 1, 1, 1)
    # Each point alone in its bin: mean of |0 - 0.1|, |0 - 0.2|, |1 - 0.8|, |1 - 0.9|.
    assert m.ece == pytest.approx(0.15)


def test_reversed_scores():
    m = binary_metrics([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], threshold=0.5)
    assert m.auc == 0 and m.accuracy == 0
    assert m.tpr_at_1fpr == 0 and m.tpr_at_5fpr == 0
    # Positives found at ranks 3 and 4: 0.5 * 1/3 + 0.5 * 2/4.
    assert m.ap == pytest.approx(5 / 12)


def test_ties():
    m = binary_metrics([0.5] * 4, [0, 1, 0, 1], threshold=0.5)
    assert m.auc == 0.5 and m.ap == 0.5
    assert m.accuracy == 0.5  # a tie with the threshold counts as "generated"
    assert m.tpr_at_1fpr == 0 and m.ece == 0

    # One real tied with one generated: that pair counts half.
    m = binary_metrics([0.2, 0.6, 0.6, 0.9], [0, 0, 1, 1], threshold=0.7)
    assert m.auc == pytest.approx(3.5 / 4)
    assert m.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m.accuracy == 0.75
    assert m.tpr_at_1fpr == 0.5  # the tied pair can only be taken together


def test_tpr_at_fpr_hand_example():
    real = np.arange(100) / 100  # 0.00 ... 0.99
    generated = np.array([0.995, 0.985, 0.975, 0.965, 0.955, 0.945, 0.5, 0.3, 0.2, 0.1])
    p = np.concatenate([real, generated])
    y = np.r_[np.zeros(100), np.ones(10)]
    m = binary_metrics(p, y, threshold=0.9)
    # At most one real above the cut: 0.99 is, 0.98 is not -> 0.995 and 0.985 caught.
    assert m.tpr_at_1fpr == pytest.approx(0.2)
    # At most five (0.95 ... 0.99): every generated score above 0.94 is caught.
    assert m.tpr_at_5fpr == pytest.approx(0.6)
    assert m.accuracy == pytest.approx((90 + 6) / 110)


def test_ece_calibrated_and_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    y = (rng.uniform(0, 1, p.shape) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.015
    assert binary_metrics(p, y, 0.5).ece < 0.015

    # Overconfident: says 0.95 for a coin flip.
    y = rng.integers(0, 2, 1000)
    assert binary_metrics(np.full(1000, 0.95), y, 0.5).ece == pytest.approx(0.95 - y.mean())
    # Sharpened: right ranking, probabilities pushed to the extremes.
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.shape) < p).astype(int)
    sharp = 1 / (1 + np.exp(-12 * (p - 0.5)))
    assert binary_metrics(sharp, y, 0.5).ece > 0.1


def test_ece_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    p = np.r_[rng.uniform(0, 1, 300), 0.0, 1.0, 1 / 15, 14 / 15]
    y = rng.integers(0, 2, len(p))
    edges = np.linspace(0, 1, 16)
    total = 0.0
    for i in range(15):
        inside = (p >= edges[i]) & ((p < edges[i + 1]) if i < 14 else (p <= 1))
        if inside.any():
            total += inside.sum() / len(p) * abs(y[inside].mean() - p[inside].mean())
    assert expected_calibration_error(p, y) == pytest.approx(total)


def test_binary_metrics_errors():
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics([0.1, 0.2], [0, 0], 0.5)
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics([0.1, 0.2], [1, 1], 0.5)
    with pytest.raises(ValueError, match="3 probabilities but 2 labels"):
        binary_metrics([0.1, 0.2, 0.3], [0, 1], 0.5)
    with pytest.raises(ValueError, match=r"0 \(real\) or 1"):
        binary_metrics([0.1, 0.2], [0, 2], 0.5)
    with pytest.raises(ValueError, match="within"):
        binary_metrics([0.1, 1.5], [0, 1], 0.5)


def test_metrics_to_dict():
    m = binary_metrics([0.1, 0.9], [0, 1], 0.5)
    d = m.to_dict()
    assert list(d) == [
        "n_real", "n_generated", "auc", "ap", "accuracy", "tpr_at_1fpr", "tpr_at_5fpr", "ece",
    ]  # fmt: skip
    assert all(type(v) in (int, float) for v in d.values())
    with pytest.raises(AttributeError):
        m.auc = 0.0  # frozen


def _photo_like(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients plus mild noise: JPEG changes it a little, not beyond recognition."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2]) * 200 + 20
    return (base + torch.randn(3, h, w, generator=g) * 5).clamp(0, 255).to(torch.uint8)


def test_perturbations_keep_dtype_and_shape_rules():
    assert list(PERTURBATIONS) == ["clean", "JPEG 90", "JPEG 75", "JPEG 50", "resize x0.5"]
    img = _photo_like(37, 50)
    errors = {}
    for name, perturb in PERTURBATIONS.items():
        out = perturb(img)
        assert out.dtype == torch.uint8 and out.ndim == 3 and out.shape[0] == 3, name
        if name != "resize x0.5":
            assert out.shape == img.shape, name
            errors[name] = (out.float() - img.float()).abs().mean().item()
    assert torch.equal(PERTURBATIONS["clean"](img), img)
    assert 0 < errors["JPEG 90"] < errors["JPEG 50"] < 10
    assert PERTURBATIONS["resize x0.5"](img).shape == (3, 18, 25)
    assert not isinstance(PERTURBATIONS, dict)  # a shared default must not be mutable


def test_resize_half_small_images_and_values():
    resize = PERTURBATIONS["resize x0.5"]
    assert resize(_photo_like(10, 40)).shape == (3, 8, 20)
    assert resize(_photo_like(5, 12)).shape == (3, 5, 8)
    tiny = _photo_like(6, 4)
    assert torch.equal(resize(tiny), tiny)
    flat = torch.full((3, 64, 48), 137, dtype=torch.uint8)
    assert torch.equal(resize(flat), torch.full((3, 32, 24), 137, dtype=torch.uint8))
    # Hard edges overshoot in bicubic; values must clamp, not wrap.
    edge = torch.zeros(3, 32, 32, dtype=torch.uint8)
    edge[:, :, 16:] = 255
    out = resize(edge)
    assert out[:, :, :6].max() <= 5 and out[:, :, -6:].min() >= 250


def test_perturbations_reject_non_images():
    for perturb in PERTURBATIONS.values():
        with pytest.raises(ValueError, match="uint8 3 x H x W"):
            perturb(torch.zeros(3, 8, 8))
        with pytest.raises(ValueError, match="uint8 3 x H x W"):
            perturb(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def _images(levels, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.full((3, size, size), float(v)) + torch.randn(3, size, size, generator=g) * 8)
        .clamp(0, 255)
        .to(torch.uint8)
        for v in levels
    ]


def test_evaluate_with_a_brightness_detector():
    rng = np.random.default_rng(0)
    real = _images(rng.uniform(40, 110, 12), seed=1)
    generated = _images(rng.uniform(140, 210, 9), seed=2)
    det = BrightnessDetector(Calibration(temperature=0.05, bias=0.5, threshold=0.5))
    results = evaluate(det, real, generated, batch=5)
    assert list(results) == list(PERTURBATIONS)
    for name, m in results.items():
        assert isinstance(m, Metrics)
        assert (m.n_real, m.n_generated) == (12, 9)
        assert m.auc == 1 and m.ap == pytest.approx(1) and m.accuracy == 1, name
        assert m.tpr_at_1fpr == 1 and m.tpr_at_5fpr == 1
        assert 0 <= m.ece < 0.5
    assert max(det.batch_sizes) == 5  # scored in batches, never all at once

    table = markdown_table(results)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(PERTURBATIONS)
    assert lines[0].startswith("| Perturbation | AUC | AP |")
    assert lines[2].startswith("| clean | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |")
    assert lines[-1].startswith("| resize x0.5 |")


def test_evaluate_applies_perturbations_to_both_classes():
    real = _images([60, 80, 100])
    generated = _images([150, 170, 190])
    det = BrightnessDetector(Calibration(temperature=0.05, bias=0.5, threshold=0.5))
    invert = {"clean": PERTURBATIONS["clean"], "invert": lambda img: 255 - img}
    results = evaluate(det, real, generated, perturbations=invert)
    assert list(results) == ["clean", "invert"]
    assert results["clean"].auc == 1 and results["invert"].auc == 0
    assert results["invert"].accuracy == 0


def test_evaluate_uses_the_detector_threshold():
    real = _images([60, 80, 100])
    generated = _images([150, 170, 190])
    # Only the brightest image reaches 0.9 (raw 190/255 ~ 0.745 -> p ~ 0.95).
    det = BrightnessDetector(Calibration(temperature=0.05, bias=0.6, threshold=0.9))
    m = evaluate(det, real, generated, perturbations={"clean": PERTURBATIONS["clean"]})["clean"]
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.auc == 1


def test_evaluate_needs_both_classes():
    det = BrightnessDetector()
    with pytest.raises(ValueError, match="both classes"):
        evaluate(det, _images([60]), [])
