"""Safe image loading and saving: the only module that touches image files.

Everything downstream receives ``uint8`` RGB tensors of shape 3 x H x W. Loading applies the
EXIF orientation, converts every colour mode Pillow knows (grayscale, palette, RGBA, CMYK,
16-bit, float) to 8-bit RGB, and refuses images above a pixel limit *before* decoding them,
so a decompression bomb costs nothing. Every failure is an :class:`ImageLoadError` that names
the file and says what is wrong with it; batch loading collects those and carries on.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from aigcguard.fileio import atomic_write

#: Default ceiling on width x height. 64 MP covers 8000 x 8000 photos; larger inputs are
#: refused unless the caller raises the limit (``AIGC_MAX_PIXELS`` or ``max_pixels=``).
DEFAULT_MAX_PIXELS = int(os.environ.get("AIGC_MAX_PIXELS", 64_000_000))

#: Extensions picked up when a directory is expanded; a file named explicitly is always tried.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)

#: Containers we decode. A fixed list keeps Pillow from handing a hostile file to an external
#: interpreter (EPS goes to Ghostscript) or to a rarely used, little-tested decoder.
READ_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "PPM", "ICO", "AVIF", "HEIF")


def _read_formats() -> list[str]:
    Image.init()  # register every plugin, so the list can name them
    return [f for f in READ_FORMATS if f in Image.OPEN]


_SAVE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


class ImageLoadError(Exception):
    """An input could not be read as an image. ``source`` names it, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):
        # The default pickling re-calls __init__ with the formatted message only, which fails;
        # errors must survive pickling to come back from worker processes.
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``pixels`` is a uint8 RGB tensor 3 x H x W on the CPU."""

    source: str
    pixels: torch.Tensor
    format: str | None  # container format as Pillow names it (PNG, JPEG, ...)
    mode: str  # the colour mode before conversion (L, P, RGBA, CMYK, I;16, ...)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order Pillow and humans use."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[1])


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to an H x W x 3 uint8 array."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: Pillow's convert("L") clips at 255 instead of
        # scaling, which turns a normal 16-bit photo white. Scale by the type's range instead.
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode != "I" or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 1.0
        gray = np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("P", "L", "RGB") and "transparency" in im.info:
        # A palette entry, gray level or colour marked transparent (PNG tRNS, GIF): these
        # pixels are flattened onto white below, like those of an alpha channel.
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Flatten transparency onto white, as a viewer shows it.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow's own bomb check allow ``max_pixels`` while the block runs.

    Pillow refuses anything above twice ``Image.MAX_IMAGE_PIXELS`` (about 179 MP) by itself,
    so a caller who raised ``max_pixels`` beyond that would still be refused. Our check in
    :func:`_open` enforces ``max_pixels``; Pillow's global is raised only when it is lower, and
    restored afterwards.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or max_pixels <= current:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open(data: bytes | Path, name: str, max_pixels: int) -> tuple[Image.Image, str | None]:
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's warning; its hard error is still caught.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(
                io.BytesIO(data) if isinstance(data, bytes) else data, formats=_read_formats()
            )
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(name, f"refused as a decompression bomb ({exc})") from None
    except FileNotFoundError:
        raise ImageLoadError(name, "no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(name, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageLoadError(name, "permission denied") from None
    except OSError as exc:
        raise ImageLoadError(name, f"cannot open: {exc}") from None
    except Exception as exc:
        # Pillow's plugins also raise ValueError, TypeError, struct.error, ... on malformed
        # headers (e.g. "Truncated IHDR chunk"); those are bad files too, not crashes.
        raise ImageLoadError(name, f"corrupt image header ({type(exc).__name__}: {exc})") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        im.close()
        raise ImageLoadError(name, f"has an empty size {width}x{height}")
    if width * height > max_pixels:
        im.close()  # do not leak the open file of a refused image
        raise ImageLoadError(
            name,
            f"is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (raise it with AIGC_MAX_PIXELS if the file is trusted)",
        )
    return im, im.format


def load_image(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode one image file (path) or in-memory file (bytes) to a :class:`LoadedImage`.

    ``name`` labels bytes in error messages (a path labels itself). Raises
    :class:`ImageLoadError` for anything that is not a whole, readable image within the limit.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | Path = bytes(source)
        label = name or "<bytes>"
        if not data:
            raise ImageLoadError(label, "is empty (0 bytes)")
    else:
        data = Path(source)
        label = name or str(source)
        if data.is_file() and data.stat().st_size == 0:
            raise ImageLoadError(label, "is empty (0 bytes)")
    with _pillow_limit(max_pixels):
        im, fmt = _open(data, label, max_pixels)
        try:
            with im:
                mode = im.mode
                im.load()  # decode now, so truncation surfaces here and not later
                im = ImageOps.exif_transpose(im) or im
                arr = _to_rgb_array(im)
        except ImageLoadError:
            raise
        except Exception as exc:
            # Decoders raise OSError, SyntaxError, ValueError, EOFError, but also TypeError,
            # struct.error, ... on crafted files; every one of them means a bad file.
            text = str(exc)
            reason = "truncated image data" if "truncated" in text.lower() else "corrupt image data"
            raise ImageLoadError(label, f"{reason} ({type(exc).__name__}: {text})") from None
    # Always a fresh, writable copy: np.ascontiguousarray would hand back a view of Pillow's
    # read-only buffer whenever the transpose is already contiguous (a 1 x 1 image).
    pixels = torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.uint8, order="C"))
    return LoadedImage(source=label, pixels=pixels, format=fmt, mode=mode)


def iter_image_paths(
    inputs: Iterable[str | os.PathLike], *, recursive: bool = True
) -> Iterator[Path]:
    """Expand files and directories to image paths, in a stable (sorted) order.

    A directory contributes the files whose extension is an image extension; a file named
    explicitly is always yielded, so a wrong file gets a clear error from :func:`load_image`
    instead of being skipped in silence. A missing path is yielded too, for the same reason.
    """
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]  # one path, not an iterable of its characters
    for item in inputs:
        path = Path(os.fsdecode(item))
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = (
                p
                for p in path.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            yield from sorted(found)
        else:
            yield path


def load_images(
    paths: Iterable[str | os.PathLike], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[LoadedImage], list[ImageLoadError]]:
    """Load many files; bad ones are returned as errors instead of stopping the batch."""
    loaded: list[LoadedImage] = []
    failed: list[ImageLoadError] = []
    for path in paths:
        try:
            loaded.append(load_image(path, max_pixels=max_pixels))
        except ImageLoadError as exc:
            failed.append(exc)
    return loaded, failed


def save_image(
    pixels: torch.Tensor, path: str | os.PathLike, *, format: str | None = None, quality: int = 95
) -> Path:
    """Write a 3 x H x W uint8 tensor atomically (temporary file, then rename).

    The format follows ``format`` or the file extension; PNG is lossless, JPEG and WebP use
    ``quality``. A reader never sees a half-written file, and a failure leaves nothing behind.
    """
    path = Path(path)
    fmt_key = (format or path.suffix.lstrip(".") or "png").lower()
    if fmt_key not in _SAVE_FORMATS:
        raise ValueError(f"{path}: cannot save as {fmt_key!r}; use png, jpeg or webp")
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"{path}: expected a uint8 torch tensor, got {type(pixels).__name__}")
    if (
        pixels.dtype != torch.uint8
        or pixels.ndim != 3
        or pixels.shape[0] != 3
        or pixels.shape[1] == 0
        or pixels.shape[2] == 0
    ):
        raise ValueError(
            f"{path}: expected a non-empty uint8 tensor 3 x H x W, "
            f"got {pixels.dtype} {tuple(pixels.shape)}"
        )
    arr = pixels.detach().to("cpu").permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr, "RGB")
    options: dict = {}
    if _SAVE_FORMATS[fmt_key] in ("JPEG", "WEBP"):
        options["quality"] = int(quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        im.save(handle, format=_SAVE_FORMATS[fmt_key], **options)
    return path
