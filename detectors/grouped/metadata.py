"""What a picture's file gives away before a pixel is decoded: the shortcut baseline's inputs.

Generated pictures are often PNG or WebP straight from the generator, or JPEG at the
generator's or the gallery's own settings; camera photos are JPEG at the camera's. In the
wild set, 357 of the 799 generated crops were re-encoded as JPEG from a PNG or WebP original
against 106 of the 701 real ones (../shared/data/wild/README.md), so the quantisation tables
alone separate part of the classes. A classifier on these features alone
(:data:`FEATURE_NAMES`; :func:`metadata_features`: size, bits per pixel, pixel count, JPEG
quality and how far its tables are from libjpeg's, chroma subsampling, EXIF, format),
trained under the same grouped cross-validation as a detector, says how much of a
detector's score the files could explain.

Only the header is read (Pillow opens a file lazily): size, format, JPEG quantisation tables
and chroma subsampling, and whether there is EXIF. Nothing here decodes pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from aigcguard.results import JsonResult

#: the IJG (libjpeg) base tables at quality 50, natural (row-major) order: what almost every
#: encoder scales (Annex K of the JPEG standard)
IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
IJG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip
#: Pillow's subsampling codes (``JpegImagePlugin.get_sampling``) to their names
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
FORMATS = ("JPEG", "PNG", "WEBP")

#: the columns of :func:`metadata_features`, in order
FEATURE_NAMES = (
    "log2_bytes",
    "bits_per_pixel",
    "log2_pixels",
    "jpeg_quality",
    "jpeg_table_error",
    *(f"subsampling_{s}" for s in SUBSAMPLING.values()),
    "exif",
    *(f"format_{f.lower()}" for f in FORMATS),
    "format_other",
)


def _ijg_tables() -> np.ndarray:
    """100 x 2 x 64: the IJG tables libjpeg (and Pillow) write at qualities 1 to 100."""
    base = np.array([IJG_LUMA, IJG_CHROMA], np.int64)
    out = np.empty((100, 2, 64), np.int64)
    for q in range(1, 101):
        scale = 5000 // q if q < 50 else 200 - 2 * q
        out[q - 1] = np.clip((base * scale + 50) // 100, 1, 255)
    return out


_TABLES = _ijg_tables()


def jpeg_quality(quantization: dict) -> int:
    """The IJG quality (1-100) whose tables are closest to a JPEG's (Pillow's
    ``im.quantization``, natural order): exact for libjpeg-family encoders, the nearest
    standard quality for a camera's own tables (see :func:`jpeg_fit`)."""
    return jpeg_fit(quantization)[0]


def jpeg_fit(quantization: dict) -> tuple[int, float]:
    """(quality, error): the IJG quality whose tables are closest to a JPEG's, and how far
    they are, the mean absolute difference of log table entries (0 for tables libjpeg,
    Pillow and most web encoders write; cameras and phones use their own). Luminance is
    table 0, chroma table 1 when present; logs, so a factor off at high frequencies counts as
    much as at low ones."""
    tables = [np.asarray(quantization[k], np.float64) for k in sorted(quantization)[:2]]
    if not tables or any(t.size != 64 for t in tables):
        raise ValueError("expected 8 x 8 quantisation tables")
    err = np.zeros(100)
    for i, t in enumerate(tables):
        err += np.abs(np.log(_TABLES[:, i, :]) - np.log(np.maximum(t, 1))[None]).sum(1)
    # ties go to the higher quality (the flattest tables: q 98-100 are all ones at the top)
    best = int(np.argmin(err[::-1]))
    return 100 - best, float(err[::-1][best] / (64 * len(tables)))


@dataclass(frozen=True)
class FileMetadata(JsonResult):
    """A file's size and encoding. ``jpeg_quality`` and ``subsampling`` are None for a file
    that is not JPEG (or a JPEG whose sampling is not a standard one)."""

    path: str
    bytes: int
    width: int
    height: int
    format: str
    jpeg_quality: int | None
    jpeg_table_error: float | None
    subsampling: str | None
    exif: bool

    def vector(self) -> np.ndarray:
        """The row of :func:`metadata_features` (see :data:`FEATURE_NAMES`)."""
        pixels = max(1, self.width * self.height)
        fmt = [float(self.format == f) for f in FORMATS]
        return np.array(
            [
                math.log2(max(1, self.bytes)),
                8.0 * self.bytes / pixels,
                math.log2(pixels),
                float(self.jpeg_quality or 0),
                float(self.jpeg_table_error or 0.0),
                *(float(self.subsampling == s) for s in SUBSAMPLING.values()),
                float(self.exif),
                *fmt,
                float(not any(fmt)),
            ]
        )


def file_metadata(path: str | Path) -> FileMetadata:
    """Read one file's header (see the module docstring); ValueError naming the file when it
    is not a picture Pillow can open."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with Image.open(path) as im:
            fmt = im.format or "unknown"
            quality = table_error = sampling = None
            if fmt in ("JPEG", "MPO") and getattr(im, "quantization", None):
                quality, table_error = jpeg_fit(im.quantization)
                table_error = round(table_error, 4)
                sampling = SUBSAMPLING.get(JpegImagePlugin.get_sampling(im))
                fmt = "JPEG"
            exif = "exif" in im.info or len(im.getexif()) > 0
            return FileMetadata(
                str(path), size, im.width, im.height, fmt, quality, table_error, sampling, exif
            )
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the file's header ({exc})") from None


def metadata_features(paths: Sequence[str | Path]) -> np.ndarray:
    """N x len(FEATURE_NAMES) float64 features of the files (see :class:`FileMetadata`)."""
    rows = [file_metadata(p).vector() for p in paths]
    return np.array(rows, np.float64).reshape(len(rows), len(FEATURE_NAMES))
