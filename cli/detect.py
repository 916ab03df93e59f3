"""``aigc detect`` and ``aigc detector train | eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from aigcguard.cli.common import (
    BATCH_PIXELS,
    EXIT_UNUSABLE,
    RegistryChoice,
    Run,
    batch_pixels,
    batch_size_option,
    device_option,
    input_paths,
    load_one,
    per_item,
)
from aigcguard.detectors import api
from aigcguard.detectors.base import DETECTORS
from aigcguard.detectors.cards import model_cards
from aigcguard.imageio import image_extensions


def _model_help() -> str:
    """The shipped detectors, each with the first clause of its model card (data/README.md),
    so the help cannot drift from what ships."""
    try:
        cards = model_cards()
    except ValueError:  # a broken card file must not take the command down; tests catch it
        cards = {}
    named = [
        f"`{name}`" + (f": {cards[file]['en'].split(';')[0]}" if file in cards else "")
        for name, file in api.SHIPPED.items()
    ]
    return "; ".join(named) + "; or the path of a detector saved by `aigc detector train`."


model_option = click.option(
    "--model", default=api.DEFAULT_MODEL, show_default=True, help=_model_help()
)


def _load(model: str, device: str):
    try:
        return api.load(model, device=device)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.command("detect")
@click.argument("inputs", nargs=-1, required=True)
@model_option
@click.option(
    "--every",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Videos: seconds between sampled frames.",
)
@click.option(
    "--segment",
    type=click.FloatRange(min=0.01),
    help="Videos: group sampled frames into windows of this many seconds.",
)
@batch_size_option
@device_option
def detect_cmd(inputs, model, every, segment, batch_size, device):
    """Is each picture (or video) generated? One JSON line each: path, score (calibrated
    probability of being generated), band, model, threshold."""
    from aigcguard.detectors.video import VIDEO_EXTENSIONS, detect_video

    detector = _load(model, device)
    run = Run()
    # a folder's videos are taken too, as when named
    paths = input_paths(inputs, run, extensions=image_extensions() | VIDEO_EXTENSIONS)
    pending: list[tuple[str, object]] = []

    def flush():
        if not pending:
            return
        names = [p for p, _ in pending]

        def score(idx):
            return api.score(detector, [pending[i][1] for i in idx], [names[i] for i in idx])

        for det in per_item(score, names, run):
            if det is not None:
                run.emit(det.to_dict())
        pending.clear()

    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            flush()
            try:  # the error boundary of one video
                result = detect_video(detector, path, every_s=every, segment_s=segment)
            except Exception as exc:
                run.crash(str(path), exc)
                continue
            run.emit(result.to_dict())
            continue
        image = load_one(path, run)
        if image is None:
            continue
        if pending and batch_pixels([*(px for _, px in pending), image.pixels]) > BATCH_PIXELS:
            flush()  # a batch's pictures stay under BATCH_PIXELS decoded pixels together
        pending.append((str(path), image.pixels))
        if len(pending) >= batch_size:
            flush()
    flush()
    run.finish()


@click.group("detector")
def detector_group() -> None:
    """Train and evaluate real-versus-generated detectors."""


def _folder(path: Path, what: str) -> list[np.ndarray]:
    from aigcguard.detectors.data import load_folder

    images, _, errors = load_folder(path)
    for e in errors:
        click.echo(f"skipped {e}", err=True)
    if not images:
        click.echo(f"error: no readable images in {what} folder {path}", err=True)
        sys.exit(1)
    return images


folder_type = click.Path(file_okay=False, exists=True, path_type=Path)


@detector_group.command("train")
@click.option("--real", required=True, type=folder_type, help="Folder of real pictures.")
@click.option("--fake", required=True, type=folder_type, help="Folder of generated pictures.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=RegistryChoice(DETECTORS), default="npr", show_default=True)
@click.option("--clip", "clip_spec", help="clip-probe: the CLIP spec, clip:ARCH/PRETRAINED.")
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True)
@click.option("--crop", type=click.IntRange(16, 1024), default=64, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0.05, 0.5), default=0.15, show_default=True)
@click.option("--target-fpr", type=click.FloatRange(0.001, 0.5), default=0.05, show_default=True)
@click.option(
    "--inputs",
    type=click.Choice(["npr", "npr+rgb"]),
    default="npr+rgb",
    show_default=True,
    help="npr: what the network sees, the residual alone or with the picture.",
)
@click.option("--init", help="Start from this npr detector: `npr-cifake` or a path.")
@click.option("--seed", type=int, default=0, show_default=True)
@device_option
def train_cmd(
    real,
    fake,
    out,
    kind,
    clip_spec,
    epochs,
    crop,
    val_fraction,
    target_fpr,
    inputs,
    init,
    seed,
    device,
):
    """Train a detector; the validation split (by file-name hash) calibrates it and sets the
    threshold for --target-fpr. npr training resumes from OUT.ckpt when rerun."""
    from aigcguard.detectors.base import MissingSettingError, TrainingError, TrainOptions
    from aigcguard.detectors.data import load_training_set
    from aigcguard.detectors.training import train_detector

    def log(message: str) -> None:
        click.echo(message, err=True)

    # Each kind reads the settings it uses (see its Detector.train).
    settings = {"clip": clip_spec, "epochs": epochs, "crop": crop, "inputs": inputs, "init": init}
    options = TrainOptions(
        out=out, target_fpr=target_fpr, seed=seed, device=device, settings=settings, log=log
    )
    try:
        data = load_training_set(
            real, fake, val_fraction=val_fraction, on_skip=lambda e: log(f"skipped {e}")
        )
        result = train_detector(kind, data, options)
    except MissingSettingError as exc:
        raise click.UsageError(f"--kind {exc.kind} needs --{exc.setting} {exc.example}") from None
    except TrainingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result.to_dict()))


manifest_type = click.Path(dir_okay=False, exists=True, path_type=Path)
#: ``--by`` choices (``aigcguard.detectors.grouped.GROUPINGS``, not imported at start-up)
GROUPS = ("family", "source", "generator")


@detector_group.command("eval")
@click.option("--real", type=folder_type, help="Folder of real pictures (with --fake).")
@click.option("--fake", type=folder_type, help="Folder of generated pictures (with --real).")
@click.option(
    "--manifest",
    type=manifest_type,
    help="A CSV of labelled pictures instead (columns file, label real/ai, and generator, "
    "source... when known, as ../shared/data/wild/manifest.csv): metrics per group with 95% "
    "intervals, under each condition.",
)
@click.option(
    "--by",
    type=click.Choice(GROUPS),
    multiple=True,
    help="--manifest: a table per generator family (default), source or generator; repeat "
    "for several.",
)
@click.option(
    "--conditions",
    help="--manifest: comma-separated, from `as stored`, `platform`, `screenshot`, "
    "`crop 50%` (default: all four).",
)
@click.option(
    "--boot",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="--manifest: bootstrap resamples behind each interval.",
)
@model_option
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a markdown table.")
@device_option
def eval_cmd(real, fake, manifest, by, conditions, boot, model, as_json, device):
    """AUC, AP, accuracy at the threshold, TPR at 1% and 5% FPR and calibration error, clean
    and under JPEG 90/75/50 and resize x0.5 (--real and --fake); or, with --manifest, per
    generator family or source: AUC and TPR at 1% / 5% FPR with bootstrap intervals and the
    shares flagged at the model's threshold (Clopper-Pearson), under each condition. Rows or
    files that cannot be used are named on stderr and skipped; exit 1 when nothing could be
    scored."""
    if manifest is not None:
        if real or fake:
            raise click.UsageError("give --manifest or --real and --fake, not both")
        _eval_manifest(manifest, by, conditions, boot, model, as_json, device)
        return
    if real is None or fake is None or by or conditions:
        raise click.UsageError(
            "give --real and --fake folders, or --manifest (--by and --conditions go with it)"
        )
    from aigcguard.detectors.data import to_tensors
    from aigcguard.detectors.metrics import Evaluation, evaluate

    detector = _load(model, device)
    reals, fakes = to_tensors(_folder(real, "--real")), to_tensors(_folder(fake, "--fake"))
    evaluation = Evaluation(evaluate(detector, reals, fakes))
    click.echo(json.dumps(evaluation.to_dict()) if as_json else evaluation.markdown())


def _condition_names(text: str | None) -> list[str]:
    from aigcguard.perturb import CONDITIONS

    if not text:
        return list(CONDITIONS)
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from "
            + ", ".join(CONDITIONS),
            param_hint="--conditions",
        )
    return names


def _report_skipped(skipped, total: int) -> None:
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    if skipped:
        click.echo(f"{len(skipped)} of {total} rows skipped", err=True)


def _eval_manifest(manifest, by, conditions, boot, model, as_json, device):
    from tqdm import tqdm

    from aigcguard.detectors.grouped import (
        NothingToEvaluateError,
        evaluate_manifest,
        load_manifest,
    )

    names = _condition_names(conditions)
    try:
        rows = load_manifest(manifest)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    total = len(rows.records) + len(rows.skipped)
    detector = _load(model, device)
    with tqdm(total=len(rows.records), unit="img", file=sys.stderr, disable=None) as bar:

        def progress(done, _total):
            bar.update(done - bar.n)

        try:
            result = evaluate_manifest(
                rows,
                detector,
                by=by or ("family",),
                conditions=names,
                n_boot=boot,
                progress=progress,
            )
        except NothingToEvaluateError as exc:
            _report_skipped(exc.skipped, total)
            click.echo(f"error: {manifest}: {exc}", err=True)
            sys.exit(EXIT_UNUSABLE)
    _report_skipped(result.skipped, total)
    click.echo(json.dumps(result.to_dict()) if as_json else result.markdown())
