"""The spectral baseline detector: features, training on synthetic upsampling traces, saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from aigcguard.detectors.base import fit_calibration, list_detectors, load_detector
from aigcguard.detectors.spectral import FEATURE_DIM, SpectralDetector, spectral_features
from tests.helpers import to_tensor

TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "camera")


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = photo.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return to_tensor(photo[y : y + size, x : x + size])


def _upsampled(low: torch.Tensor, mode: str) -> torch.Tensor:
    """A 3 x h x w uint8 image upsampled 2x, as a generator's last layers would."""
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(low[None].float(), scale_factor=2, mode=mode, **kw)[0]
    return up.round().clamp(0, 255).to(torch.uint8)


def make_set(photos: dict, names: tuple[str, ...], n: int, seed: int):
    """n real crops (label 0) and n 2x-upsampled ones (label 1) of sizes 64..96: the fakes are
    upsampled photo crops (nearest or bilinear) and, one in four, upsampled smoothed noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        size = int(rng.choice([64, 80, 96]))
        name = names[i % len(names)]
        images.append(_crop(photos[name], size, rng))
        labels.append(0)
        mode = ("nearest", "bilinear")[i % 2]
        if i % 4 == 3:
            noise = torch.from_numpy(
                rng.integers(0, 256, (3, size // 4, size // 4), dtype=np.uint8)
            )
            low = _upsampled(noise, "bilinear")
        else:
            low = _crop(photos[name], size // 2, rng)
        images.append(_upsampled(low, mode))
        labels.append(1)
    return images, np.array(labels)


@pytest.fixture(scope="module")
def trained(photos):
    images, labels = make_set(photos, TRAIN_PHOTOS, 80, seed=0)
    return SpectralDetector.fit(images, labels, seed=0)


def test_registered():
    assert "spectral" in list_detectors()


def test_separates_held_out_upsampled_images(photos, trained):
    images, labels = make_set(photos, TRAIN_PHOTOS, 60, seed=1)
    auc = roc_auc_score(labels, trained.raw_scores(images))
    assert auc > 0.9, auc


def test_separates_photos_never_seen_in_training(photos, trained):
    images, labels = make_set(photos, ("rocket", "clock", "brick"), 40, seed=2)
    auc = roc_auc_score(labels, trained.raw_scores(images))
    assert auc > 0.9, auc


def test_calibrated_probabilities(photos, trained):
    images, labels = make_set(photos, TRAIN_PHOTOS, 40, seed=3)
    raw = trained.raw_scores(images)
    cal = fit_calibration(raw, labels, target_fpr=0.1)
    p = cal.probability(raw)
    assert ((p >= 0.5) == labels).mean() > 0.85
    assert (p[labels == 0] >= cal.threshold).mean() <= 0.1


def test_save_load_round_trip_identical(photos, trained, tmp_path):
    images, labels = make_set(photos, TRAIN_PHOTOS, 10, seed=4)
    cal = fit_calibration(trained.raw_scores(images), labels)
    det = SpectralDetector.from_state(trained.state(), cal)
    path = det.save(tmp_path / "spectral.pt")
    back = load_detector(path)
    assert isinstance(back, SpectralDetector)
    assert back.calibration == cal
    np.testing.assert_array_equal(back.raw_scores(images), trained.raw_scores(images))
    np.testing.assert_array_equal(back.probabilities(images), det.probabilities(images))
    # nothing but plain tensors and numbers in the file
    blob = torch.load(path, weights_only=True)
    assert blob["state"]["coef"].shape == (FEATURE_DIM,)


def test_wrong_feature_version_refused(trained, tmp_path):
    path = trained.save(tmp_path / "spectral.pt")
    blob = torch.load(path, weights_only=True)
    blob["state"]["feature_version"] = 0
    torch.save(blob, path)
    with pytest.raises(ValueError, match="feature version"):
        load_detector(path)


def test_any_size_and_grayscale(photos, trained):
    rng = np.random.default_rng(5)
    big = torch.from_numpy(rng.integers(0, 256, (3, 1500, 1000), dtype=np.uint8))
    tiny = _crop(photos["astronaut"], 8, rng)
    odd = [_crop(photos["coffee"], 40, rng)[:, :13, :], torch.zeros(3, 1, 1, dtype=torch.uint8)]
    gray = to_tensor(photos["camera"][:100, :120])
    images = [big, tiny, *odd, gray, gray[:1], gray[0]]
    scores = trained.raw_scores(images)
    assert scores.shape == (len(images),) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[-3:], scores[-1], rtol=1e-9)
    # a gray image is the same as 1 x H x W, H x W or its channel repeated, bit for bit
    alone = [trained.raw_scores([im])[0] for im in (gray, gray[:1], gray[0])]
    assert alone[0] == alone[1] == alone[2]


def test_features_deterministic_and_batch_independent(photos):
    rng = np.random.default_rng(6)
    images = [_crop(photos["chelsea"], s, rng) for s in (64, 64, 100, 17, 300)]
    f1 = spectral_features(images)
    f2 = spectral_features(images)
    assert f1.shape == (5, FEATURE_DIM) and np.isfinite(f1).all()
    np.testing.assert_array_equal(f1, f2)
    alone = np.concatenate([spectral_features([im]) for im in images])
    np.testing.assert_allclose(alone, f1, rtol=1e-5, atol=1e-5)
    # a batch tensor is a sequence of images
    np.testing.assert_array_equal(spectral_features(torch.stack(images[:2])), f1[:2])


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        spectral_features([torch.zeros(3, 32, 32)])
    with pytest.raises(ValueError, match="3 x H x W"):
        spectral_features([torch.zeros(4, 32, 32, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="both present"):
        SpectralDetector.fit_features(np.zeros((4, FEATURE_DIM)), [0, 0, 0, 0])


def _chroma_halved(img: torch.Tensor) -> torch.Tensor:
    """The picture with its colour (Cb, Cr) at half resolution and its luminance untouched."""
    x = img.float()
    y = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    cb, cr = (x[2] - y) / 1.772, (x[0] - y) / 1.402
    chroma = torch.stack([cb, cr])[None]
    chroma = F.interpolate(F.avg_pool2d(chroma, 2), scale_factor=2, mode="bilinear")[0]
    cb, cr = chroma
    r, b = y + 1.402 * cr, y + 1.772 * cb
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b]).round().clamp(0, 255).to(torch.uint8)


def _colour_set(photos, names, n, seed):
    rng = np.random.default_rng(seed)
    real = [_crop(photos[names[i % len(names)]], 96, rng) for i in range(n)]
    fake = [_chroma_halved(_crop(photos[names[i % len(names)]], 96, rng)) for i in range(n)]
    return real + fake, np.array([0] * n + [1] * n)


def test_colour_features_see_what_luminance_cannot(photos):
    colour = ("astronaut", "coffee", "chelsea")
    train, y = _colour_set(photos, colour, 40, seed=7)
    test, y_test = _colour_set(photos, ("rocket", "astronaut", "coffee"), 30, seed=8)
    assert spectral_features(train[:2], channels="ycbcr").shape == (2, 3 * FEATURE_DIM)
    luma = SpectralDetector.fit(train, y, channels="y")
    both = SpectralDetector.fit(train, y, channels="ycbcr")
    assert roc_auc_score(y_test, both.raw_scores(test)) > 0.9  # 0.94 when written
    assert roc_auc_score(y_test, luma.raw_scores(test)) < 0.7  # 0.51
    # the setting travels with the saved detector
    back = SpectralDetector.from_state(both.state(), both.calibration)
    assert back.channels == "ycbcr"
    np.testing.assert_array_equal(back.raw_scores(test[:3]), both.raw_scores(test[:3]))
    # files saved before colour features existed are luminance detectors
    old = luma.state()
    del old["channels"]
    assert SpectralDetector.from_state(old, luma.calibration).channels == "y"
    with pytest.raises(ValueError, match="channels"):
        spectral_features(train[:1], channels="rgb")


def test_platform_views_join_training(photos):
    images, labels = make_set(photos, TRAIN_PHOTOS, 12, seed=9)
    a = SpectralDetector.fit(images, labels, views=("JPEG 75", "resize x0.5"), channels="y")
    b = SpectralDetector.fit(images, labels, views=("JPEG 75", "resize x0.5"), channels="y")
    plain = SpectralDetector.fit(images, labels, channels="y")
    np.testing.assert_array_equal(a.coef, b.coef)
    assert not np.array_equal(a.coef, plain.coef)
    with pytest.raises(ValueError, match="unknown views"):
        SpectralDetector.fit(images, labels, views=("JPEG 7",))
    with pytest.raises(ValueError, match="labels"):
        SpectralDetector.fit(images, labels[:-1])


def test_large_pictures_scored_at_the_training_scale(photos, trained):
    from aigcguard.detectors.spectral import shrink

    big = to_tensor(photos["astronaut"])  # 512 x 512
    assert shrink(big, 600) is big and shrink(big, None) is big
    half = shrink(big, 256)
    assert half.shape == (3, 256, 256) and half.dtype == torch.uint8
    wide = torch.zeros(3, 300, 900, dtype=torch.uint8)
    assert shrink(wide, 100).shape == (3, 100, 300)
    det = SpectralDetector.from_state(trained.state() | {"max_side": 256}, trained.calibration)
    assert det.raw_scores([big])[0] == pytest.approx(trained.raw_scores([half])[0], rel=1e-6)
    back = SpectralDetector.from_state(det.state(), det.calibration)
    assert back.max_side == 256


def test_several_scales_measure_the_picture_and_its_halves(photos, tmp_path):
    from aigcguard.detectors.spectral import multiscale_features, rescale

    big = to_tensor(photos["astronaut"])  # 512 x 512
    half = rescale(big, 0.5)
    assert half.shape == (3, 256, 256) and half.dtype == torch.uint8
    assert rescale(big, 1.0) is big
    assert rescale(torch.zeros(3, 3, 5, dtype=torch.uint8), 0.25).shape == (3, 1, 1)
    both = multiscale_features([big], scales=(1.0, 0.5), max_tiles=64, channels="ycbcr")
    width = 3 * FEATURE_DIM
    assert both.shape == (1, 2 * width)
    # each block is the one-scale features of the picture at that scale, side by side
    np.testing.assert_array_equal(
        both[:, :width], spectral_features([big], max_tiles=64, channels="ycbcr")
    )
    np.testing.assert_array_equal(
        both[:, width:], spectral_features([half], max_tiles=64, channels="ycbcr")
    )
    for bad in ((), (1.0, 1.0), (1.5,), (0.0,)):
        with pytest.raises(ValueError, match="scales"):
            multiscale_features([big], scales=bad)

    images, labels = make_set(photos, TRAIN_PHOTOS, 16, seed=11)
    det = SpectralDetector.fit(images, labels, channels="y", scales=(1.0, 0.5))
    assert det.coef.shape == (2 * FEATURE_DIM,) and det.scales == (1.0, 0.5)
    path = det.save(tmp_path / "two_scales.pt")
    back = load_detector(path)
    assert back.scales == (1.0, 0.5)
    np.testing.assert_array_equal(back.raw_scores(images), det.raw_scores(images))
    # a file saved before scales existed loads as the one scale it was trained on
    state = SpectralDetector.fit(images, labels, channels="y").state()
    del state["scales"]
    assert SpectralDetector.from_state(state, det.calibration).scales == (1.0,)
    with pytest.raises(ValueError, match="features"):
        SpectralDetector.fit_features(
            np.zeros((4, FEATURE_DIM)), [0, 1, 0, 1], channels="y", scales=(1.0, 0.5)
        )
