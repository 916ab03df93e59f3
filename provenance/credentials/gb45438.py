"""China's GB 45438-2025 implicit label (人工智能生成合成内容标识方法, metadata label): its
fields, how to write one, and how to read one as the platforms write it.

The shape is the one TC260's practice guide and the platforms that ship it use: namespace
:data:`TC260_NS`, prefix ``TC260``, property ``AIGC`` whose value is a JSON object of strings
with the fields of :data:`GB45438_FIELDS`; ``Label`` is "1" (generated), "2" (possibly) or "3"
(suspected).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from aigcguard.results import JsonResult

__all__ = [
    "GB45438_FIELDS",
    "LABEL_AI_GENERATED",
    "LABEL_POSSIBLY_AI",
    "LABEL_SUSPECTED_AI",
    "TC260_NS",
    "TC260_PREFIX",
    "Gb45438Label",
    "is_tc260_aigc",
    "label_json",
    "looks_like_gb",
    "parse_gb",
]

TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
TC260_PREFIX = "TC260"

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

_MAX_AIGC_VALUE = 1 << 20


@dataclass(frozen=True)
class Gb45438Label(JsonResult):
    """A GB 45438 label found in a file."""

    source: str  # "xmp", "png-text" or "exif"
    key: str  # "TC260:AIGC", the PNG keyword, or the EXIF tag name
    fields: dict[str, str] | None  # the JSON object's fields; None when it did not parse
    label: int | None  # 1 generated, 2 possibly, 3 suspected; None when missing or other
    error: str | None = None  # why ``fields`` is None


def is_tc260_aigc(tag: str) -> bool:
    """Whether an XML ``{ns}name`` is the TC260 ``AIGC`` property."""
    # Lenient on the namespace (slash, case) when reading; strict when writing.
    ns, _, local = tag[1:].partition("}")
    return local == "AIGC" and "tc260.org.cn/ns/aigc" in ns.lower()


def parse_gb(text: str, source: str, key: str) -> Gb45438Label:
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


def looks_like_gb(text: str) -> bool:
    """Whether a metadata text looks like a GB 45438 JSON object, worth parsing as one."""
    t = text.lstrip()
    return t.startswith("{") and any(f'"{k}"' in t for k in ("AIGC", "Label", "ContentProducer"))


def label_json(
    label: int,
    producer: str,
    produce_id: str | None,
    propagator: str | None,
    propagate_id: str | None,
) -> str:
    """The label's JSON text, as written; ValueError for a bad label or a non-string field."""
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
