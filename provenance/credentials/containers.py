"""Byte surgery on JPEG, PNG and WebP files: find the metadata a file carries (its XMP packet,
EXIF blocks, PNG text chunks) and put a new XMP packet in place of the old one, or add one.
Nothing here knows what the metadata means; :mod:`.labels` does.

    data = read_file("upload.jpg")
    scan = scan_metadata(data, "upload.jpg")  # scan.xmp, scan.exif, scan.texts, scan.problems
    new = put_xmp(data, scan, packet)          # every other byte as it was

Why the container code is ours. Pillow re-encodes pixels when it saves. pyexiv2 2.16 (exiv2
0.28) re-serializes what it touches: in our tests it rewrote a JPEG comment, re-encoded a PNG's
EXIF in the other byte order, and recompressed a PNG iTXt chunk without its language tag. So the
XMP packet is edited as bytes. The JPEG APP1 segment, PNG ``iTXt`` ``XML:com.adobe.xmp`` chunk
or WebP ``XMP `` chunk is replaced (or added); pixels, EXIF, ICC, C2PA/JUMBF segments and PNG
text chunks stay byte for byte. Other formats are read through Pillow, and not written.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from aigcguard.imageio import READ_FORMATS
from aigcguard.results import JsonResult

__all__ = [
    "MAX_TEXT_BYTES",
    "WRITABLE_FORMATS",
    "Scan",
    "Unparsable",
    "jpeg_segments",
    "put_xmp",
    "read_file",
    "scan_metadata",
]

_MAX_FILE_BYTES = 1 << 30  # the whole file is read; metadata lives anywhere in a PNG or WebP
MAX_TEXT_BYTES = 16 << 20  # inflated PNG text, XMP packets and JSON considered at most

_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_PNG_KEY = "XML:com.adobe.xmp"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_JPEG_SEGMENT = 0xFFFF - 2  # payload bytes one marker segment can hold


@dataclass(frozen=True)
class Unparsable(JsonResult):
    """A piece of metadata that is there but could not be read."""

    source: str
    key: str
    error: str


# --- reading ----------------------------------------------------------------------------------


@dataclass
class Scan:
    """The raw metadata of one file, with where the XMP packet sits."""

    format: str
    xmp: bytes | None = None
    xmp_span: tuple[int, int] | None = None  # the segment or chunk holding it
    xmp_header: bytes = b""  # PNG iTXt: the bytes between keyword and text, kept on rewrite
    exif: list[Any] = field(default_factory=list)  # TIFF blobs or Image.Exif objects
    texts: list[tuple[str, str]] = field(default_factory=list)  # PNG text chunks
    problems: list[Unparsable] = field(default_factory=list)
    complete: bool = True  # the container walk reached its end (required for writing)


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int | None]:
    """(marker, start, end) of the marker segments before the first scan, and where that scan
    starts (None when the file ends or breaks first)."""
    segments: list[tuple[int, int, int]] = []
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return segments, None
        if data[pos + 1] == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xDA:
            return segments, pos
        if marker == 0xD9:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            segments.append((marker, pos, pos + 2))
            pos += 2
            continue
        if pos + 4 > n:
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > n or end < pos + 4:
            break
        segments.append((marker, pos, end))
        pos = end
    return segments, None


def _scan_jpeg(data: bytes) -> Scan:
    scan = Scan("JPEG")
    segments, sos = jpeg_segments(data)
    scan.complete = sos is not None
    for marker, start, end in segments:
        payload = data[start + 4 : end]
        if marker != 0xE1:
            continue
        if payload.startswith(_XMP_JPEG_HEADER) and scan.xmp is None:
            scan.xmp, scan.xmp_span = payload[len(_XMP_JPEG_HEADER) :], (start, end)
        elif payload.startswith(b"Exif\x00") and not scan.exif:
            scan.exif.append(payload[6:])
    return scan


def _png_chunks(data: bytes) -> tuple[list[tuple[bytes, int, int]], bool]:
    """(type, start, end) of each chunk, end past the CRC; and whether IEND was reached."""
    chunks: list[tuple[bytes, int, int]] = []
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > n:
            break
        chunks.append((ctype, pos, end))
        if ctype == b"IEND":
            return chunks, True
        pos = end
    return chunks, False


def _inflate(blob: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(blob, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates to more than {MAX_TEXT_BYTES:,} bytes")
    return out


def _png_text(ctype: bytes, body: bytes) -> tuple[str, str, bytes]:
    """(keyword, text, iTXt header) of a tEXt, zTXt or iTXt chunk body."""
    key, _, rest = body.partition(b"\x00")
    keyword = key.decode("latin-1")
    if ctype == b"tEXt":
        return keyword, rest.decode("latin-1"), b""
    if ctype == b"zTXt":
        return keyword, _inflate(rest[1:]).decode("latin-1"), b""
    if len(rest) < 2:
        raise ValueError("truncated iTXt chunk")
    lang, _, rest2 = rest[2:].partition(b"\x00")
    translated, _, text = rest2.partition(b"\x00")
    header = rest[:2] + lang + b"\x00" + translated + b"\x00"
    raw = _inflate(text) if rest[0] else text
    return keyword, raw.decode("utf-8"), header


def _imagemagick_profile(text: str) -> bytes:
    """The bytes of an ImageMagick "Raw profile type ..." text: name, length, then hex."""
    lines = text.strip().split("\n")
    length = int(lines[1])
    return bytes.fromhex("".join(lines[2:]))[:length]


def _scan_png(data: bytes) -> Scan:
    scan = Scan("PNG")
    chunks, scan.complete = _png_chunks(data)
    for ctype, start, end in chunks:
        if ctype == b"eXIf":
            scan.exif.append(data[start + 8 : end - 4])
            continue
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        body = data[start + 8 : end - 4]
        try:
            keyword, text, header = _png_text(ctype, body)
        except (ValueError, zlib.error, IndexError) as exc:
            key = body.partition(b"\x00")[0].decode("latin-1")
            scan.problems.append(Unparsable("png-text", key, f"unreadable text chunk ({exc})"))
            if key == _XMP_PNG_KEY and scan.xmp is None:
                scan.xmp, scan.xmp_span = b"", (start, end)  # there, but unreadable: no write
            continue
        if keyword == _XMP_PNG_KEY and scan.xmp is None:
            scan.xmp, scan.xmp_span = text.encode("utf-8"), (start, end)
            scan.xmp_header = header if ctype == b"iTXt" else b"\x00\x00\x00\x00"
        elif keyword == "Raw profile type exif":
            try:
                scan.exif.append(_imagemagick_profile(text))
            except (ValueError, IndexError) as exc:
                scan.problems.append(Unparsable("png-text", keyword, f"bad hex profile ({exc})"))
        else:
            scan.texts.append((keyword, text))
    return scan


def _riff_chunks(data: bytes) -> tuple[list[tuple[bytes, int, int]], int]:
    """(fourcc, start, end) of each WebP chunk, end past the pad byte; and where RIFF ends."""
    limit = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    chunks: list[tuple[bytes, int, int]] = []
    pos = 12
    while pos + 8 <= limit:
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > limit:
            break
        end = min(pos + 8 + size + (size & 1), limit)
        chunks.append((data[pos : pos + 4], pos, end))
        pos = end
    return chunks, limit


def _scan_webp(data: bytes) -> Scan:
    scan = Scan("WEBP")
    chunks, limit = _riff_chunks(data)
    scan.complete = bool(chunks) and chunks[-1][2] == limit
    for fourcc, start, end in chunks:
        size = int.from_bytes(data[start + 4 : start + 8], "little")
        payload = data[start + 8 : start + 8 + size]
        if fourcc == b"XMP " and scan.xmp is None:
            scan.xmp, scan.xmp_span = payload, (start, end)
        elif fourcc == b"EXIF" and not scan.exif:
            scan.exif.append(payload)
    return scan


def _scan_pillow(data: bytes, name: str) -> Scan:
    """Any other image format: what Pillow exposes (XMP in ``info``, EXIF)."""
    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only the header is read, never the pixels
            im = Image.open(io.BytesIO(data), formats=[f for f in READ_FORMATS if f in Image.OPEN])
    except Exception as exc:
        raise ValueError(f"{name}: not a recognised image ({type(exc).__name__})") from None
    with im:
        scan = Scan(im.format or "unknown", complete=False)
        xmp = im.info.get("xmp")
        if isinstance(xmp, (bytes, str)):
            scan.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
        try:
            scan.exif.append(im.getexif())
        except Exception as exc:  # Pillow raises many types on a malformed EXIF block
            scan.problems.append(Unparsable("exif", "", f"unreadable EXIF ({exc})"))
    return scan


def scan_metadata(data: bytes, name: str) -> Scan:
    """The metadata of a file's bytes; JPEG, PNG and WebP walked byte by byte, other formats
    through Pillow (``name`` is for the error when Pillow cannot open it either)."""
    if data[:3] == b"\xff\xd8\xff":
        return _scan_jpeg(data)
    if data[:8] == _PNG_SIGNATURE:
        return _scan_png(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _scan_webp(data)
    return _scan_pillow(data, name)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file; ValueError naming it when missing, empty or too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ValueError(f"{path}: {size:,} bytes, above the {_MAX_FILE_BYTES:,}-byte limit")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ValueError(f"{path}: is empty (0 bytes), not an image")
    return data


# --- writing ----------------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > _MAX_JPEG_SEGMENT:
        raise ValueError(
            f"the XMP packet would be {len(payload):,} bytes, more than one JPEG segment holds"
        )
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _fix_mpf(new: bytes, at: int, delta: int) -> bytes:
    """Keep a multi-picture JPEG (MPO, Ultra HDR gain maps) readable after ``delta`` bytes
    were inserted at ``at`` in its first image. The MP index gives the first image's size and
    the later images' offsets from its own TIFF header. So the size grows. The offsets grow
    only if the change lies after that header (before it, header and images move together)."""
    segments, _ = jpeg_segments(new)
    mpf = next((s for m, s, _ in segments if m == 0xE2 and new[s + 4 : s + 8] == b"MPF\x00"), None)
    if mpf is None or delta == 0:
        return new
    out = bytearray(new)
    base = mpf + 8  # the MP header: TIFF byte order, then the offset of the index IFD
    order = {b"II": "<", b"MM": ">"}.get(bytes(out[base : base + 2]))
    if order is None:
        raise ValueError("unreadable multi-picture (MPF) index")
    header_before_change = base < at  # then later images moved but the header did not
    ifd = base + struct.unpack_from(order + "I", out, base + 4)[0]
    for i in range(struct.unpack_from(order + "H", out, ifd)[0]):
        tag, _, count, value = struct.unpack_from(order + "HHII", out, ifd + 2 + 12 * i)
        if tag != 0xB002:  # MPEntry: 16 bytes per image
            continue
        for n in range(count // 16):
            entry = base + value + 16 * n
            size, offset = struct.unpack_from(order + "II", out, entry + 4)
            if n == 0:
                struct.pack_into(order + "I", out, entry + 4, size + delta)
            elif header_before_change and offset:
                struct.pack_into(order + "I", out, entry + 8, offset + delta)
        return bytes(out)
    raise ValueError("multi-picture (MPF) index without image entries")


def _put_jpeg(data: bytes, scan: Scan, packet: bytes) -> bytes:
    segment = _segment(0xE1, _XMP_JPEG_HEADER + packet)
    if scan.xmp_span is not None:
        start, end = scan.xmp_span
    else:
        # A new packet goes after JFIF (APP0) and Exif, where the XMP specification puts it.
        start = 2
        for marker, s, e in jpeg_segments(data)[0]:
            if marker == 0xE0 or (marker == 0xE1 and data[s + 4 : s + 10].startswith(b"Exif")):
                start = e
            else:
                break
        end = start
    new = data[:start] + segment + data[end:]
    return _fix_mpf(new, start, len(new) - len(data))


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body)
    return len(body).to_bytes(4, "big") + ctype + body + crc.to_bytes(4, "big")


def _put_png(data: bytes, scan: Scan, packet: bytes) -> bytes:
    if scan.xmp_span is not None:
        # Same place, same iTXt header (compression flag, language); tEXt becomes iTXt,
        # since XMP is UTF-8 and tEXt is Latin-1.
        header = scan.xmp_header
        text = zlib.compress(packet) if header[0] else packet
        chunk = _png_chunk(b"iTXt", _XMP_PNG_KEY.encode() + b"\x00" + header + text)
        start, end = scan.xmp_span
        return data[:start] + chunk + data[end:]
    chunk = _png_chunk(b"iTXt", _XMP_PNG_KEY.encode() + b"\x00\x00\x00\x00\x00" + packet)
    chunks, _ = _png_chunks(data)
    idat = next(s for t, s, _ in chunks if t == b"IDAT")  # XMP before the image data
    return data[:idat] + chunk + data[idat:]


def _webp_canvas(data: bytes, fourcc: bytes, start: int) -> tuple[int, int, bool]:
    """(width, height, has alpha) from a simple WebP's VP8 or VP8L header."""
    p = data[start + 8 : start + 8 + 10]
    if fourcc == b"VP8 " and p[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", p[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if fourcc == b"VP8L" and p[:1] == b"\x2f":
        bits = int.from_bytes(p[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    raise ValueError("unreadable VP8/VP8L header")


def _put_webp(data: bytes, scan: Scan, packet: bytes) -> bytes:
    chunk = b"XMP " + len(packet).to_bytes(4, "little") + packet + b"\x00" * (len(packet) & 1)
    chunks, limit = _riff_chunks(data)
    riff = bytearray(data[:limit])
    if scan.xmp_span is not None:
        start, end = scan.xmp_span
        riff[start:end] = chunk
    else:
        # XMP comes after the image data and EXIF, before unknown chunks (WebP container spec).
        kinds = (b"VP8 ", b"VP8L", b"ALPH", b"ANMF", b"EXIF")
        at = max(e for t, _, e in chunks if t in kinds)
        riff[at:at] = chunk
        if chunks[0][0] != b"VP8X":  # a simple file needs the extended header to carry XMP
            fourcc, start, _ = next(c for c in chunks if c[0] in (b"VP8 ", b"VP8L"))
            width, height, alpha = _webp_canvas(data, fourcc, start)
            present = {t for t, _, _ in chunks}
            flags = 0x04 | (0x10 if alpha or b"ALPH" in present else 0)
            flags |= (0x20 if b"ICCP" in present else 0) | (0x08 if b"EXIF" in present else 0)
            canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
            riff[12:12] = b"VP8X" + (10).to_bytes(4, "little") + bytes((flags, 0, 0, 0)) + canvas
    if riff[12:16] == b"VP8X":
        riff[20] |= 0x04  # the XMP flag
    riff[4:8] = (len(riff) - 8).to_bytes(4, "little")
    return bytes(riff) + data[limit:]


_WRITERS = {"JPEG": _put_jpeg, "PNG": _put_png, "WEBP": _put_webp}

#: The formats :func:`put_xmp` writes into.
WRITABLE_FORMATS = frozenset(_WRITERS)


def put_xmp(data: bytes, scan: Scan, packet: bytes) -> bytes:
    """``data`` with ``packet`` as its XMP packet, where ``scan`` (of ``data``) found the old
    one or where the format's specification puts a new one. Raises ValueError (a packet too
    large for its segment, an unreadable header), StopIteration (no image data to place the
    packet before) or struct.error (a broken multi-picture index)."""
    return _WRITERS[scan.format](data, scan, packet)
