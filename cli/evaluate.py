"""``aigc eval copy``: how well does a descriptor find edited copies of your own references?"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from aigcguard.cli.common import descriptor_option, device_option
from aigcguard.imageio import iter_image_paths, load_images
from aigcguard.provenance.similarity import copyeval
from aigcguard.provenance.similarity.descriptors import DescriptorError
from aigcguard.provenance.similarity.index import (
    Reference,
    SimilarityIndex,
    Thresholds,
    save_calibration,
)
from aigcguard.provenance.similarity.stores import StoreError


def _pictures(folder: Path) -> list[tuple[str, object]]:
    def skipped(path, reason):
        click.echo(f"skipped {path}: {reason}", err=True)

    loaded, failed = load_images(iter_image_paths([folder], on_skip=skipped))
    for exc in failed:
        skipped(exc.source, exc.reason)
    return [(img.source, img.pixels.permute(1, 2, 0).numpy()) for img in loaded]


@click.group("eval")
def eval_group() -> None:
    """Benchmarks on your own data."""


@eval_group.command("copy")
@click.option(
    "--refs", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--distractors",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Pictures that copy none of the references (they become unmatched queries).",
)
@descriptor_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--calibrate-into",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Write the measured copy/similar score levels into this index's calibration.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@device_option
def copy_cmd(refs, distractors, descriptor, seed, calibrate_into, as_json, device):
    """Edit every reference eight ways (crops, rescales, JPEG, colour, overlays, mirror,
    rotation, pasting), search them among the distractors, report muAP, recall at 90%
    precision and accuracy at rank 1."""
    references = _pictures(refs)
    others = _pictures(distractors) if distractors else []
    if not references:
        click.echo(f"error: no readable images in {refs}", err=True)
        sys.exit(1)
    queries = copyeval.build_queries(references, others, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            index = SimilarityIndex.create(
                Path(tmp) / "store", descriptor=descriptor, device=device
            )
        except (DescriptorError, StoreError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        with index:
            refs_in = [Reference(name, title=name) for name, _ in references]
            result, skipped = copyeval.register_and_evaluate(index, refs_in, queries)
        for error in skipped:
            click.echo(f"skipped {error}", err=True)
    if calibrate_into:
        if result.score_at_p90 is None:
            click.echo("error: precision never reached 90%; calibration not written", err=True)
            sys.exit(1)
        target = save_calibration(
            calibrate_into,
            Thresholds(result.score_at_p90, result.score_at_p50, precision=0.9),
            embedder=result.embedder,
            data=f"aigc eval copy --refs {refs}, {result.queries} queries",
        )
        click.echo(f"wrote {target}", err=True)
    if as_json:
        click.echo(result.to_json())
        return
    click.echo(result.markdown())
