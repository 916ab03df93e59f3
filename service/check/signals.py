"""The check signals: one registered function each, run by the Checker in registration order.

A signal is ``fn(checker, picture) -> JsonResult | None`` (None: nothing to report), registered
with :func:`signal`, which says what it needs: ``"file"`` (the picture's file on disk, for its
metadata) or a resource the Checker loaded (``"ledger"``, ``"index"``). A signal whose needs are
missing is not run. ``rule`` is the signal's own verdict rule (see :mod:`.verdict`), for a
signal that brings evidence of a kind the built-in rules do not know.

    @signal("thumbnail_hash", needs=("file",), rule=thumbnail_rule)
    def thumbnail_hash(checker, picture):
        return ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aigcguard.registry import Registry
from aigcguard.results import JsonResult

SIGNALS: Registry[JsonResult | None] = Registry("check signal")
#: what a signal may need: the file on disk, or the Checker's attribute of that name
NEEDS = ("file", "ledger", "index")


@dataclass(frozen=True)
class Picture:
    """What a signal sees: the uint8 3 x H x W ``pixels``, the ``path`` they came from (a
    file when ``on_disk``) and ``found``, the results of the signals that ran before it."""

    pixels: Any
    path: str
    on_disk: bool
    found: Mapping[str, Any]


def signal(
    name: str, *, needs: Sequence[str] = (), rule: Callable | None = None
) -> Callable[[Callable], Callable]:
    """Decorator: register a check signal under ``name`` (its key in the result)."""
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ValueError(f"check signal {name!r} needs {unknown}; known needs: {list(NEEDS)}")
    return SIGNALS.register(name, needs=tuple(needs), rule=rule)


def signal_names() -> list[str]:
    """The registered signals in the order they run: registration order (the ledger reads the
    watermark's result, the binding the ledger's)."""
    return SIGNALS.list(ordered=True)


def can_run(name: str, checker: Any, on_disk: bool) -> bool:
    """Whether what signal ``name`` needs is there for this picture."""
    return all(
        on_disk if need == "file" else getattr(checker, need, None) is not None
        for need in SIGNALS.meta(name).get("needs", ())
    )


@signal("credentials", needs=("file",))
def credentials(checker, picture: Picture):
    from aigcguard.provenance.credentials import c2pa

    return c2pa.verify(picture.path, trust_anchors=checker.trust)


@signal("labels", needs=("file",))
def labels(checker, picture: Picture):
    from aigcguard.provenance.credentials import labels as label_io

    return label_io.read_labels(picture.path)


@signal("known_watermark")
def known_watermark(checker, picture: Picture):
    from aigcguard.watermark import detect_known

    [det] = detect_known([picture.pixels], device=checker.device)
    return det if det.detected else None


@signal("watermark")
def watermark(checker, picture: Picture):
    from aigcguard.watermark import detect

    if min(picture.pixels.shape[1:]) < 64:
        return None  # too small to carry a mark: not evidence either way
    [det] = detect([picture.pixels], key=checker.key, device=checker.device)
    return det


@signal("ledger", needs=("ledger",))
def ledger(checker, picture: Picture):
    """The ledger's record: by the mark's payload, or by the file's bytes (on disk)."""
    from aigcguard.provenance.credentials.ledger import find_record, key_fingerprint

    source = picture.path if picture.on_disk else None
    mark = picture.found.get("watermark")
    record, _ = find_record(checker.ledger, mark, source, key_id=key_fingerprint(checker.key))
    return record


@signal("binding", needs=("ledger",))
def binding(checker, picture: Picture):
    """Whether the picture is the one its ledger record is of: a mark can be copied onto
    another picture, the picture cannot (:mod:`aigcguard.service.binding`)."""
    from aigcguard.fileio import file_sha256
    from aigcguard.service.binding import SAME_FILE, bind

    record = picture.found.get("ledger")
    if record is None:
        return None
    same = record.image_sha256 is not None and picture.on_disk
    if same and record.image_sha256 == file_sha256(picture.path):
        return SAME_FILE  # the very file: nothing to compare
    # not the recorded file, so the record was found by the mark's payload
    return bind(record, picture.pixels, matched_by="watermark")


@signal("detector")
def detector(checker, picture: Picture):
    from aigcguard.detectors import api as detector_api

    file = picture.path if picture.on_disk else None  # a file: its JPEG tables are read
    [result] = detector_api.score(checker.detector, [picture.pixels], [picture.path], files=[file])
    # outside the detector's range: kept, score null with the reason (the verdict notes it)
    return result


@signal("similarity", needs=("index",))
def similarity(checker, picture: Picture):
    digest = None
    if picture.on_disk:
        from aigcguard.fileio import file_sha256

        digest = file_sha256(picture.path)
    [result] = checker.index.search([picture.pixels], paths=[picture.path], sha256=[digest])
    return result
