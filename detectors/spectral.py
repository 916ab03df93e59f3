"""A fast spectral baseline: Fourier and block-DCT statistics of luminance, a linear classifier.

Generators and upsamplers leave periodic traces (spectral peaks or nulls at fractions of the
sampling rate, an unusual high-frequency fall-off, missing or doubled JPEG block statistics).
This detector measures them with fixed features and a scikit-learn
``StandardScaler + LogisticRegression`` trained on labelled images; it needs no GPU and scores
hundreds of images a second on a CPU. It is a baseline: it learns the traces of the generators
it was trained on and is easily fooled by resizing or recompression.

Feature vector (:func:`spectral_features`, ``FEATURE_DIM`` = 160 values per image, float64)
--------------------------------------------------------------------------------------------

Preprocessing. Luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) on the 0..255
scale; a grayscale image given as 1 x H x W, as H x W or repeated into 3 channels gives the
same Y, bit for bit. An image with a side under 16 px is first upsampled (bilinear, on Y) so
that its short side is 16. Square tiles of side ``t = min(tile, H, W)`` rounded down to a
multiple of 8 (``tile`` = 64 by default, so 16 <= t <= 64) are taken on an evenly spaced grid
of at most ``max_tiles`` tiles (default 16; an image no larger than the tile is one tile), their
corners on multiples of 8 so that the DCT blocks line up with a JPEG block grid. Each tile gives
one vector; an image's features are the mean over its tiles.

``[0:32]`` radial spectrum. The tile's high-pass residual ``Y - mean3x3(Y)`` (reflect padding)
minus its own mean, times a 2-D Hann window, is Fourier transformed; the power
``|F|^2 / sum(window^2)`` (a per-pixel density, comparable across tile sizes) is averaged over
32 rings of radial frequency ``r = sqrt(fx^2 + fy^2)`` (cycles per pixel, 0 < r <= sqrt(0.5):
the corners beyond r = 0.5 are included; DC is not). Ring b is centred on
``(b + 0.5) sqrt(0.5) / 32`` with triangular weights of half width
``max(sqrt(0.5) / 32, 1 / t)``, so small tiles leave no ring empty. Value: ``log(power + 1e-3)``.

``[32:96]`` block-DCT magnitude. The tile (``Y - 128``) is cut into 8x8 blocks, each
transformed with the orthonormal 2-D DCT-II (the JPEG transform). For each of the 64
frequencies, row-major (``32 + 8 u + v``, u vertical, v horizontal, ``32`` the DC term):
``log(mean over blocks |c| + 1e-2)``.

``[96:160]`` block-DCT sparsity, same order: ``log((mean|c| + 1e-2) / (rms(c) + 1e-2))``, at
most 0; low where a frequency is mostly zero with a few large values (JPEG quantisation,
upsampling), near ``log(sqrt(2/pi))`` for Gaussian-like coefficients. On CIFAKE it adds about
0.014 AUC to the 96 features before it.

Colour (``channels="ycbcr"``). The same 160 features are also measured on the two chroma
planes ``Cb = 128 + (B - Y) / 1.772`` and ``Cr = 128 + (R - Y) / 1.402`` (JPEG's, exactly 128
for gray pixels) and appended: 480 values, Y then Cb then Cr. Generators' colour statistics
differ from cameras' more than their luminance does: on aigc_small with both classes brought to
the same size and encoding first (bench/train_spectral.py), 5 x 5-fold cross-validated AUC
rose from 0.72 (Y) to 0.88 (YCbCr).

Scales (``scales``, default ``(1.0,)``). The features can also be measured on the picture
shrunk by each factor (:func:`multiscale_features`: bicubic, antialiased) and set side by
side, factor by factor: the default detector reads the picture and its half (960 values).

Saved state (plain tensors and numbers, no pickle): the feature settings, the scaler's
``mean``/``scale`` and the logistic regression's ``coef``/``intercept`` as float64 tensors.
``raw_scores`` is the decision function ``((x - mean) / scale) . coef + intercept``, the same
arithmetic before and after a save, so a reloaded detector gives identical scores.

Typical use::

    det = SpectralDetector.fit(train_images, train_labels)        # labels: 1 = generated
    det.calibration = fit_calibration(det.raw_scores(val_images), val_labels, target_fpr=0.05)
    det.save("spectral.pt");  load_detector("spectral.pt").probabilities(images)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from aigcguard.budget import bounded_size
from aigcguard.detectors.base import DETECTORS, Calibration, Detector, TrainOptions, calibrate
from aigcguard.detectors.data import TrainingSet

#: feature layout, see the module docstring
RADIAL_BINS = 32
DCT_BLOCK = 8
FEATURE_DIM = RADIAL_BINS + 2 * DCT_BLOCK * DCT_BLOCK
#: bumped whenever the features change meaning; saved detectors of another version refuse to load
FEATURE_VERSION = 1

#: how the shipped full-resolution detector was trained (bench/train_spectral.py), and what
#: ``aigc detector train --kind spectral`` uses: colour features, every 64-px tile of a
#: 512-px picture, each training picture also seen re-encoded and halved as platforms do
#: (random rescales and qualities instead held up worse under JPEG 75 and halving: CV AUC
#: 0.82 and 0.63 against 0.86 and 0.82), a strongly regularised classifier (480 features)
TRAINING = {
    "channels": "ycbcr",
    "max_tiles": 64,
    "views": ("JPEG 90", "JPEG 75", "JPEG 50", "resize x0.5"),
    "C": 0.1,
    "max_side": 512,
}

#: the scale sets the default's nested CV chooses from (bench/train_spectral_wild.py), each a
#: leading part of the longest: the picture, then also its half, then also its quarter
SCALE_CHOICES = ((1.0,), (1.0, 0.5), (1.0, 0.5, 0.25))

MIN_SIDE = 16
#: ``shrink`` caps the long side at this many times ``max_side``: more than the loader's
#: default aspect limit (20:1), so what it takes keeps the size it always had
MAX_ASPECT = 32
_LUMA = (0.299, 0.587, 0.114)
_SPECTRUM_EPS = 1e-3
_DCT_EPS = 1e-2
#: uint8 bytes of images stacked at once while gathering tiles
_CHUNK_BYTES = 1 << 26


# --------------------------------------------------------------------------------------------
# features


@lru_cache(maxsize=16)
def _ring_weights(t: int) -> torch.Tensor:
    """(t * (t//2 + 1)) x RADIAL_BINS matrix: rfft2 bins of a t x t tile to ring averages."""
    fy = torch.fft.fftfreq(t, dtype=torch.float64)
    fx = torch.fft.rfftfreq(t, dtype=torch.float64)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).reshape(-1)
    # columns 1 .. t/2-1 of the half plane stand for two frequencies each (Hermitian symmetry)
    mult = torch.full((t // 2 + 1,), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    if t % 2 == 0:
        mult[-1] = 1.0
    mult = mult.repeat(t)
    rmax = math.sqrt(0.5)
    centres = (torch.arange(RADIAL_BINS, dtype=torch.float64) + 0.5) * rmax / RADIAL_BINS
    half = max(rmax / RADIAL_BINS, 1.0 / t)
    w = (1.0 - (r[:, None] - centres[None, :]).abs() / half).clamp_min(0.0) * mult[:, None]
    w[0] = 0.0  # DC
    return (w / w.sum(0, keepdim=True)).to(torch.float32)


@lru_cache(maxsize=16)
def _hann2d(t: int) -> tuple[torch.Tensor, float]:
    h = torch.hann_window(t, periodic=False, dtype=torch.float64)
    w = h[:, None] * h[None, :]
    return w.to(torch.float32), float((w**2).sum())


@lru_cache(maxsize=1)
def _dct_matrix() -> torch.Tensor:
    n = DCT_BLOCK
    k = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(torch.float32)


def _tile_features(tiles: torch.Tensor) -> torch.Tensor:
    """N x t x t luminance tiles (float32, 0..255) to N x FEATURE_DIM features."""
    n, t, _ = tiles.shape
    # radial spectrum of the windowed high-pass residual
    x = tiles[:, None]
    local = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    res = (x - local)[:, 0]
    res = res - res.mean(dim=(-2, -1), keepdim=True)
    win, norm = _hann2d(t)
    power = torch.fft.rfft2(res * win).abs().square() / norm
    rings = power.reshape(n, -1) @ _ring_weights(t)
    spectrum = torch.log(rings + _SPECTRUM_EPS)
    # 8x8 block DCT statistics
    b = DCT_BLOCK
    blocks = (tiles - 128.0).reshape(n, t // b, b, t // b, b).permute(0, 1, 3, 2, 4)
    d = _dct_matrix()
    coeffs = (d @ blocks @ d.T).reshape(n, -1, b * b)
    mean_abs = coeffs.abs().mean(dim=1) + _DCT_EPS
    rms = coeffs.square().mean(dim=1).sqrt() + _DCT_EPS
    return torch.cat([spectrum, mean_abs.log(), (mean_abs / rms).log()], dim=1)


def _as_chw(img: torch.Tensor, i: int) -> torch.Tensor:
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"image {i}: expected a torch.Tensor, got {type(img).__name__}")
    if img.dtype != torch.uint8:
        raise ValueError(f"image {i}: expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3 or img.shape[0] not in (1, 3) or min(img.shape[1:]) < 1:
        raise ValueError(
            f"image {i}: expected a 3 x H x W (or 1 x H x W) tensor, got {tuple(img.shape)}"
        )
    return img.cpu()


def _luma(x: torch.Tensor) -> torch.Tensor:
    """... x C x H x W (C = 1 or 3, any dtype) to ... x H x W float32 luminance, 0..255."""
    x = x.to(torch.float32)
    if x.shape[-3] == 1:
        return x[..., 0, :, :]
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    # R + 0.587 (G - R) + 0.114 (B - R): exactly R for gray pixels, whatever the rounding
    return r + _LUMA[1] * (g - r) + _LUMA[2] * (b - r)


#: feature planes by ``channels`` setting
CHANNELS = {"y": 1, "ycbcr": 3}


def _planes(x: torch.Tensor, channels: str) -> torch.Tensor:
    """B x C x H x W (C = 1 or 3) to B x P x H x W float32 planes, 0..255."""
    y = _luma(x)
    if channels == "y":
        return y[:, None]
    if x.shape[1] == 1:
        chroma = torch.full_like(y, 128.0)
        return torch.stack([y, chroma, chroma], dim=1)
    x = x.to(torch.float32)
    cb = 128.0 + (x[:, 2] - y) / 1.772
    cr = 128.0 + (x[:, 0] - y) / 1.402
    return torch.stack([y, cb, cr], dim=1)


def _grid(h: int, w: int, t: int, max_tiles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top and left corners (multiples of 8) of an evenly spaced grid of t x t tiles."""
    ny_max, nx_max = h // t, w // t
    ny = min(ny_max, max(1, round(math.sqrt(max_tiles * h / w))))
    nx = min(nx_max, max(1, max_tiles // ny))
    ny = min(ny_max, max(1, max_tiles // nx))

    def corners(size: int, n: int) -> torch.Tensor:
        pos = torch.linspace(0, size - t, n, dtype=torch.float64).floor().long()
        return (pos // DCT_BLOCK) * DCT_BLOCK

    return corners(h, ny), corners(w, nx)


def _group_features(x: torch.Tensor, tile: int, max_tiles: int, channels: str) -> torch.Tensor:
    """B x C x H x W uint8 images of one size to B x (P * FEATURE_DIM) features (float32)."""
    bsz, _, h, w = x.shape
    x = _planes(x, channels)
    n_planes = x.shape[1]
    if min(h, w) < MIN_SIDE:
        s = MIN_SIDE / min(h, w)
        size = (max(MIN_SIDE, math.ceil(h * s)), max(MIN_SIDE, math.ceil(w * s)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        h, w = size
    t = (min(tile, h, w) // DCT_BLOCK) * DCT_BLOCK
    tops, lefts = _grid(h, w, t, max_tiles)
    ar = torch.arange(t)
    rows = (tops[:, None] + ar)[:, None, :, None]  # ny x 1 x t x 1
    cols = (lefts[:, None] + ar)[None, :, None, :]  # 1 x nx x 1 x t
    tiles = x[:, :, rows, cols]  # B x P x ny x nx x t x t
    ntiles = tiles.shape[2] * tiles.shape[3]
    feats = _tile_features(tiles.reshape(bsz * n_planes * ntiles, t, t))
    return feats.reshape(bsz, n_planes, ntiles, FEATURE_DIM).mean(dim=2).reshape(bsz, -1)


def spectral_features(
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    tile: int = 64,
    max_tiles: int = 16,
    channels: str = "y",
) -> np.ndarray:
    """N x (FEATURE_DIM per plane of ``channels``) float64 features of uint8 images (3 x H x W,
    1 x H x W or H x W, any size; a B x 3 x H x W tensor is a batch). Images of equal size are
    processed together."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, not {channels!r}")
    if tile < MIN_SIDE or tile % DCT_BLOCK:
        raise ValueError(
            f"tile must be a multiple of {DCT_BLOCK} of at least {MIN_SIDE}, got {tile}"
        )
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be at least 1, got {max_tiles}")
    imgs = [_as_chw(img, i) for i, img in enumerate(images)]
    out = torch.zeros(len(imgs), CHANNELS[channels] * FEATURE_DIM, dtype=torch.float64)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(imgs):
        groups.setdefault(tuple(img.shape[1:]), []).append(i)
    with torch.no_grad():
        for (h, w), idx in groups.items():
            per_chunk = max(1, _CHUNK_BYTES // (3 * h * w))
            for start in range(0, len(idx), per_chunk):
                part = idx[start : start + per_chunk]
                chans = max(imgs[i].shape[0] for i in part)
                x = torch.stack([imgs[i].expand(chans, h, w) for i in part])
                out[part] = _group_features(x, tile, max_tiles, channels).to(torch.float64)
    return out.numpy()


def shrink(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """A uint8 picture whose short side exceeds ``max_side``, resized (bicubic, with
    antialiasing, as Pillow does) so that it is ``max_side``; smaller pictures unchanged, never
    enlarged. Traces measured at a 4000-px photo's own resolution (sensor noise, demosaicing)
    are not what a detector trained on 512-px pictures has seen. The long side is capped at
    MAX_ASPECT times ``max_side`` too (a thin strip is scaled by its long side), so the
    working copy stays bounded whatever the shape."""
    if max_side is None or image.ndim < 3:
        return image
    h, w = image.shape[-2:]
    size = bounded_size(h, w, short=max_side, max_long=MAX_ASPECT * max_side, grow=False)
    if size == (h, w):
        return image
    return _resized(image, size)


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic with antialiasing, as Pillow resizes. One plane at a time: the float copy of a
    whole 64 MP picture is 768 MB, of a plane 256 MB; the result is the same, bit for bit."""
    h, w = image.shape[-2:]
    planes = image.reshape(-1, 1, h, w)
    out = torch.empty(planes.shape[0], 1, *size, dtype=torch.uint8)
    for i in range(planes.shape[0]):
        x = planes[i : i + 1].float()
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        out[i] = x.round().clamp(0, 255).to(torch.uint8)[0]
    return out.reshape(*image.shape[:-2], *size)


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(f) for f in scales)
    if not out or any(not 0 < f <= 1 for f in out) or len(set(out)) != len(out):
        raise ValueError(f"scales must be distinct factors in (0, 1], got {list(scales)}")
    return out


def rescale(image: torch.Tensor, factor: float) -> torch.Tensor:
    """A uint8 picture resized by ``factor`` <= 1 (bicubic with antialiasing, each side
    rounded, at least 1 px); ``factor`` 1 gives the picture itself."""
    if factor == 1.0:
        return image
    h, w = image.shape[-2:]
    return _resized(image, (max(1, round(h * factor)), max(1, round(w * factor))))


def multiscale_features(
    images: Sequence[torch.Tensor] | torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    **options,
) -> np.ndarray:
    """:func:`spectral_features` of each picture at each of ``scales`` (factors <= 1 of its
    size, :func:`rescale`), side by side in that order. A JPEG 75 re-encoding wipes out most
    traces above a quarter of the sampling rate; halving the picture brings the ones below it
    into the bands the features measure finely (on the wild set the inner CV of each of 57
    grouped folds took the half, never the picture alone: bench/results/detector_default.md)."""
    scales = _check_scales(scales)
    imgs = [_as_chw(img, i) for i, img in enumerate(images)]
    return np.concatenate(
        [spectral_features([rescale(im, f) for im in imgs], **options) for f in scales], axis=1
    )


# --------------------------------------------------------------------------------------------
# detector


@DETECTORS.register("spectral")
class SpectralDetector(Detector):
    """Spectral features (:func:`spectral_features`) and a linear classifier on them."""

    kind = "spectral"
    min_side = MIN_SIDE  # below it the features are measured on an upsampled picture

    def __init__(
        self,
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: float,
        *,
        tile: int = 64,
        max_tiles: int = 16,
        channels: str = "y",
        max_side: int | None = None,
        min_side: int = MIN_SIDE,
        scales: Sequence[float] = (1.0,),
        calibration: Calibration | None = None,
    ):
        super().__init__(calibration)
        # smaller pictures get the "uncertain" band (api.score): a detector trained on
        # full-size pictures says so from 128 px, the first ones measured from MIN_SIDE
        self.min_side = max(int(min_side), MIN_SIDE)
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, not {channels!r}")
        self.scales = _check_scales(scales)
        dim = len(self.scales) * CHANNELS[channels] * FEATURE_DIM
        self.mean = np.asarray(mean, np.float64).reshape(dim)
        self.scale = np.asarray(scale, np.float64).reshape(dim)
        self.coef = np.asarray(coef, np.float64).reshape(dim)
        self.intercept = float(intercept)
        self.tile = int(tile)
        self.max_tiles = int(max_tiles)
        self.channels = channels
        self.max_side = None if max_side is None else int(max_side)

    # ---- training

    @classmethod
    def train(cls, data: TrainingSet, options: TrainOptions) -> SpectralDetector:
        """The shipped detector's recipe (:data:`TRAINING`) on ``data``'s training part,
        calibrated on its validation part. No settings."""
        det = cls.fit(
            data.tensors("train"), data.part_labels("train"), seed=options.seed, **TRAINING
        )
        return calibrate(det, data, options.target_fpr)

    @classmethod
    def fit(
        cls,
        images: Sequence[torch.Tensor] | torch.Tensor,
        labels: Sequence[int] | np.ndarray,
        *,
        seed: int = 0,
        C: float = 1.0,
        tile: int = 64,
        max_tiles: int = 16,
        channels: str = "y",
        max_side: int | None = None,
        views: Sequence[str] = (),
        scales: Sequence[float] = (1.0,),
    ) -> SpectralDetector:
        """Train on uint8 images with labels 1 = generated, 0 = real. ``views`` names
        operations from :data:`aigcguard.perturb.PERTURBATIONS` (``"JPEG 75"``,
        ``"resize x0.5"``...): each picture, whatever its class, is also seen after each of
        them, so the classifier leans on traces that survive what platforms do. ``max_side``:
        larger pictures are first shrunk to that short side (see :func:`shrink`), in training
        and in scoring. The calibration is the identity; fit one on validation data with
        ``fit_calibration``."""
        from aigcguard.perturb import PERTURBATIONS

        unknown = [v for v in views if v not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"unknown views {unknown}; choose from {', '.join(PERTURBATIONS)}")
        images = [shrink(im, max_side) for im in images]
        y = np.asarray(labels).astype(int).reshape(-1)
        if len(y) != len(images):
            raise ValueError(f"{len(images)} images but {len(y)} labels")
        extra = [PERTURBATIONS[v](img) for v in views for img in images]
        feats = multiscale_features(
            images + extra, scales=scales, tile=tile, max_tiles=max_tiles, channels=channels
        )
        return cls.fit_features(
            feats,
            np.tile(y, len(views) + 1),
            seed=seed,
            C=C,
            tile=tile,
            max_tiles=max_tiles,
            channels=channels,
            max_side=max_side,
            scales=scales,
        )

    @classmethod
    def fit_features(
        cls,
        features: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        *,
        seed: int = 0,
        C: float = 1.0,
        tile: int = 64,
        max_tiles: int = 16,
        channels: str = "y",
        max_side: int | None = None,
        scales: Sequence[float] = (1.0,),
    ) -> SpectralDetector:
        """Train on features already computed by :func:`multiscale_features` with the same
        ``scales``, ``tile``, ``max_tiles`` and ``channels``, of pictures no larger than
        ``max_side``
        (lets a benchmark compute them once)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(features, np.float64)
        y = np.asarray(labels).astype(int).reshape(-1)
        dim = len(_check_scales(scales)) * CHANNELS.get(channels, 1) * FEATURE_DIM
        if x.ndim != 2 or x.shape[1] != dim or len(x) != len(y):
            raise ValueError(f"expected N x {dim} features and N labels, got {x.shape}, {y.shape}")
        if set(np.unique(y).tolist()) != {0, 1}:
            raise ValueError("training needs labels 0 (real) and 1 (generated), both present")
        pipe = make_pipeline(
            StandardScaler(), LogisticRegression(C=C, max_iter=5000, random_state=seed)
        ).fit(x, y)
        scaler, lr = pipe[0], pipe[-1]
        return cls(
            scaler.mean_,
            scaler.scale_,
            lr.coef_[0],
            lr.intercept_[0],
            tile=tile,
            max_tiles=max_tiles,
            channels=channels,
            max_side=max_side,
            scales=scales,
        )

    # ---- scoring

    def features(self, images: Sequence[torch.Tensor] | torch.Tensor) -> np.ndarray:
        return multiscale_features(
            [shrink(im, self.max_side) for im in images],
            scales=self.scales,
            tile=self.tile,
            max_tiles=self.max_tiles,
            channels=self.channels,
        )

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """The logistic regression's decision function (log-odds of "generated")."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def raw_scores(self, images: Sequence[torch.Tensor] | torch.Tensor) -> np.ndarray:
        return self.scores_from_features(self.features(images))

    # ---- saving

    def state(self) -> dict:
        return {
            "feature_version": FEATURE_VERSION,
            "tile": self.tile,
            "max_tiles": self.max_tiles,
            "channels": self.channels,
            "max_side": self.max_side,
            "min_side": self.min_side,
            "scales": list(self.scales),
            "mean": torch.from_numpy(self.mean.copy()),
            "scale": torch.from_numpy(self.scale.copy()),
            "coef": torch.from_numpy(self.coef.copy()),
            "intercept": self.intercept,
        }

    @classmethod
    def from_state(cls, state: dict, calibration: Calibration) -> SpectralDetector:
        version = state.get("feature_version")
        if version != FEATURE_VERSION:
            raise ValueError(
                f"spectral detector saved with feature version {version}, this code computes "
                f"version {FEATURE_VERSION}; retrain it"
            )
        return cls(
            state["mean"].numpy(),
            state["scale"].numpy(),
            state["coef"].numpy(),
            state["intercept"],
            tile=state["tile"],
            max_tiles=state["max_tiles"],
            channels=state.get("channels", "y"),
            max_side=state.get("max_side"),
            min_side=state.get("min_side", MIN_SIDE),
            scales=tuple(state.get("scales", (1.0,))),
            calibration=calibration,
        )
