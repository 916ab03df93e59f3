"""Detectors: calibration, the NPR network and its crops, training (resumable), saving, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.detectors import api
from aigcguard.detectors.base import Calibration, fit_calibration, load_detector
from aigcguard.detectors.npr import NprDetector, NprNet, TrainConfig, augment, crops, npr, train_npr
from tests.helpers import pixel_repeated_or_noise


def test_calibration_threshold_keeps_the_false_positive_rate():
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.normal(-1, 1, 2000), rng.normal(1.5, 1, 2000)])
    labels = np.array([0] * 2000 + [1] * 2000)
    cal = fit_calibration(raw, labels, target_fpr=0.05)
    p = cal.probability(raw)
    assert np.mean(p[labels == 0] >= cal.threshold) <= 0.05
    assert np.mean(p[labels == 1] >= cal.threshold) > 0.5
    assert cal.band(cal.threshold) == "likely_generated"
    assert cal.band(0.0) == "likely_real"
    assert cal.band((cal.threshold + cal.uncertain_below) / 2) == "uncertain"
    # calibrated: in a band of probabilities the share of generated images matches
    mid = (p > 0.4) & (p < 0.6)
    assert abs(labels[mid].mean() - 0.5) < 0.1
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration(raw[:10], np.zeros(10))


def test_calibration_by_groups_keeps_the_rate_in_each_group():
    # real scores of group "b" sit higher (a condition that looks more generated): one pooled
    # threshold would let too many of them through; the strictest of the groups' does not
    rng = np.random.default_rng(1)
    real_a, real_b = rng.normal(-1, 1, 1000), rng.normal(0, 1, 1000)
    raw = np.concatenate([real_a, real_b, rng.normal(1.5, 1, 2000)])
    labels = np.array([0] * 2000 + [1] * 2000)
    groups = np.array(["a"] * 1000 + ["b"] * 1000 + ["a", "b"] * 1000)
    pooled = fit_calibration(raw, labels, target_fpr=0.01)
    strict = fit_calibration(raw, labels, target_fpr=0.01, groups=groups)
    p = strict.probability(raw)
    assert (strict.temperature, strict.bias) == (pooled.temperature, pooled.bias)
    assert np.mean(pooled.probability(real_b) >= pooled.threshold) > 0.01
    for g in ("a", "b"):
        assert np.mean(p[(labels == 0) & (groups == g)] >= strict.threshold) <= 0.01
    assert strict.threshold > pooled.threshold
    with pytest.raises(ValueError, match="groups"):
        fit_calibration(raw, labels, groups=groups[:10])


def test_npr_residual_and_network_any_size():
    x = torch.rand(2, 3, 8, 8)
    flat = x[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.allclose(npr(flat), torch.zeros_like(flat))
    net = NprNet().eval()
    for h, w in [(32, 32), (64, 48)]:
        assert net(torch.rand(3, 3, h, w)).shape == (3,)
    tiny = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    big = torch.randint(0, 256, (3, 300, 500), dtype=torch.uint8)
    assert crops(tiny, 32, 9).shape == (1, 3, 32, 32)
    c = crops(big, 32, 9)
    assert c.shape == (9, 3, 32, 32) and torch.equal(c, crops(big, 32, 9))
    det = NprDetector(net, crop=32, n_crops=4)
    scores = det.raw_scores([tiny, big, torch.zeros(3, 1, 1, dtype=torch.uint8)])
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_augment_is_the_same_pipeline_for_both_classes():
    cfg = TrainConfig(crop=32)
    rng = np.random.default_rng(1)
    for arr in (np.zeros((20, 24, 3), np.uint8), np.zeros((100, 80, 3), np.uint8)):
        out = augment(arr, cfg, rng)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_training_learns_resumes_and_saves(tmp_path):
    train, train_y = pixel_repeated_or_noise(256, 0)
    val, val_y = pixel_repeated_or_noise(64, 1)
    cfg = TrainConfig(crop=32, epochs=3, batch=32, jpeg_p=0.0, blur_p=0.0, rescale_p=0.0)
    out = tmp_path / "det.pt"

    def interrupt_after_first_epoch(message):
        if message.startswith("epoch 1"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_npr(train, train_y, val, val_y, out=out, cfg=cfg, log=interrupt_after_first_epoch)
    assert (tmp_path / "det.pt.ckpt").exists() and not out.exists()
    logs = []
    det = train_npr(train, train_y, val, val_y, out=out, cfg=cfg, log=logs.append)
    assert logs[0].startswith("resuming") and "after epoch 1" in logs[0]
    assert [h["epoch"] for h in det.training["history"]] == [1, 2, 3]
    assert det.training["history"][-1]["val_auc"] > 0.95
    again = load_detector(out)
    tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in val]
    np.testing.assert_allclose(again.raw_scores(tensors), det.raw_scores(tensors), rtol=1e-5)
    assert isinstance(again.calibration, Calibration) and again.calibration.target_fpr == 0.05
    # Labels that contradict what the network learnt: calibration refuses, the weights stay.
    flipped = tmp_path / "flipped.pt"
    one = TrainConfig(crop=32, epochs=1, batch=32, jpeg_p=0.0, blur_p=0.0, rescale_p=0.0)
    with pytest.raises(ValueError, match="no detector written"):
        train_npr(train, train_y, val, 1 - val_y, out=flipped, cfg=one, init=det)
    assert (tmp_path / "flipped.pt.ckpt").exists() and not flipped.exists()
    with pytest.raises(ValueError, match="other settings"):
        train_npr(train, train_y, val, val_y, out=out, cfg=TrainConfig(crop=32, epochs=5))


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no such detector file"):
        load_detector(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable detector file"):
        load_detector(bad)
    torch.save({"format": 1, "kind": "nope", "calibration": {}, "state": {}}, bad)
    with pytest.raises(ValueError, match="unknown detector kind 'nope'"):
        api.load(str(bad))


def test_cli_train_and_detect(tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    images, labels = pixel_repeated_or_noise(80, 3, size=64)
    for i, (arr, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(arr).save((fake if y else real) / f"{i}.png")
    model = tmp_path / "m.pt"
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "detector",
            "train",
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--out",
            str(model),
            "--epochs",
            "2",
            "--crop",
            "32",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["kind"] == "npr" and summary["validation"] > 0
    (tmp_path / "broken.png").write_bytes(b"no")
    r = runner.invoke(
        main,
        [
            "detect",
            str(fake / "1.png"),
            str(real / "0.png"),
            str(tmp_path / "broken.png"),
            "--model",
            str(model),
        ],
    )
    assert r.exit_code == 1
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    scored = [x for x in lines if "score" in x]
    assert len(scored) == 2 and {"path", "score", "band", "model", "threshold"} <= set(scored[0])
    assert scored[0]["score"] > scored[1]["score"]  # the upsampled one scores higher
    assert any("error" in x for x in lines)
    r = runner.invoke(main, ["detect", str(real), "--model", str(tmp_path / "missing.pt")])
    assert r.exit_code == 1 and "no such detector file" in r.output
    r = runner.invoke(
        main, ["detector", "eval", "--real", str(real), "--fake", str(fake), "--model", str(model)]
    )
    assert r.exit_code == 0, r.output
    assert "JPEG 75" in r.output and "resize x0.5" in r.output and "AUC" in r.output
    r = runner.invoke(
        main,
        [
            "detector",
            "train",
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--out",
            str(tmp_path / "s.pt"),
            "--kind",
            "spectral",
        ],
    )
    assert r.exit_code == 0, r.output
    assert api.load(str(tmp_path / "s.pt")).kind == "spectral"


def test_clip_probe_with_a_tiny_random_clip(tmp_path, photos):
    import open_clip

    from aigcguard.detectors.clip_probe import ClipProbeDetector
    from tests.test_descriptors import TINY_CLIP

    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "aigc-tiny-probe.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    # A checkpoint file, so the saved probe can rebuild the very same (random) CLIP.
    net = open_clip.create_model("aigc-tiny-probe", pretrained=None)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    spec = f"clip:aigc-tiny-probe/{ckpt}"
    images, labels = pixel_repeated_or_noise(60, 5, size=64)
    tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in images]
    probe = ClipProbeDetector.fit(spec, tensors[:40], labels[:40], device="cpu")
    probe.calibration = fit_calibration(probe.raw_scores(tensors[40:]), labels[40:])
    path = probe.save(tmp_path / "probe.pt")
    again = api.load(str(path), device="cpu")
    assert again.kind == "clip-probe" and again.clip_spec == spec
    np.testing.assert_allclose(
        again.raw_scores(tensors[:5]), probe.raw_scores(tensors[:5]), rtol=1e-5
    )
    with pytest.raises(ValueError, match="probe has 3 weights"):
        ClipProbeDetector(spec, np.zeros(3), 0.0, device="cpu")


def test_shipped_default_scores_the_sample_photos():
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    r = CliRunner().invoke(main, ["detect", str(samples), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert len(lines) >= 2
    for rec in lines:
        assert 0.0 <= rec["score"] <= 1.0 and rec["model"] == "default"
        assert rec["band"] in ("likely_real", "uncertain", "likely_generated")
    det = api.load("default", device="cpu")
    assert det.kind == "spectral" and det.calibration.target_fpr == 0.01
    assert det.training["data"] == "wild" and det.min_side == 128
    old = api.load("npr-cifake", device="cpu")
    assert old.kind == "npr" and old.calibration.target_fpr == 0.05
    assert old.training["history"][-1]["val_auc"] > 0.95


def test_cli_detect_scores_a_video_by_segments(tmp_path):
    import cv2

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(30):  # 3 s
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    r = CliRunner().invoke(
        main, ["detect", str(path), "--every", "0.5", "--segment", "1", "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    [rec] = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert rec["path"] == str(path) and rec["frames"] == 6 and len(rec["segments"]) == 3
    assert 0.0 <= rec["score"] <= 1.0 and rec["model"] == "default" and "threshold" in rec
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    r = CliRunner().invoke(main, ["detect", str(broken), "--device", "cpu"])
    assert r.exit_code == 1 and "broken.mp4" in r.output


def test_npr_net_may_see_the_picture_too():
    both = NprNet(inputs="npr+rgb").eval()
    assert both.stem[0].in_channels == 6 and both(torch.rand(2, 3, 32, 32)).shape == (2,)
    # flat 2 x 2 blocks have no residual: only the picture's own channels tell them apart
    a = torch.rand(1, 3, 16, 16).repeat_interleave(2, 2).repeat_interleave(2, 3)
    alone = NprNet().eval()
    assert alone(a).item() == pytest.approx(alone(a * 0.5).item())
    assert both(a).item() != pytest.approx(both(a * 0.5).item())
    det = NprDetector(both, crop=32)
    back = NprDetector.from_state(det.state(), det.calibration)
    assert back.net.inputs == "npr+rgb"
    old = det.state() | {"inputs": None}
    del old["inputs"]
    old["weights"] = NprNet().state_dict()
    assert NprDetector.from_state(old, det.calibration).net.inputs == "npr"
    with pytest.raises(ValueError, match="inputs"):
        NprNet(inputs="rgb")


def test_every_shipped_checkpoint_has_its_one_line_model_card(tmp_path):
    """data/model_cards.json has a line for each detector checkpoint in data/, made for that
    file's bytes: a retrained checkpoint fails here until its line is reviewed and its new
    sha256 recorded; and the file is package data, so an installed service has it."""
    import fnmatch
    import shutil

    import tomllib

    from aigcguard.detectors.cards import CARDS_FILE, LANGUAGES, model_card, model_cards
    from aigcguard.fileio import file_sha256
    from tests.helpers import ROOT

    data = ROOT / "data"
    checkpoints = sorted(p.name for p in data.glob("*.pt"))
    assert set(api.SHIPPED.values()) <= set(checkpoints)
    cards = model_cards()
    missing = [name for name in checkpoints if name not in cards]
    assert not missing, f"no one-line model card in data/{CARDS_FILE} for {missing}"
    assert sorted(cards) == checkpoints, f"data/{CARDS_FILE} describes files not shipped"
    for name in checkpoints:
        assert cards[name]["sha256"] == file_sha256(data / name), (
            f"data/{name} is not the checkpoint its line in data/{CARDS_FILE} was written "
            "for: review the line (and the card in data/README.md), then record its sha256"
        )
    for model, name in api.SHIPPED.items():
        card = model_card(api.load(model, device="cpu"))
        assert card == {lang: cards[name][lang] for lang in LANGUAGES}, model
        assert card["en"] != card["zh"], model
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = config["tool"]["setuptools"]["package-data"]["aigcguard.data"]
    assert any(fnmatch.fnmatch(CARDS_FILE, pattern) for pattern in shipped)
    # the line follows the bytes, not the name: a copy keeps it, a changed file has none
    copy = shutil.copy(data / api.SHIPPED["spectral"], tmp_path / "my-detector.pt")
    assert model_card(load_detector(copy)) == model_card(api.load("spectral"))


def test_detect_help_describes_each_shipped_detector_from_its_card():
    from click.testing import CliRunner

    from aigcguard.cli import main
    from aigcguard.detectors.cards import model_cards

    out = CliRunner().invoke(main, ["detect", "--help"], terminal_width=1000).output
    text = " ".join(out.split())
    cards = model_cards()
    for name, file in api.SHIPPED.items():
        assert f"`{name}`: {cards[file]['en'].split(';')[0]}" in text, name
    assert "NPR, trained on CIFAKE)" not in text  # what `default` was before issue 21


def test_a_detector_not_shipped_has_no_model_card(tmp_path, monkeypatch):
    from aigcguard.detectors import cards

    det = api.load("spectral", device="cpu")
    assert cards.model_card(det) is not None
    det.calibration = Calibration(threshold=0.5)
    det.save(tmp_path / "retrained.pt")
    assert cards.model_card(load_detector(tmp_path / "retrained.pt")) is None
    assert cards.model_card(NprDetector(NprNet(widths=(4, 8, 8)))) is None  # never saved
    # a malformed file is refused with its entry named
    (tmp_path / cards.CARDS_FILE).write_text(
        json.dumps({"version": 1, "cards": {"detector_x.pt": {"sha256": "ab", "en": "x"}}}),
        encoding="utf-8",
    )
    monkeypatch.setattr(cards.resources, "files", lambda package: tmp_path)
    cards.model_cards.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"model_cards\.json: entry 'detector_x\.pt' lacks zh"):
            cards.model_card(det)
    finally:
        monkeypatch.undo()
        cards.model_cards.cache_clear()


def test_npr_training_starts_only_from_an_npr_detector(tmp_path):
    from aigcguard.detectors.base import TrainingError, TrainOptions
    from aigcguard.detectors.data import TrainingSet

    images, labels = pixel_repeated_or_noise(8, seed=0)
    data = TrainingSet(images, labels, train=np.arange(6), val=np.arange(6, 8))
    opts = TrainOptions(out=tmp_path / "n.pt", device="cpu", settings={"init": "default"})
    with pytest.raises(TrainingError, match="a spectral detector; npr training starts from npr"):
        NprDetector.train(data, opts)
    assert not (tmp_path / "n.pt").exists()
