"""``run_batch``: one task over many files, written to one output folder."""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigcguard.results import JsonResult, is_internal_error
from aigcguard.service.batch.inputs import list_sources
from aigcguard.service.batch.outputs import JOB_FILE, claimed, scan_output
from aigcguard.service.batch.runners import Work, run_here, run_ray
from aigcguard.service.batch.tasks import TASKS, BatchError, BatchTask, renamed

#: rows gathered into one part file: fewer, larger files, at the cost of redoing up to this
#: many rows per worker when a job is interrupted
DEFAULT_ROWS_PER_FILE = 1024


@dataclass(frozen=True)
class BatchReport(JsonResult):
    """What a run did. ``skipped``: paths already in the output; ``failures``: the paths of
    this run that could not be processed (also written, with their error, so a re-run skips
    them, as are the folder entries not taken: a .txt, a link loop); ``damaged``: unreadable
    part files found and moved aside."""

    task: str
    output: str
    engine: str
    listed: int
    skipped: int
    processed: int
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)
    damaged: tuple[str, ...] = ()
    workers: int = 1

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def internal_errors(self) -> int:
        """Failures that are bugs (an unexpected exception), not bad inputs: the CLI exits 3."""
        return sum(is_internal_error(e) for e in self.failures.values())

    def to_dict(self) -> dict:
        """The fields, and ``failed``: how many inputs of this run failed."""
        return super().to_dict() | {"failed": self.failed}


def task_named(name: str) -> tuple[str, type[BatchTask]]:
    """The registered task called ``name``, or called so in the last release (with a
    DeprecationWarning naming the new name)."""
    key = name.strip().lower()
    if key not in TASKS and (current := renamed(key)):
        warnings.warn(
            f"batch task {key!r} is deprecated; use {current!r}", DeprecationWarning, stacklevel=3
        )
        key = current
    if key not in TASKS:
        raise BatchError(f"unknown batch task {name!r}; known: {', '.join(TASKS.list())}")
    return key, TASKS.get(key)


def run_batch(
    task: str,
    inputs: Sequence[str | os.PathLike],
    dest: str | os.PathLike,
    *,
    options: dict[str, Any] | None = None,
    ray_address: str | None = "local",
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    batch_size: int = 32,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    device: str | None = "auto",
) -> BatchReport:
    """Run ``task`` (a name in :data:`TASKS`) over ``inputs`` and write its rows to the folder
    ``dest``.

    ``ray_address``: ``local`` (start Ray on this machine, or use the one this process has
    started), ``auto`` (join the cluster this machine belongs to), a Ray address
    (``ray://HOST:10001``, ``HOST:6379``), or ``none`` to run in this process without Ray.
    ``workers``: actors (Ray) at most; by default one per CPU, or one per GPU when the cluster
    has GPUs and the task uses them. ``gpus_per_worker``: GPUs per actor (fractions share).
    """
    started = time.perf_counter()
    task, cls = task_named(task)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    cls.validate(options)
    # a folder entry not taken (a .txt, a link loop, a named pipe) gets a row with its
    # reason, never opened: the job reports every entry, as the CLI gives each a line
    skipped: dict[str, str] = {}
    paths = list_sources(inputs, on_skip=skipped.__setitem__)
    named = set(paths)
    preset = {p: reason for p, reason in skipped.items() if p not in named}
    paths += list(preset)
    if not paths:
        raise BatchError(f"no images found in {', '.join(map(str, inputs))}")
    dest = Path(dest)
    prefix = time.strftime("%Y%m%dT%H%M%S")
    with claimed(dest, task, options):
        written = scan_output(dest)
        todo = [p for p in paths if p not in written.done]
        preset = {p: preset[p] for p in todo if p in preset}
        work = Work(cls, todo, dest, options, device, batch_size, rows_per_file, prefix, preset)
        try:
            if ray_address in (None, "none"):
                engine, n_workers, failures = "in-process", 1, run_here(work)
            else:
                engine = f"ray ({ray_address})"
                failures, n_workers = run_ray(work, ray_address, workers, gpus_per_worker)
        except _job_errors() as exc:
            # A job that could not start (an index that is not a store, a detector file that
            # does not load) leaves no record behind, so a corrected re-run is not refused.
            if not any(dest.glob("part-*.parquet")):
                (dest / JOB_FILE).unlink(missing_ok=True)
            if isinstance(exc, BatchError):
                raise
            raise BatchError(f"the {task} job failed: {_root_message(exc)}") from None
    return BatchReport(
        task=task,
        output=str(dest),
        engine=engine,
        listed=len(paths),
        skipped=len(paths) - len(todo),
        processed=len(todo),
        seconds=round(time.perf_counter() - started, 2),
        failures=dict(failures),
        damaged=written.damaged,
        workers=n_workers,
    )


def _job_errors() -> tuple[type[BaseException], ...]:
    """What a job reports as a failure of its input or options, not a bug: bad option
    values, unreadable files, stores and descriptors that cannot be opened, Ray's wrapping of
    any of these raised in a worker."""
    from aigcguard.provenance.similarity.descriptors import DescriptorError
    from aigcguard.provenance.similarity.stores import StoreError

    errors: tuple[type[BaseException], ...] = (ValueError, OSError, StoreError, DescriptorError)
    try:
        from ray.exceptions import RayError
    except ImportError:
        return errors
    return (*errors, RayError)


def _root_message(exc: BaseException) -> str:
    """The worker's own error inside Ray's wrapping: a task error carries it as ``cause``; an
    actor that died in its constructor only as the last line of its traceback text."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return str(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and type(exc).__module__.startswith("ray"):
        last = re.sub(r"\x1b\[[0-9;]*m", "", lines[-1])  # without the terminal colours
        return re.sub(r"^[\w.]+(Error|Exception): ", "", last)  # and the exception's name
    return str(exc)
