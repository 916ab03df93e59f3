"""``check``: every signal, as ``aigc check``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from aigcguard.results import INTERNAL_ERROR, is_internal_error
from aigcguard.service.batch.detect import DetectTask
from aigcguard.service.batch.tasks import (
    TASKS,
    BatchError,
    BatchTask,
    TaskOption,
    result_schema,
)
from aigcguard.service.batch.watermark import KEY_OPTION


@TASKS.register(
    "check",
    help="Every signal, as `aigc check`: the summary and each signal (JSON text), plus `verdict`.",
)
class CheckTask(BatchTask):
    """Every signal (``aigc check``): the summary, and each signal as JSON text; ``verdict``
    repeats the summary's verdict as a column to filter on."""

    task_options = (
        TaskOption(
            "index", "Similarity store (directory or Milvus URI) every worker searches.", "store"
        ),
        TaskOption(
            "ledger", "Ledger of generated pictures (or AIGC_LEDGER).", "file", "AIGC_LEDGER"
        ),
        KEY_OPTION,
        TaskOption("detector", "default (as aigc detect), spectral, npr-cifake, or a file."),
        TaskOption(
            "trust",
            "PEM bundle of trusted C2PA roots (repeatable; or AIGC_TRUST).",
            "files",
            "AIGC_TRUST",
        ),
    )

    def __init__(
        self,
        *,
        device="auto",
        key: str | None = None,
        ledger: str | None = None,
        index: str | None = None,
        detector: str = "default",
        trust: Sequence[str] = (),
    ):
        import pyarrow as pa

        from aigcguard.service.check import Checker, CheckResult

        super().__init__(device=device)
        self.checker = Checker(
            key=key, ledger=ledger, index=index, detector=detector, trust=trust, device=device
        )
        self.schema = result_schema(CheckResult, extra=[pa.field("verdict", pa.string())])

    @classmethod
    def validate(cls, options):
        detector = options.get("detector")
        if detector and detector not in ("auto", "default"):
            DetectTask.validate(model := {"model": detector})
            options["detector"] = model["model"]
        from aigcguard.provenance.credentials.ledger import Ledger
        from aigcguard.provenance.similarity.stores import is_local
        from aigcguard.provenance.similarity.stores.catalogue import DB_NAME

        index, ledger = options.get("index"), options.get("ledger")
        if index and is_local(index):
            if not (Path(index) / DB_NAME).is_file():
                raise BatchError(f"--index {index}: not a similarity store (no {DB_NAME})")
            options["index"] = os.path.abspath(index)  # workers may run elsewhere
        if ledger:
            try:
                Ledger(ledger, create=False).close()
            except Exception as exc:  # LedgerError, sqlite3 errors: not a usable ledger
                raise BatchError(f"--ledger {ledger}: {exc}") from None
            options["ledger"] = os.path.abspath(ledger)

    def records(self, paths):
        def check(pixels, names):
            return [self.checker.check(x, p, on_disk=True) for x, p in zip(pixels, names)]  # noqa: B905

        return self._each_picture(paths, check, _row)


def _row(_, result) -> dict:
    """A check's row; a signal that raised something unexpected also sets ``error`` (with the
    other signals' results kept), so the job counts it and exits 3, as ``aigc check`` does."""
    row = {**result.to_dict(), "verdict": result.summary.verdict}
    bugs = [
        f"signal {name}: {text.removeprefix(INTERNAL_ERROR + ': ')}"
        for name, text in result.errors.items()
        if is_internal_error(text)
    ]
    if bugs:
        row["error"] = f"{INTERNAL_ERROR}: " + "; ".join(bugs)
    return row
