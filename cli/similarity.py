"""``aigc index build | add | remove | info``, ``aigc similar`` and ``aigc audit``."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from aigcguard.cli.common import (
    Run,
    descriptor_option,
    device_option,
    input_paths,
    store_spec,
    unique_output,
)
from aigcguard.imageio import iter_image_paths, load_image, load_images, save_image
from aigcguard.provenance.similarity.audit import run_audit, write_report
from aigcguard.provenance.similarity.descriptors import (
    DescriptorError,
)
from aigcguard.provenance.similarity.index import Reference, SimilarityIndex, read_metadata_csv
from aigcguard.provenance.similarity.index_results import (
    BackgroundSet,
    Exported,
    IndexInfo,
    WorkStatus,
)
from aigcguard.provenance.similarity.stores import StoreError
from aigcguard.results import INTERNAL_ERROR

index_option = click.option(
    "--index",
    "store",
    required=True,
    callback=store_spec,
    help="The index: a store directory (made by `aigc index build`), or a Milvus collection "
    "(milvus://HOST:PORT/COLLECTION, milvus-lite://FILE.db/COLLECTION).",
)
metadata_option = click.option(
    "--metadata",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CSV with a path column and title, creator, licence, source (paths relative to it).",
)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _open(store: Path, device: str) -> SimilarityIndex:
    try:
        return SimilarityIndex.open(store, device=device)
    except (StoreError, DescriptorError) as exc:
        _fail(str(exc))


def _references(inputs, metadata: Path | None, run: Run) -> list[Reference]:
    try:
        meta = read_metadata_csv(metadata) if metadata else {}
    except ValueError as exc:
        _fail(str(exc))

    def skip(path, reason):
        # the --metadata file beside the works is read, not an entry left out
        if metadata is None or Path(path).resolve() != metadata.resolve():
            run.skip(path, reason)

    refs = []
    for path in iter_image_paths(inputs, on_skip=skip):
        full = str(path.resolve())
        refs.append(meta.get(full, Reference(path=full)))
    return refs


def _add(index: SimilarityIndex, refs: list[Reference], batch: int, run: Run) -> None:
    with tqdm(total=len(refs), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        for start in range(0, len(refs), batch):
            chunk = refs[start : start + batch]
            try:
                _add_chunk(index, chunk, batch, run)
            except Exception:
                # one at a time, so what raised costs its own reference only (a reference
                # added before the exception is "already registered" the second time)
                for ref in chunk:
                    try:
                        _add_chunk(index, [ref], batch, run)
                    except Exception as exc:
                        run.crash(ref.path, exc)
            bar.update(len(chunk))
    run.finish()


def _add_chunk(index: SimilarityIndex, refs: list[Reference], batch: int, run: Run) -> None:
    report = index.add(refs, batch=batch)
    for work in index.store.get(report.added):
        run.emit(WorkStatus("added", id=work.id, path=work.path).to_dict())
    for path in report.skipped:
        run.emit(WorkStatus("already registered", path=path).to_dict())
    for error in report.errors:
        source, _, reason = error.partition(": ")
        run.fail(source, reason)


@click.group("index")
def index_group() -> None:
    """Register reference works and manage the similarity index."""


@index_group.command("build")
@click.argument("inputs", nargs=-1, required=True)
@index_option
@descriptor_option
@click.option(
    "--index-type",
    help="A store directory: a faiss index string (default: chosen by size). Milvus: FLAT "
    "(default), IVF_FLAT or HNSW.",
)
@metadata_option
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@device_option
def build_cmd(inputs, store, descriptor, index_type, metadata, batch_size, device):
    """Create an index at --index and register every image in INPUTS (files or folders)."""
    try:
        index = SimilarityIndex.create(
            store, descriptor=descriptor, index_type=index_type, device=device
        )
    except (StoreError, DescriptorError, ValueError) as exc:
        _fail(str(exc))
    run = Run()
    with index:
        _add(index, _references(inputs, metadata, run), batch_size, run)


@index_group.command("add")
@click.argument("inputs", nargs=-1, required=True)
@index_option
@metadata_option
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@device_option
def add_cmd(inputs, store, metadata, batch_size, device):
    """Register more works; files already registered are skipped."""
    run = Run()
    with _open(store, device) as index:
        _add(index, _references(inputs, metadata, run), batch_size, run)


@index_group.command("remove")
@click.argument("works", nargs=-1, required=True)
@index_option
def remove_cmd(works, store):
    """Remove works by id or by registered path."""
    with _open(store, "cpu") as index:
        run = Run()
        ids = []
        for item in works:
            found = index.store.find(path=str(Path(item).resolve()))
            if not found and item.isdigit():
                with contextlib.suppress(KeyError):
                    found = index.store.get([int(item)])
            if not found:
                run.fail(item, "no such work in the index")
            ids += [w.id for w in found]
        index.remove(ids)
        for work_id in ids:
            run.emit(WorkStatus("removed", id=work_id).to_dict())
        run.finish()


@index_group.command("background")
@click.argument("inputs", nargs=-1, required=True)
@index_option
@device_option
def background_cmd(inputs, store, device):
    """Set the index's background set: pictures unrelated to the registered works, for score
    normalisation (a query that resembles everything gets less credit)."""
    with _open(store, device) as index:

        def skipped(path, reason):
            click.echo(f"skipped {path}: {reason}", err=True)

        loaded, failed = load_images(iter_image_paths(inputs, on_skip=skipped))
        for exc in failed:
            skipped(exc.source, exc.reason)
        try:
            n = index.set_background([img.pixels for img in loaded])
        except ValueError as exc:
            _fail(str(exc))
        click.echo(BackgroundSet(str(store), n).to_json())


@index_group.command("info")
@index_option
def info_cmd(store):
    """What the index holds: descriptor (field ``embedder``), size, index type, thresholds."""
    with _open(store, "cpu") as index:
        click.echo(IndexInfo(index.store.info(), index.thresholds).to_json())


@index_group.command("export")
@index_option
@click.option(
    "--to",
    "target",
    required=True,
    help="The new Milvus collection: milvus://HOST:PORT/COLLECTION or "
    "milvus-lite://FILE.db/COLLECTION.",
)
def export_cmd(store, target):
    """Copy an index into a new Milvus collection, keeping ids and metadata."""
    from aigcguard.provenance.similarity.stores import store_scheme
    from aigcguard.provenance.similarity.stores.milvus import SCHEMES, export_store

    if store_scheme(target) not in SCHEMES:
        raise click.BadParameter("expected a milvus:// or milvus-lite:// URI", param_hint="--to")
    with _open(store, "cpu") as index:
        total = index.store.info().count
        try:
            with tqdm(total=total, unit="work", file=sys.stderr, disable=None, leave=False) as bar:
                copied = export_store(index.store, target, progress=bar.update)
        except (StoreError, ValueError) as exc:
            _fail(str(exc))
        with copied:
            info = copied.info()
            done = Exported(str(store), target, info.count, info.embedder, info.index_type)
            click.echo(done.to_json())


@click.command("similar")
@click.argument("inputs", nargs=-1, required=True)
@index_option
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Skip geometric verification (faster; no copy verdicts, and a near_duplicate rests on "
    "the score alone: see its false_match_rate).",
)
@click.option(
    "--evidence",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a side-by-side match picture per verified copy into this folder.",
)
@device_option
def similar_cmd(inputs, store, top_k, no_verify, evidence, device):
    """Which registered works does each image copy? One JSON line per image."""
    run = Run()
    taken: set[Path] = set()
    with _open(store, device) as index:
        for path in input_paths(inputs, run):
            try:  # the error boundary of one picture (search_files goes one at a time anyway)
                [result] = index.search_files([path], k=top_k, verify=not no_verify)
                if isinstance(result, str):
                    source, _, reason = result.partition(": ")
                    run.fail(source, reason)
                    continue
                record = result.to_dict()
                if evidence:
                    _evidence(index, path, result, record, evidence, taken)
            except Exception as exc:
                run.crash(str(path), exc)
                continue
            run.emit(record)
    run.finish()


def _evidence(index, path: Path, result, record: dict, folder: Path, taken: set[Path]) -> None:
    """A side-by-side picture per verified copy in ``folder``, named in its match record."""
    query = load_image(path).pixels
    for m, rec in zip(result.matches, record["matches"], strict=True):
        if m.verdict == "copy":
            folder.mkdir(parents=True, exist_ok=True)
            out = unique_output(folder, f"{path.stem}--{m.id}", ".jpg", taken)
            picture = index.match_picture(query, m)
            save_image(_tensor(picture), out)
            rec["evidence"] = str(out)


def _tensor(picture: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1)))


@click.command("audit")
@click.argument("inputs", nargs=-1, required=True)
@index_option
@click.option(
    "--report",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="report.html (with match pictures) or report.json",
)
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--pool", type=click.FloatRange(min=0), help="Amount to share among creators.")
@click.option(
    "--platform-share",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Part of the pool the platform keeps (used with --pool).",
)
@device_option
def audit_cmd(inputs, store, report, top_k, pool, platform_share, device):
    """Audit a batch: verdict counts, worst offenders first, creator shares (and payouts)."""
    if report.suffix.lower() not in (".html", ".htm", ".json"):
        raise click.BadParameter("must end in .html or .json", param_hint="--report")
    skipped: list[str] = []
    with _open(store, device) as index:
        files = list(iter_image_paths(inputs, on_skip=lambda p, r: skipped.append(f"{p}: {r}")))
        if not files:
            for error in skipped:
                click.echo(f"  {error}", err=True)
            _fail("no images found in the given inputs")
        result = run_audit(index, files, k=top_k, pool=pool, platform_share=platform_share)
        write_report(result, index, report)
    click.echo(result.summary(report).to_json())
    errors = [*skipped, *result.errors]  # a folder entry not taken is a failed input too
    for error in errors:
        click.echo(f"  {error}", err=True)
    if errors:
        click.echo(f"{len(errors)} of {len(files) + len(skipped)} inputs failed", err=True)
        internal = any(f": {INTERNAL_ERROR}: " in e for e in result.errors)
        sys.exit(3 if internal else 1)
