"""What a batch task is: the :class:`BatchTask` base with the decode-run-record loop every
task shares, the registry tasks put themselves in, and the options they offer an interface.

A new task is one module with one registration:

    @TASKS.register("toy", help="What each row holds.")
    class ToyTask(BatchTask):
        task_options = (TaskOption("size", "Pixels a side."),)  # the CLI offers --size

        def __init__(self, *, device="auto", size=None): ...
        def records(self, paths): ...  # one JSON-ready dict per path
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from aigcguard.registry import Registry
from aigcguard.results import error_text


class BatchError(ValueError):
    """A job that cannot start: unreadable listing, an output folder holding another job."""


#: the batch tasks by name; meta ``help`` is the CLI command's help, ``formerly`` the names a
#: task had in the last release (still accepted, with a deprecation warning)
TASKS: Registry[BatchTask] = Registry("batch task")


def renamed(name: str) -> str | None:
    """The task that was called ``name`` in the last release, or None."""
    old = name.strip().lower()
    for current in TASKS.list():
        if old in TASKS.meta(current).get("formerly", ()):
            return current
    return None


@dataclass(frozen=True)
class TaskOption:
    """An option a task takes, described for an interface (the CLI offers ``--NAME``).

    ``kind``: ``text``; ``flag`` (recorded only when set); ``probability`` (0 < p <= 1);
    ``file`` / ``files`` (existing files, one or repeatable, passed as absolute paths);
    ``store`` (a store folder or a store URI); ``descriptor`` (a descriptor spec, the option
    named ``descriptor``, with its old name ``embedder`` on the command line).
    """

    name: str
    help: str = ""
    kind: str = "text"
    envvar: str | None = None


def each(func: Callable[[list[int]], Sequence], n: int, *, whole: bool = True) -> list:
    """``func(indices)`` over all ``n`` items at once; if it raises, one item at a time so a
    bad item (too small, say) fails alone, and an unexpected exception costs one item, not the
    batch. Items that fail come back as the exception they raised (see :func:`error_text`),
    the others as ``func``'s results, in order. ``whole=False``: one at a time at once."""
    if whole:
        try:
            return list(func(list(range(n))))
        except Exception:  # retried item by item below, where each error is kept
            pass
    out: list = []
    for i in range(n):
        try:
            out.append(func([i])[0])
        except Exception as exc:
            out.append(exc)
    return out


def _arrow_type(annotation: str):
    """Arrow column type for a result field; nested results and dicts become JSON text."""
    import pyarrow as pa

    base = annotation.replace(" | None", "").strip()
    return {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}.get(
        base, pa.string()
    )


def result_schema(result_type: type, *, extra: Sequence = ()):
    """Arrow schema of a :class:`JsonResult` dataclass's JSON fields, ``error`` last."""
    import pyarrow as pa

    columns = [
        pa.field(f.name, _arrow_type(str(f.type)))
        for f in fields(result_type)
        if f.metadata.get("json", True)
    ]
    if columns[0].name != "path":
        columns.insert(0, pa.field("path", pa.string()))
    return pa.schema([*columns, *extra, pa.field("error", pa.string())])


class BatchTask(ABC):
    """One kind of job. Built once per worker (models load in ``__init__``); called with a
    pyarrow table of ``path`` rows (one batch, by :class:`PartWriter`), returns a table of
    ``schema``: a row per path, in order."""

    schema: Any
    #: the options ``__init__`` takes, as an interface offers them
    task_options: ClassVar[tuple[TaskOption, ...]] = ()

    def __init__(self, *, device: str | None = "auto", **options: Any):
        self.device = device

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        """Refuse options that would only fail inside every worker; make paths absolute."""
        return None

    @classmethod
    def upgrade(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options as a job record of the last release holds them, in this release's terms,
        so an output folder written before a rename still resumes."""
        return options

    @classmethod
    def wants_gpu(cls, options: dict[str, Any]) -> bool:
        """Runs torch models that a GPU speeds up: Ray gives it GPU actors when it can."""
        return True

    @abstractmethod
    def records(self, paths: list[str]) -> list[dict[str, Any]]:
        """One JSON-ready record per path, in order: the CLI's fields, or path and error."""

    def __call__(self, batch, preset_errors: dict[str, str] | None = None):
        """The table of ``batch``; a path in ``preset_errors`` (a folder entry the listing
        skipped: a link loop, a named pipe) gets that error without being opened."""
        import pyarrow as pa

        paths = [str(p) for p in batch.column("path").to_pylist()]
        preset = preset_errors or {}
        done = iter(self._records([p for p in paths if p not in preset]))
        rows = [{"path": p, "error": preset[p]} if p in preset else next(done) for p in paths]
        names = self.schema.names
        columns = {
            name: [_cell(row.get(name), self.schema.field(name).type) for row in rows]
            for name in names
        }
        return pa.table(columns, schema=self.schema)

    def _records(self, paths: list[str]) -> list[dict[str, Any]]:
        """:meth:`records`, one path at a time when the batch raises: the error boundary of
        every task, so a picture whose processing raises gets its error row (an unexpected
        exception named) and the others go on."""
        try:
            rows = self.records(paths)
            if len(rows) == len(paths):
                return rows
        except Exception:  # retried path by path below, where each error is kept
            pass
        out = []
        for path in paths:
            try:
                [row] = self.records([path])
            except Exception as exc:
                row = {"path": path, "error": error_text(exc)}
            out.append(row)
        return out

    def _each_picture(
        self,
        paths: list[str],
        run: Callable[[list, list[str]], Sequence],
        row: Callable[[str, Any], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Decode ``paths``, call ``run(pixels, paths)`` on the good ones together (one at a
        time when that raises ValueError, so a bad picture fails alone) and turn each result
        into a record with ``row(path, result)``. A file that does not decode, or a picture
        that fails (whatever it raises: :func:`error_text`), gets its error record. Records come
        back in the order of ``paths``."""
        from aigcguard.imageio import ImageLoadError, load_image

        rows: list[dict[str, Any] | None] = [None] * len(paths)
        good: list[tuple[int, Any]] = []
        for i, path in enumerate(paths):
            try:
                good.append((i, load_image(path).pixels))
            except ImageLoadError as exc:
                rows[i] = {"path": path, "error": exc.reason}
            except Exception as exc:
                rows[i] = {"path": path, "error": error_text(exc)}
        results = each(
            lambda ks: run([good[k][1] for k in ks], [paths[good[k][0]] for k in ks]), len(good)
        )
        for (i, _), result in zip(good, results, strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                rows[i] = row(paths[i], result)
            except Exception as exc:
                rows[i] = {"path": paths[i], "error": error_text(exc)}
        return rows


def _cell(value: Any, arrow_type) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_string(arrow_type) and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value
