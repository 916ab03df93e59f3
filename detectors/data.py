"""Labelled pictures for training and evaluating detectors: folders, and the CIFAKE archive.

Splits are by a hash of each file's name, so a picture stays in the same split whatever else
is added or removed, and the held-out test set never depends on a random seed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aigcguard.imageio import iter_image_paths, load_images


def load_folder(folder: str | Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Every readable image under ``folder`` as H x W x 3 uint8; returns (images, names,
    errors) so a bad file is reported, not fatal."""
    loaded, failed = load_images(iter_image_paths([folder]))
    images = [img.pixels.permute(1, 2, 0).numpy() for img in loaded]
    return images, [img.source for img in loaded], [str(e) for e in failed]


def read_cifake(path: str | Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """CIFAKE from its zip (``REAL/*.jpg`` label 0, ``FAKE/*.jpg`` label 1), read in place."""
    images, labels, names = [], [], []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                top = info.filename.split("/", 1)[0]
                if info.is_dir() or top not in ("REAL", "FAKE"):
                    continue
                with Image.open(io.BytesIO(zf.read(info))) as im:
                    images.append(np.asarray(im.convert("RGB")))
                labels.append(1 if top == "FAKE" else 0)
                names.append(info.filename)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the CIFAKE archive ({exc})") from None
    if not images:
        raise ValueError(f"{path}: no REAL/ or FAKE/ images in the archive")
    return images, np.asarray(labels, np.int64), names


def split_of(name: str, fractions: Sequence[float]) -> int:
    """Which split (index into ``fractions``) a file name falls in, by its SHA-256."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return int(np.searchsorted(edges / edges[-1], u, side="right"))


def split_names(names: Sequence[str], fractions: Sequence[float]) -> list[np.ndarray]:
    """Indices of ``names`` per split."""
    which = np.array([split_of(n, fractions) for n in names])
    return [np.nonzero(which == k)[0] for k in range(len(fractions))]
