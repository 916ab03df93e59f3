"""The Checker: loads what the signals need once and runs every registered signal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigcguard.results import NOT_JSON, JsonResult
from aigcguard.service.check.signals import (
    SIGNALS,
    Picture,
    can_run,
    signal_names,
)
from aigcguard.service.check.verdict import Summary, summarise


@dataclass(frozen=True)
class CheckResult(JsonResult):
    """Each signal's own result (None: not run, or nothing to report), and the summary.
    ``errors`` names a signal that failed on this picture and why; the others still ran.
    ``extra``: the results of signals registered beyond the eight named here, by name.
    ``binding``: whether the picture is the one its ledger record is of (``match``,
    ``mismatch``: possible forgery, ``unverifiable``), when a record was found."""

    path: str
    summary: Summary
    credentials: JsonResult | None = None
    labels: JsonResult | None = None
    known_watermark: JsonResult | None = None
    watermark: JsonResult | None = None
    ledger: JsonResult | None = None
    binding: JsonResult | None = None
    detector: JsonResult | None = None
    similarity: JsonResult | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # out of the dataclass's JSON fields (batch jobs take their columns from those) and in
    # to_dict only when an extra signal ran, so the JSON of the built-in signals stays
    extra: dict[str, JsonResult | None] = field(default_factory=dict, metadata=NOT_JSON)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.extra:
            out["extra"] = {
                name: r.to_dict() if isinstance(r, JsonResult) else r
                for name, r in self.extra.items()
            }
        return out

    @classmethod
    def of(cls, path: str, found: dict[str, Any], errors: dict[str, str]) -> CheckResult:
        """The result of signals' ``found`` results: named fields, the rest in ``extra``."""
        named = {k: v for k, v in found.items() if k in _SIGNAL_FIELDS}
        extra = {k: v for k, v in found.items() if k not in _SIGNAL_FIELDS}
        return cls(path=path, summary=summarise(found), errors=errors, extra=extra, **named)


#: the signals with a field of their own (the others go to ``extra``)
_NOT_SIGNALS = {"path", "summary", "errors", "extra"}
_SIGNAL_FIELDS = frozenset(CheckResult.__dataclass_fields__) - _NOT_SIGNALS


class Checker:
    """Loads what the signals need once (detectors, the ledger, the index) and checks pictures.

    ``key``: the watermark key to look for (the public default key when None; a ledger lookup
    needs the key the pipeline used). ``ledger``: a ledger path, or None. ``index``: a
    similarity store path, or None. ``detector``: a shipped name (``default``, the same
    detector as ``aigc detect``) or a path; ``auto`` is an older name of ``default``.
    ``trust``: PEM files of trusted C2PA roots.
    """

    def __init__(
        self,
        *,
        key: str | bytes | None = None,
        ledger: str | Path | None = None,
        index: str | Path | None = None,
        detector: str = "default",
        trust: Sequence[str | Path] = (),
        device: str | None = "auto",
    ):
        from aigcguard.detectors import api as detector_api
        from aigcguard.provenance.credentials.ledger import Ledger
        from aigcguard.watermark import DEFAULT_KEY

        self.key = DEFAULT_KEY if key is None else key
        self.device = device
        self.trust = [str(t) for t in trust] or None
        name = detector_api.DEFAULT_MODEL if detector == "auto" else detector
        self.detector = detector_api.load(name, device=device)
        self.ledger = None if ledger is None else Ledger(ledger, create=False)
        self.index = None
        if index is not None:
            from aigcguard.provenance.similarity.index import SimilarityIndex

            self.index = SimilarityIndex.open(index)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
        if self.index is not None:
            self.index.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_files(self, paths: Iterable[str | Path]) -> Iterable[CheckResult | str]:
        """One :class:`CheckResult` per file, or the error message of a file that cannot be
        read as a picture, or of one whose check raised something unexpected (``internal
        error: RuntimeError: ...``, see :func:`~aigcguard.service.batch.tasks.error_text`): the
        others go on."""
        from aigcguard.imageio import ImageLoadError, load_image
        from aigcguard.results import error_text

        for path in paths:
            try:
                image = load_image(path)
                result = self.check(image.pixels, str(path), on_disk=True)
            except ImageLoadError as exc:
                result = str(exc)
            except Exception as exc:
                result = error_text(exc)
            yield result

    def check(self, pixels, path: str, *, on_disk: bool = False) -> CheckResult:
        """Every registered signal for one uint8 3 x H x W picture, in registration order.
        ``on_disk``: ``path`` is the file the pixels came from, so its metadata (C2PA, labels)
        can be read too. A signal that raises is named in ``errors`` and the others still run:
        with its message for a bad input (ValueError, OSError), else with the exception named
        (``internal error: RuntimeError: ...``: a bug in that signal)."""
        from aigcguard.results import error_text

        found: dict[str, Any] = {}
        errors: dict[str, str] = {}
        picture = Picture(pixels, path, on_disk, found)
        for name in signal_names():
            if not can_run(name, self, on_disk):
                continue
            try:
                found[name] = SIGNALS.create(name, self, picture)
            except Exception as exc:
                errors[name] = error_text(exc)
        return CheckResult.of(path, found, errors)
