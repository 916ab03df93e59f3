"""Stable Diffusion and SDXL marks, made with imwatermark exactly as those pipelines do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imwatermark import WatermarkEncoder

from aigcguard.watermark import KNOWN_MARKS, detect_known
from tests.helpers import to_tensor

SDXL_BITS = [int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]


def sd_v1_reference(rgb: np.ndarray) -> np.ndarray:
    """CompVis scripts/txt2img.py put_watermark: PIL RGB -> cv2 BGR uint8 -> encode -> RGB."""
    import cv2

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"StableDiffusionV1")
    bgr = encoder.encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "dwtDct")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sdxl_reference(rgb: np.ndarray) -> np.ndarray:
    """generative-models WatermarkEmbedder: float 255 * x, channels flipped to BGR, encode,
    flipped back, clamp(x / 255, 0, 1); then saved as uint8 via 255 * x."""
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", SDXL_BITS)
    image_np = rgb.astype(np.float32)[:, :, ::-1].copy()
    out = encoder.encode(image_np, "dwtDct")[:, :, ::-1]
    x = np.clip(out / 255.0, 0.0, 1.0)
    return (255.0 * x).round().astype(np.uint8)


def sdxl_diffusers(rgb: np.ndarray) -> np.ndarray:
    """diffusers StableDiffusionXLWatermarker: float (255 * (x / 2 + .5)) in RGB order passed
    straight to the BGR encoder, then clamp(2 * (x / 255 - .5), -1, 1); saved via
    numpy_to_pil: round(255 * (x / 2 + .5))."""
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", SDXL_BITS)
    x = rgb.astype(np.float32) / 127.5 - 1.0
    images = 255 * (x / 2 + 0.5)
    out = encoder.encode(images, "dwtDct")
    y = np.clip(2 * (out / 255 - 0.5), -1.0, 1.0)
    return np.round(255 * np.clip(y / 2 + 0.5, 0, 1)).astype(np.uint8)


def test_sdxl_bits_match_the_published_constant():
    mark = {m.name: m for m in KNOWN_MARKS}["sdxl"]
    assert list(mark.bits) == SDXL_BITS and len(SDXL_BITS) == 48


@pytest.mark.parametrize(
    ("maker", "name", "convention"),
    [
        (sd_v1_reference, "stable-diffusion-v1", "bgr/uint8"),
        (sdxl_reference, "sdxl", "bgr/float"),
        (sdxl_diffusers, "sdxl", "rgb-as-bgr/float"),
    ],
)
@pytest.mark.parametrize("photo", ["astronaut", "hubble_deep_field", "immunohistochemistry"])
def test_known_marks_are_found(maker, name, convention, photo):
    from skimage import data

    marked = to_tensor(maker(getattr(data, photo)()))
    result = detect_known([marked])[0]
    assert result.detected, result
    assert result.known == name
    # the channel order is identified; uint8 and float offsets can both fit a bright image
    assert result.convention.split("/")[0] == convention.split("/")[0]
    assert result.bits_matched >= 0.9 * result.bits_total
    if name == "stable-diffusion-v1" and result.bits_matched == result.bits_total:
        assert result.payload_text == "StableDiffusionV1"


def test_unmarked_photos_carry_no_known_mark(photos):
    results = detect_known([to_tensor(a) for a in photos.values()])
    assert not any(r.detected for r in results)
    assert all(r.known is None and r.p_value > 1e-3 for r in results)


def test_known_scan_handles_mixed_sizes_and_batches(photos):
    images = [to_tensor(sd_v1_reference(photos["coffee"])), to_tensor(photos["chelsea"])]
    results = detect_known([*images, torch.flip(images[1], dims=[2])])
    assert [r.detected for r in results] == [True, False, False]


def test_float_marks_on_warm_images_are_found_inverted(photos):
    """On the rocket photo (mostly negative U) diffusers' SDXL mark does not read back under
    its own convention, imwatermark's decoder included; the uint8 read finds it inverted."""
    from imwatermark import WatermarkDecoder

    marked = sdxl_diffusers(photos["rocket"])
    theirs = WatermarkDecoder("bits", 48).decode(marked.astype(np.float32), "dwtDct")
    assert sum(int(a == b) for a, b in zip(theirs, SDXL_BITS, strict=True)) < 36
    result = detect_known([to_tensor(marked)])[0]
    assert result.detected and result.known == "sdxl"
    assert result.convention.endswith("/uint8/inverted")
