"""The residual CNN detector (issue 21): the network on any size, the common re-encoding,
training that resumes where it stopped, saving, and pictures outside its range."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aigcguard.detectors import api
from aigcguard.detectors import residual_cnn as rc
from aigcguard.detectors.base import DETECTORS, TrainOptions, load_detector
from aigcguard.detectors.data import TrainingError, TrainingSet
from aigcguard.detectors.scope import MAX_FLAT_SHARE, flat_share, out_of_scope
from aigcguard.detectors.training import train_detector
from aigcguard.imageio import load_image
from aigcguard.perturb import jpeg
from tests.helpers import pixel_repeated_or_noise


def _noise(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8))


def test_registered_and_reads_any_size():
    assert "residual-cnn" in DETECTORS.list()
    det = rc.ResidualCnnDetector(rc.ResidualNet())
    # odd sides lose a row/column; a long side above MAX_SIDE is shrunk first
    sizes = [(129, 131), (128, 640), (1500, 1201)]
    scores = det.raw_scores([_noise(h, w) for h, w in sizes])
    assert scores.shape == (3,) and np.isfinite(scores).all()
    x = rc._prepared(_noise(1500, 1201))
    assert max(x.shape[-2:]) <= rc.MAX_SIDE and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0


def test_npr_residual_is_zero_on_a_pixel_repeated_picture():
    small = torch.rand(1, 3, 8, 8)
    up = small.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert rc.npr(up).abs().max() == 0
    assert rc.npr(torch.rand(1, 3, 16, 16)).abs().max() > 0


def test_common_reencoding_is_one_distribution_for_both_classes():
    # the sample depends on the picture and the random stream only, never on a label: the
    # same stream gives the same crop, flip, scale and JPEG quality whatever the picture
    a = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    b = np.full((300, 200, 3), 128, np.uint8)
    out_a = rc.common_reencoding(a, np.random.default_rng(5), crop=64)
    out_b = rc.common_reencoding(b, np.random.default_rng(5), crop=64)
    assert out_a.shape == out_b.shape == (64, 64, 3)
    # a picture smaller than the crop is brought up to it
    tiny = rc.common_reencoding(a[:40, :50], np.random.default_rng(1), crop=64)
    assert tiny.shape == (64, 64, 3)


def test_training_learns_and_a_stopped_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(rc, "CHECKPOINT_EVERY", 3)
    images, labels = pixel_repeated_or_noise(24, seed=0, size=64)
    kw = {"steps": 6, "batch": 8, "crop": 32, "seed": 1}
    whole, info = rc.train_network(images, labels, **kw)
    assert info["steps"] == 6 and info["device"] == "cpu" and info["seconds"] >= 0

    class Stop(Exception):
        pass

    def stop_after_first_checkpoint(msg):
        if msg.startswith("step 3/"):
            raise Stop

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Stop):
        rc.train_network(images, labels, checkpoint=ckpt, log=stop_after_first_checkpoint, **kw)
    said = []
    resumed, _ = rc.train_network(images, labels, checkpoint=ckpt, log=said.append, **kw)
    assert said[0].startswith("resumed from") and "step 3/6" in said[0]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_training_needs_both_classes():
    images, _ = pixel_repeated_or_noise(4, seed=0, size=64)
    with pytest.raises(TrainingError, match="real and generated"):
        rc.train_network(images, [0, 0, 0, 0], steps=1)


def _photo_like(n: int, seed: int, size: int = 128) -> tuple[list[np.ndarray], np.ndarray]:
    """Smooth random fields with fine noise, JPEG 90; class 1 made at half size and
    pixel-repeated 2x (the trace NPR reads), class 0 at full size."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        side, sigma = (size // 2, 1) if i % 2 else (size, 2)
        field = gaussian_filter(rng.normal(128, 40, (side, side, 3)), (sigma, sigma, 0))
        arr = np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)
        if i % 2:
            arr = arr.repeat(2, axis=0).repeat(2, axis=1)
        images.append(jpeg(arr, 90))
    return images, np.arange(n) % 2


def test_train_detector_kind_calibrates_and_saves(tmp_path):
    images, labels = _photo_like(40, seed=2)
    data = TrainingSet(images, labels, train=np.arange(24), val=np.arange(24, 40))
    out = tmp_path / "cnn.pt"
    settings = {"steps": 30, "crop": 64, "batch": 16}
    opts = TrainOptions(out=out, device="cpu", target_fpr=0.1, settings=settings)
    result = train_detector("residual-cnn", data, opts)
    assert result.kind == "residual-cnn" and out.is_file()
    det = load_detector(out)
    assert det.kind == "residual-cnn" and det.training["steps"] == 30
    assert det.calibration.target_fpr == 0.1
    tensors = [torch.from_numpy(im).permute(2, 0, 1) for im in images[24:]]
    assert np.allclose(det.raw_scores(tensors), result.detector.raw_scores(tensors), atol=1e-5)
    # 30 steps are enough to tell pixel-repeated pictures from the others
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels[24:], det.raw_scores(tensors)) > 0.8


def _jpeg_file(path, arr, quality):
    Image.fromarray(arr).save(path, format="JPEG", quality=quality)
    return path


def test_pictures_outside_the_range_are_uncertain_with_the_reason(tmp_path):
    det = rc.ResidualCnnDetector(rc.ResidualNet())
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    flat = np.full((200, 240, 3), 200, np.uint8)
    flat[:20, :20] = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    hard = _jpeg_file(tmp_path / "hard.jpg", photo, 30)
    fine = _jpeg_file(tmp_path / "fine.jpg", photo, 75)
    images = [
        _noise(100, 400),
        torch.from_numpy(flat).permute(2, 0, 1),
        load_image(hard).pixels,
        load_image(fine).pixels,
        torch.from_numpy(photo).permute(2, 0, 1),
    ]
    paths = ["small", "flat", str(hard), str(fine), "<memory>"]
    results = api.score(det, images, paths)
    bands = [(r.band, r.score is None) for r in results]
    assert bands[:3] == [("uncertain", True)] * 3
    assert results[0].reason.startswith("too small: 400x100 px")
    assert results[1].reason.startswith("mostly flat")
    assert results[2].reason.startswith("heavily compressed: JPEG quality about 30")
    assert all(r.reason is None and r.score is not None for r in results[3:])
    d = results[2].to_dict()
    assert d["band"] == "uncertain" and d["score"] is None and "reason" in d
    # the name shown and the file read may differ (an upload kept in a temporary file); a
    # picture not from a file has no JPEG tables to read
    [named] = api.score(det, [images[2]], ["upload.jpg"], files=[str(hard)])
    assert named.path == "upload.jpg" and named.reason.startswith("heavily compressed")
    [memory] = api.score(det, [images[2]], [str(hard)], files=[None])
    assert memory.score is not None
    with pytest.raises(ValueError, match="2 files for 1 images"):
        api.score(det, [images[2]], ["a"], files=[None, None])


def test_flat_share_and_scope_limits():
    assert flat_share(torch.full((3, 64, 64), 7, dtype=torch.uint8)) == 1.0
    assert flat_share(_noise(64, 64)) == 0.0
    assert flat_share(_noise(5, 5)) == 0.0  # no whole block
    half = torch.full((3, 64, 64), 7, dtype=torch.uint8)
    half[:, :, :32] = _noise(64, 32)
    assert flat_share(half) == 0.5 < MAX_FLAT_SHARE
    # a large picture is measured on a regular quarter of its blocks: the same share here
    big = torch.full((3, 1024, 1024), 7, dtype=torch.uint8)
    big[:, :, :256] = _noise(1024, 256)
    assert flat_share(big) == 0.75
    assert out_of_scope(half, 16) is None
    assert out_of_scope(_noise(64, 64), 128).startswith("too small")
    assert out_of_scope(_noise(64, 64), 16, "/no/such/file.jpg") is None  # nothing to read


def test_jpeg_quality_is_read_from_the_header_only(tmp_path):
    from aigcguard.detectors.scope import file_jpeg_quality

    arr = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert file_jpeg_quality(_jpeg_file(tmp_path / "a.jpg", arr, 42)) == 42
    png = tmp_path / "a.png"
    Image.fromarray(arr).save(png)
    assert file_jpeg_quality(png) is None
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    assert file_jpeg_quality(tmp_path / "bad.jpg") is None
    assert file_jpeg_quality(None) is None
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    (tmp_path / "b.jpg").write_bytes(buf.getvalue())
    assert file_jpeg_quality(tmp_path / "b.jpg") == 90
    # a phone's multi-picture JPEG (MPO) has JPEG tables too
    mpo = tmp_path / "c.mpo"
    second = Image.fromarray(arr)
    Image.fromarray(arr).save(mpo, format="MPO", quality=42, save_all=True, append_images=[second])
    assert Image.open(mpo).format == "MPO" and file_jpeg_quality(mpo) == 42
