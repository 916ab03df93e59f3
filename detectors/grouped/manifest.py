"""Labelled manifests: which picture is real, which generated, and the groups each belongs to.

:func:`load_manifest` reads a CSV with a header: ``file`` (a path, relative to the CSV's
folder unless absolute) and ``label`` (``real`` / ``ai``; also ``generated``, ``fake``, ``0`` /
``1``) are required; ``generator`` and ``source`` are read when present, ``family`` overrides
the family table (:mod:`.families`), every other column is kept as it stands (``crop``,
``camera``...). The wild set's ``manifest.csv`` (``../shared/data/wild/README.md``) is one;
a plain ``file,label,source`` file is another. A row whose file is missing or whose label is
unknown is skipped and named, so one bad row never hides the others.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aigcguard.results import NOT_JSON, JsonResult

from .families import UNKNOWN, family_of

#: label spellings, lower case, to 1 (generated) or 0 (real)
LABELS = {"real": 0, "0": 0, "ai": 1, "generated": 1, "fake": 1, "1": 1}
REAL_FAMILY = "real"


@dataclass(frozen=True)
class Record(JsonResult):
    """One labelled picture. ``label`` 1 = generated; ``family`` is ``real`` for a real
    photo; ``source`` is where the picture came from (a repository, a gallery, a camera
    corpus; the file's folder when the manifest names none)."""

    file: str
    path: Path = field(metadata=NOT_JSON)
    label: int
    generator: str
    family: str
    source: str
    columns: Mapping[str, str] = field(default_factory=dict, metadata=NOT_JSON)

    @property
    def is_generated(self) -> bool:
        return self.label == 1


@dataclass(frozen=True)
class Manifest(JsonResult):
    """The usable rows of a manifest, in file order, and one line per skipped row."""

    path: Path
    records: tuple[Record, ...]
    skipped: tuple[str, ...] = ()

    def labels(self) -> np.ndarray:
        """1 = generated, per record."""
        return np.array([r.label for r in self.records], np.int64)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "records": len(self.records),
            "real": sum(1 for r in self.records if r.label == 0),
            "generated": sum(1 for r in self.records if r.label == 1),
            "skipped": list(self.skipped),
        }


def _record(row: Mapping[str, str], root: Path, where: str, check_file: bool) -> Record:
    """One row to a Record, or ValueError saying what is wrong with it."""
    file = (row.get("file") or "").strip()
    if not file:
        raise ValueError(f"{where}: no file")
    label_text = (row.get("label") or "").strip()
    label = LABELS.get(label_text.lower())
    if label is None:
        raise ValueError(f"{where} ({file}): label {label_text!r} is not real or ai")
    path = Path(file) if Path(file).is_absolute() else root / file
    if check_file and not path.is_file():
        raise ValueError(f"{where} ({file}): no such file {path}")
    generator = (row.get("generator") or "").strip() if label else ""
    family = (row.get("family") or "").strip()
    if not family:
        family = family_of(generator) if label else REAL_FAMILY
    source = (row.get("source") or "").strip() or (Path(file).parent.as_posix() or ".")
    known = {"file", "label", "generator", "family", "source"}
    extra = {k: (v or "") for k, v in row.items() if k and k not in known}
    return Record(file, path, label, generator or (UNKNOWN if label else ""), family, source, extra)


def load_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """The records of a CSV manifest (see the module docstring). Raises ValueError when the
    file cannot be read or lacks the ``file`` / ``label`` columns; rows that cannot be used
    are listed in ``skipped`` (``row N (FILE): why``). ``check_files=False`` keeps rows whose
    file is missing (for a listing; scoring will then name them)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read the manifest ({exc})") from None
    missing = [c for c in ("file", "label") if c not in header]
    if missing:
        raise ValueError(f"{path}: the manifest has no {' or '.join(missing)} column")
    root = path.parent
    records, skipped, seen = [], [], set()
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"row {i}"
        try:
            rec = _record(row, root, where, check_files)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if rec.path in seen:
            skipped.append(f"{where} ({rec.file}): listed twice")
            continue
        seen.add(rec.path)
        records.append(rec)
    return Manifest(path, tuple(records), tuple(skipped))
