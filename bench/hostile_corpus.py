"""A corpus of hostile files: what an outside tester throws at an image tool.

    python bench/hostile_corpus.py OUT_DIR [--light]

Writes at least 70 entries into OUT_DIR and a ``manifest.json`` beside them (name, what the
entry tries, whether it is a usable picture). Kinds, each with several variants:

- shapes that cost memory or break resizes: thin and long (5 x 50,000, 64 x 300,000), tiny
  (1 x 1 to 7 x 7), large within the pixel limit (8000 x 7999), headers that declare huge sizes
  in a few hundred bytes (JPEG, PNG, GIF, BMP, TIFF), decompression bombs;
- broken files: truncated at several points, corrupt bytes after a valid signature, empty,
  one byte, wrong extensions, non-images (text, SVG, HTML, PDF and ZIP headers);
- colour modes and containers the loader must convert: 16-bit, CMYK, palette with
  transparency, 1-bit, float TIFF, animated GIF and PNG, ICO, AVIF, MPO;
- metadata attacks on the credential and label readers: garbage C2PA (JUMBF) segments and
  chunks, a huge XMP packet, XMP with entity expansion (billion laughs) and an external entity,
  malformed EXIF orientation;
- folder oddities: a symbolic link loop, a dangling link, a directory named like a picture.

``--light`` leaves out the entries that take more than a moment to decode (for the tests).
Everything is generated here from seeded noise; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RNG_SEED = 18


@dataclass(frozen=True)
class Entry:
    name: str  # file (or folder entry) name inside the corpus folder
    what: str  # the attack, in a few words
    picture: bool  # a usable picture: the tools must process it, not only report it
    heavy: bool = False  # takes more than a moment to decode or check


def _noise(h: int, w: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed + h * 7 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h: int, w: int) -> np.ndarray:
    """A smooth picture (gradients): large sizes in small files, as real sky or walls give."""
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    return np.stack(
        [np.broadcast_to(y, (h, w)), np.broadcast_to(x, (h, w)), (y + x) / 2 % 256], axis=-1
    ).astype(np.uint8)


def _picture(h: int, w: int) -> np.ndarray:
    """Noise for small pictures, gradients for large ones (a 64 x 300,000 PNG of 224 KB)."""
    return _noise(h, w) if h * w <= 1_000_000 else _smooth(h, w)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (RGB, 8 bits) and whose image data
    is ``body`` compressed: a few hundred bytes that promise gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(body))
        + _png_chunk(b"IEND", b"")
    )


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG of zeros at the declared size, compressed in streaming fashion: tiny on disk."""
    row = b"\x00" + b"\x00" * (3 * width)  # filter byte + one RGB row
    comp = zlib.compressobj(9)
    out = [comp.compress(row) for _ in range(height)]
    out.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(out))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG of a few hundred bytes whose frame header declares ``width`` x ``height``: a
    real 8 x 8 JPEG with its SOF0 dimensions rewritten and its scan cut short."""
    small = _encode(Image.fromarray(_noise(8, 8)), "JPEG", quality=50)
    sof = small.index(b"\xff\xc0")
    patched = small[: sof + 5] + struct.pack(">HH", height, width) + small[sof + 9 :]
    sos = patched.index(b"\xff\xda")
    return patched[: sos + 40]


def _gif_declaring(width: int, height: int) -> bytes:
    small = _encode(Image.fromarray(_noise(4, 4)).convert("P"), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def _bmp_declaring(width: int, height: int) -> bytes:
    small = bytearray(_encode(Image.fromarray(_noise(4, 4)), "BMP"))
    small[18:26] = struct.pack("<ii", width, height)
    return bytes(small)


def _retag_tiff(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the ImageWidth (256) and ImageLength (257) tags of a little-endian TIFF."""
    buf = bytearray(data)
    (ifd,) = struct.unpack_from("<I", buf, 4)
    (count,) = struct.unpack_from("<H", buf, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", buf, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                struct.pack_into("<HHIHH", buf, at, tag, 4, 1, 0, 0)
            struct.pack_into("<HHII", buf, at, tag, 4, 1, value)  # LONG
    return bytes(buf)


def _jpeg_with_segment(marker: int, payload: bytes, size: int = 64) -> bytes:
    """A small JPEG with one more APPn segment (``marker``) right after SOI."""
    jpeg = _encode(Image.fromarray(_noise(size, size)), "JPEG", quality=90)
    seg = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


def _xmp_jpeg(xmp: str) -> bytes:
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode("utf-8")
    return _jpeg_with_segment(0xE1, payload[:65000])


_BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + ']><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'Iptc4xmpExt:DigitalSourceType="&lol9;"/></rdf:RDF></x:xmpmeta>'
)
_EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="&ext;"/></rdf:RDF></x:xmpmeta>'
)


def _exif_orientation(value: int) -> bytes:
    im = Image.fromarray(_noise(48, 64))
    exif = Image.Exif()
    exif[0x0112] = value
    return _encode(im, "JPEG", exif=exif.tobytes())


def _animated(fmt: str, frames: int, size: int = 64) -> bytes:
    ims = [Image.fromarray(_noise(size, size, seed=i)) for i in range(frames)]
    if fmt == "GIF":
        ims = [im.convert("P") for im in ims]
    return _encode(ims[0], fmt, save_all=True, append_images=ims[1:], duration=40, loop=0)


def _mode(mode: str, fmt: str, size: int = 64) -> bytes:
    base = Image.fromarray(_noise(size, size))
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)
        return _encode(Image.fromarray(arr), fmt)
    if mode == "F":
        arr = np.asarray(base.convert("L"), np.float32) / 255.0
        return _encode(Image.fromarray(arr, "F"), fmt)
    if mode == "PA":
        return _encode(base.convert("P"), fmt, transparency=0)
    return _encode(base.convert(mode), fmt)


def _files() -> list[tuple[Entry, Callable[[], bytes]]]:
    """Every file entry and the function that writes its bytes."""
    good = Image.fromarray(_noise(96, 128))
    jpeg, png = _encode(good, "JPEG", quality=85), _encode(good, "PNG")
    webp, gif = _encode(good, "WEBP", quality=80), _encode(good.convert("P"), "GIF")
    bmp, tiff = _encode(good, "BMP"), _encode(good, "TIFF")
    out: list[tuple[Entry, Callable[[], bytes]]] = []

    def add(name, what, picture, make, heavy=False):
        out.append((Entry(name, what, picture, heavy), make))

    # shapes
    for h, w in [
        (5, 50_000),
        (50_000, 5),
        (64, 300_000),
        (1, 1),
        (3, 3),
        (7, 7),
        (7, 4000),
        (4000, 7),
        (8, 8),
        (2, 2000),
    ]:
        add(
            f"shape_{h}x{w}.png",
            f"{h} x {w} pixels",
            True,
            lambda h=h, w=w: _encode(Image.fromarray(_picture(h, w)), "PNG"),
            heavy=h * w > 1e6,
        )
    add(
        "large_8000x7999.jpg",
        "8000 x 7999 real JPEG (64 MP)",
        True,
        lambda: _encode(Image.fromarray(_smooth(7999, 8000)), "JPEG", quality=60),
        heavy=True,
    )
    add(
        "large_zeros_7999x7999.png",
        "64 MP of zeros in a small PNG",
        True,
        lambda: _png_bomb(7999, 7999),
        heavy=True,
    )
    # headers declaring more than the file holds
    add(
        "declares_8000x7999.jpg",
        "633-byte-class JPEG declaring 8000 x 7999",
        False,
        lambda: _jpeg_declaring(8000, 7999),
    )
    add(
        "declares_65535x65535.jpg",
        "JPEG declaring 65535 x 65535",
        False,
        lambda: _jpeg_declaring(65535, 65535),
    )
    add(
        "declares_100000x100000.png",
        "PNG declaring 100000 x 100000",
        False,
        lambda: _png_declaring(100_000, 100_000),
    )
    add(
        "declares_5x50000.png",
        "PNG declaring 5 x 50,000 with no data",
        False,
        lambda: _png_declaring(50_000, 5),
    )
    add(
        "declares_65535x65535.gif",
        "GIF declaring 65535 x 65535",
        False,
        lambda: _gif_declaring(65535, 65535),
    )
    add(
        "declares_30000x30000.bmp",
        "BMP declaring 30000 x 30000",
        False,
        lambda: _bmp_declaring(30_000, 30_000),
    )
    add(
        "declares_negative_height.bmp",
        "BMP with a negative (top-down) huge height",
        False,
        lambda: _bmp_declaring(4, -2_000_000),
    )
    add(
        "declares_40000x40000.tif",
        "TIFF declaring 40000 x 40000",
        False,
        lambda: _retag_tiff(tiff, 40_000, 40_000),
    )
    add(
        "bomb_20000x20000.png",
        "decompression bomb: 400 MP of zeros",
        False,
        lambda: _png_bomb(20_000, 20_000),
        heavy=True,
    )
    # truncated and corrupt
    for fmt, data in [
        ("jpg", jpeg),
        ("png", png),
        ("webp", webp),
        ("gif", gif),
        ("bmp", bmp),
        ("tif", tiff),
    ]:
        for frac in (0.1, 0.5, 0.9):
            add(
                f"truncated_{int(frac * 100)}.{fmt}",
                f"{fmt} cut at {frac:.0%}",
                False,
                lambda data=data, frac=frac: data[: max(8, int(len(data) * frac))],
            )
        add(
            f"corrupt_body.{fmt}",
            f"{fmt} signature, then noise",
            False,
            lambda data=data: (
                data[:16] + bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8))
            ),
        )
    add("empty.jpg", "0 bytes", False, lambda: b"")
    add("one_byte.png", "1 byte", False, lambda: b"\x89")
    add("soi_only.jpg", "JPEG start marker alone", False, lambda: b"\xff\xd8")
    add("png_is_named.jpg", "a PNG named .jpg", True, lambda: png)
    add("jpeg_is_named.png", "a JPEG named .png", True, lambda: jpeg)
    add("text_is_named.png", "text named .png", False, lambda: b"hello, world\n" * 20)
    add("notes.txt", "a text file in the folder", False, lambda: b"not a picture\n")
    add(
        "drawing.svg",
        "an SVG (not decoded)",
        False,
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    )
    add("page.html.jpg", "HTML named .jpg", False, lambda: b"<html><body>hi</body></html>")
    add("doc_is_named.jpg", "a PDF header named .jpg", False, lambda: b"%PDF-1.4\n1 0 obj")
    add("zip_is_named.png", "a ZIP named .png", False, lambda: b"PK\x03\x04" + b"\x00" * 200)
    # colour modes and containers
    for mode, fmt, ext in [
        ("I;16", "PNG", "png"),
        ("CMYK", "JPEG", "jpg"),
        ("PA", "PNG", "png"),
        ("1", "PNG", "png"),
        ("F", "TIFF", "tif"),
        ("LA", "PNG", "png"),
        ("RGBA", "WEBP", "webp"),
        ("L", "JPEG", "jpg"),
    ]:
        add(
            f"mode_{mode.replace(';', '')}.{ext}",
            f"{mode} {fmt}",
            True,
            lambda mode=mode, fmt=fmt: _mode(mode, fmt),
        )
    add("animated_200.gif", "animated GIF, 200 frames", True, lambda: _animated("GIF", 200))
    add("animated.png", "animated PNG (APNG)", True, lambda: _animated("PNG", 20))
    add("icon.ico", "ICO", True, lambda: _encode(good, "ICO"))
    add("picture.avif", "AVIF", True, lambda: _encode(good, "AVIF"))
    add("stereo.mpo", "MPO", True, lambda: _encode(good, "MPO"))
    # metadata attacks
    add(
        "c2pa_garbage.jpg",
        "APP11 JUMBF segment of noise",
        True,
        lambda: _jpeg_with_segment(0xEB, b"JP" + bytes(range(256)) * 20),
    )
    add(
        "c2pa_truncated_box.jpg",
        "APP11 JUMBF box that claims 4 GB",
        True,
        lambda: _jpeg_with_segment(0xEB, b"JP\x02\x11\x00\x00\x00\x01\xff\xff\xff\xffjumb"),
    )
    add(
        "c2pa_garbage.png",
        "caBX chunk of noise",
        True,
        lambda: png[:33] + _png_chunk(b"caBX", bytes(range(256)) * 40) + png[33:],
    )
    add("xmp_huge.jpg", "a 64 KB XMP packet", True, lambda: _xmp_jpeg(f"<x>{'A' * 64_000}</x>"))
    add(
        "xmp_billion_laughs.jpg",
        "XMP with exponential entity expansion",
        True,
        lambda: _xmp_jpeg(_BILLION_LAUGHS),
    )
    add(
        "xmp_external_entity.jpg",
        "XMP with an external entity (file:///etc/passwd)",
        True,
        lambda: _xmp_jpeg(_EXTERNAL_ENTITY),
    )
    add("xmp_not_xml.jpg", "XMP segment that is not XML", True, lambda: _xmp_jpeg("<<<>>>\x00"))
    add(
        "png_itxt_flood.png",
        "2,000 iTXt chunks",
        True,
        lambda: (
            png[:33]
            + b"".join(_png_chunk(b"tEXt", b"k\x00" + b"v" * 50) for _ in range(2000))
            + png[33:]
        ),
    )
    for value in (0, 9, 65535):
        add(
            f"exif_orientation_{value}.jpg",
            f"EXIF orientation {value}",
            True,
            lambda value=value: _exif_orientation(value),
        )
    add(
        "exif_garbage.jpg",
        "APP1 Exif segment of noise",
        True,
        lambda: _jpeg_with_segment(0xE1, b"Exif\x00\x00" + bytes(range(256)) * 8),
    )
    # good pictures the tools must process in the same batch
    for i, size in enumerate([(256, 256), (480, 640), (1024, 768)]):
        add(
            f"good_{i}.jpg",
            f"ordinary {size[1]} x {size[0]} JPEG",
            True,
            lambda size=size: _encode(Image.fromarray(_noise(*size)), "JPEG", quality=90),
        )
    return out


def build(folder: str | os.PathLike, *, light: bool = False) -> list[Entry]:
    """Write the corpus into ``folder`` (created) and return its entries, manifest included."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for entry, make in _files():
        if light and entry.heavy:
            continue
        (folder / entry.name).write_bytes(make())
        entries.append(entry)
    # folder oddities (a link loop, a dangling link, a directory named like a picture)
    loop = folder / "loop"
    if not loop.is_symlink():
        loop.symlink_to(".", target_is_directory=True)
    dangling = folder / "dangling.jpg"
    if not dangling.is_symlink():
        dangling.symlink_to(folder / "no-such-file.jpg")
    (folder / "folder_named.jpg").mkdir(exist_ok=True)
    entries += [
        Entry("loop", "symbolic link to its own folder", False),
        Entry("dangling.jpg", "dangling symbolic link", False),
        Entry("folder_named.jpg", "a directory named like a picture", False),
        Entry("manifest.json", "this list, a JSON file in the folder", False),
    ]
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--light", action="store_true", help="leave out the slow entries")
    args = ap.parse_args()
    entries = build(args.out, light=args.light)
    print(f"{len(entries)} entries in {args.out} ({sum(e.picture for e in entries)} pictures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
