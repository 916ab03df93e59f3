"""The shipped detectors' model cards in one line each (``data/model_cards.json``), for places
with room for a line only (the page of ``aigc serve``); the full cards are in data/README.md.

    card = model_card(load("default"))   # {"en": "a small CNN on NPR residuals...", "zh": ...}

A line belongs to a checkpoint's bytes, not its name: each entry carries the sha256 of the file
it describes, and a detector gets the line whose sha256 is that of the file it was loaded from
(:attr:`Detector.sha256 <aigcguard.detectors.base.Detector.sha256>`). A retrained checkpoint
therefore has no line until someone reviews it and records the new sha256 (a test fails until
then), and a detector saved elsewhere, or trained from a shipped one, never borrows one.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from aigcguard.detectors.base import Detector

CARDS_FILE = "model_cards.json"
CARDS_FORMAT = 1
#: the languages every line is written in
LANGUAGES = ("en", "zh")


@lru_cache(maxsize=1)
def model_cards() -> dict[str, dict[str, str]]:
    """The shipped lines by checkpoint file name: ``{"sha256": ..., "en": ..., "zh": ...}``.
    ValueError naming the file and the entry when it is malformed."""
    ref = resources.files("aigcguard.data").joinpath(CARDS_FILE)
    try:
        data = json.loads(ref.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{CARDS_FILE}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != CARDS_FORMAT:
        raise ValueError(f"{CARDS_FILE}: not a model card file of format {CARDS_FORMAT}")
    cards = data.get("cards")
    if not isinstance(cards, dict):
        raise ValueError(f"{CARDS_FILE}: no 'cards' table")
    for name, entry in cards.items():
        _check_entry(name, entry)
    return cards


def _check_entry(name: str, entry: Any) -> None:
    wanted = ("sha256", *LANGUAGES)
    bad = [k for k in wanted if not isinstance(entry, dict) or not _text(entry.get(k))]
    if bad:
        raise ValueError(f"{CARDS_FILE}: entry {name!r} lacks {', '.join(bad)}")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def model_card(detector: Detector) -> dict[str, str] | None:
    """The detector's one-line card by language (``{"en": ..., "zh": ...}``) when it was
    loaded from a shipped checkpoint's exact bytes; None for any other detector."""
    digest = getattr(detector, "sha256", None)
    if digest is None:
        return None
    for entry in model_cards().values():
        if entry["sha256"] == digest:
            return {lang: entry[lang] for lang in LANGUAGES}
    return None
