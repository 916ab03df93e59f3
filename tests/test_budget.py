"""The work budget (aigcguard.budget): the loader's limits on pixels, side and aspect ratio,
checked from the header before any decode, the same for paths, bytes and batches; the floor
on a Huffman JPEG's size; and the bounded working sizes the domains use."""

from __future__ import annotations

import io
import os
import random
import struct

import numpy as np
import pytest
from PIL import Image, ImageFile

from aigcguard import budget
from aigcguard.budget import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    WorkBudget,
    bounded_size,
)
from aigcguard.imageio import ImageLoadError, _jpeg_frame_type, load_image, load_images


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int, height: int, **options) -> bytes:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", **options)
    return buf.getvalue()


def declaring(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header is rewritten to declare width x height (data unchanged)."""
    data = bytearray(data)
    sof = next(i for i in range(2, len(data)) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.fixture
def decode_spy(monkeypatch):
    """Counts decodes: a refusal by the budget must come before any."""
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


# --------------------------------------------------------------------------- WorkBudget


def test_defaults_pass_phone_photos_and_panoramas():
    ok = WorkBudget(64_000_000, 20_000, 20.0)
    for size in [(8000, 8000), (8160, 6120), (15_600, 4032), (1080, 20_000), (1, 1), (20, 1)]:
        assert ok.refusal(*size) is None, size
    if not any(v in os.environ for v in ("AIGC_MAX_PIXELS", "AIGC_MAX_SIDE", "AIGC_MAX_ASPECT")):
        defaults = (DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, DEFAULT_MAX_ASPECT)
        assert tuple(vars(ok).values()) == defaults


@pytest.mark.parametrize(
    "size, limit, variable",
    [
        ((8001, 8000), "pixels, above the limit of 64,000,000", "AIGC_MAX_PIXELS"),
        ((20001, 2000), "20,001 px side is above the limit of 20,000 px", "AIGC_MAX_SIDE"),
        ((64, 300000), "aspect ratio 4,687.5:1 is above the limit of 20:1", "AIGC_MAX_ASPECT"),
        ((5, 50000), "aspect ratio 10,000.0:1 is above the limit of 20:1", "AIGC_MAX_ASPECT"),
        ((50000, 5), "aspect ratio 10,000.0:1 is above the limit of 20:1", "AIGC_MAX_ASPECT"),
        ((2001, 100), "aspect ratio 20.0:1 is above the limit of 20:1", "AIGC_MAX_ASPECT"),
    ],
)
def test_each_limit_names_itself_and_how_to_raise_it(size, limit, variable):
    reason = WorkBudget().refusal(*size)
    assert limit in reason and f"raise it with {variable}" in reason
    assert reason.startswith(f"is {size[0]}x{size[1]}")


def test_limits_are_inclusive_and_configurable():
    b = WorkBudget(max_pixels=100, max_side=50, max_aspect=4)
    assert b.refusal(10, 10) is None and b.refusal(20, 5) is None  # exactly 100 px and 4:1
    assert "aspect ratio 5.5:1" in b.refusal(11, 2)
    assert "101 pixels" in b.refusal(101, 1)  # the pixel limit is checked first
    assert "51 px side" in WorkBudget(max_pixels=10**6, max_side=50).refusal(51, 50)
    assert WorkBudget(max_pixels=10**6, max_side=50).refusal(50, 50) is None


@pytest.mark.parametrize("bad", [{"max_pixels": 0}, {"max_side": -1}, {"max_aspect": 0.5}])
def test_a_limit_under_one_is_refused(bad):
    with pytest.raises(ValueError, match="at least 1"):
        WorkBudget(**bad)


def test_environment_values_are_checked(monkeypatch):
    monkeypatch.setenv("AIGC_MAX_SIDE", "30000")
    assert budget._env_number("AIGC_MAX_SIDE", 20_000) == 30_000
    monkeypatch.setenv("AIGC_MAX_ASPECT", "2.5")
    assert budget._env_number("AIGC_MAX_ASPECT", 20.0, float) == 2.5
    monkeypatch.setenv("AIGC_MAX_SIDE", "lots")
    with pytest.raises(ValueError, match="AIGC_MAX_SIDE='lots' is not a valid int"):
        budget._env_number("AIGC_MAX_SIDE", 20_000)
    monkeypatch.setenv("AIGC_MAX_ASPECT", "0")
    with pytest.raises(ValueError, match="must be at least 1"):
        budget._env_number("AIGC_MAX_ASPECT", 20.0, float)
    monkeypatch.setenv("AIGC_MAX_ASPECT", "")
    assert budget._env_number("AIGC_MAX_ASPECT", 20.0, float) == 20.0


def test_environment_sets_the_defaults_of_a_new_process(tmp_path):
    import subprocess
    import sys

    code = (
        "from aigcguard.imageio import load_image, ImageLoadError\n"
        f"try: load_image({str(tmp_path / 'wide.png')!r})\n"
        "except ImageLoadError as e: print(e.reason)\n"
        "else: print('loaded')\n"
    )
    (tmp_path / "wide.png").write_bytes(png(300, 10))
    env = {**os.environ, "AIGC_MAX_ASPECT": "10"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "above the limit of 10:1" in out.stdout, out.stderr
    env["AIGC_MAX_ASPECT"] = "40"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "loaded", out.stderr


# --------------------------------------------------------------------------- the loader


@pytest.mark.parametrize(
    "size, limits, word",
    [
        ((300, 10), {}, "aspect ratio 30.0:1"),
        ((60, 10), {"max_aspect": 5}, "aspect ratio 6.0:1"),
        ((120, 100), {"max_side": 100}, "120 px side"),
        ((120, 100), {"max_pixels": 11_999}, "12,000 pixels"),
    ],
)
def test_loader_refuses_before_decoding_from_path_and_bytes(
    tmp_path, decode_spy, size, limits, word
):
    data = png(*size)
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    for source, name in ((path, str(path)), (data, "upload.png")):
        with pytest.raises(ImageLoadError) as info:
            load_image(source, name=None if source is path else name, **limits)
        assert info.value.source == name and word in info.value.reason
        assert "above the limit" in info.value.reason  # the HTTP service's 413
    assert decode_spy == []


def test_loader_limits_can_be_raised_per_call(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(png(5, 500))
    with pytest.raises(ImageLoadError, match=r"aspect ratio 100\.0:1"):
        load_image(path)
    assert load_image(path, max_aspect=100).size == (5, 500)


def test_load_images_applies_the_same_budget_and_goes_on(tmp_path):
    paths = []
    for name, size in (("ok.png", (40, 30)), ("thin.png", (5, 500)), ("big.png", (200, 200))):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(png(*size))
    loaded, failed = load_images(paths, max_side=100)
    assert [im.size for im in loaded] == [(40, 30)]
    assert [(e.source, "aspect" in e.reason) for e in failed] == [
        (str(paths[1]), True),
        (str(paths[2]), False),
    ]
    loaded, failed = load_images(paths, max_side=500, max_aspect=100)
    assert len(loaded) == 3 and not failed


def test_service_answers_413_for_every_limit():
    from aigcguard.service.http.errors import status_of

    for size in [(8001, 8000), (20001, 2000), (5, 50000)]:
        assert status_of(WorkBudget().refusal(*size)) == 413


# --------------------------------------------------------------------------- JPEG floor


def test_a_jpeg_too_short_for_its_declared_size_is_refused_before_decoding(tmp_path, decode_spy):
    data = declaring(jpeg(16, 16, quality=50), 8000, 7999)
    assert len(data) < 2000
    path = tmp_path / "tiny.jpg"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(ImageLoadError) as info:
            load_image(source, name="tiny.jpg")
        assert info.value.source == "tiny.jpg"
        assert "declares 8000x7999 pixels but holds only" in info.value.reason
        assert "truncated image data" in info.value.reason
    assert decode_spy == []


def test_progressive_jpeg_too_short_is_refused_too():
    data = declaring(jpeg(16, 16, progressive=True), 4000, 4000)
    with pytest.raises(ImageLoadError, match="any JPEG of that size needs"):
        load_image(data)


@pytest.mark.parametrize("options", [{"quality": 5}, {"quality": 5, "progressive": True}])
def test_the_smallest_real_jpegs_are_far_above_the_floor(options):
    # a flat grey picture is the cheapest a JPEG encoder can make: 2000 x 2000 needs 7,812
    # bytes by the floor and takes several times that
    buf = io.BytesIO()
    Image.new("L", (2000, 2000), 128).save(buf, "JPEG", optimize=True, **options)
    data = buf.getvalue()
    assert len(data) > 2 * (250 * 250 // 8)
    assert load_image(data).size == (2000, 2000)


def test_frame_type_walks_the_segments():
    data = jpeg(16, 16, exif=Image.Exif())
    assert _jpeg_frame_type(data) == 0xC0
    assert _jpeg_frame_type(jpeg(16, 16, progressive=True)) == 0xC2
    arithmetic = bytearray(data)
    arithmetic[arithmetic.index(b"\xff\xc0") + 1] = 0xC9
    assert _jpeg_frame_type(bytes(arithmetic)) == 0xC9  # not judged: no floor for it
    assert _jpeg_frame_type(b"\xff\xd8\x00garbage") is None
    assert _jpeg_frame_type(b"\xff\xd8") is None


# --------------------------------------------------------------------------- working sizes


def test_bounded_size_bounds_every_shape():
    rng = random.Random(7)
    for _ in range(5000):
        h, w = rng.randint(1, 400_000), rng.randint(1, 400_000)
        out = bounded_size(h, w, short=256, max_long=5120, min_side=32)
        assert all(32 <= side <= 5120 for side in out), (h, w, out)
        assert min(out) <= 256
        kept = bounded_size(h, w, short=512, max_long=16384, grow=False)
        assert kept[0] <= h and kept[1] <= w and max(kept) <= 16384


def test_bounded_size_keeps_the_old_working_size_within_the_aspect_limit():
    def old(h, w):
        s = 256 / min(h, w)
        return max(256, round(h * s)), max(256, round(w * s))

    rng = random.Random(3)
    for _ in range(5000):
        h = rng.randint(1, 20000)
        w = rng.randint(max(1, -(-h // 20)), min(20000, h * 20))
        assert bounded_size(h, w, short=256, max_long=5120, min_side=32) == old(h, w)
    assert bounded_size(5, 50000, short=256, max_long=5120, min_side=32) == (32, 5120)
    assert bounded_size(300000, 64, short=256, max_long=5120, min_side=32) == (5120, 32)


def test_bounded_size_refuses_nonsense():
    with pytest.raises(ValueError, match="no pixels"):
        bounded_size(0, 5, short=8, max_long=16)
    with pytest.raises(ValueError, match="short <= max_long"):
        bounded_size(5, 5, short=32, max_long=16)
