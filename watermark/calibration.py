"""The measured false-positive rates shipped in ``aigcguard.data``.

``bench/calibrate_watermark.py`` writes ``watermark_calibration.json``: for each method, how
many unmarked images x keys were tested, how many came out detected at the default threshold,
and the empirical rate at other p-value levels. ``detect`` thresholds on p-values; this file is
the evidence that the p-values mean what they say on real photos.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

CALIBRATION_FILE = "watermark_calibration.json"
CALIBRATION_VERSION = 1


@lru_cache(maxsize=1)
def load_calibration() -> dict:
    """The shipped calibration table, or an empty dict if this install has none."""
    try:
        text = resources.files("aigcguard.data").joinpath(CALIBRATION_FILE).read_text("utf-8")
    except FileNotFoundError:
        return {}
    table = json.loads(text)
    if table.get("version") != CALIBRATION_VERSION:
        raise ValueError(
            f"{CALIBRATION_FILE} has format version {table.get('version')}, "
            f"this release reads {CALIBRATION_VERSION}"
        )
    return table
