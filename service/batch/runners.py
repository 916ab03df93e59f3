"""The two engines: a loop in this process, and Ray Data actors (one model load each)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigcguard.service.batch.outputs import PartWriter
from aigcguard.service.batch.tasks import BatchError, BatchTask


@dataclass(frozen=True)
class Work:
    """What an engine runs: ``task`` over the paths ``todo``, part files into ``dest`` named
    ``part-<prefix>-...``, ``batch_size`` files at a time, ``rows_per_file`` rows a file;
    ``preset_errors``: paths of ``todo`` that get this error row without being opened."""

    task: type[BatchTask]
    todo: list[str]
    dest: Path
    options: dict[str, Any]
    device: str | None
    batch_size: int
    rows_per_file: int
    prefix: str
    preset_errors: dict[str, str] = field(default_factory=dict)

    def writer_args(self) -> tuple:
        return (self.task, str(self.dest), self.prefix, self.batch_size)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _failed_rows(failed) -> list[tuple[str, str]]:
    paths, errors = failed.column("path"), failed.column("error")
    return list(zip(paths.to_pylist(), errors.to_pylist(), strict=True))


def run_here(work: Work) -> list[tuple[str, str]]:
    """The job in this process; returns the failed (path, error) rows."""
    import pyarrow as pa
    from tqdm import tqdm

    if not work.todo:
        return []
    writer = PartWriter(
        *work.writer_args(), preset_errors=work.preset_errors, device=work.device, **work.options
    )
    failures: list[tuple[str, str]] = []
    with tqdm(total=len(work.todo), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        for chunk in _chunks(work.todo, work.rows_per_file):
            failures += _failed_rows(writer(pa.table({"path": chunk})))
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


def _start_ray(ray, address: str) -> bool:
    """Connect to (or start) Ray unless this process already has; True if we started it."""
    if ray.is_initialized():
        return False
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
    return True


def run_ray(
    work: Work, address: str, workers: int | None, gpus_per_worker: float | None
) -> tuple[list[tuple[str, str]], int]:
    """The job on Ray Data at ``address``; returns the failed rows and the number of actors."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError(
            "Ray is not installed: pip install 'aigc-guard[ray]', or run in this process "
            "with --ray-address none"
        ) from None
    owns = _start_ray(ray, address)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
        n_workers, placement = actor_placement(
            work.task,
            ray.cluster_resources(),
            device=work.device,
            batches=-(-len(work.todo) // work.batch_size),
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            options=work.options,
        )
        if not work.todo:
            return [], n_workers
        return _map_on_ray(ray, work, n_workers, placement), n_workers
    finally:
        if owns:
            ray.shutdown()


def _map_on_ray(ray, work: Work, n_workers: int, placement: dict) -> list[tuple[str, str]]:
    import pyarrow as pa

    on_gpu = "num_gpus" in placement
    # one block = one part file; at least about four blocks an actor, so an actor that
    # started late or got slower pictures does not leave the others waiting at the end
    per_block = max(1, min(work.rows_per_file, -(-len(work.todo) // (4 * n_workers))))
    blocks = [pa.table({"path": chunk}) for chunk in _chunks(work.todo, per_block)]
    ds = ray.data.from_arrow(blocks).map_batches(
        PartWriter,
        fn_constructor_args=work.writer_args(),
        fn_constructor_kwargs={
            "preset_errors": work.preset_errors,
            "device": work.device if on_gpu else "cpu",
            **work.options,
        },
        batch_size=None,  # a whole block per call: one part file each
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=n_workers),
        **placement,
    )
    failures: list[tuple[str, str]] = []
    for failed in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        failures += _failed_rows(failed)
    return failures
