"""Invisible, keyed watermarks: embed on CPU or GPU in batches, detect with a p-value.

    from aigcguard.watermark import embed, detect
    marked = embed(images, message=b"id-0042", key="my secret")  # method="tilemark"
    results = detect(marked, key="my secret")

``detect_known`` finds the marks Stable Diffusion and SDXL embed; ``list_methods`` names the
registered methods. A new method is a :class:`WatermarkMethod` subclass in its own module
under ``@register_method("name")`` (the ``METHODS`` registry, whose built-ins register the
first time it is read).

Names load on first use, so that naming a default (``DEFAULT_KEY``) or the registry does not
import torch and the methods behind them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigcguard.lazy import lazy_exports

_W = "aigcguard.watermark"
_LAZY = {
    "DEFAULT_KEY": f"{_W}.defaults",
    "DEFAULT_METHOD": f"{_W}.defaults",
    "DEFAULT_P_THRESHOLD": f"{_W}.defaults",
    "KNOWN_MARKS": f"{_W}.known",
    "METHODS": f"{_W}.registry",
    "PAYLOAD_BYTES": f"{_W}.payload",
    "WatermarkDetection": f"{_W}.api",
    "WatermarkMethod": f"{_W}.registry",
    "detect": f"{_W}.api",
    "detect_known": f"{_W}.known",
    "embed": f"{_W}.api",
    "get_method": f"{_W}.registry",
    "list_methods": f"{_W}.registry",
    "parse_message": f"{_W}.payload",
    "register_method": f"{_W}.registry",
    "strongest": f"{_W}.known",
}
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

if TYPE_CHECKING:
    from aigcguard.watermark.api import WatermarkDetection, detect, embed
    from aigcguard.watermark.defaults import DEFAULT_KEY, DEFAULT_METHOD, DEFAULT_P_THRESHOLD
    from aigcguard.watermark.known import KNOWN_MARKS, detect_known, strongest
    from aigcguard.watermark.payload import PAYLOAD_BYTES, parse_message
    from aigcguard.watermark.registry import (
        METHODS,
        WatermarkMethod,
        get_method,
        list_methods,
        register_method,
    )

__getattr__ = lazy_exports(__name__, _LAZY)
