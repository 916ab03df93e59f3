"""Shared fixtures: small real photos from scikit-image, and the shared data folder
(plain helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SHARED


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """A few public-domain photos shipped with scikit-image (RGB uint8)."""
    from skimage import data

    gray = data.camera()
    clock = data.clock()
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "camera": np.repeat(gray[:, :, None], 3, axis=2),
        "clock": np.repeat(clock[:, :, None], 3, axis=2),
        "brick": np.repeat(data.brick()[:, :, None], 3, axis=2),
    }


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    path = SHARED / "photos" / "kodak"
    if not path.is_dir():
        pytest.skip(f"shared Kodak photos not found at {path} (../shared/data beside the project)")
    return path
