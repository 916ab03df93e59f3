"""Labelled pictures for training and evaluating detectors: folders, and the CIFAKE archive.

Splits are by a hash of each file's name, so a picture stays in the same split whatever else
is added or removed, and the held-out test set never depends on a random seed.
:func:`load_training_set` gives the :class:`TrainingSet` every kind's training takes.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigcguard.imageio import iter_image_paths, load_images


class TrainingError(ValueError):
    """A kind's training could not start or run with what it was given (the message says
    why; no detector was written)."""


def load_folder(folder: str | Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Every readable image under ``folder`` as H x W x 3 uint8; returns (images, names,
    errors) so a bad file, and a folder entry that is not taken (not a picture, a link
    loop, ...), is reported, not fatal. Names are relative to ``folder`` (a file's own name
    when ``folder`` is a file): a split by name then stays put when the folder moves."""
    skipped: list[str] = []
    paths = iter_image_paths([folder], on_skip=lambda path, why: skipped.append(f"{path}: {why}"))
    loaded, failed = load_images(paths)
    images = [img.pixels.permute(1, 2, 0).numpy() for img in loaded]
    base = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    return (
        images,
        [_relative(img.source, base) for img in loaded],
        [
            *skipped,
            *(str(e) for e in failed),
        ],
    )


def _relative(source: str | Path, base: Path) -> str:
    try:
        return Path(source).relative_to(base).as_posix()
    except ValueError:
        return Path(source).name


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


def to_tensors(arrays: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """H x W x 3 uint8 arrays as the uint8 3 x H x W tensors detectors score."""
    return [torch.from_numpy(np.array(a, np.uint8)).permute(2, 0, 1) for a in arrays]


@dataclass(frozen=True)
class TrainingSet:
    """Labelled pictures (H x W x 3 uint8 arrays; label 1 = generated, 0 = real) and their
    split: ``train`` and ``val`` are indices into ``images``. The validation part calibrates
    the trained detector and sets its threshold."""

    images: Sequence[np.ndarray]
    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray

    def _part(self, part: str) -> np.ndarray:
        if part not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', not {part!r}")
        return getattr(self, part)

    def arrays(self, part: str) -> list[np.ndarray]:
        """The pictures of ``part`` ("train" or "val"), as H x W x 3 arrays."""
        return [self.images[i] for i in self._part(part)]

    def tensors(self, part: str) -> list[torch.Tensor]:
        """The pictures of ``part`` as uint8 3 x H x W tensors."""
        return to_tensors(self.arrays(part))

    def part_labels(self, part: str) -> np.ndarray:
        return self.labels[self._part(part)]


def load_training_set(
    real: str | Path,
    fake: str | Path,
    *,
    val_fraction: float = 0.15,
    on_skip: Callable[[str], None] = lambda error: None,
) -> TrainingSet:
    """The readable pictures of the ``real`` and ``fake`` folders, split by file-name hash:
    ``val_fraction`` of them validate. ``on_skip`` hears about each unreadable file. Raises
    :class:`TrainingError` when a folder has no readable picture or a split lacks a class."""
    reals, real_names, errs_r = load_folder(real)
    fakes, fake_names, errs_f = load_folder(fake)
    for e in errs_r + errs_f:
        on_skip(e)
    if not reals or not fakes:
        raise TrainingError("both --real and --fake need readable images")
    labels = np.array([0] * len(reals) + [1] * len(fakes))
    val, train = split_names(real_names + fake_names, (val_fraction, 1 - val_fraction))
    if len(set(labels[val].tolist())) < 2 or len(set(labels[train].tolist())) < 2:
        raise TrainingError("too few images to give both splits both classes")
    return TrainingSet(images=reals + fakes, labels=labels, train=train, val=val)
