"""What every command shares: reading inputs in batches, JSON lines out, failures at the end."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
from tqdm import tqdm

from aigcguard.imageio import ImageLoadError, LoadedImage, iter_image_paths, load_image
from aigcguard.provenance.similarity.descriptors import DEFAULT_DESCRIPTOR, list_descriptors
from aigcguard.registry import Registry
from aigcguard.results import FailedInput

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where to compute: auto (CUDA when present), cpu, cuda or cuda:N.",
)
batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Images decoded and processed together.",
)


class RegistryChoice(click.Choice):
    """The names in a registry (:class:`aigcguard.registry.Registry`), read when the command
    runs, so a kind registered after the CLI was imported is a valid choice too."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.registry.list())


def descriptor_option(func: Callable) -> Callable:
    """``--descriptor SPEC`` (the similarity descriptor) passed as ``descriptor``. Its old
    name ``--embedder`` still works for one release, with a deprecation warning on stderr:
    "embed" now means the watermark only."""

    @functools.wraps(func)
    def merged(*args, old_descriptor=None, **kwargs):
        if old_descriptor is not None:
            if kwargs.get("descriptor") is not None:
                raise click.UsageError("give --descriptor only (--embedder is its old name)")
            click.echo("warning: --embedder is deprecated; use --descriptor", err=True)
            kwargs["descriptor"] = old_descriptor
        kwargs["descriptor"] = kwargs.get("descriptor") or DEFAULT_DESCRIPTOR
        return func(*args, **kwargs)

    merged = click.option("--embedder", "old_descriptor", hidden=True)(merged)
    return click.option("--descriptor", default=None, cls=_DescriptorOption)(merged)


class _DescriptorOption(click.Option):
    """Its help names the descriptors registered when the help is shown, not at import."""

    def get_help_record(self, ctx):
        self.help = (
            f"Descriptor spec: {', '.join(list_descriptors())} (clip:ARCH/PRETRAINED or a "
            f"checkpoint).  [default: {DEFAULT_DESCRIPTOR}]"
        )
        return super().get_help_record(ctx)


def store_spec(ctx, param, value):
    """--index: a store directory (Path) or a store URI such as milvus://... (kept as text)."""
    from aigcguard.provenance.similarity.stores import StoreError, is_local, store_class

    if value is None:
        return value
    if not is_local(value):
        try:
            store_class(value)  # an unknown scheme is a usage error, named with the known ones
        except StoreError as exc:
            raise click.BadParameter(str(exc)) from None
        return value
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{value} is a file, not a store directory")
    return path


@dataclass
class Run:
    """Collects per-input failures so a batch goes on and reports them at the end."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    done: int = 0

    def emit(self, record: dict) -> None:
        click.echo(json.dumps(record, ensure_ascii=False))
        self.done += 1

    def fail(self, source: str, reason: str) -> None:
        self.failures.append((source, reason))
        click.echo(FailedInput(source, reason).to_json())

    def finish(self) -> None:
        """Summarise failures on stderr; exit 1 if any input failed."""
        if not self.failures and self.done == 0:
            click.echo("error: no images found in the given inputs", err=True)
            sys.exit(1)
        if self.failures:
            total = self.done + len(self.failures)
            click.echo(f"{len(self.failures)} of {total} inputs failed:", err=True)
            for source, reason in self.failures:
                click.echo(f"  {source}: {reason}", err=True)
            sys.exit(1)


def image_batches(
    inputs: tuple[str, ...], batch_size: int, run: Run
) -> Iterator[list[LoadedImage]]:
    """Decode the inputs batch by batch; undecodable ones go to ``run.fail``."""
    paths = list(iter_image_paths(inputs))
    with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        for start in range(0, len(paths), batch_size):
            batch: list[LoadedImage] = []
            for path in paths[start : start + batch_size]:
                try:
                    batch.append(load_image(path))
                except ImageLoadError as exc:
                    run.fail(exc.source, exc.reason)
            if batch:
                yield batch
            bar.update(len(paths[start : start + batch_size]))


def per_item(func, sources: list[str], run: Run) -> list:
    """Call ``func(indices)`` for the whole batch, or one index at a time when it raises
    ValueError (:func:`aigcguard.service.batch.each`). Results align with ``sources``; a failed item
    gets None and is reported through ``run``."""
    from aigcguard.service.batch import each

    results = []
    for source, result in zip(sources, each(func, len(sources)), strict=True):
        if isinstance(result, ValueError):
            run.fail(source, str(result))
            result = None
        results.append(result)
    return results


def unique_output(out_dir: Path, stem: str, suffix: str, taken: set[Path]) -> Path:
    """``out_dir/stem.suffix``, numbered when two inputs share a name in one run."""
    candidate = out_dir / f"{stem}{suffix}"
    n = 1
    while candidate in taken:
        candidate = out_dir / f"{stem}-{n}{suffix}"
        n += 1
    taken.add(candidate)
    return candidate
