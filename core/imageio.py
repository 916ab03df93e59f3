"""Safe image loading and saving: the only module that touches image files.

Everything downstream receives ``uint8`` RGB tensors of shape 3 x H x W. Loading applies the
EXIF orientation, converts every colour mode Pillow knows (grayscale, palette, RGBA, CMYK,
16-bit, float) to 8-bit RGB, and refuses images outside the work budget (pixels, side, aspect
ratio: :mod:`aigcguard.budget`) *before* decoding them, so a decompression bomb costs nothing.
Every failure is an :class:`ImageLoadError` that names the file and says what is wrong with it;
batch loading collects those and carries on.
"""

from __future__ import annotations

import functools
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aigcguard.budget import DEFAULT_MAX_ASPECT, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, WorkBudget
from aigcguard.fileio import atomic_write

if TYPE_CHECKING:  # torch is imported where pixels are made, so reading metadata starts fast
    import torch

# The work budget's defaults (aigcguard.budget), re-exported: larger inputs are refused unless
# the caller raises a limit (``AIGC_MAX_PIXELS`` / ``AIGC_MAX_SIDE`` / ``AIGC_MAX_ASPECT``, or
# ``max_pixels=`` / ``max_side=`` / ``max_aspect=``).

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
    # convert() copies even an RGB picture: skipped, it would cost 4 bytes a pixel more
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


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


def _open(data: bytes | Path, name: str, budget: WorkBudget) -> tuple[Image.Image, str | None]:
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
    refusal = budget.refusal(width, height)
    if refusal is None and im.format in ("JPEG", "MPO"):
        refusal = _jpeg_too_short(data, width, height)
    if refusal is not None:
        im.close()  # do not leak the open file of a refused image
        raise ImageLoadError(name, refusal)
    return im, im.format


#: JPEG frame types whose scans are Huffman coded (baseline, extended, progressive, lossless)
_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3})
_JPEG_HEAD = 1 << 20  # where the frame header is looked for (APP segments come before it)


def _jpeg_too_short(data: bytes | Path, width: int, height: int) -> str | None:
    """Why a JPEG cannot hold the picture its header declares, or None.

    Huffman coding spends at least one bit on every 8 x 8 block of the first scan (the code of
    the block's DC difference; a sequential scan also ends each block's AC run), so a file
    under blocks / 8 bytes is truncated or crafted. libjpeg would pad the missing blocks with
    grey and Pillow accept the result: a 735-byte file declaring 8000 x 7999 decoded to a
    64 MP grey picture that then cost 2.4 GB and 31 s in ``aigc check`` (2-core machine).
    Arithmetic-coded frames have no such floor and are not judged."""
    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    floor = -(-width // 8) * -(-height // 8) // 8
    if size >= floor:
        return None  # the usual case: no need to read the header
    if isinstance(data, bytes):
        head = data[:_JPEG_HEAD]
    else:
        with open(data, "rb") as f:
            head = f.read(_JPEG_HEAD)
    if _jpeg_frame_type(head) not in _HUFFMAN_FRAMES:
        return None
    return (
        f"declares {width}x{height} pixels but holds only {size:,} bytes, fewer than the "
        f"{floor:,} any JPEG of that size needs (one bit per 8x8 block): truncated image data"
    )


def _jpeg_frame_type(head: bytes) -> int | None:
    """The SOFn marker of a JPEG's frame header, found by walking the segments after SOI."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def load_image(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> LoadedImage:
    """Decode one image file (path) or in-memory file (bytes) to a :class:`LoadedImage`.

    ``name`` labels bytes in error messages (a path labels itself). Raises
    :class:`ImageLoadError` for anything that is not a whole, readable image within the work
    budget: at most ``max_pixels`` pixels, ``max_side`` px a side and ``max_aspect`` long side
    over short side (:class:`aigcguard.budget.WorkBudget`), checked from the header.
    """
    budget = WorkBudget(max_pixels, max_side, max_aspect)
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
        im, fmt = _open(data, label, budget)
        try:
            with im:
                mode = im.mode
                im.load()  # decode now, so truncation surfaces here and not later
                # In place: a copy would cost another 4 bytes a pixel (256 MB at 64 MP).
                ImageOps.exif_transpose(im, in_place=True)
                arr = _to_rgb_array(im)
        except ImageLoadError:
            raise
        except Exception as exc:
            # Decoders raise OSError, SyntaxError, ValueError, EOFError, but also TypeError,
            # struct.error, ... on crafted files; every one of them means a bad file.
            text = str(exc)
            reason = "truncated image data" if "truncated" in text.lower() else "corrupt image data"
            raise ImageLoadError(label, f"{reason} ({type(exc).__name__}: {text})") from None
    del im  # Pillow's decoded copy, freed before the tensor's is made
    # Always a fresh, writable copy: np.ascontiguousarray would hand back a view of Pillow's
    # read-only buffer whenever the transpose is already contiguous (a 1 x 1 image).
    import torch

    pixels = torch.from_numpy(np.array(arr.transpose(2, 0, 1), dtype=np.uint8, order="C"))
    return LoadedImage(source=label, pixels=pixels, format=fmt, mode=mode)


def image_extensions() -> frozenset[str]:
    """The extensions (lower case, with the dot) Pillow registers for the formats of
    :data:`READ_FORMATS` it can decode here. Asked afresh each time, so a plug-in registered
    after import (pillow-heif adds ``.heic``) counts too."""
    decodable = set(_read_formats())
    if "JPEG" in decodable and "MPO" in READ_FORMATS:
        decodable.add("MPO")  # Pillow opens MPO (multi-picture JPEG) through its JPEG plugin
    return frozenset(
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in decodable
    )


#: Extensions picked up when a folder is walked (:func:`image_extensions` at import: .avif,
#: .ico, .mpo, ... besides the usual ones); a file named explicitly is always tried.
IMAGE_EXTENSIONS = image_extensions()

#: ``on_skip(path, reason)``: told of each folder entry a walk does not yield
SkipHandler = Callable[[Path, str], None]

#: how the reason begins for a file that is plainly not a picture (a README, captions, a
#: .DS_Store), as against "unsupported format (.svg)" for a picture or video format the
#: loader does not decode
NOT_A_PICTURE = "not a picture"

#: camera and recent picture formats Python's MIME table does not name (see _picture_like)
_MORE_PICTURE_EXTENSIONS = frozenset(
    {".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"}
    | {".mkv"}
)


def iter_image_paths(
    inputs: Iterable[str | os.PathLike],
    *,
    recursive: bool = True,
    on_skip: SkipHandler | None = None,
    extensions: Iterable[str] | None = None,
) -> Iterator[Path]:
    """Expand files and folders to image paths, in a stable (sorted) order.

    A folder contributes the regular files whose extension is in ``extensions`` (default:
    :func:`image_extensions`, every format the loader decodes). Every other entry under it
    goes to ``on_skip(path, reason)`` instead of vanishing: "unsupported format (.svg)" (a
    picture or video format not decoded), "unreadable: permission denied", "symbolic link
    loop", "dangling symbolic link", "a directory named like a picture" (walked all the same
    when ``recursive``), "not a regular file (a named pipe)" (never opened: reading one can
    block for ever), or, for a file that is no picture at all, "not a picture (.txt)" (see
    :data:`NOT_A_PICTURE`). Links to folders are followed, each folder once, so a link loop
    ends. A path named explicitly is always yielded, a missing one too, so
    :func:`load_image` says what is wrong with it.
    """
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]  # one path, not an iterable of its characters
    wanted = image_extensions() if extensions is None else {e.lower() for e in extensions}
    for item in inputs:
        path = Path(os.fsdecode(item))
        if not path.is_dir():
            yield path
            continue
        for entry, reason in sorted(_walk(path, recursive, wanted), key=lambda e: e[0]):
            if reason is None:
                yield entry
            elif on_skip is not None:
                on_skip(entry, reason)


def _walk(root: Path, recursive: bool, wanted) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each picture under ``root``, (path, reason) for each entry skipped.
    A folder is known by (device, inode): one reached again is a loop when it holds the link
    (an ancestor), else a second way into a folder already walked; either way not re-entered."""
    import stat

    top = root.stat()
    seen = {(top.st_dev, top.st_ino)}
    stack = [(root, frozenset(seen))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            yield folder, f"unreadable: {_strerror(exc)}"
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                info = entry.stat()  # follows a link, as opening it would
            except OSError as exc:
                yield path, _unreachable(entry, exc)
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, None if path.suffix.lower() in wanted else _not_taken(path)
            elif stat.S_ISDIR(info.st_mode):
                ident = (info.st_dev, info.st_ino)
                if ident in ancestors:
                    yield path, "symbolic link loop"
                elif ident in seen:
                    yield path, "symbolic link to a folder already walked"
                else:
                    if path.suffix.lower() in wanted:
                        yield path, "a directory named like a picture"
                    elif not recursive:
                        yield path, "a folder (not walked: recursive=False)"
                    if recursive:
                        seen.add(ident)
                        stack.append((path, ancestors | {ident}))
            else:
                yield path, f"not a regular file ({_file_kind(info.st_mode)})"


def _not_taken(path: Path) -> str:
    """Why a regular file is not taken: a format of pictures (or videos) not decoded, or no
    picture at all."""
    suffix = path.suffix.lower()
    if suffix and _picture_like(suffix):
        return f"unsupported format ({suffix})"
    return f"{NOT_A_PICTURE} ({suffix or 'no extension'})"


@functools.lru_cache(maxsize=256)
def _picture_like(suffix: str) -> bool:
    """A picture or video extension: one Pillow knows (in any format), an image/ or video/
    type in Python's own MIME table (not the system's, so the answer is the same anywhere),
    or a camera format."""
    import mimetypes

    kind = mimetypes.MimeTypes().guess_type(f"x{suffix}")[0] or ""
    return (
        suffix in {e.lower() for e in Image.registered_extensions()}
        or kind.startswith(("image/", "video/"))
        or suffix in _MORE_PICTURE_EXTENSIONS
    )


def _strerror(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def _unreachable(entry: os.DirEntry, exc: OSError) -> str:
    """Why ``entry`` cannot be reached (its stat failed)."""
    import errno

    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, FileNotFoundError) and entry.is_symlink():
        return "dangling symbolic link"
    return f"unreadable: {_strerror(exc)}"


def _file_kind(mode: int) -> str:
    import stat

    kinds = {
        stat.S_ISFIFO: "a named pipe",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "an unknown kind")


def load_images(
    paths: Iterable[str | os.PathLike],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> tuple[list[LoadedImage], list[ImageLoadError]]:
    """Load many files within the same work budget as :func:`load_image`; bad ones are
    returned as errors instead of stopping the batch."""
    loaded: list[LoadedImage] = []
    failed: list[ImageLoadError] = []
    limits = {"max_pixels": max_pixels, "max_side": max_side, "max_aspect": max_aspect}
    for path in paths:
        try:
            loaded.append(load_image(path, **limits))
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
    import torch

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
