"""Image perturbations shared by tests, benchmarks and detector evaluation.

Two families, one per image type, each kept exactly as the numbers in the reports were
measured with:

- uint8 3 x H x W torch tensors: :data:`PERTURBATIONS` (read-only, in report order: clean,
  JPEG 90/75/50, resize x0.5), what ``aigc detector eval``, the detector benches and
  ``SpectralDetector.fit(views=...)`` apply; built from :func:`tensor_clean`,
  :func:`tensor_jpeg` and :func:`tensor_resize_half`. :data:`CONDITIONS` (``as stored``,
  ``platform``, ``screenshot``, ``crop 50%``): what a picture found in the wild has been
  through, the columns of the grouped evaluation (``aigc detector eval --manifest``,
  bench/detector_wild.py); built from :func:`tensor_platform`, :func:`tensor_resize` and
  :func:`tensor_centre_crop`.
- uint8 H x W x 3 numpy arrays (the benches' images): :func:`jpeg`, :func:`resize_half`,
  :func:`crop_resize`, :func:`brightness`, :func:`contrast`, :func:`gaussian_blur`,
  :func:`gaussian_noise`, :func:`rotate`, :func:`combined`, and :data:`ATTACKS`, the watermark
  robustness table's columns (with :data:`ATTACK_NOTES`).

Foundation: this module imports nothing from the domains above it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

# ------------------------------------------------------------------------- tensor perturbations


def _check_image(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(
            f"expected a uint8 3 x H x W image, got {image.dtype} {tuple(image.shape)}"
        )


def tensor_clean(image: torch.Tensor) -> torch.Tensor:
    """The image itself (checked, so every row of a report refuses the same bad input)."""
    _check_image(image)
    return image


def tensor_jpeg(quality: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A perturbation that re-encodes as Pillow JPEG at ``quality`` and decodes again."""

    def perturb(image: torch.Tensor) -> torch.Tensor:
        _check_image(image)
        buf = io.BytesIO()
        arr = image.permute(1, 2, 0).cpu().numpy()
        # subsampling=2 is 4:2:0, what cameras, phones and most web encoders write.
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=2)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            out = np.array(im.convert("RGB"))
        return torch.from_numpy(out).permute(2, 0, 1).contiguous().to(image.device)

    perturb.__name__ = f"jpeg_{quality}"
    return perturb


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased (as Pillow and browsers shrink), rounded back to uint8."""
    if size == tuple(image.shape[1:]):
        return image.clone()
    out = F.interpolate(
        image[None].float(), size=size, mode="bicubic", align_corners=False, antialias=True
    )
    # Bicubic overshoots at edges; clamp before the cast so it cannot wrap around.
    return out[0].round().clamp(0, 255).to(torch.uint8)


def tensor_resize_half(image: torch.Tensor) -> torch.Tensor:
    """Half size (rounded down), bicubic, antialiased, not resized back: a detector sees
    what was shared. No side drops below 8 px; a side already shorter keeps its length."""
    _check_image(image)
    h, w = image.shape[1:]
    return _resized(image, (max(h // 2, min(h, 8)), max(w // 2, min(w, 8))))


def tensor_resize(scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A perturbation that resizes by ``scale`` (each side rounded, at least 8 px, or its own
    length when shorter), bicubic and antialiased, and keeps the pixels as they are: no
    encoding, as a screenshot saved as PNG keeps them."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")

    def perturb(image: torch.Tensor) -> torch.Tensor:
        _check_image(image)
        h, w = image.shape[1:]
        return _resized(image, (max(round(h * scale), min(h, 8)), max(round(w * scale), min(w, 8))))

    perturb.__name__ = f"resize_{scale:g}"
    return perturb


#: the *platform* condition as issue 21 defines it: long side at most this many pixels...
PLATFORM_LONG_SIDE = 1024
#: ...then JPEG at this quality, whatever the file was (the wild set's own re-encoded crops
#: are at 88 to 98, so this is the harsher encoding and overwrites theirs)
PLATFORM_QUALITY = 75


def tensor_platform(image: torch.Tensor) -> torch.Tensor:
    """What a sharing platform does: the long side brought to at most
    :data:`PLATFORM_LONG_SIDE` (never enlarged; bicubic, antialiased), then JPEG at
    :data:`PLATFORM_QUALITY` with 4:2:0 chroma. Whatever each class's files were, both leave
    with the same encoding."""
    _check_image(image)
    h, w = image.shape[1:]
    s = PLATFORM_LONG_SIDE / max(h, w)
    if s < 1:
        image = _resized(image, (max(1, round(h * s)), max(1, round(w * s))))
    return tensor_jpeg(PLATFORM_QUALITY)(image)


def tensor_centre_crop(keep: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A perturbation that keeps the centre ``keep`` of each side (0.5: half the width and
    half the height, a quarter of the area), at its own size: not resized back, not
    re-encoded. The offsets are not moved onto the 8-px JPEG grid (a crop tool does not care;
    on a 512-px picture they fall on it anyway)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")

    def perturb(image: torch.Tensor) -> torch.Tensor:
        _check_image(image)
        h, w = image.shape[1:]
        ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
        top, left = (h - ch) // 2, (w - cw) // 2
        return image[:, top : top + ch, left : left + cw].clone()

    perturb.__name__ = f"centre_crop_{keep:g}"
    return perturb


#: name -> function(uint8 3 x H x W tensor) -> uint8 3 x H' x W' tensor, in report order.
PERTURBATIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = MappingProxyType(
    {
        "clean": tensor_clean,
        "JPEG 90": tensor_jpeg(90),
        "JPEG 75": tensor_jpeg(75),
        "JPEG 50": tensor_jpeg(50),
        "resize x0.5": tensor_resize_half,
    }
)

#: name -> function(uint8 3 x H x W tensor) -> uint8 tensor: the conditions a picture from the
#: wild is judged under, in report order. ``as stored``: the decoded file, whatever its
#: encoding (which can give the class away: see docs/detectors.md); ``platform``: long side at
#: most 1024, JPEG 75, both classes alike; ``screenshot``: x0.7, kept lossless (a screenshot
#: of a picture shown scaled, saved as PNG); ``crop 50%``: the centre half of each side (a
#: quarter of the area), not resized back. (Not the watermark table's ``crop 50%`` of
#: :data:`ATTACKS`, which resizes the crop back to the original size.)
CONDITIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = MappingProxyType(
    {
        "as stored": tensor_clean,
        "platform": tensor_platform,
        "screenshot": tensor_resize(0.7),
        "crop 50%": tensor_centre_crop(0.5),
    }
)


# -------------------------------------------------------------------------- array perturbations


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr)


def jpeg(arr: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG at ``quality`` with standard 4:2:0 chroma subsampling, decoded again."""
    buf = io.BytesIO()
    _pil(arr).save(buf, format="JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def resize_half(arr: np.ndarray) -> np.ndarray:
    """Half width and height (bicubic); the decoder sees the smaller image."""
    h, w = arr.shape[:2]
    return np.asarray(_pil(arr).resize((w // 2, h // 2), Image.BICUBIC))


def crop_resize(arr: np.ndarray, per_side: float) -> np.ndarray:
    """Cut ``per_side`` of each dimension off each side (0.05 keeps the central 90% of the
    width and of the height), then resize back to the original size (bicubic)."""
    h, w = arr.shape[:2]
    dx, dy = round(w * per_side), round(h * per_side)
    im = _pil(arr).crop((dx, dy, w - dx, h - dy))
    return np.asarray(im.resize((w, h), Image.BICUBIC))


def brightness(arr: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(_pil(arr)).enhance(factor))


def contrast(arr: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Contrast(_pil(arr)).enhance(factor))


def gaussian_blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Exact Gaussian (OpenCV, kernel size from sigma, reflected borders)."""
    import cv2

    return cv2.GaussianBlur(arr, (0, 0), sigmaX=sigma, sigmaY=sigma)


def gaussian_noise(arr: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = arr.astype(np.float64) + rng.normal(0.0, sigma, size=arr.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def rotate(arr: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, same canvas size, bicubic, black corners."""
    im = _pil(arr).rotate(degrees, resample=Image.BICUBIC, expand=False, fillcolor=(0, 0, 0))
    return np.asarray(im)


def combined(arr: np.ndarray) -> np.ndarray:
    """Crop 5% of each dimension (2.5% per side) and resize back, brightness x1.2, JPEG 75."""
    return jpeg(brightness(crop_resize(arr, 0.025), 1.2), 75)


#: (column label, attack(image, seed) -> image), in table order.
ATTACKS: tuple[tuple[str, Callable[[np.ndarray, int], np.ndarray]], ...] = (
    ("none", lambda a, s: a),
    ("JPEG 90", lambda a, s: jpeg(a, 90)),
    ("JPEG 75", lambda a, s: jpeg(a, 75)),
    ("JPEG 50", lambda a, s: jpeg(a, 50)),
    ("resize 1/2", lambda a, s: resize_half(a)),
    ("crop 10%", lambda a, s: crop_resize(a, 0.05)),
    ("bright x1.3", lambda a, s: brightness(a, 1.3)),
    ("contrast x1.5", lambda a, s: contrast(a, 1.5)),
    ("blur σ1", lambda a, s: gaussian_blur(a, 1.0)),
    ("noise σ5", lambda a, s: gaussian_noise(a, 5.0, s)),
    ("rotate 5°", lambda a, s: rotate(a, 5.0)),
    ("JPEG75+crop5%+bright1.2", lambda a, s: combined(a)),
    # stretch columns: harder than what the targets ask
    ("crop 50%", lambda a, s: crop_resize(a, 0.25)),
    ("JPEG 30", lambda a, s: jpeg(a, 30)),
)

#: how each attack of :data:`ATTACKS` is made, for a bench's table notes
ATTACK_NOTES = (
    "JPEG: Pillow, `subsampling=2` (4:2:0).",
    "resize 1/2: bicubic to half width and height, not resized back.",
    "crop 10%: 5% cut off each side of each dimension (central 90% of width and height "
    "kept), resized back to the original size (bicubic).",
    "bright / contrast: `PIL.ImageEnhance`.",
    "blur σ1: `cv2.GaussianBlur`, sigma 1.",
    "noise σ5: additive Gaussian, sigma 5 (of 255), seeded per image, rounded and clipped.",
    "rotate 5°: Pillow, about the centre, same size, bicubic, black corners.",
    "JPEG75+crop5%+bright1.2: 2.5% cut off each side and resized back, brightness x1.2, "
    "then JPEG 75.",
    "crop 50% and JPEG 30 are stretch columns: crop 50% keeps the central half of width and "
    "height (a quarter of the picture) and resizes it back.",
)
