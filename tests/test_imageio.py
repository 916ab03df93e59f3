"""Behaviour of aigcguard.imageio: decoding every mode to uint8 RGB, errors, batch loading,
path expansion and atomic saving. Every fixture is generated here, in pytest's tmp_path."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from aigcguard.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    LoadedImage,
    iter_image_paths,
    load_image,
    load_images,
    save_image,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
ORIENTATION = 0x0112


# --------------------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def write(path: Path, im: Image.Image, fmt: str | None = None, **options) -> Path:
    im.save(path, fmt, **options)
    return path


def pixel(loaded: LoadedImage, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in loaded.pixels[:, y, x])


def close_to(actual, expected, tol: int) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int) -> bytes:
    """A valid-looking 8-bit RGB PNG header claiming width x height, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def assert_rgb_tensor(loaded: LoadedImage, width: int, height: int) -> None:
    px = loaded.pixels
    assert isinstance(px, torch.Tensor)
    assert px.dtype == torch.uint8
    assert px.device.type == "cpu"
    assert tuple(px.shape) == (3, height, width)
    assert px.is_contiguous()
    assert loaded.size == (width, height)


# --------------------------------------------------------------------------- basics


def test_png_from_path_pure_red(tmp_path):
    path = write(tmp_path / "red.png", Image.new("RGB", (5, 3), RED))
    loaded = load_image(path)
    assert_rgb_tensor(loaded, 5, 3)
    assert loaded.format == "PNG"
    assert loaded.mode == "RGB"
    assert loaded.source == str(path)
    assert torch.equal(loaded.pixels[0], torch.full((3, 5), 255, dtype=torch.uint8))
    assert int(loaded.pixels[1:].max()) == 0


def test_str_path_is_accepted(tmp_path):
    path = write(tmp_path / "g.png", Image.new("RGB", (2, 2), GREEN))
    loaded = load_image(str(path))
    assert loaded.source == str(path)
    assert pixel(loaded, 1, 1) == GREEN


@pytest.mark.parametrize("fmt, tol", [("PNG", 0), ("JPEG", 12)])
def test_channel_order_and_layout(tmp_path, fmt, tol):
    # Four 16x16 quadrants: red | green over blue | white. Checks RGB order and H/W layout.
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:16, :24] = RED
    arr[:16, 24:] = GREEN
    arr[16:, :24] = BLUE
    arr[16:, 24:] = WHITE
    path = write(tmp_path / f"quad.{fmt.lower()}", Image.fromarray(arr), fmt, quality=95)
    loaded = load_image(path)
    assert_rgb_tensor(loaded, 48, 32)
    assert loaded.format == fmt
    assert close_to(pixel(loaded, 6, 6), RED, tol)
    assert close_to(pixel(loaded, 40, 6), GREEN, tol)
    assert close_to(pixel(loaded, 6, 26), BLUE, tol)
    assert close_to(pixel(loaded, 40, 26), WHITE, tol)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_from_bytes_matches_from_path(tmp_path, fmt):
    im = noise(20, 10) if fmt == "PNG" else Image.new("RGB", (20, 10), BLUE)
    data = encode(im, fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    from_path = load_image(path)
    for source in (data, bytearray(data), memoryview(data)):
        from_bytes = load_image(source)
        assert from_bytes.source == "<bytes>"
        assert from_bytes.format == fmt
        assert torch.equal(from_bytes.pixels, from_path.pixels)
    named = load_image(data, name="upload-7." + fmt.lower())
    assert named.source == "upload-7." + fmt.lower()
    if fmt == "PNG":
        assert torch.equal(from_path.pixels, torch.from_numpy(np.array(im)).permute(2, 0, 1))


def test_name_labels_bytes_in_errors():
    with pytest.raises(ImageLoadError) as info:
        load_image(b"definitely not an image", name="upload-42.png")
    assert info.value.source == "upload-42.png"
    assert "upload-42.png" in str(info.value)
    assert "not a recognised image format" in info.value.reason

    with pytest.raises(ImageLoadError) as info:
        load_image(b"junk")
    assert info.value.source == "<bytes>"

    with pytest.raises(ImageLoadError, match=r"^empty\.jpg: is empty"):
        load_image(b"", name="empty.jpg")


def test_name_overrides_path_label(tmp_path):
    path = tmp_path / "real-name.png"
    path.write_text("text")
    with pytest.raises(ImageLoadError) as info:
        load_image(path, name="shown-name")
    assert info.value.source == "shown-name"
    assert load_image(write(path, Image.new("RGB", (1, 1))), name="shown").source == "shown"


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP", "PPM"])
def test_other_container_formats(tmp_path, fmt):
    im = Image.new("RGB", (7, 5), RED)
    options = {"lossless": True} if fmt == "WEBP" else {}
    path = write(tmp_path / f"x.{fmt.lower()}", im, fmt, **options)
    loaded = load_image(path)
    assert_rgb_tensor(loaded, 7, 5)
    assert loaded.format == fmt
    assert close_to(pixel(loaded, 3, 2), RED, 2)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1), (6, 4)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_pixels_own_writable_memory(monkeypatch, size, mode):
    # Tensors must never wrap Pillow's read-only buffer (it did for 1 x 1 RGB images).
    seen = []
    original = torch.from_numpy

    def spy(arr):
        seen.append(arr.flags.writeable)
        return original(arr)

    monkeypatch.setattr(torch, "from_numpy", spy)
    loaded = load_image(encode(Image.new(mode, size, 200), "PNG"))
    assert seen == [True]
    loaded.pixels[:, 0, 0] = 7
    assert int(loaded.pixels[0, 0, 0]) == 7
    assert loaded.size == size


def test_loaded_image_is_frozen_and_size_is_width_height(tmp_path):
    loaded = load_image(write(tmp_path / "a.png", Image.new("RGB", (9, 4))))
    assert loaded.size == (9, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.mode = "L"  # type: ignore[misc]


# --------------------------------------------------------------------------- EXIF orientation


def marked(width: int = 40, height: int = 20) -> Image.Image:
    """Blue image with an 8x8 red marker in the stored top-left corner."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:] = BLUE
    arr[:8, :8] = RED
    return Image.fromarray(arr)


# orientation -> (displayed width, height, where the stored top-left marker is displayed)
ORIENTED = {
    1: (40, 20, "top-left"),
    3: (40, 20, "bottom-right"),
    6: (20, 40, "top-right"),  # rotate 90 degrees clockwise to view
    8: (20, 40, "bottom-left"),  # rotate 90 degrees counter-clockwise to view
}


def corner(name: str, width: int, height: int) -> tuple[int, int]:
    x = 3 if "left" in name else width - 4
    y = 3 if "top" in name else height - 4
    return x, y


@pytest.mark.parametrize("fmt, tol", [("JPEG", 40), ("PNG", 0)])
@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_exif_orientation_is_applied(tmp_path, fmt, tol, orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = write(tmp_path / f"o{orientation}.{fmt.lower()}", marked(), fmt, exif=exif, quality=95)
    with Image.open(path) as raw:  # the file itself is stored landscape
        assert raw.size == (40, 20)
        assert raw.getexif()[ORIENTATION] == orientation

    loaded = load_image(path)
    width, height, where = ORIENTED[orientation]
    assert_rgb_tensor(loaded, width, height)
    for name in ("top-left", "top-right", "bottom-left", "bottom-right"):
        expected = RED if name == where else BLUE
        got = pixel(loaded, *corner(name, width, height))
        assert close_to(got, expected, tol), (name, got, expected)


# --------------------------------------------------------------------------- colour modes


def test_mode_L(tmp_path):
    arr = np.array([[0, 77, 255]], np.uint8)
    loaded = load_image(write(tmp_path / "l.png", Image.fromarray(arr, "L")))
    assert loaded.mode == "L"
    assert_rgb_tensor(loaded, 3, 1)
    for x, v in enumerate((0, 77, 255)):
        assert pixel(loaded, x, 0) == (v, v, v)


def test_mode_1(tmp_path):
    bits = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], bool)
    loaded = load_image(write(tmp_path / "bits.png", Image.fromarray(bits)))
    assert loaded.mode == "1"
    expected = torch.from_numpy(bits.astype(np.uint8) * 255)
    for c in range(3):
        assert torch.equal(loaded.pixels[c], expected)


def palette_image() -> Image.Image:
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
    im.putdata([0, 1, 2])
    return im


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_P_without_transparency(tmp_path, fmt):
    loaded = load_image(write(tmp_path / f"p.{fmt.lower()}", palette_image(), fmt))
    assert loaded.mode == "P"
    assert [pixel(loaded, x, 0) for x in range(3)] == [RED, GREEN, BLUE]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_P_with_transparency_is_flattened_onto_white(tmp_path, fmt):
    path = write(tmp_path / f"pt.{fmt.lower()}", palette_image(), fmt, transparency=1)
    loaded = load_image(path)
    assert loaded.mode == "P"
    assert [pixel(loaded, x, 0) for x in range(3)] == [RED, WHITE, BLUE]


def test_mode_P_with_alpha_per_palette_entry(tmp_path):
    # PNG tRNS for palettes carries one alpha per entry: entry 0 opaque, 1 clear, 2 half.
    path = write(tmp_path / "pa.png", palette_image(), "PNG", transparency=bytes([255, 0, 128]))
    loaded = load_image(path)
    assert pixel(loaded, 0, 0) == RED
    assert pixel(loaded, 1, 0) == WHITE
    assert close_to(pixel(loaded, 2, 0), (127, 127, 255), 1)


def test_mode_RGBA_composited_onto_white(tmp_path):
    im = Image.new("RGBA", (4, 1))
    im.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128), (0, 255, 0, 0)])
    loaded = load_image(write(tmp_path / "rgba.png", im))
    assert loaded.mode == "RGBA"
    assert_rgb_tensor(loaded, 4, 1)
    assert pixel(loaded, 0, 0) == WHITE  # fully transparent red is not red
    assert pixel(loaded, 1, 0) == BLUE
    assert close_to(pixel(loaded, 2, 0), (127, 127, 127), 1)  # half black over white
    assert pixel(loaded, 3, 0) == WHITE


def test_mode_LA_composited_onto_white(tmp_path):
    im = Image.new("LA", (3, 1))
    im.putdata([(0, 0), (0, 255), (100, 255)])
    loaded = load_image(write(tmp_path / "la.png", im))
    assert loaded.mode == "LA"
    assert [pixel(loaded, x, 0) for x in range(3)] == [WHITE, (0, 0, 0), (100, 100, 100)]


def test_gray_and_rgb_with_transparent_colour_key(tmp_path):
    # PNG tRNS on L/RGB images names one gray level or colour as transparent.
    gray = Image.fromarray(np.array([[7, 50]], np.uint8), "L")
    loaded = load_image(write(tmp_path / "lt.png", gray, transparency=7))
    assert loaded.mode == "L"
    assert [pixel(loaded, x, 0) for x in range(2)] == [WHITE, (50, 50, 50)]

    rgb = Image.new("RGB", (2, 1))
    rgb.putdata([(0, 0, 0), (10, 20, 30)])
    loaded = load_image(write(tmp_path / "rgbt.png", rgb, transparency=(0, 0, 0)))
    assert loaded.mode == "RGB"
    assert [pixel(loaded, x, 0) for x in range(2)] == [WHITE, (10, 20, 30)]


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta+yellow: red
    loaded = load_image(write(tmp_path / "cmyk.jpg", im, "JPEG", quality=95))
    assert loaded.mode == "CMYK"
    assert loaded.format == "JPEG"
    assert_rgb_tensor(loaded, 16, 16)
    assert close_to(pixel(loaded, 8, 8), RED, 6)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[65535, 32768, 0, 257, 256, 1000]], np.uint16)
    path = write(tmp_path / "g16.png", Image.fromarray(arr))
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really stored and read back as 16-bit
    loaded = load_image(path)
    assert loaded.mode == "I;16"
    assert_rgb_tensor(loaded, 6, 1)
    values = [pixel(loaded, x, 0) for x in range(6)]
    assert all(r == g == b for r, g, b in values)
    gray = [v[0] for v in values]
    assert gray[0] == 255
    assert gray[1] in (127, 128)
    assert gray[2] == 0
    assert gray[3] == 1  # 257 is 1/255 of full scale
    assert gray[4] == 1  # a dark 16-bit value stays dark instead of clipping to white
    assert gray[5] == 4


def test_dark_16bit_image_is_not_mistaken_for_8bit(tmp_path):
    arr = np.full((2, 2), 200, np.uint16)  # every value fits in 8 bits, still 16-bit data
    loaded = load_image(write(tmp_path / "dark16.png", Image.fromarray(arr)))
    assert int(loaded.pixels.max()) == 1


def test_mode_I(tmp_path):
    small = Image.fromarray(np.array([[0, 100, 255]], np.int32), "I")
    loaded = load_image(write(tmp_path / "i8.tif", small, "TIFF"))
    assert loaded.mode == "I"
    assert [pixel(loaded, x, 0)[0] for x in range(3)] == [0, 100, 255]

    wide = Image.fromarray(np.array([[0, 32768, 65535, 70000, -5]], np.int32), "I")
    loaded = load_image(write(tmp_path / "i16.tif", wide, "TIFF"))
    assert loaded.mode == "I"
    assert_rgb_tensor(loaded, 5, 1)
    assert [pixel(loaded, x, 0)[0] for x in range(5)] == [0, 128, 255, 255, 0]


def test_mode_F(tmp_path):
    unit = np.array([[0.0, 0.25, 0.5, 1.0, np.nan]], np.float32)
    loaded = load_image(write(tmp_path / "unit.tif", Image.fromarray(unit, "F"), "TIFF"))
    assert loaded.mode == "F"
    assert_rgb_tensor(loaded, 5, 1)
    assert [pixel(loaded, x, 0) for x in range(5)] == [
        (0, 0, 0),
        (64, 64, 64),
        (128, 128, 128),
        (255, 255, 255),
        (0, 0, 0),
    ]

    byte_range = np.array([[0.0, 200.0, 300.0, -3.0]], np.float32)
    loaded = load_image(write(tmp_path / "f.tif", Image.fromarray(byte_range, "F"), "TIFF"))
    assert [pixel(loaded, x, 0)[0] for x in range(4)] == [0, 200, 255, 0]


def test_16bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="opencv-python is needed to write a 16-bit RGB PNG")
    bgr = np.zeros((4, 6, 3), np.uint16)
    bgr[..., 2] = 65535  # red
    bgr[..., 1] = 32768  # green
    bgr[..., 0] = 0  # blue
    bgr[0, 0] = (65535, 65535, 65535)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), bgr)
    assert path.read_bytes()[24] == 16  # IHDR bit depth
    loaded = load_image(path)
    assert_rgb_tensor(loaded, 6, 4)
    assert loaded.format == "PNG"
    assert close_to(pixel(loaded, 3, 2), (255, 128, 0), 1)
    assert pixel(loaded, 0, 0) == WHITE


# --------------------------------------------------------------------------- errors


def assert_names(exc: ImageLoadError, path: Path) -> None:
    assert exc.source == str(path)
    assert str(path) in str(exc)
    assert str(exc) == f"{exc.source}: {exc.reason}"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path, fmt):
    data = encode(noise(64, 64), fmt, quality=90)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)
    assert "truncated" in info.value.reason


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is a text file, not a picture\n" * 20)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)
    assert "not a recognised image format" in info.value.reason


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)
    assert "empty" in info.value.reason


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "missing.png"
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)
    assert "no such file" in info.value.reason


def test_directory_passed_as_file(tmp_path):
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)
    assert "directory" in info.value.reason or "cannot open" in info.value.reason


def test_malformed_png_header_is_a_load_error(tmp_path):
    # An IHDR chunk shorter than 13 bytes makes Pillow raise ValueError while opening.
    data = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00\x00\x00\x01\x00") + png_chunk(b"IEND", b"")
    )
    path = tmp_path / "short-ihdr.png"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)


def test_malformed_tiff_tag_is_a_load_error(tmp_path):
    # StripOffsets retyped from LONG to ASCII: Pillow raises TypeError while decoding.
    data = encode(Image.fromarray(np.zeros((24, 32), np.uint16)), "TIFF")
    entry = b"\x11\x01\x04\x00"  # tag 273 (StripOffsets), type 4 (LONG), little-endian
    assert data.count(entry) == 1
    path = tmp_path / "bad-tag.tif"
    path.write_bytes(data.replace(entry, b"\x11\x01\x02\x00"))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert_names(info.value, path)


@pytest.mark.filterwarnings("ignore")
def test_corrupted_bytes_only_ever_raise_image_load_error():
    # A small, seeded fuzz: flipped bytes near the headers must give a clean error or an image.
    seeds = [
        encode(noise(16, 12), "PNG"),
        encode(noise(16, 12), "JPEG", exif=Image.Exif()),
        encode(noise(16, 12).convert("P"), "GIF"),
        encode(noise(16, 12), "TIFF"),
        encode(Image.fromarray(np.zeros((12, 16), np.uint16)), "TIFF"),
        encode(noise(16, 12), "BMP"),
    ]
    rng = random.Random(1234)
    for i in range(600):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(min(len(data), 160))] = rng.randrange(256)
        try:
            loaded = load_image(bytes(data), name=f"case-{i}", max_pixels=1_000_000)
        except ImageLoadError as exc:
            assert exc.source == f"case-{i}"
        else:
            assert loaded.pixels.dtype == torch.uint8 and loaded.pixels.shape[0] == 3


def test_error_is_picklable():
    exc = ImageLoadError("a/b.png", "no such file")
    assert isinstance(exc, Exception)
    assert (exc.source, exc.reason, str(exc)) == (
        "a/b.png",
        "no such file",
        "a/b.png: no such file",
    )
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, ImageLoadError)
    assert (back.source, back.reason, str(back)) == (exc.source, exc.reason, str(exc))


# --------------------------------------------------------------------------- decompression bombs


@pytest.fixture
def decode_spy(monkeypatch):
    """Records every pixel decode (ImageFile.load) so tests can prove none happened."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


def test_pixel_limit_refuses_before_decoding(tmp_path, decode_spy):
    path = write(tmp_path / "big.png", noise(100, 100))
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=1000)
    assert_names(info.value, path)
    assert "100x100" in info.value.reason
    assert "1,000" in info.value.reason
    assert decode_spy == []  # refused from the header alone

    loaded = load_image(path, max_pixels=100 * 100)  # exactly at the limit is allowed
    assert_rgb_tensor(loaded, 100, 100)
    assert decode_spy and set(decode_spy) == {"PNG"}  # the spy does see real decodes


def test_pixel_limit_applies_to_bytes():
    with pytest.raises(ImageLoadError, match=r"^up\.png: .*above the limit"):
        load_image(encode(noise(40, 30), "PNG"), name="up.png", max_pixels=1199)


@pytest.mark.parametrize("max_pixels", [DEFAULT_MAX_PIXELS, 10**6])
def test_crafted_huge_header_is_refused_quickly(tmp_path, decode_spy, max_pixels):
    path = tmp_path / "bomb.png"
    path.write_bytes(crafted_png(100_000, 100_000))
    assert path.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=max_pixels)
    assert time.perf_counter() - start < 1.0
    assert_names(info.value, path)
    assert decode_spy == []
    with pytest.raises(ImageLoadError):
        load_image(path.read_bytes(), name="bomb-bytes", max_pixels=max_pixels)


def test_raised_limit_is_not_overridden_by_pillows_own(tmp_path, monkeypatch):
    # Pillow refuses images above twice its MAX_IMAGE_PIXELS by itself; a caller who raised
    # max_pixels (for trusted huge scans) must get what they asked for. Shrink Pillow's limit
    # so that a small image stands in for a 200-megapixel one.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = write(tmp_path / "scan.png", noise(100, 100))
    loaded = load_image(path, max_pixels=20_000)
    assert_rgb_tensor(loaded, 100, 100)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's global is restored afterwards
    with pytest.raises(ImageLoadError, match="above the limit"):
        load_image(path, max_pixels=9_999)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_default_limit():
    assert isinstance(DEFAULT_MAX_PIXELS, int)
    assert DEFAULT_MAX_PIXELS > 8000 * 8000 - 1 or "AIGC_MAX_PIXELS" in os.environ


def test_files_are_closed_on_success_and_refusal(tmp_path, monkeypatch):
    opened = []
    original_open = Image.open

    def tracking_open(fp, *args, **kwargs):
        im = original_open(fp, *args, **kwargs)
        opened.append(im.fp)
        return im

    monkeypatch.setattr(Image, "open", tracking_open)
    good = write(tmp_path / "good.png", noise(30, 30))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:200])
    load_image(good)
    for path, limit in ((good, 10), (cut, DEFAULT_MAX_PIXELS)):
        with pytest.raises(ImageLoadError):
            load_image(path, max_pixels=limit)
    assert len(opened) == 3
    assert all(fp.closed for fp in opened)


# --------------------------------------------------------------------------- load_images


def test_load_images_carries_on_past_bad_files(tmp_path):
    good1 = write(tmp_path / "1-good.png", Image.new("RGB", (4, 3), RED))
    missing = tmp_path / "2-missing.png"
    text = tmp_path / "3-text.png"
    text.write_text("hello")
    good2 = write(tmp_path / "4-good.jpg", Image.new("RGB", (6, 5), BLUE), "JPEG")
    cut = tmp_path / "5-cut.png"
    cut.write_bytes(encode(noise(64, 64), "PNG")[:3000])
    huge = write(tmp_path / "6-huge.png", Image.new("RGB", (50, 50)))
    good3 = write(tmp_path / "7-good.png", Image.new("L", (2, 2), 9))
    empty = tmp_path / "8-empty.png"
    empty.touch()

    paths = [good1, missing, text, good2, cut, huge, good3, empty]
    loaded, failed = load_images(paths, max_pixels=1000)
    assert [item.source for item in loaded] == [str(good1), str(good2), str(good3)]
    assert [item.size for item in loaded] == [(4, 3), (6, 5), (2, 2)]
    assert all(isinstance(exc, ImageLoadError) for exc in failed)
    assert [exc.source for exc in failed] == [str(p) for p in (missing, text, cut, huge, empty)]
    assert "above the limit" in failed[3].reason

    # Any iterable works, including a generator, and an empty batch is fine.
    loaded, failed = load_images(p for p in [good1])
    assert len(loaded) == 1 and failed == []
    assert load_images([]) == ([], [])


# --------------------------------------------------------------------------- iter_image_paths


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    files = [
        "b.png",
        "a.jpg",
        "notes.txt",
        "sub/c.PNG",
        "sub/readme.md",
        "sub/deeper/d.webp",
        "sub/deeper/e.JPEG",
        "z_dir.png/f.gif",
        "z_dir.png/g.tiff",
        "no-extension",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "empty").mkdir()
    return root


def test_iter_image_paths_recursive_sorted_images_only(tree):
    found = list(iter_image_paths([tree]))
    expected = [
        "a.jpg",
        "b.png",
        "sub/c.PNG",
        "sub/deeper/d.webp",
        "sub/deeper/e.JPEG",
        "z_dir.png/f.gif",
        "z_dir.png/g.tiff",
    ]
    assert found == [tree / name for name in expected]
    assert found == sorted(found)
    assert all(p.suffix.lower() in IMAGE_EXTENSIONS for p in found)
    assert all(isinstance(p, Path) for p in found)


def test_iter_image_paths_non_recursive(tree):
    assert list(iter_image_paths([str(tree)], recursive=False)) == [tree / "a.jpg", tree / "b.png"]


def test_iter_image_paths_keeps_explicit_files_and_missing_paths(tree, tmp_path):
    missing = tmp_path / "gone.png"
    inputs = [
        tree / "notes.txt",
        str(missing),
        tree / "sub" / "deeper",
        tree / "empty",
        tree / "b.png",
    ]
    assert list(iter_image_paths(inputs)) == [
        tree / "notes.txt",  # named explicitly: yielded, so load_image can say what is wrong
        missing,  # same for a path that does not exist
        tree / "sub/deeper/d.webp",
        tree / "sub/deeper/e.JPEG",
        tree / "b.png",
    ]


def test_iter_image_paths_single_path_argument(tree):
    # A lone str/Path is one input, not an iterable of characters.
    assert list(iter_image_paths(str(tree / "b.png"))) == [tree / "b.png"]
    assert list(iter_image_paths(tree, recursive=False)) == [tree / "a.jpg", tree / "b.png"]


def test_iter_image_paths_feeds_load_images(tree):
    write(tree / "b.png", Image.new("RGB", (3, 3), GREEN))
    loaded, failed = load_images(iter_image_paths([tree]))
    assert [item.source for item in loaded] == [str(tree / "b.png")]
    assert len(failed) == 6  # the 1-byte placeholder files


# --------------------------------------------------------------------------- save_image


def random_pixels(height: int = 24, width: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_png_round_trips_exactly(tmp_path):
    pixels = random_pixels()
    out = save_image(pixels, tmp_path / "out.png")
    assert out == tmp_path / "out.png"
    assert out.read_bytes().startswith(b"\x89PNG")
    loaded = load_image(out)
    assert loaded.format == "PNG"
    assert torch.equal(loaded.pixels, pixels)
    assert listing(tmp_path) == ["out.png"]  # no temporary file left behind


def test_save_non_contiguous_tensor(tmp_path):
    base = random_pixels(10, 12)
    view = base.flip(2)[:, ::2]
    assert not view.is_contiguous()
    out = save_image(view, str(tmp_path / "view.png"))
    assert torch.equal(load_image(out).pixels, view)


def test_save_format_from_argument_suffix_or_default(tmp_path):
    pixels = random_pixels(8, 8)
    assert save_image(pixels, tmp_path / "a.JPG").read_bytes()[:3] == b"\xff\xd8\xff"
    assert save_image(pixels, tmp_path / "b.jpeg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert save_image(pixels, tmp_path / "c.bin", format="PNG").read_bytes()[:4] == b"\x89PNG"
    assert save_image(pixels, tmp_path / "d.png", format="webp").read_bytes()[8:12] == b"WEBP"
    assert save_image(pixels, tmp_path / "noext").read_bytes()[:4] == b"\x89PNG"
    nested = save_image(pixels, tmp_path / "new" / "dirs" / "e.png")
    assert nested.is_file()
    assert listing(tmp_path) == ["a.JPG", "b.jpeg", "c.bin", "d.png", "new", "noext"]


@pytest.mark.parametrize("suffix, fmt", [("jpg", "JPEG"), ("webp", "WEBP")])
def test_save_lossy_with_quality(tmp_path, suffix, fmt):
    # A smooth gradient: lossy codecs keep it close at high quality.
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    pixels = torch.stack([x * 4, y * 4, (x + y) * 2]).to(torch.uint8)
    high = save_image(pixels, tmp_path / f"high.{suffix}", quality=95)
    low = save_image(pixels, tmp_path / f"low.{suffix}", quality=5)
    assert low.stat().st_size < high.stat().st_size
    loaded = load_image(high)
    assert loaded.format == fmt
    error = (loaded.pixels.float() - pixels.float()).abs().mean()
    assert error < 4.0
    assert listing(tmp_path) == sorted([high.name, low.name])


@pytest.mark.parametrize(
    "bad",
    [
        random_pixels().float(),
        random_pixels().to(torch.int16),
        torch.zeros((4, 8, 8), dtype=torch.uint8),
        torch.zeros((8, 8, 3), dtype=torch.uint8),
        torch.zeros((8, 8), dtype=torch.uint8),
        torch.zeros((1, 3, 8, 8), dtype=torch.uint8),
        torch.zeros((3, 0, 8), dtype=torch.uint8),
        np.zeros((3, 8, 8), np.uint8),
    ],
    ids=["float", "int16", "4ch", "hwc", "2d", "4d", "empty", "numpy"],
)
def test_save_rejects_bad_pixels(tmp_path, bad):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError) as info:
        save_image(bad, path)
    assert str(path) in str(info.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name, fmt", [("x.gif", None), ("x.png", "tiff"), ("x.bmp", None)])
def test_save_rejects_unknown_formats(tmp_path, name, fmt):
    path = tmp_path / name
    with pytest.raises(ValueError) as info:
        save_image(random_pixels(4, 4), path, format=fmt)
    assert str(path) in str(info.value)
    assert "png, jpeg or webp" in str(info.value)
    assert listing(tmp_path) == []


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(b"old contents")
    first = random_pixels(seed=1)
    save_image(first, path)
    assert torch.equal(load_image(path).pixels, first)
    assert listing(tmp_path) == ["img.png"]


@pytest.mark.parametrize("existing", [True, False])
def test_save_failure_leaves_destination_untouched(tmp_path, monkeypatch, existing):
    path = tmp_path / "keep.png"
    if existing:
        path.write_bytes(b"original bytes")
    seen_tmp = []

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"half a file")
        seen_tmp.extend(listing(tmp_path))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_image(random_pixels(), path)
    # The write went to a temporary file beside the destination, never to it.
    assert any(name.endswith(".tmp") for name in seen_tmp)
    if existing:
        assert path.read_bytes() == b"original bytes"
        assert listing(tmp_path) == ["keep.png"]
    else:
        assert listing(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_saved_file_gets_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_image(random_pixels(4, 4), tmp_path / "perm.png")
    finally:
        os.umask(old)
    # Like a file written with open(): 0o666 minus the umask, not a private 0o600 temp file.
    assert path.stat().st_mode & 0o777 == 0o644
