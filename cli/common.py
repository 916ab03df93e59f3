"""What every command shares: reading inputs in batches, JSON lines out, failures at the end."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from aigcguard.registry import Registry
from aigcguard.results import FailedInput
from aigcguard.watermark.defaults import DEFAULT_KEY, DEFAULT_METHOD

if TYPE_CHECKING:
    from aigcguard.imageio import LoadedImage

# imageio (torch) and the descriptors are imported where they are used: `aigc --version` and
# `aigc --help` import this module and must start in a fraction of a second (issue 22)

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
    runs, so a kind registered after the CLI was imported is a valid choice too. ``registry``
    may be the dotted path ``"module:NAME"`` of one, imported only then (so that defining the
    option does not import the registry's module and what it needs)."""

    def __init__(self, registry: Registry | str):
        self._registry = registry
        self.case_sensitive = True

    @property
    def registry(self) -> Registry:
        if isinstance(self._registry, str):
            module, _, name = self._registry.partition(":")
            self._registry = getattr(importlib.import_module(module), name)
        return self._registry

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.registry.list())


key_option = click.option(
    "--key",
    default=DEFAULT_KEY,
    show_default=True,
    envvar="AIGC_WATERMARK_KEY",
    help="Secret the mark is keyed with (or set AIGC_WATERMARK_KEY). The default key is public.",
)
method_option = click.option(
    "--method",
    type=RegistryChoice("aigcguard.watermark.registry:METHODS"),
    default=DEFAULT_METHOD,
    show_default=True,
    help="Watermark method (see `aigc watermark methods`).",
)


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
        if kwargs.get("descriptor") is None:
            from aigcguard.provenance.similarity.descriptors import DEFAULT_DESCRIPTOR

            kwargs["descriptor"] = DEFAULT_DESCRIPTOR
        return func(*args, **kwargs)

    merged = click.option("--embedder", "old_descriptor", hidden=True)(merged)
    return click.option("--descriptor", default=None, cls=_DescriptorOption)(merged)


class _DescriptorOption(click.Option):
    """Its help names the descriptors registered when the help is shown, not at import."""

    def get_help_record(self, ctx):
        from aigcguard.provenance.similarity.descriptors import DEFAULT_DESCRIPTOR, list_descriptors

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


#: Exit codes of every command (``aigc --help`` and the README list them): 0 every input
#: done; 1 some inputs unusable (each has its error line); 2 a usage error (click's own);
#: 3 an internal error, an unexpected exception on some input or outside any (a bug).
EXIT_UNUSABLE, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


def debugging() -> bool:
    """AIGC_DEBUG=1: print the traceback of an internal error, not only its one line."""
    return os.environ.get("AIGC_DEBUG", "") not in ("", "0")


def explain_crash(exc: BaseException) -> None:
    """On stderr: the traceback of an unexpected exception, when AIGC_DEBUG is set."""
    if debugging():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


@dataclass
class Run:
    """Collects per-input failures so a batch goes on and reports them at the end.
    ``internal``: the inputs whose processing raised something unexpected (a bug): the run
    exits 3 rather than 1 when there is one."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    done: int = 0
    internal: list[tuple[str, str]] = field(default_factory=list)

    def emit(self, record: dict) -> None:
        click.echo(json.dumps(record, ensure_ascii=False))
        self.done += 1

    def fail(self, source: str, reason: str) -> None:
        from aigcguard.results import is_internal_error

        self.failures.append((source, reason))
        if is_internal_error(reason):
            self.internal.append((source, reason))
        click.echo(FailedInput(source, reason).to_json())

    def crash(self, source: str, exc: Exception) -> None:
        """The error boundary of one input: its failure line names what it raised
        (:func:`aigcguard.service.batch.error_text`: a bad input's message as it stands, an
        unexpected exception as ``internal error: TYPE: ...``), and the run goes on."""
        from aigcguard.results import error_text

        explain_crash(exc)
        self.fail(source, error_text(exc))

    def skip(self, path, reason: str) -> None:
        """A folder entry not processed (``on_skip`` of the walk): a failed input with its
        line, as an unreadable file is, so no entry of a folder goes without one."""
        self.fail(str(path), reason)

    def note_internal(self, source: str, reason: str) -> None:
        """An internal error inside a result already emitted (a check signal that raised)."""
        self.internal.append((source, reason))

    def finish(self) -> None:
        """Summarise failures on stderr; exit 1 if any input failed, 3 if any internal error."""
        if not self.failures and self.done == 0:
            click.echo("error: no images found in the given inputs", err=True)
            sys.exit(EXIT_UNUSABLE)
        if self.failures:
            total = self.done + len(self.failures)
            click.echo(f"{len(self.failures)} of {total} inputs failed:", err=True)
            for source, reason in self.failures:  # most reasons already name their file
                named = reason.startswith(f"{source}:")
                click.echo(f"  {reason if named else f'{source}: {reason}'}", err=True)
        if self.internal:
            click.echo(
                f"{len(self.internal)} internal error(s), a bug: please report it "
                f"(AIGC_DEBUG=1 prints the traceback)",
                err=True,
            )
            for source, reason in self.internal:
                if (source, reason) not in self.failures:
                    click.echo(f"  {source}: {reason}", err=True)
            sys.exit(EXIT_INTERNAL)
        if self.failures:
            sys.exit(EXIT_UNUSABLE)


def input_paths(inputs, run: Run, **walk) -> list[Path]:
    """The files INPUTS name, folders walked (:func:`aigcguard.imageio.iter_image_paths`);
    each folder entry not taken gets its failure line through ``run``."""
    from aigcguard.imageio import iter_image_paths

    return list(iter_image_paths(inputs, on_skip=run.skip, **walk))


def load_one(path, run: Run) -> LoadedImage | None:
    """``load_image(path)``, or None with the failure reported through ``run``."""
    from aigcguard.imageio import ImageLoadError, load_image

    try:
        return load_image(path)
    except ImageLoadError as exc:
        run.fail(exc.source, exc.reason)
    except Exception as exc:
        run.crash(str(path), exc)
    return None


def image_batches(
    inputs: tuple[str, ...], batch_size: int, run: Run
) -> Iterator[list[LoadedImage]]:
    """Decode the inputs batch by batch; undecodable ones go to ``run.fail``. A batch also
    ends before its decoded pixels would pass :data:`BATCH_PIXELS`, so ``--batch-size`` large
    pictures never sit in memory together (a larger picture is a batch of its own)."""
    paths = input_paths(inputs, run)
    batch: list[LoadedImage] = []
    with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        for path in paths:
            image = load_one(path, run)
            bar.update(1)
            if image is None:
                continue
            if batch and batch_pixels([*batch, image]) > BATCH_PIXELS:
                yield batch
                batch = []
            batch.append(image)
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


#: decoded pixels that end a batch early: one 64 MP photo, or 256 pictures of 512 x 512.
#: Measured on the 2-core development machine: `aigc detect` / `aigc watermark detect` on
#: four 64 MP photos in one batch peaked at 1.7 / 2.1 GB, eight at 2.5 / 2.8 GB.
BATCH_PIXELS = 64_000_000


def batch_pixels(images) -> int:
    """Decoded pixels of loaded images or of 3 x H x W tensors."""
    return sum(
        int(p.shape[-1]) * int(p.shape[-2]) for p in (getattr(im, "pixels", im) for im in images)
    )


def per_item(func, sources: list[str], run: Run, *, whole: bool = True) -> list:
    """Call ``func(indices)`` for the whole batch, or one index at a time when it raises
    (:func:`aigcguard.service.batch.each`; ``whole=False``: one at a time at once). Results
    align with ``sources``; a failed item gets None and is reported through ``run``, an
    unexpected exception named (:meth:`Run.crash`)."""
    from aigcguard.service.batch import each

    results = []
    for source, result in zip(sources, each(func, len(sources), whole=whole), strict=True):
        if isinstance(result, Exception):
            run.crash(source, result)
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
