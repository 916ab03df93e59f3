"""AI labels in image files: write China's GB 45438-2025 implicit label and the IPTC digital
source type, and read every AI signal a file carries.

    from aigcguard.provenance.credentials.labels import read_labels, write_label
    write_label("gen.png", "gen.png", producer="001191100000000000000000X00001", produce_id="42")
    report = read_labels("upload.jpg")  # report.ai_labelled, report.gb45438, ...

What :func:`write_label` adds, as one ``rdf:Description`` merged into the file's XMP packet:

- the GB 45438-2025 implicit label (see :mod:`.gb45438`): ``TC260:AIGC``, a JSON object of
  strings with the fields of :data:`GB45438_FIELDS`;
- ``Iptc4xmpExt:DigitalSourceType`` (see :mod:`.iptc`), by default
  :data:`TRAINED_ALGORITHMIC_MEDIA`.

A label or a digital source type the file already carries is kept, never overwritten, and the
result says so. Nothing else changes: the packet is edited as bytes (:mod:`.containers` says
why), our description goes in just before ``</rdf:RDF>``, and the result is parsed back and
checked before it is written. Any edit still breaks a C2PA hard binding, because the manifest
hashes the whole file; the manifest bytes are kept, so its history can still be read.

:func:`read_labels` reports the GB 45438 label wherever it is (XMP; a PNG text chunk ``AIGC``,
as Doubao writes it; EXIF ImageDescription/UserComment/XPComment, as Tencent Cloud writes it),
the IPTC digital source type, and generator traces (A1111 ``parameters``, ComfyUI ``prompt`` and
``workflow``, NovelAI, InvokeAI, EXIF Software and XMP CreatorTool naming a generator of
:data:`GENERATORS`). Metadata that cannot be parsed is listed in ``unparsable``, never raised.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from PIL import Image

from aigcguard.fileio import atomic_write
from aigcguard.provenance.credentials.containers import (
    MAX_TEXT_BYTES,
    WRITABLE_FORMATS,
    Scan,
    Unparsable,
    put_xmp,
    read_file,
    scan_metadata,
)
from aigcguard.provenance.credentials.gb45438 import (
    GB45438_FIELDS,
    LABEL_AI_GENERATED,
    LABEL_POSSIBLY_AI,
    LABEL_SUSPECTED_AI,
    TC260_NS,
    TC260_PREFIX,
    Gb45438Label,
    is_tc260_aigc,
    label_json,
    looks_like_gb,
    parse_gb,
)
from aigcguard.provenance.credentials.iptc import (
    AI_DIGITAL_SOURCE_TYPES,
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    DIGITAL_SOURCE_TYPE_BASE,
    DIGITAL_SOURCE_TYPES,
    IPTC_EXT_NS,
    TRAINED_ALGORITHMIC_MEDIA,
    source_type_code,
    source_type_uri,
)
from aigcguard.provenance.credentials.xmp import (
    RDF_NS,
    XMP_NS,
    merged_packet,
    new_packet,
    parse_xmp,
    tag_is,
    xmp_values,
)
from aigcguard.results import JsonResult

# The vocabularies and result types of gb45438, iptc and containers stay importable from here.
__all__ = [
    "AI_DIGITAL_SOURCE_TYPES",
    "COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA",
    "DIGITAL_SOURCE_TYPES",
    "DIGITAL_SOURCE_TYPE_BASE",
    "GB45438_FIELDS",
    "GENERATORS",
    "IPTC_EXT_NS",
    "LABEL_AI_GENERATED",
    "LABEL_POSSIBLY_AI",
    "LABEL_SUSPECTED_AI",
    "MAX_VALUE_CHARS",
    "RDF_NS",
    "TC260_NS",
    "TC260_PREFIX",
    "TRAINED_ALGORITHMIC_MEDIA",
    "XMP_NS",
    "Gb45438Label",
    "GeneratorSignal",
    "LabelReport",
    "LabelWritten",
    "Unparsable",
    "read_labels",
    "write_label",
]

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

_A1111_RE = re.compile(r"\bSteps: \d+")
_A1111_MORE_RE = re.compile(r"\b(?:Sampler|Seed|CFG scale): ")

# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSignal(JsonResult):
    """Metadata that names or is written by an AI image generator."""

    source: str  # "png-text", "exif" or "xmp"
    key: str
    value: str  # cut to MAX_VALUE_CHARS
    generator: str


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


# --- reading ----------------------------------------------------------------------------------


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _generator_named(text: str) -> str | None:
    for name, pattern in _GENERATOR_RES:
        if pattern.search(text):
            return name
    return None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if len(text) <= MAX_TEXT_BYTES else None
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
        root = parse_xmp(packet)
    except ValueError as exc:
        f.xmp_error = str(exc)
        f.problems.append(Unparsable("xmp", "", f"unparsable XMP packet: {exc}"))
        return
    f.xmp_root = root
    for value in xmp_values(root, is_tc260_aigc):
        f.gb_label(parse_gb(value, "xmp", "TC260:AIGC"))
    f.dst += xmp_values(root, tag_is(IPTC_EXT_NS, "DigitalSourceType"))
    for value in xmp_values(root, tag_is(XMP_NS, "CreatorTool")):
        if generator := _generator_named(value):
            f.signal("xmp", "xmp:CreatorTool", value, generator)
    # IPTC 2025.1 names the AI system outright; any value is a signal.
    for value in xmp_values(root, tag_is(IPTC_EXT_NS, "AISystemUsed")):
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
        if looks_like_gb(texts.get(key, "")):
            f.gb_label(parse_gb(texts[key].strip(), "exif", key))
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
    if key.lower() == "aigc" or (looks_like_gb(text) and "ContentProducer" in text):
        f.gb_label(parse_gb(text.strip(), "png-text", key))
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


def _findings(scan: Scan) -> _Findings:
    f = _Findings(problems=list(scan.problems))
    if scan.xmp is not None:
        _xmp_findings(scan.xmp, f)
    for item in scan.exif:
        _exif_findings(item, f)
    for key, text in scan.texts:
        _png_text_findings(key, text, f)
    return f


def _best_gb(f: _Findings) -> Gb45438Label | None:
    # The first that parsed (XMP before PNG text before EXIF), else the first broken one.
    return next((g for g in f.gb if g.fields is not None), f.gb[0] if f.gb else None)


def read_labels(path: str | os.PathLike) -> LabelReport:
    """Every AI signal ``path`` carries. ValueError (naming the file) when it is missing, not
    an image, or broken before any metadata could be read; malformed metadata, or a file cut
    short after some of it, is reported in ``unparsable``, never raised."""
    data = read_file(path)
    scan = scan_metadata(data, str(path))
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
        or (dst is not None and source_type_code(dst) in AI_DIGITAL_SOURCE_TYPES)
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
    aigc = label_json(label, producer, produce_id, propagator, propagate_id)
    dst = source_type_uri(digital_source_type)
    name = str(source)
    data = read_file(source)
    scan = scan_metadata(data, name)
    if scan.format not in WRITABLE_FORMATS:
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
                merged_packet(scan.xmp, description)
                if scan.xmp is not None
                else new_packet(description)
            )
            new = put_xmp(data, scan, packet)
        # StopIteration: no image data to put the packet before; struct: a broken MPF index
        except (ValueError, StopIteration, struct.error) as exc:
            raise ValueError(f"{name}: cannot add the label ({exc or 'no image data'})") from None
    # Read back what is about to be written: the labels must be there, as asked.
    check = _findings(scan_metadata(new, name))
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
