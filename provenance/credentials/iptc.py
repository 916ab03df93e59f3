"""The IPTC digital source type: the vocabulary (cv.iptc.org/newscodes/digitalsourcetype) that
both XMP (``Iptc4xmpExt:DigitalSourceType``) and C2PA actions use to say how a picture was made,
and which of its codes say a trained model made it."""

from __future__ import annotations

__all__ = [
    "AI_DIGITAL_SOURCE_TYPES",
    "COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA",
    "DIGITAL_SOURCE_TYPES",
    "DIGITAL_SOURCE_TYPE_BASE",
    "FINDINGS",
    "IPTC_EXT_NS",
    "TRAINED_ALGORITHMIC_MEDIA",
    "source_type_code",
    "source_type_finding",
    "source_type_uri",
]

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
DIGITAL_SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"

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


#: What a digital source type says about how the picture was made: ``generated`` (an
#: algorithm made all of it), ``partly_generated`` (a composite with generated parts),
#: ``captured`` (a device recorded real life) or, for any other code, ``other``.
#: ``captured`` is IPTC's "original media" group (digitalCapture, and film and prints
#: digitised), computationalCapture (a capture processed on the device, e.g. multi-frame
#: smartphone photos) and compositeCapture (a composite whose elements are all captures).
#: Left out, as "other": minorHumanEdits and humanEdits (an edit: they say nothing of the
#: source), algorithmicallyEnhanced, screenCapture (what was on the screen may be anything),
#: virtualRecording, composite (its elements may or may not be generated), digitalCreation,
#: digitalArt and dataDrivenMedia (made by a person, not recorded).
FINDINGS: dict[str, str] = {
    **dict.fromkeys(("trainedAlgorithmicMedia", "algorithmicMedia"), "generated"),
    **dict.fromkeys(
        ("compositeWithTrainedAlgorithmicMedia", "compositeSynthetic"), "partly_generated"
    ),
    **dict.fromkeys(
        (
            "digitalCapture",
            "computationalCapture",
            "negativeFilm",
            "positiveFilm",
            "print",
            "compositeCapture",
        ),
        "captured",
    ),
}


def source_type_code(value: str) -> str:
    """The code of a digital source type written as a URI or as a bare code."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def source_type_finding(value: str) -> str:
    """:data:`FINDINGS` for a digital source type written as a URI or a bare code."""
    return FINDINGS.get(source_type_code(value), "other")


def source_type_uri(value: str | None) -> str | None:
    """The URI of a known code or URI (None stays None); ValueError listing the known codes."""
    if value is None:
        return None
    uri = DIGITAL_SOURCE_TYPES.get(source_type_code(value))
    if uri is None or ("/" in value and value.strip().rstrip("/") != uri):
        known = ", ".join(DIGITAL_SOURCE_TYPES)
        raise ValueError(f"unknown IPTC digital source type {value!r}; known codes: {known}")
    return uri
