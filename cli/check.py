"""`aigc check`: every signal about each picture and a summary of what decided it."""

from __future__ import annotations

from pathlib import Path

import click

from aigcguard.cli.common import Run, device_option, input_paths, store_spec
from aigcguard.results import is_internal_error


@click.command("check")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--index",
    callback=store_spec,
    help="Similarity store to search for copied works: a store directory or a Milvus URI "
    "(milvus://HOST:PORT/COLLECTION, milvus-lite://FILE.db/COLLECTION).",
)
@click.option(
    "--ledger",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="AIGC_LEDGER",
    help="Ledger of generated pictures (or AIGC_LEDGER).",
)
@click.option(
    "--key",
    default=None,
    envvar="AIGC_WATERMARK_KEY",
    help="Watermark key to look for (or AIGC_WATERMARK_KEY); the public default key if unset.",
)
@click.option(
    "--detector",
    default="default",
    show_default=True,
    help="A shipped detector (default, spectral, npr-cifake) or a detector file; the same "
    "default as `aigc detect`.",
)
@click.option(
    "--trust",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    envvar="AIGC_TRUST",
    help="PEM bundle of trusted C2PA roots, e.g. the C2PA trust list (repeatable; or "
    "AIGC_TRUST, files separated by the path separator; docs/provenance.md says where to get "
    "them).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report here.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="json: one line per picture; table: a short readable summary.",
)
@device_option
def check_cmd(inputs, index, ledger, key, detector, trust, html_path, fmt, device):
    """Check each picture with every available signal: Content Credentials, labels and
    generator metadata, known watermarks, our watermark and its ledger record, the detector,
    and similarity (with --index). The summary (generated, partly_generated, captured,
    likely_generated, no_evidence) names the evidence that decided it."""
    from aigcguard.provenance.similarity.descriptors import DescriptorError
    from aigcguard.provenance.similarity.stores import StoreError
    from aigcguard.service.check import Checker, write_html

    try:
        checker = Checker(
            key=key, ledger=ledger, index=index, detector=detector, trust=trust, device=device
        )
    except (ValueError, StoreError, DescriptorError) as exc:
        raise click.ClickException(str(exc)) from None
    run = Run()
    paths = input_paths(inputs, run)
    kept = []
    if fmt == "table":
        click.echo(f"{'verdict':<17} {'decided by':<28} picture")
    with checker:
        for path, result in zip(paths, checker.check_files(paths), strict=True):
            if isinstance(result, str):
                run.fail(str(path), result)
                continue
            try:
                _show(result, fmt, run)
            except Exception as exc:  # the error boundary of one picture
                run.crash(str(path), exc)
                continue
            if html_path is not None:
                kept.append(result)
        if html_path is not None:
            write_html(html_path, kept, checker)
            click.echo(f"report: {html_path}", err=True)
    run.finish()


def _show(result, fmt: str, run: Run) -> None:
    """One picture's result, as a JSON line or table rows; a signal that failed with an
    unexpected exception (a bug) makes the run exit 3, its error in the result."""
    if fmt == "table":
        decided = ", ".join(result.summary.decided_by) or "-"
        click.echo(f"{result.summary.verdict:<17} {decided:<28} {result.path}")
        for reason in result.summary.reasons:
            click.echo(f"{'':<17} - {reason}")
        run.done += 1
    else:
        run.emit(result.to_dict())
    for name, text in result.errors.items():
        if is_internal_error(text):
            run.note_internal(result.path, f"signal {name}: {text}")
