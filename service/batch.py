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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from aigcguard.fileio import atomic_path, atomic_write
from aigcguard.results import JsonResult

JOB_FILE = "_job.json"
LOCK_FILE = "_job.lock"
MANIFEST_SUFFIXES = (".parquet", ".csv", ".txt")
#: rows gathered into one part file: fewer, larger files, at the cost of redoing up to this
#: many rows per worker when a job is interrupted
DEFAULT_ROWS_PER_FILE = 1024


class BatchError(ValueError):
    """A job that cannot start: unreadable listing, an output folder holding another job."""


# ------------------------------------------------------------------------------- the tasks


def each(func: Callable[[list[int]], Sequence], n: int) -> list:
    """``func(indices)`` over all ``n`` items at once; if it raises ValueError, one item at a
    time so a bad item (too small, say) fails alone. Items that fail come back as their
    ValueError, the others as ``func``'s results, in order."""
    try:
        return list(func(list(range(n))))
    except ValueError:
        pass
    out: list = []
    for i in range(n):
        try:
            out.append(func([i])[0])
        except ValueError as exc:
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

    name: ClassVar[str]
    schema: Any

    def __init__(self, *, device: str | None = "auto", **options: Any):
        self.device = device

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        """Refuse options that would only fail inside every worker; make paths absolute."""
        return None

    @classmethod
    def wants_gpu(cls, options: dict[str, Any]) -> bool:
        """Runs torch models that a GPU speeds up: Ray gives it GPU actors when it can."""
        return True

    @abstractmethod
    def records(self, paths: list[str]) -> list[dict[str, Any]]:
        """One JSON-ready record per path, in order: the CLI's fields, or path and error."""

    def __call__(self, batch):
        import pyarrow as pa

        paths = [str(p) for p in batch.column("path").to_pylist()]
        rows = self.records(paths)
        names = self.schema.names
        columns = {
            name: [_cell(row.get(name), self.schema.field(name).type) for row in rows]
            for name in names
        }
        return pa.table(columns, schema=self.schema)

    def _each_picture(
        self,
        paths: list[str],
        run: Callable[[list, list[str]], Sequence],
        row: Callable[[str, Any], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Decode ``paths``, call ``run(pixels, paths)`` on the good ones together (one at a
        time when that raises ValueError, so a bad picture fails alone) and turn each result
        into a record with ``row(path, result)``. A file that does not decode, or a picture
        that fails, gets its error record. Records come back in the order of ``paths``."""
        from aigcguard.imageio import ImageLoadError, load_image

        rows: list[dict[str, Any] | None] = [None] * len(paths)
        good: list[tuple[int, Any]] = []
        for i, path in enumerate(paths):
            try:
                good.append((i, load_image(path).pixels))
            except ImageLoadError as exc:
                rows[i] = {"path": path, "error": exc.reason}
        results = each(
            lambda ks: run([good[k][1] for k in ks], [paths[good[k][0]] for k in ks]), len(good)
        )
        for (i, _), result in zip(good, results, strict=True):
            failed = isinstance(result, ValueError)
            rows[i] = {"path": paths[i], "error": str(result)} if failed else row(paths[i], result)
        return rows


def _cell(value: Any, arrow_type) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_string(arrow_type) and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


_TASKS: dict[str, type[BatchTask]] = {}


def register_task(cls: type[BatchTask]) -> type[BatchTask]:
    if cls.name in _TASKS:
        raise ValueError(f"batch task {cls.name!r} is already registered")
    _TASKS[cls.name] = cls
    return cls


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> type[BatchTask]:
    if name not in _TASKS:
        raise BatchError(f"unknown batch task {name!r}; known: {', '.join(list_tasks())}")
    return _TASKS[name]


@register_task
class EmbedTask(BatchTask):
    """Similarity embeddings: ``vector`` (unit float32 rows) or ``hash`` (hex, binary
    embedders such as PDQ), with the embedder spec that made them."""

    name = "embed"

    def __init__(self, *, device="auto", embedder: str | None = None):
        import pyarrow as pa

        from aigcguard.provenance.similarity.descriptors import DEFAULT_DESCRIPTOR, create_descriptor

        super().__init__(device=device)
        self.descriptor = create_descriptor(embedder or DEFAULT_DESCRIPTOR, device=device)
        value = (
            pa.field("hash", pa.string())
            if self.descriptor.binary
            else pa.field("vector", pa.list_(pa.float32(), self.descriptor.dim))
        )
        self.schema = pa.schema(
            [
                pa.field("path", pa.string()),
                pa.field("embedder", pa.string()),
                value,
                pa.field("error", pa.string()),
            ]
        )

    @classmethod
    def wants_gpu(cls, options):
        return (options.get("embedder") or "").startswith("clip")  # SIFT and PDQ run on CPUs

    @classmethod
    def validate(cls, options):
        from aigcguard.provenance.similarity.descriptors import list_descriptors

        spec = options.get("embedder")
        if spec and spec.partition(":")[0] not in list_descriptors():
            raise BatchError(f"unknown embedder {spec!r}; known: {', '.join(list_descriptors())}")

    def records(self, paths):
        return self._each_picture(paths, lambda pixels, _: self.descriptor.describe(pixels), self._row)

    def _row(self, path, vector):
        if self.descriptor.binary:
            return {"path": path, "embedder": self.descriptor.spec, "hash": bytes(vector).hex()}
        return {"path": path, "embedder": self.descriptor.spec, "vector": vector.tolist()}


@register_task
class DetectTask(BatchTask):
    """Real versus generated: the fields of ``aigc detect`` (score, band, model, threshold)."""

    name = "detect"

    def __init__(self, *, device="auto", model: str | None = None):
        from aigcguard.detectors import api

        super().__init__(device=device)
        self.detector = api.load(model or api.DEFAULT_MODEL, device=device)
        self.schema = result_schema(api.Detection)

    @classmethod
    def validate(cls, options):
        from aigcguard.detectors.api import SHIPPED
        from aigcguard.detectors.base import load_detector

        model = options.get("model")
        if model and model not in SHIPPED:
            if not Path(model).is_file():
                raise BatchError(f"detector {model!r} is neither a shipped name nor a file")
            try:
                load_detector(model)  # small: better refused here than in every worker
            except (ValueError, OSError) as exc:
                raise BatchError(str(exc)) from None  # the message names the file
            options["model"] = os.path.abspath(model)  # workers may run elsewhere

    def records(self, paths):
        from aigcguard.detectors import api
        from aigcguard.detectors.video import VIDEO_EXTENSIONS

        videos = [
            {"path": p, "error": "is a video: use aigc detect"}
            if Path(p).suffix.lower() in VIDEO_EXTENSIONS
            else None
            for p in paths
        ]
        scored = iter(
            self._each_picture(
                [p for p, video in zip(paths, videos, strict=True) if video is None],
                lambda pixels, names: api.score(self.detector, pixels, names),
                lambda _, detection: detection.to_dict(),
            )
        )
        return [video or next(scored) for video in videos]


@register_task
class WatermarkTask(BatchTask):
    """Watermark detection: the fields of ``aigc watermark detect`` (detected, p_value,
    payload, ...); ``known`` also scans for Stable Diffusion's and SDXL's marks and keeps the
    stronger finding, as the CLI's ``--known`` does."""

    name = "watermark"

    def __init__(
        self,
        *,
        device="auto",
        method: str | None = None,
        key: str | None = None,
        known: bool = False,
        threshold: float | None = None,
    ):
        from aigcguard.watermark import DEFAULT_KEY, DEFAULT_METHOD, DEFAULT_P_THRESHOLD
        from aigcguard.watermark.api import WatermarkDetection

        super().__init__(device=device)
        self.method = method or DEFAULT_METHOD
        self.key = DEFAULT_KEY if key is None else key
        self.known = known
        self.threshold = DEFAULT_P_THRESHOLD if threshold is None else threshold
        self.schema = result_schema(WatermarkDetection)

    @classmethod
    def validate(cls, options):
        from aigcguard.watermark import list_methods

        method = options.get("method")
        if method and method not in list_methods():
            raise BatchError(f"unknown watermark method {method!r}; known: {list_methods()}")

    def records(self, paths):
        from aigcguard.watermark import detect, detect_known, strongest

        def find(pixels, _):
            found = detect(
                pixels,
                key=self.key,
                method=self.method,
                device=self.device,
                p_threshold=self.threshold,
            )
            if self.known:
                found = strongest(
                    found, detect_known(pixels, device=self.device, p_threshold=self.threshold)
                )
            return found

        return self._each_picture(paths, find, lambda path, d: {"path": path, **d.to_dict()})


@register_task
class CheckTask(BatchTask):
    """Every signal (``aigc check``): the summary, and each signal as JSON text; ``verdict``
    repeats the summary's verdict as a column to filter on."""

    name = "check"

    def __init__(
        self,
        *,
        device="auto",
        key: str | None = None,
        ledger: str | None = None,
        index: str | None = None,
        detector: str = "auto",
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
        if detector and detector != "auto":
            DetectTask.validate(model := {"model": detector})
            options["detector"] = model["model"]
        from aigcguard.provenance.credentials.ledger import Ledger
        from aigcguard.provenance.similarity.store import DB_NAME

        index, ledger = options.get("index"), options.get("ledger")
        if index and "://" not in index:
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

        return self._each_picture(
            paths, check, lambda _, r: {**r.to_dict(), "verdict": r.summary.verdict}
        )


# ---------------------------------------------------------------------------- the listing


def list_sources(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """The paths a job runs over, in order, each once.

    An input is an image file, a folder of images, a listing file (``.txt``: one path a line;
    ``.csv`` / ``.parquet``: a ``path`` column) or a folder of listing files (a folder with
    manifests and no images). Relative paths in a listing are relative to the listing's
    folder. A file that is not an image is kept, so its row reports why it failed. Paths come
    back absolute: workers on other machines (or in another folder) read the same files.
    """
    from aigcguard.imageio import IMAGE_EXTENSIONS, iter_image_paths

    out: dict[str, None] = {}
    for item in inputs:
        path = Path(os.fsdecode(item))
        if path.is_dir():
            images = [p for p in iter_image_paths([path]) if p.suffix.lower() in IMAGE_EXTENSIONS]
            manifests = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
            )
            if images or not manifests:
                out.update((os.path.abspath(p), None) for p in images)
                continue
            for manifest in manifests:
                out.update((p, None) for p in read_listing(manifest))
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            out.update((p, None) for p in read_listing(path))
        else:
            out[os.path.abspath(path)] = None
    return list(out)


def read_listing(path: Path) -> list[str]:
    """The paths a listing file names (see :func:`list_sources`)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            names = [
                line.strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        else:
            names = _path_column(path, suffix)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BatchError(f"{path}: cannot read the listing ({exc})") from None
    return [os.path.abspath(path.parent / p) for p in names]


def _path_column(path: Path, suffix: str) -> list[str]:
    import pyarrow as pa

    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            if "path" not in schema.names:
                raise ValueError(f"no 'path' column (columns: {', '.join(schema.names)})")
            column = pq.read_table(path, columns=["path"]).column("path")
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(
                path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
            )
            if "path" not in table.column_names:
                raise ValueError(f"no 'path' column (columns: {', '.join(table.column_names)})")
            column = table.column("path")
    except pa.ArrowException as exc:
        raise ValueError(str(exc)) from None
    return [str(v) for v in column.to_pylist() if v not in (None, "")]


# ------------------------------------------------------------------------- the output folder


def _options_digest(options: dict[str, Any]) -> dict[str, Any]:
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


@contextlib.contextmanager
def _claimed(dest: Path, task: str, options: dict[str, Any]) -> Iterator[None]:
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
        job = {"task": task, "options": _options_digest(options)}
        record = dest / JOB_FILE
        if record.exists():
            try:
                held = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BatchError(f"{record}: unreadable job record ({exc})") from None
            if held != job:
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

    def __init__(self, task: type[BatchTask], dest: str, prefix: str, batch_size: int, **kw):
        self.task = task(**kw)
        self.dest, self.prefix, self.batch_size = Path(dest), prefix, batch_size

    def __call__(self, block):
        import pyarrow as pa

        tables = [
            self.task(block.slice(start, self.batch_size))
            for start in range(0, block.num_rows, self.batch_size)
        ]
        failed = write_part(self.dest, pa.concat_tables(tables), self.prefix)
        return pa.table(
            {"path": [p for p, _ in failed], "error": [e for _, e in failed]},
            schema=pa.schema([("path", pa.string()), ("error", pa.string())]),
        )


# ---------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class BatchReport(JsonResult):
    """What a run did. ``skipped``: paths already in the output; ``failures``: the paths of
    this run that could not be processed (also written, with their error, so a re-run skips
    them); ``damaged``: unreadable part files found and moved aside."""

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
    """Run ``task`` over ``inputs`` and write its rows to the folder ``dest``.

    ``ray_address``: ``local`` (start Ray on this machine, or use the one this process has
    started), ``auto`` (join the cluster this machine belongs to), a Ray address
    (``ray://HOST:10001``, ``HOST:6379``), or ``none`` to run in this process without Ray.
    ``workers``: actors (Ray) at most; by default one per CPU, or one per GPU when the cluster
    has GPUs and the task uses them. ``gpus_per_worker``: GPUs per actor (fractions share).
    """
    started = time.perf_counter()
    cls = get_task(task)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    cls.validate(options)
    paths = list_sources(inputs)
    if not paths:
        raise BatchError(f"no images found in {', '.join(map(str, inputs))}")
    dest = Path(dest)
    prefix = time.strftime("%Y%m%dT%H%M%S")
    with _claimed(dest, task, options):
        written = scan_output(dest)
        todo = [p for p in paths if p not in written.done]
        try:
            if ray_address in (None, "none"):
                engine, n_workers = "in-process", 1
                failures = _run_here(
                    cls, todo, dest, options, device, batch_size, rows_per_file, prefix
                )
            else:
                engine = f"ray ({ray_address})"
                failures, n_workers = _run_ray(
                    cls,
                    todo,
                    dest,
                    options,
                    device,
                    batch_size,
                    rows_per_file,
                    prefix,
                    ray_address,
                    workers,
                    gpus_per_worker,
                )
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
    values, unreadable files, stores and embedders that cannot be opened, Ray's wrapping of
    any of these raised in a worker."""
    from aigcguard.provenance.similarity.descriptors import DescriptorError
    from aigcguard.provenance.similarity.store import StoreError

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


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_here(cls, todo, dest, options, device, batch_size, rows_per_file, prefix):
    import pyarrow as pa
    from tqdm import tqdm

    if not todo:
        return []
    writer = PartWriter(cls, str(dest), prefix, batch_size, device=device, **options)
    failures: list[tuple[str, str]] = []
    with tqdm(total=len(todo), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        for chunk in _chunks(todo, rows_per_file):
            failed = writer(pa.table({"path": chunk}))
            paths, errors = failed.column("path"), failed.column("error")
            failures += zip(paths.to_pylist(), errors.to_pylist(), strict=True)
            bar.update(len(chunk))
    return failures


def actor_placement(
    cls: type[BatchTask],
    resources: dict[str, float],
    *,
    device: str | None,
    batches: int,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[int, dict[str, float]]:
    """How many actors, and what each reserves, on a cluster with ``resources``: one per GPU
    (or ``gpus_per_worker`` of one) when there are GPUs and the task wants them, else one per
    CPU; never more than ``workers``, than the cluster can place, or than there are batches."""
    gpus = resources.get("GPU", 0) if device != "cpu" else 0
    if gpus > 0 and cls.wants_gpu(options or {}):
        share = gpus_per_worker or 1.0
        limit, placement = max(1, int(gpus / share)), {"num_gpus": share, "num_cpus": 1}
    else:
        limit, placement = max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}
    # never more actors than the cluster can place now: a pool waiting for actors that cannot
    # start would wait for ever
    return min(workers or limit, limit, max(1, batches)), placement


def _run_ray(
    cls,
    todo,
    dest,
    options,
    device,
    batch_size,
    rows_per_file,
    prefix,
    address,
    workers,
    gpus_per_worker,
):
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError(
            "Ray is not installed: pip install 'aigc-guard[ray]', or run in this process "
            "with --ray-address none"
        ) from None
    import pyarrow as pa

    owns = False
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
        if address == "local":
            # Ray waits 30 s for its own control server to start; a busy 2-core machine has
            # been seen to need longer (the caller's own setting wins)
            os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
        try:
            # "local" starts a Ray of our own even when RAY_ADDRESS names a cluster
            ray.init(address=address, **quiet)
        except ConnectionError as exc:
            raise BatchError(
                f"no Ray cluster reachable at {address!r} ({exc}): start one (`ray start "
                f"--head`), or run on this machine with --ray-address local"
            ) from None
        except Exception as exc:  # Ray's start-up raises many kinds (memory, temp dir, ...)
            ray.shutdown()
            raise BatchError(
                f"Ray could not start at {address!r}: {exc}; run in this process with "
                f"--ray-address none"
            ) from None
        owns = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = sys.stderr.isatty()
        n_workers, placement = actor_placement(
            cls,
            ray.cluster_resources(),
            device=device,
            batches=-(-len(todo) // batch_size),
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            options=options,
        )
        on_gpu = "num_gpus" in placement
        if not todo:
            return [], n_workers
        # one block = one part file; at least about four blocks an actor, so an actor that
        # started late or got slower pictures does not leave the others waiting at the end
        per_block = max(1, min(rows_per_file, -(-len(todo) // (4 * n_workers))))
        blocks = [pa.table({"path": chunk}) for chunk in _chunks(todo, per_block)]
        ds = ray.data.from_arrow(blocks).map_batches(
            PartWriter,
            fn_constructor_args=(cls, str(dest), prefix, batch_size),
            fn_constructor_kwargs={"device": device if on_gpu else "cpu", **options},
            batch_size=None,  # a whole block per call: one part file each
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=n_workers),
            **placement,
        )
        failures: list[tuple[str, str]] = []
        for failed in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            paths, errors = failed.column("path"), failed.column("error")
            failures += zip(paths.to_pylist(), errors.to_pylist(), strict=True)
        return failures, n_workers
    finally:
        if owns:
            ray.shutdown()
