"""``aigc batch embed | detect | watermark | check``: a job over many files, on Ray or here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from aigcguard.cli.common import device_option, store_spec


def _common(func):
    options = [
        click.argument("sources", nargs=-1, required=True),
        click.option(
            "--out",
            "dest",
            required=True,
            type=click.Path(path_type=Path),
            help="Folder for the Parquet part files (a re-run skips what is already there).",
        ),
        click.option(
            "--ray-address",
            default="local",
            show_default=True,
            help="local: Ray on this machine; auto: the cluster this machine belongs to; "
            "ray://HOST:10001 or HOST:6379: that cluster; none: this process, without Ray.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1),
            help="Ray actors at most (each loads the models once). Default and limit: one per "
            "CPU, or one per GPU when the cluster has GPUs.",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(0, min_open=True),
            help="GPUs per actor when the cluster has GPUs (0.5: two actors share one).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 4096),
            default=32,
            show_default=True,
            help="Files decoded and processed together.",
        ),
        click.option(
            "--rows-per-file",
            type=click.IntRange(1),
            default=1024,
            show_default=True,
            help="Rows gathered into one part file.",
        ),
        device_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run(task: str, sources, dest, options: dict, **engine) -> None:
    from aigcguard.service.batch import BatchError, run_batch

    try:
        report = run_batch(task, sources, dest, options=options, **engine)
    except BatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(report.to_dict() | {"failed": report.failed}, ensure_ascii=False))
    for damaged in report.damaged:
        click.echo(f"damaged part file: {damaged}", err=True)
    if report.failures:
        click.echo(f"{report.failed} of {report.processed} inputs failed:", err=True)
        for path, reason in report.failures.items():
            click.echo(f"  {path}: {reason}", err=True)
        sys.exit(1)


@click.group("batch")
def batch_group() -> None:
    """Run a job over many files (folders, files, or .txt/.csv/.parquet listings with a
    `path` column) on Ray Data, and write Parquet: one row per file with the fields the
    matching command prints as JSON, or its error. Prints a JSON summary; exits 1 if any
    file failed (its row says why)."""


@batch_group.command("embed")
@_common
@click.option(
    "--embedder",
    default=None,
    help="Descriptor spec (vlad, pdq, clip:ARCH/PRETRAINED); default: the offline default, vlad.",
)
def embed_cmd(sources, dest, embedder, **engine):
    """Similarity embeddings: `vector` (or `hash` for PDQ) and the embedder spec."""
    _run("embed", sources, dest, {"embedder": embedder}, **engine)


@batch_group.command("detect")
@_common
@click.option(
    "--model",
    default=None,
    help="`default`, `spectral` or a detector file (as for `aigc detect`).",
)
def detect_cmd(sources, dest, model, **engine):
    """Real versus generated: the fields of `aigc detect`."""
    _run("detect", sources, dest, {"model": model}, **engine)


@batch_group.command("watermark")
@_common
@click.option("--method", default=None, help="Watermark method; default: the default method.")
@click.option(
    "--key",
    default=None,
    envvar="AIGC_WATERMARK_KEY",
    help="Watermark key (or AIGC_WATERMARK_KEY); the public default key if unset.",
)
@click.option("--known", is_flag=True, help="Also look for Stable Diffusion's and SDXL's marks.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="p-value at or below which a mark counts as detected (default 1e-6).",
)
def watermark_cmd(sources, dest, method, key, known, threshold, **engine):
    """Watermark detection: the fields of `aigc watermark detect`."""
    options = {"method": method, "key": key, "known": known or None, "threshold": threshold}
    _run("watermark", sources, dest, options, **engine)


@batch_group.command("check")
@_common
@click.option(
    "--index",
    callback=store_spec,
    help="Similarity store (directory or Milvus URI) every worker searches.",
)
@click.option(
    "--ledger",
    type=click.Path(exists=True, dir_okay=False),
    envvar="AIGC_LEDGER",
    help="Ledger of generated pictures (or AIGC_LEDGER).",
)
@click.option(
    "--key",
    default=None,
    envvar="AIGC_WATERMARK_KEY",
    help="Watermark key (or AIGC_WATERMARK_KEY); the public default key if unset.",
)
@click.option("--detector", default=None, help="auto (default), default, spectral, or a file.")
@click.option(
    "--trust",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of trusted C2PA roots (repeatable).",
)
def check_cmd(sources, dest, index, ledger, key, detector, trust, **engine):
    """Every signal, as `aigc check`: the summary and each signal (JSON text), plus `verdict`."""
    options = {
        "index": None if index is None else str(index if "://" in str(index) else index.resolve()),
        "ledger": None if ledger is None else str(Path(ledger).resolve()),
        "key": key,
        "detector": detector,
        "trust": tuple(str(Path(t).resolve()) for t in trust) or None,
    }
    _run("check", sources, dest, options, **engine)
