"""AI labels in image files: write China's GB 45438-2025 implicit label and the IPTC digital
source type, and read every AI signal a file carries.

    from aigcguard.provenance.labels import read_labels, write_label
    write_label("gen.png", "gen.png", producer="001191100000000000000000X00001", produce_id="42")
    report = read_labels("upload.jpg")  # report.ai_labelled, report.gb45438, ...

What :func:`write_label` adds, as one ``rdf:Description`` merged into the file's XMP packet:

- the GB 45438-2025 implicit label (人工智能生成合成内容标识方法, metadata label), in the shape
  TC260's practice guide and the platforms that ship it use: namespace :data:`TC260_NS`, prefix
  ``TC260``, property ``AIGC`` whose value is a JSON object of strings with the fields of
  :data:`GB45438_FIELDS`; ``Label`` is "1" (generated), "2" (possibly) or "3" (suspected);
- ``Iptc4xmpExt:DigitalSourceType``, by default :data:`TRAINED_ALGORITHMIC_MEDIA`.

A label or a digital source type the file already carries is kept, never overwritten, and the
result says so. Nothing else changes: pixels, EXIF, ICC, other XMP properties, C2PA/JUMBF
segments and PNG text chunks stay byte for byte. Any edit still breaks a C2PA hard binding,
because the manifest hashes the whole file; the manifest bytes are kept, so its history can
still be read.

Why the container code is ours. Pillow re-encodes pixels when it saves. pyexiv2 2.16 (exiv2
0.28) re-serializes what it touches: in our tests it rewrote a JPEG comment, re-encoded a PNG's
EXIF in the other byte order, and recompressed a PNG iTXt chunk without its language tag. So the
XMP packet is edited as bytes. The JPEG APP1 segment, PNG ``iTXt`` ``XML:com.adobe.xmp`` chunk
or WebP ``XMP `` chunk is replaced (or added), and our description goes in just before
``</rdf:RDF>``. The result is parsed back and checked before it is written.

:func:`read_labels` reports the GB 45438 label wherever it is (XMP; a PNG text chunk ``AIGC``,
as Doubao writes it; EXIF ImageDescription/UserComment/XPComment, as Tencent Cloud writes it),
the IPTC digital source type, and generator traces (A1111 ``parameters``, ComfyUI ``prompt`` and
``workflow``, NovelAI, InvokeAI, EXIF Software and XMP CreatorTool naming a generator of
:data:`GENERATORS`). Metadata that cannot be parsed is listed in ``unparsable``, never raised.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from PIL import Image

from aigcguard.fileio import atomic_write
from aigcguard.imageio import READ_FORMATS
from aigcguard.results import JsonResult

# --- namespaces and codes ---------------------------------------------------------------------

TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
TC260_PREFIX = "TC260"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DIGITAL_SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"

#: The JSON fields of the GB 45438-2025 label (Appendix E), in the order written.
GB45438_FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
LABEL_AI_GENERATED = 1
LABEL_POSSIBLY_AI = 2
LABEL_SUSPECTED_AI = 3

#: IPTC NewsCodes digital source types (cv.iptc.org/newscodes/digitalsourcetype), code -> URI.
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    code: DIGITAL_SOURCE_TYPE_BASE + code
    for code in (
        "digitalCapture",
        "computationalCapture",
        "negativeFilm",
        "positiveFilm",
        "print",
        "humanEdits",
        "minorHumanEdits",
        "compositeCapture",
        "algorithmicallyEnhanced",
        "digitalCreation",
        "digitalArt",
        "dataDrivenMedia",
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "compositeSynthetic",
        "algorithmicMedia",
        "screenCapture",
        "virtualRecording",
        "composite",
    )
}
TRAINED_ALGORITHMIC_MEDIA = DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = DIGITAL_SOURCE_TYPES[
    "compositeWithTrainedAlgorithmicMedia"
]
#: The codes that say a trained model made the content. ``algorithmicMedia`` and
#: ``compositeSynthetic`` are left out: IPTC defines them without a trained model.
AI_DIGITAL_SOURCE_TYPES = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
)

#: Generators recognised in EXIF Software, XMP CreatorTool and PNG Software/Source text:
#: (name, case-insensitive pattern), first match wins. The patterns are narrow because these
#: fields also hold ordinary software names. "imagen" is Spanish for "image", so Imagen needs
#: "Google" or a version number beside it.
GENERATORS: tuple[tuple[str, str], ...] = (
    ("Midjourney", r"midjourney"),
    # "DALL·E": the dot may arrive as "?" (ASCII-only EXIF writers) or "Â·" (UTF-8 as Latin-1).
    ("DALL-E / OpenAI", r"\bdall(?:\W|Â·)?e\b|openai|chatgpt|gpt-image"),
    ("Adobe Firefly", r"firefly"),
    ("Google Imagen / Gemini", r"google\s*(?:ai|imagen|gemini)|\bimagen\s*\d|\bgemini\b"),
    ("Ideogram", r"ideogram"),
    ("Leonardo.Ai", r"leonardo[\s.]?ai"),
    (
        "FLUX / Black Forest Labs",
        r"black\s*forest\s*labs|\bflux(?:\.\d|[\s.-]*(?:dev|schnell|pro))",
    ),
    ("NovelAI", r"novel\s?ai"),
    ("ComfyUI", r"comfy\s?ui"),
    ("Stable Diffusion WebUI (A1111)", r"automatic1111|\ba1111\b|stable[\s-]?diffusion[\s-]?web"),
    ("InvokeAI", r"invoke\s?ai"),
    ("Fooocus", r"fooocus"),
    ("Stable Diffusion / Stability AI", r"stable[\s_-]?diffusion|stability\s?ai|dreamstudio|sdxl"),
    ("Microsoft Designer / Bing Image Creator", r"bing\s*image\s*creator|microsoft\s*designer"),
    ("Doubao / Jimeng (ByteDance)", r"doubao|jimeng|dreamina|豆包|即梦"),
    ("Kling (Kuaishou)", r"kling\s*ai|可灵"),
    ("Tongyi Wanxiang (Alibaba)", r"tongyi|wanxiang|通义万相"),
    ("Wenxin Yige (Baidu)", r"wenxin\s*yige|文心一格"),
)
_GENERATOR_RES = tuple((name, re.compile(p, re.IGNORECASE)) for name, p in GENERATORS)

#: Longest metadata value a report repeats; the rest is cut and marked with an ellipsis.
MAX_VALUE_CHARS = 200

_MAX_FILE_BYTES = 1 << 30  # the whole file is read; metadata lives anywhere in a PNG or WebP
_MAX_TEXT_BYTES = 16 << 20  # inflated PNG text, XMP packets and JSON considered at most

_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_PNG_KEY = "XML:com.adobe.xmp"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_JPEG_SEGMENT = 0xFFFF - 2  # payload bytes one marker segment can hold
_MAX_AIGC_VALUE = 1 << 20

_A1111_RE = re.compile(r"\bSteps: \d+")
_A1111_MORE_RE = re.compile(r"\b(?:Sampler|Seed|CFG scale): ")
_RDF_CLOSE_RE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?RDF\s*>")
_FORBIDDEN_XML_RE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)

# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gb45438Label(JsonResult):
    """A GB 45438 label found in a file."""

    source: str  # "xmp", "png-text" or "exif"
    key: str  # "TC260:AIGC", the PNG keyword, or the EXIF tag name
    fields: dict[str, str] | None  # the JSON object's fields; None when it did not parse
    label: int | None  # 1 generated, 2 possibly, 3 suspected; None when missing or other
    error: str | None = None  # why ``fields`` is None


@dataclass(frozen=True)
class GeneratorSignal(JsonResult):
    """Metadata that names or is written by an AI image generator."""

    source: str  # "png-text", "exif" or "xmp"
    key: str
    value: str  # cut to MAX_VALUE_CHARS
    generator: str


@dataclass(frozen=True)
class Unparsable(JsonResult):
    """A piece of metadata that is there but could not be read."""

    source: str
    key: str
    error: str


@dataclass(frozen=True)
class LabelReport(JsonResult):
    """Every AI signal one file carries; ``ai_labelled`` is true when any of them says AI."""

    path: str
    format: str  # JPEG, PNG, WEBP, or another format as Pillow names it
    gb45438: Gb45438Label | None
    digital_source_type: str | None  # as written in the file (normally a URI)
    generator_signals: list[GeneratorSignal]
    unparsable: list[Unparsable]
    ai_labelled: bool


@dataclass(frozen=True)
class LabelWritten(JsonResult):
    """What :func:`write_label` left in ``path``: each label was ``written`` or ``kept``."""

    path: str
    format: str
    gb45438: dict[str, str] | None  # the label the file now carries (None: a kept one is broken)
    gb45438_action: str  # "written" or "kept"
    digital_source_type: str | None
    digital_source_type_action: str  # "written", "kept" or "skipped" (none asked for)
    changed: bool  # False when the file already carried both: ``path`` holds the source bytes


# --- containers -------------------------------------------------------------------------------


@dataclass
class _Scan:
    """The raw metadata of one file, with where the XMP packet sits."""

    format: str
    xmp: bytes | None = None
    xmp_span: tuple[int, int] | None = None  # the segment or chunk holding it
    xmp_header: bytes = b""  # PNG iTXt: the bytes between keyword and text, kept on rewrite
    exif: list[Any] = field(default_factory=list)  # TIFF blobs or Image.Exif objects
    texts: list[tuple[str, str]] = field(default_factory=list)  # PNG text chunks
    problems: list[Unparsable] = field(default_factory=list)
    complete: bool = True  # the container walk reached its end (required for writing)


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int | None]:
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


def _scan_jpeg(data: bytes) -> _Scan:
    scan = _Scan("JPEG")
    segments, sos = _jpeg_segments(data)
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
    out = inflater.decompress(blob, _MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"inflates to more than {_MAX_TEXT_BYTES:,} bytes")
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


def _scan_png(data: bytes) -> _Scan:
    scan = _Scan("PNG")
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


def _scan_webp(data: bytes) -> _Scan:
    scan = _Scan("WEBP")
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


def _scan_pillow(data: bytes, name: str) -> _Scan:
    """Any other image format: what Pillow exposes (XMP in ``info``, EXIF)."""
    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # only the header is read, never the pixels
            im = Image.open(io.BytesIO(data), formats=[f for f in READ_FORMATS if f in Image.OPEN])
    except Exception as exc:
        raise ValueError(f"{name}: not a recognised image ({type(exc).__name__})") from None
    with im:
        scan = _Scan(im.format or "unknown", complete=False)
        xmp = im.info.get("xmp")
        if isinstance(xmp, (bytes, str)):
            scan.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
        try:
            scan.exif.append(im.getexif())
        except Exception as exc:  # Pillow raises many types on a malformed EXIF block
            scan.problems.append(Unparsable("exif", "", f"unreadable EXIF ({exc})"))
    return scan


def _scan(data: bytes, name: str) -> _Scan:
    if data[:3] == b"\xff\xd8\xff":
        return _scan_jpeg(data)
    if data[:8] == _PNG_SIGNATURE:
        return _scan_png(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _scan_webp(data)
    return _scan_pillow(data, name)


def _read_file(path: str | os.PathLike) -> bytes:
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


# --- parsing ----------------------------------------------------------------------------------


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _generator_named(text: str) -> str | None:
    for name, pattern in _GENERATOR_RES:
        if pattern.search(text):
            return name
    return None


def _parse_xmp(packet: bytes) -> ElementTree.Element:
    """The x:xmpmeta (or bare rdf:RDF) element of an XMP packet; ValueError when unreadable."""
    if len(packet) > _MAX_TEXT_BYTES:
        raise ValueError(f"packet larger than {_MAX_TEXT_BYTES:,} bytes")
    # XMP never needs a DTD; refusing one shuts out entity expansion attacks entirely.
    if _FORBIDDEN_XML_RE.search(packet):
        raise ValueError("DOCTYPE or ENTITY declaration, not allowed in XMP")
    # Cut out the root element: packets carry xpacket wrappers, padding and sometimes NULs.
    for local in (b"xmpmeta", b"RDF"):
        start = re.search(rb"<([A-Za-z_][\w.-]*:)?" + local + rb"[\s/>]", packet)
        if start is None:
            continue
        prefix = re.escape(start.group(1) or b"")
        ends = list(re.finditer(rb"</" + prefix + local + rb"\s*>", packet))
        if not ends:
            tag = (start.group(1) or b"").decode() + local.decode()
            raise ValueError(f"no closing tag for <{tag}>")
        try:
            return ElementTree.fromstring(packet[start.start() : ends[-1].end()])
        except ElementTree.ParseError as exc:
            raise ValueError(f"not well-formed XML ({exc})") from None
    raise ValueError("no x:xmpmeta or rdf:RDF element")


def _xmp_values(root: ElementTree.Element, match) -> list[str]:
    """Values of the properties whose ``{ns}name`` satisfies ``match``, written as attributes
    (exiv2's compact form), element text, or an rdf:resource URI."""
    values = []
    for el in root.iter():
        values += [v for k, v in el.attrib.items() if match(k)]
        if isinstance(el.tag, str) and match(el.tag):
            resource = el.get(f"{{{RDF_NS}}}resource")
            values.append(resource if resource is not None else "".join(el.itertext()))
    return [v.strip() for v in values if v.strip()]


def _is_tc260_aigc(tag: str) -> bool:
    # Lenient on the namespace (slash, case) when reading; strict when writing.
    ns, _, local = tag[1:].partition("}")
    return local == "AIGC" and "tc260.org.cn/ns/aigc" in ns.lower()


def _tag_is(ns: str, name: str):
    tag = f"{{{ns}}}{name}"
    return lambda t: t == tag


def _parse_gb(text: str, source: str, key: str) -> Gb45438Label:
    """A GB 45438 JSON object, bare or inside Tencent's ``{"AIGC": {...}}`` wrapper."""
    fields, error = None, None
    try:
        if len(text) > _MAX_AIGC_VALUE:
            raise ValueError(f"value longer than {_MAX_AIGC_VALUE:,} characters")
        try:
            obj = json.loads(text)
        except ValueError:
            if "&quot;" not in text:
                raise
            obj = json.loads(html.unescape(text))  # some writers escape the JSON twice
        if isinstance(obj, dict) and isinstance(obj.get("AIGC"), dict):
            obj = obj["AIGC"]
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        fields = {
            str(k): v if isinstance(v, str) else "" if v is None else json.dumps(v)
            for k, v in obj.items()
        }
    except RecursionError:
        error = "invalid JSON (nested too deeply)"
    except ValueError as exc:
        error = f"invalid JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc)
    label = None
    if fields is not None and fields.get("Label", "").strip() in ("1", "2", "3"):
        label = int(fields["Label"])
    return Gb45438Label(source, key, fields, label, error)


def _looks_like_gb(text: str) -> bool:
    t = text.lstrip()
    return t.startswith("{") and any(f'"{k}"' in t for k in ("AIGC", "Label", "ContentProducer"))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if len(text) <= _MAX_TEXT_BYTES else None
    except (ValueError, RecursionError):  # a hostile file may nest JSON arbitrarily deep
        return None


def _is_comfy_prompt(obj: Any) -> bool:
    return isinstance(obj, dict) and any(
        isinstance(v, dict) and "class_type" in v for v in obj.values()
    )


def _is_comfy_workflow(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("nodes"), list)


def _is_a1111(text: str) -> bool:
    return bool(_A1111_RE.search(text) and _A1111_MORE_RE.search(text))


def _exif_text(value: Any, *, user_comment: bool = False) -> str:
    """An EXIF value as text: ASCII, UTF-16LE XP* bytes, or a UserComment with its 8-byte
    character-code prefix."""
    if isinstance(value, str):
        return value.replace("\x00", "").strip()
    if isinstance(value, tuple):
        value = bytes(value)
    if not isinstance(value, bytes):
        return str(value)
    if user_comment:
        head, body = value[:8], value[8:]
        if head.startswith(b"UNICODE"):
            # Writers disagree on the byte order (piexif, used by A1111, writes UTF-16BE);
            # for the mostly-ASCII text seen here the zero bytes give it away.
            big = body[0::2].count(0) > body[1::2].count(0)
            return body.decode("utf-16-be" if big else "utf-16-le", "replace").replace("\x00", "")
        if head.startswith(b"JIS"):
            return body.decode("shift_jis", "replace").replace("\x00", "").strip()
        if head.startswith(b"ASCII") or head == b"\x00" * 8:
            value = body
        return value.decode("utf-8", "replace").replace("\x00", "").strip()
    return value.decode("utf-16-le", "replace").replace("\x00", "").strip()


@dataclass
class _Findings:
    gb: list[Gb45438Label] = field(default_factory=list)
    dst: list[str] = field(default_factory=list)
    signals: list[GeneratorSignal] = field(default_factory=list)
    problems: list[Unparsable] = field(default_factory=list)
    xmp_root: ElementTree.Element | None = None
    xmp_error: str | None = None

    def signal(self, source: str, key: str, value: str, generator: str) -> None:
        self.signals.append(GeneratorSignal(source, key, _cut(value.strip()), generator))

    def gb_label(self, label: Gb45438Label) -> None:
        self.gb.append(label)
        if label.error:
            self.problems.append(Unparsable(label.source, label.key, label.error))


def _xmp_findings(packet: bytes, f: _Findings) -> None:
    try:
        root = _parse_xmp(packet)
    except ValueError as exc:
        f.xmp_error = str(exc)
        f.problems.append(Unparsable("xmp", "", f"unparsable XMP packet: {exc}"))
        return
    f.xmp_root = root
    for value in _xmp_values(root, _is_tc260_aigc):
        f.gb_label(_parse_gb(value, "xmp", "TC260:AIGC"))
    f.dst += _xmp_values(root, _tag_is(IPTC_EXT_NS, "DigitalSourceType"))
    for value in _xmp_values(root, _tag_is(XMP_NS, "CreatorTool")):
        if generator := _generator_named(value):
            f.signal("xmp", "xmp:CreatorTool", value, generator)
    # IPTC 2025.1 names the AI system outright; any value is a signal.
    for value in _xmp_values(root, _tag_is(IPTC_EXT_NS, "AISystemUsed")):
        f.signal("xmp", "Iptc4xmpExt:AISystemUsed", value, _generator_named(value) or _cut(value))


_EXIF_IFD = 0x8769
_EXIF_TAGS = {0x010E: "ImageDescription", 0x010F: "Make", 0x0110: "Model", 0x0131: "Software"}
_XP_COMMENT, _USER_COMMENT = 0x9C9C, 0x9286


def _exif_findings(item: Any, f: _Findings) -> None:
    try:
        # Pillow warns, and reads on, when an IFD is cut short: report it as damage.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if isinstance(item, Image.Exif):
                exif = item
            else:
                exif = Image.Exif()
                exif.load(bytes(item))
            texts = {name: _exif_text(exif[t]) for t, name in _EXIF_TAGS.items() if t in exif}
            if _XP_COMMENT in exif:
                texts["XPComment"] = _exif_text(exif[_XP_COMMENT])
            sub = exif.get_ifd(_EXIF_IFD)
            if _USER_COMMENT in sub:
                texts["UserComment"] = _exif_text(sub[_USER_COMMENT], user_comment=True)
    except Exception as exc:  # Pillow raises many types on a malformed EXIF block
        f.problems.append(Unparsable("exif", "", f"unreadable EXIF ({type(exc).__name__}: {exc})"))
        return
    if caught:
        f.problems.append(Unparsable("exif", "", f"partly corrupt EXIF ({caught[0].message})"))
    for key in ("ImageDescription", "UserComment", "XPComment"):
        if _looks_like_gb(texts.get(key, "")):
            f.gb_label(_parse_gb(texts[key].strip(), "exif", key))
    for key in ("UserComment", "ImageDescription"):
        if _is_a1111(texts.get(key, "")):  # A1111 writes its parameters here in JPEG and WebP
            f.signal("exif", key, texts[key], "Stable Diffusion WebUI (A1111)")
    if generator := _generator_named(texts.get("Software", "")):
        f.signal("exif", "Software", texts["Software"], generator)
    # ComfyUI's WebP saver puts "workflow:{json}" in Make and "prompt:{json}" in Model.
    for key, kind in (("Make", "workflow:"), ("Model", "prompt:")):
        text = texts.get(key, "")
        if text.startswith(kind):
            if _json_or_none(text[len(kind) :]) is None:
                f.problems.append(Unparsable("exif", key, f"invalid JSON after '{kind}'"))
            else:
                f.signal("exif", key, text, "ComfyUI")


def _png_text_findings(key: str, text: str, f: _Findings) -> None:
    if key.lower() == "aigc" or (_looks_like_gb(text) and "ContentProducer" in text):
        f.gb_label(_parse_gb(text.strip(), "png-text", key))
    elif key == "parameters":
        if _is_a1111(text):
            f.signal("png-text", key, text, "Stable Diffusion WebUI (A1111)")
    elif key in ("prompt", "workflow"):
        obj = _json_or_none(text)
        if obj is None and text.lstrip().startswith(("{", "[")):
            f.problems.append(Unparsable("png-text", key, "invalid JSON"))
        elif (key == "prompt" and _is_comfy_prompt(obj)) or _is_comfy_workflow(obj):
            f.signal("png-text", key, text, "ComfyUI")
    elif key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        f.signal("png-text", key, text, "InvokeAI")
    elif key in ("Software", "Source"):
        if generator := _generator_named(text):
            f.signal("png-text", key, text, generator)
    elif key == "Comment" and text.lstrip().startswith("{"):
        obj = _json_or_none(text)
        if obj is None:
            f.problems.append(Unparsable("png-text", key, "invalid JSON"))
        elif isinstance(obj, dict) and {"uc", "prompt"} & obj.keys() and "steps" in obj:
            f.signal("png-text", key, text, "NovelAI")  # NovelAI's generation settings


def _findings(scan: _Scan) -> _Findings:
    f = _Findings(problems=list(scan.problems))
    if scan.xmp is not None:
        _xmp_findings(scan.xmp, f)
    for item in scan.exif:
        _exif_findings(item, f)
    for key, text in scan.texts:
        _png_text_findings(key, text, f)
    return f


def _dst_code(value: str) -> str:
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def _best_gb(f: _Findings) -> Gb45438Label | None:
    # The first that parsed (XMP before PNG text before EXIF), else the first broken one.
    return next((g for g in f.gb if g.fields is not None), f.gb[0] if f.gb else None)


def read_labels(path: str | os.PathLike) -> LabelReport:
    """Every AI signal ``path`` carries. ValueError (naming the file) when it is missing, not
    an image, or broken before any metadata could be read; malformed metadata, or a file cut
    short after some of it, is reported in ``unparsable``, never raised."""
    data = _read_file(path)
    scan = _scan(data, str(path))
    if not scan.complete and scan.format in ("JPEG", "PNG", "WEBP"):  # walked byte by byte
        if scan.xmp is None and not scan.exif and not scan.texts:
            raise ValueError(f"{path}: a broken or truncated {scan.format} file, no metadata read")
        scan.problems.append(
            Unparsable(
                "container", scan.format, "the file is broken or truncated; read up to there"
            )
        )
    f = _findings(scan)
    gb = _best_gb(f)
    dst = f.dst[0] if f.dst else None
    ai = (
        (gb is not None and gb.label is not None)
        or (dst is not None and _dst_code(dst) in AI_DIGITAL_SOURCE_TYPES)
        or bool(f.signals)
    )
    return LabelReport(str(path), scan.format, gb, dst, f.signals, f.problems, ai)


# --- writing ----------------------------------------------------------------------------------


def _description(about: str, aigc: str | None, dst: str | None) -> bytes:
    """Our rdf:Description. It declares every prefix it uses, so it fits into any packet."""
    ns = f' xmlns:rdf="{RDF_NS}"'
    body = ""
    if aigc is not None:
        ns += f' xmlns:{TC260_PREFIX}="{TC260_NS}"'
        body += f"\n   <{TC260_PREFIX}:AIGC>{escape(aigc)}</{TC260_PREFIX}:AIGC>"
    if dst is not None:
        ns += f' xmlns:Iptc4xmpExt="{IPTC_EXT_NS}"'
        prop = "Iptc4xmpExt:DigitalSourceType"
        body += f"\n   <{prop}>{escape(dst)}</{prop}>"
    head = f"  <rdf:Description rdf:about={quoteattr(about)}{ns}>"
    return f"{head}{body}\n  </rdf:Description>\n".encode()


def _new_packet(description: bytes) -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        + f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'.encode()
        + description
        + b" </rdf:RDF>\n</x:xmpmeta>\n"
        + b'<?xpacket end="w"?>'
    )


def _merged_packet(packet: bytes, description: bytes) -> bytes:
    # Spliced in before the last </rdf:RDF>: every other byte of the packet stays as it was.
    closes = list(_RDF_CLOSE_RE.finditer(packet))
    if not closes:
        raise ValueError("no </rdf:RDF> to add to")
    at = closes[-1].start()
    return packet[:at] + description + packet[at:]


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
    segments, _ = _jpeg_segments(new)
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


def _put_jpeg(data: bytes, scan: _Scan, packet: bytes) -> bytes:
    segment = _segment(0xE1, _XMP_JPEG_HEADER + packet)
    if scan.xmp_span is not None:
        start, end = scan.xmp_span
    else:
        # A new packet goes after JFIF (APP0) and Exif, where the XMP specification puts it.
        start = 2
        for marker, s, e in _jpeg_segments(data)[0]:
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


def _put_png(data: bytes, scan: _Scan, packet: bytes) -> bytes:
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


def _put_webp(data: bytes, scan: _Scan, packet: bytes) -> bytes:
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


def _label_json(label: int, producer, produce_id, propagator, propagate_id) -> str:
    if label not in (LABEL_AI_GENERATED, LABEL_POSSIBLY_AI, LABEL_SUSPECTED_AI):
        raise ValueError(f"GB 45438 Label must be 1, 2 or 3, got {label!r}")
    if not isinstance(producer, str) or not producer.strip():
        raise ValueError("producer (ContentProducer) must be a non-empty string")
    values = (str(label), producer, produce_id, "", propagator, propagate_id, "")
    for name, value in zip(GB45438_FIELDS, values, strict=True):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    fields = {k: v or "" for k, v in zip(GB45438_FIELDS, values, strict=True)}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _dst_uri(value: str | None) -> str | None:
    if value is None:
        return None
    uri = DIGITAL_SOURCE_TYPES.get(_dst_code(value))
    if uri is None or ("/" in value and value.strip().rstrip("/") != uri):
        known = ", ".join(DIGITAL_SOURCE_TYPES)
        raise ValueError(f"unknown IPTC digital source type {value!r}; known codes: {known}")
    return uri


def write_label(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    producer: str,
    produce_id: str | None = None,
    propagator: str | None = None,
    propagate_id: str | None = None,
    digital_source_type: str | None = TRAINED_ALGORITHMIC_MEDIA,
    label: int = LABEL_AI_GENERATED,
) -> LabelWritten:
    """Write the GB 45438 label and the IPTC digital source type into ``out`` (a copy of
    ``source``, which may be the same path), without re-encoding pixels.

    A label or digital source type already in the file is kept and reported as ``kept``.
    ``digital_source_type`` is an IPTC code or its URI, or None to write none. ``label`` is
    the GB 45438 Label (1 generated, the default; 2 possibly; 3 suspected). ReservedCode1 and
    ReservedCode2 (anti-tamper codes) are written empty. JPEG, PNG and WebP are supported.
    ValueError (naming the file) for a missing, unsupported or broken file, or an existing XMP
    packet that cannot be parsed (merging into it could lose what it holds).
    """
    aigc = _label_json(label, producer, produce_id, propagator, propagate_id)
    dst = _dst_uri(digital_source_type)
    name = str(source)
    data = _read_file(source)
    scan = _scan(data, name)
    if scan.format not in _WRITERS:
        raise ValueError(f"{name}: cannot write labels into {scan.format} files (JPEG, PNG, WebP)")
    if not scan.complete:
        raise ValueError(f"{name}: the {scan.format} structure is truncated or corrupt")
    found = _findings(scan)
    if scan.xmp is not None and found.xmp_root is None:
        raise ValueError(
            f"{name}: its XMP packet cannot be parsed ({found.xmp_error}); not writing into it"
        )
    write_gb, write_dst = not found.gb, dst is not None and not found.dst
    new = data
    if write_gb or write_dst:
        about = ""
        if found.xmp_root is not None:
            first = next(found.xmp_root.iter(f"{{{RDF_NS}}}Description"), None)
            about = first.get(f"{{{RDF_NS}}}about", "") if first is not None else ""
        description = _description(about, aigc if write_gb else None, dst if write_dst else None)
        try:
            packet = (
                _merged_packet(scan.xmp, description)
                if scan.xmp is not None
                else _new_packet(description)
            )
            new = _WRITERS[scan.format](data, scan, packet)
        except (ValueError, StopIteration, struct.error) as exc:  # struct: a broken MPF index
            raise ValueError(f"{name}: cannot add the label ({exc or 'no image data'})") from None
    # Read back what is about to be written: the labels must be there, as asked.
    check = _findings(_scan(new, name))
    gb, now_dst = _best_gb(check), check.dst[0] if check.dst else None
    gb_ok = not write_gb or (gb is not None and gb.fields == json.loads(aigc))
    if not gb_ok or (write_dst and now_dst != dst):
        raise RuntimeError(f"{name}: the label did not read back after merging; file not written")
    same = Path(out).exists() and os.path.samefile(source, out)
    if new is not data or not same:
        with atomic_write(out) as handle:
            handle.write(new)
    return LabelWritten(
        path=str(out),
        format=scan.format,
        gb45438=gb.fields if gb is not None else None,
        gb45438_action="written" if write_gb else "kept",
        digital_source_type=now_dst,
        digital_source_type_action="written" if write_dst else "kept" if found.dst else "skipped",
        changed=new is not data,
    )
