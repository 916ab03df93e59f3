"""The output folder: one job's record and lock, what it already holds, and the part files.

Part files are written whole (temporary name, then rename) and a re-run skips every path
already written, so an interrupted job resumes where it stopped. ``_job.json`` records the task
and its options; a re-run with others is refused rather than mixing two kinds of results in
one dataset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigcguard.fileio import atomic_path, atomic_write
from aigcguard.service.batch.tasks import TASKS, BatchError, BatchTask, renamed

JOB_FILE = "_job.json"
LOCK_FILE = "_job.lock"


def options_digest(options: dict[str, Any]) -> dict[str, Any]:
    """The options as recorded in _job.json: a secret key only by its fingerprint."""
    shown = {}
    for name, value in sorted(options.items()):
        if name == "key" and value is not None:
            from aigcguard.provenance.credentials.ledger import key_fingerprint

            value = "key_id:" + key_fingerprint(value)  # the ledger's name for the key
        elif isinstance(value, tuple):
            value = list(value)
        shown[name] = value
    return shown


def _in_todays_terms(held: Any) -> Any:
    """A job record as this release would write it: a task renamed since (``embed``) under
    its new name, its options as the task reads them now."""
    if not isinstance(held, dict) or not isinstance(held.get("task"), str):
        return held
    task = held["task"]
    if task not in TASKS:
        task = renamed(task) or task
    if task not in TASKS or not isinstance(held.get("options"), dict):
        return held
    return {**held, "task": task, "options": TASKS.get(task).upgrade(held["options"])}


@contextlib.contextmanager
def claimed(dest: Path, task: str, options: dict[str, Any]) -> Iterator[None]:
    """Hold ``dest`` for this job: create it, or check that it holds this same job; lock it
    against a second run writing the same rows; clear temporaries a killed run left."""
    if dest.exists() and not dest.is_dir():
        raise BatchError(f"{dest}: the output must be a folder, and this is a file")
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(f"{dest}: another batch job is writing there now") from None
        job = {"task": task, "options": options_digest(options)}
        record = dest / JOB_FILE
        if record.exists():
            try:
                held = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BatchError(f"{record}: unreadable job record ({exc})") from None
            if _in_todays_terms(held) != job:
                raise BatchError(
                    f"{dest} holds the results of another job ({json.dumps(held)}); this one "
                    f"is {json.dumps(job)}: write to another --out"
                )
        else:
            with atomic_write(record) as handle:
                handle.write(json.dumps(job, indent=1).encode())
        for stale in dest.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        yield


@dataclass(frozen=True)
class Written:
    """What an output folder already holds: the paths done, the earlier failures, and the part
    files that could not be read (damaged after they were written: parts are renamed into
    place whole); those are moved aside and their rows redone."""

    done: frozenset[str]
    failures: dict[str, str]
    damaged: tuple[str, ...]


def scan_output(dest: Path) -> Written:
    import pyarrow.parquet as pq

    done: set[str] = set()
    failures: dict[str, str] = {}
    damaged: list[str] = []
    for part in sorted(dest.glob("*.parquet")) if dest.is_dir() else []:
        try:
            table = pq.read_table(part, columns=["path", "error"])
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on a bad file
            # a leading underscore keeps it out of the dataset readers see (pyarrow, Ray, Spark)
            aside = part.with_name(f"_damaged-{part.name}")
            os.replace(part, aside)
            damaged.append(f"{part} ({type(exc).__name__}: {exc}); moved to {aside.name}")
            continue
        for path, error in zip(
            table.column("path").to_pylist(), table.column("error").to_pylist(), strict=True
        ):
            done.add(path)
            if error is not None:
                failures[path] = error
    return Written(frozenset(done), failures, tuple(damaged))


def write_part(dest: Path, table, prefix: str) -> list[tuple[str, str]]:
    """Write one part file whole; returns the (path, error) rows it holds."""
    import pyarrow.parquet as pq

    name = dest / f"part-{prefix}-{uuid.uuid4().hex[:12]}.parquet"
    with atomic_path(name) as tmp:
        pq.write_table(table, tmp)
    errors = table.column("error").to_pylist()
    paths = table.column("path").to_pylist()
    return [(p, e) for p, e in zip(paths, errors, strict=True) if e is not None]


class PartWriter:
    """Runs a task over one block of paths, ``batch_size`` at a time, and writes the block's
    rows as one part file; returns the failed rows only (``path``, ``error``). The unit of
    work of both engines: on Ray it is the actor (models loaded once, files written where the
    work is done, nothing but failures sent back), here it is called in a loop."""

    def __init__(
        self,
        task: type[BatchTask],
        dest: str,
        prefix: str,
        batch_size: int,
        preset_errors: dict[str, str] | None = None,
        **kw,
    ):
        self.task = task(**kw)
        self.dest, self.prefix, self.batch_size = Path(dest), prefix, batch_size
        self.preset_errors = preset_errors or {}

    def __call__(self, block):
        import pyarrow as pa

        tables = [
            self.task(block.slice(start, self.batch_size), self.preset_errors)
            for start in range(0, block.num_rows, self.batch_size)
        ]
        failed = write_part(self.dest, pa.concat_tables(tables), self.prefix)
        return pa.table(
            {"path": [p for p, _ in failed], "error": [e for _, e in failed]},
            schema=pa.schema([("path", pa.string()), ("error", pa.string())]),
        )
