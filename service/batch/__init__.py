"""Batch jobs: the library's checks over many files, in this process or on Ray Data.

    report = run_batch("detect", ["uploads/"], "results/", ray_address="local")
    print(report.processed, report.failed)

A job reads image files (folders, files, or listings: ``.txt`` with one path a line, ``.csv``
or ``.parquet`` with a ``path`` column, or a folder of such manifests), runs one
:class:`BatchTask` over them in batches, and writes Parquet part files to the output folder:
one row per file with the fields the CLI prints as JSON (nested objects as JSON text), and
``error`` set instead when the file could not be processed. On Ray each actor loads its
models once and the actors write their own part files, so results never pass through the
driver; on a cluster the inputs and the output folder must be on storage every node sees.

Part files are written whole (temporary name, then rename) and a re-run skips every path
already written, so an interrupted job resumes where it stopped. ``_job.json`` in the output
folder records the task and its options; a re-run with others is refused rather than mixing
two kinds of results in one dataset.

One job a module: ``tasks`` (the :class:`BatchTask` base, the :data:`TASKS` registry),
``describe`` / ``detect`` / ``watermark`` / ``check`` (the tasks, each registering itself),
``inputs`` (listing the sources), ``outputs`` (the output folder: record, lock, part files),
``runners`` (this process, or Ray), ``jobs`` (:func:`run_batch`).
"""

from aigcguard.results import INTERNAL_ERROR, error_text, is_internal_error
from aigcguard.service.batch.check import CheckTask
from aigcguard.service.batch.describe import DescribeTask, EmbedTask
from aigcguard.service.batch.detect import DetectTask
from aigcguard.service.batch.inputs import MANIFEST_SUFFIXES, list_sources, read_listing
from aigcguard.service.batch.jobs import DEFAULT_ROWS_PER_FILE, BatchReport, run_batch, task_named
from aigcguard.service.batch.outputs import (
    JOB_FILE,
    LOCK_FILE,
    PartWriter,
    Written,
    scan_output,
    write_part,
)
from aigcguard.service.batch.runners import actor_placement
from aigcguard.service.batch.tasks import (
    TASKS,
    BatchError,
    BatchTask,
    TaskOption,
    each,
    renamed,
    result_schema,
)
from aigcguard.service.batch.watermark import WatermarkTask

__all__ = [
    "DEFAULT_ROWS_PER_FILE",
    "INTERNAL_ERROR",
    "JOB_FILE",
    "LOCK_FILE",
    "MANIFEST_SUFFIXES",
    "TASKS",
    "BatchError",
    "BatchReport",
    "BatchTask",
    "CheckTask",
    "DescribeTask",
    "DetectTask",
    "EmbedTask",
    "PartWriter",
    "TaskOption",
    "WatermarkTask",
    "Written",
    "actor_placement",
    "each",
    "error_text",
    "is_internal_error",
    "list_sources",
    "read_listing",
    "renamed",
    "result_schema",
    "run_batch",
    "scan_output",
    "task_named",
    "write_part",
]
