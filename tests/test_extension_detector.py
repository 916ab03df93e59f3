"""Adding a detector kind: its own class with a training entry point, plus one registration.

The worked example of docs/architecture.md: a toy kind that scores mean brightness is
registered, trained through the library function the CLI uses and through ``aigc detector
train --kind toy``, saved, loaded and scored, then removed from the registry.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.detectors import api
from aigcguard.detectors.base import (
    DETECTORS,
    Calibration,
    Detector,
    TrainOptions,
    calibrate,
    load_detector,
)
from aigcguard.detectors.data import TrainingSet, load_training_set
from aigcguard.detectors.training import train_detector


class ToyDetector(Detector):
    """Raw score: mean brightness (0..1) minus ``offset``."""

    kind = "toy"

    def __init__(self, offset: float, calibration: Calibration | None = None):
        super().__init__(calibration)
        self.offset = float(offset)

    def raw_scores(self, images) -> np.ndarray:
        return np.array([float(im.float().mean()) / 255.0 - self.offset for im in images])

    def state(self) -> dict:
        return {"offset": self.offset}

    @classmethod
    def from_state(cls, state: dict, calibration: Calibration) -> ToyDetector:
        return cls(state["offset"], calibration)

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> ToyDetector:
        # The offset sits halfway between the classes' mean brightness.
        raw = cls(0.0).raw_scores(data.tensors("train"))
        labels = data.part_labels("train")
        det = cls((raw[labels == 0].mean() + raw[labels == 1].mean()) / 2)
        return calibrate(det, data, options.target_fpr)


def _folders(tmp_path):
    """Dark real pictures, bright generated ones (the classes overlap pixel by pixel)."""
    rng = np.random.default_rng(0)
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(parents=True)
    fake.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 150, (16, 16, 3), dtype=np.uint8)).save(real / f"{i}.png")
        Image.fromarray(rng.integers(90, 256, (16, 16, 3), dtype=np.uint8)).save(fake / f"{i}.png")
    return real, fake


def test_the_split_stays_put_when_the_folders_move(tmp_path, monkeypatch):
    real, fake = _folders(tmp_path / "here")
    first = load_training_set(real, fake, val_fraction=0.15)
    moved = tmp_path / "elsewhere" / "deeper"
    moved.parent.mkdir()
    (tmp_path / "here").rename(moved)
    again = load_training_set(moved / "real", moved / "fake", val_fraction=0.15)
    monkeypatch.chdir(moved)
    relative = load_training_set("real", "fake", val_fraction=0.15)
    for other in (again, relative):
        np.testing.assert_array_equal(first.val, other.val)
        np.testing.assert_array_equal(first.train, other.train)
    assert set(first.labels[first.val].tolist()) == {0, 1}


def test_a_toy_detector_kind_trains_through_the_library_and_the_cli(tmp_path):
    real, fake = _folders(tmp_path)
    runner = CliRunner()
    DETECTORS.add("toy", ToyDetector)  # the one registration
    try:
        assert "toy" in DETECTORS.list()
        # library: the same function `aigc detector train` calls
        data = load_training_set(real, fake, val_fraction=0.15)
        result = train_detector("toy", data, TrainOptions(out=tmp_path / "lib.pt", seed=0))
        summary = result.to_dict()
        assert summary["model"] == str(tmp_path / "lib.pt") and summary["kind"] == "toy"
        assert summary["train"] + summary["validation"] == 80 and summary["validation"] > 0
        assert set(summary) == {"model", "kind", "train", "validation", "calibration"}
        loaded = load_detector(tmp_path / "lib.pt")
        assert isinstance(loaded, ToyDetector) and loaded.offset == result.detector.offset
        # textured (a flat picture is outside any detector's range: no score)
        grain = torch.randint(0, 20, (3, 16, 16), generator=torch.Generator().manual_seed(0))
        dark = (30 + grain).to(torch.uint8)
        bright = (210 + grain).to(torch.uint8)
        scored = api.score(loaded, [dark, bright], ["dark", "bright"])
        assert scored[0].band == "likely_real" and scored[1].band == "likely_generated"

        # CLI: --kind choices come from the registry
        r = runner.invoke(main, ["detector", "train", "--help"])
        assert "toy" in r.output
        out = tmp_path / "cli.pt"
        args = ["detector", "train", "--real", str(real), "--fake", str(fake), "--out", str(out)]
        r = runner.invoke(main, [*args, "--kind", "toy"])
        assert r.exit_code == 0, r.output
        cli_summary = json.loads(r.output.strip().splitlines()[-1])
        assert cli_summary == {**summary, "model": str(out)}
        r = runner.invoke(main, ["detect", str(fake / "0.png"), "--model", str(out)])
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.strip().splitlines()[-1])["band"] == "likely_generated"
    finally:
        DETECTORS.remove("toy")
    assert "toy" not in DETECTORS.list()
    r = runner.invoke(main, [*args, "--kind", "toy"])
    assert r.exit_code == 2 and "'toy' is not one of" in r.output
