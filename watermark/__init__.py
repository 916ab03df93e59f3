"""Invisible, keyed watermarks: embed on CPU or GPU in batches, detect with a p-value.

    from aigcguard.watermark import embed, detect
    marked = embed(images, message=b"id-0042", key="my secret")  # method="tilemark"
    results = detect(marked, key="my secret")

``detect_known`` finds the marks Stable Diffusion and SDXL embed; ``list_methods`` names the
registered methods. A new method is a :class:`WatermarkMethod` subclass in its own module
under ``@register_method("name")`` (the ``METHODS`` registry).
"""

from aigcguard.watermark import methods as _methods  # noqa: F401  (registers the methods)
from aigcguard.watermark.api import WatermarkDetection, detect, embed
from aigcguard.watermark.known import KNOWN_MARKS, detect_known, strongest
from aigcguard.watermark.payload import (
    DEFAULT_KEY,
    DEFAULT_P_THRESHOLD,
    PAYLOAD_BYTES,
    parse_message,
)
from aigcguard.watermark.registry import (
    DEFAULT_METHOD,
    METHODS,
    WatermarkMethod,
    get_method,
    list_methods,
    register_method,
)

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_METHOD",
    "DEFAULT_P_THRESHOLD",
    "KNOWN_MARKS",
    "METHODS",
    "PAYLOAD_BYTES",
    "WatermarkDetection",
    "WatermarkMethod",
    "detect",
    "detect_known",
    "embed",
    "get_method",
    "list_methods",
    "parse_message",
    "register_method",
    "strongest",
]
