"""``aigc detect`` and ``aigc detector train | eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from aigcguard.cli.common import Run, batch_size_option, device_option
from aigcguard.detectors import api
from aigcguard.device import pick_device
from aigcguard.imageio import ImageLoadError, iter_image_paths, load_image
from aigcguard.provenance.embedders import EmbedderError

model_option = click.option(
    "--model",
    default=api.DEFAULT_MODEL,
    show_default=True,
    help="`default` (shipped NPR, trained on CIFAKE), `spectral` (shipped, trained on "
    "full-resolution aigc_small) or the path of a detector saved by `aigc detector train`.",
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
    from aigcguard.detectors.video import VIDEO_EXTENSIONS, score_video

    detector = _load(model, device)
    run = Run()
    paths = list(iter_image_paths(inputs))
    pending: list[tuple[str, object]] = []

    def flush():
        if pending:
            for det in api.score(detector, [t for _, t in pending], [p for p, _ in pending]):
                run.emit(det.to_dict())
            pending.clear()

    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            flush()
            try:
                result = score_video(detector, path, every_s=every, segment_s=segment)
            except ValueError as exc:
                run.fail(str(path), str(exc))
                continue
            record = result.to_dict()
            record.update(model=detector.spec, threshold=round(detector.calibration.threshold, 6))
            run.emit(record)
            continue
        try:
            pending.append((str(path), load_image(path).pixels))
        except ImageLoadError as exc:
            run.fail(exc.source, exc.reason)
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
@click.option(
    "--kind", type=click.Choice(["npr", "spectral", "clip-probe"]), default="npr", show_default=True
)
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
@click.option("--init", help="Start from this detector (npr): `default` or a path.")
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
    from aigcguard.detectors.base import fit_calibration
    from aigcguard.detectors.data import load_folder, split_names
    from aigcguard.detectors.training import TrainConfig, train_npr

    reals, real_names, errs_r = load_folder(real)
    fakes, fake_names, errs_f = load_folder(fake)
    for e in errs_r + errs_f:
        click.echo(f"skipped {e}", err=True)
    if not reals or not fakes:
        click.echo("error: both --real and --fake need readable images", err=True)
        sys.exit(1)
    images = reals + fakes
    labels = np.array([0] * len(reals) + [1] * len(fakes))
    val, train = split_names(real_names + fake_names, (val_fraction, 1 - val_fraction))
    if len(set(labels[val].tolist())) < 2 or len(set(labels[train].tolist())) < 2:
        click.echo("error: too few images to give both splits both classes", err=True)
        sys.exit(1)
    if kind in ("spectral", "clip-probe"):
        import torch

        from aigcguard.detectors.clip_probe import ClipProbeDetector
        from aigcguard.detectors.spectral import TRAINING as SPECTRAL_TRAINING
        from aigcguard.detectors.spectral import SpectralDetector

        tensors = [torch.from_numpy(np.array(a, np.uint8)).permute(2, 0, 1) for a in images]
        train_x = [tensors[i] for i in train]
        if kind == "spectral":
            det = SpectralDetector.fit(train_x, labels[train], seed=seed, **SPECTRAL_TRAINING)
        elif not clip_spec:
            raise click.UsageError("--kind clip-probe needs --clip clip:ARCH/PRETRAINED")
        else:
            try:
                det = ClipProbeDetector.fit(
                    clip_spec, train_x, labels[train], seed=seed, device=device
                )
            except EmbedderError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(1)
        det.calibration = fit_calibration(
            det.raw_scores([tensors[i] for i in val]), labels[val], target_fpr=target_fpr
        )
        det.save(out)
    else:
        cfg = TrainConfig(crop=crop, epochs=epochs, seed=seed, target_fpr=target_fpr, inputs=inputs)
        det = train_npr(
            [images[i] for i in train],
            labels[train],
            [images[i] for i in val],
            labels[val],
            out=out,
            cfg=cfg,
            device=pick_device(device),
            init=api.load(init) if init else None,
            log=lambda m: click.echo(m, err=True),
        )
    click.echo(
        json.dumps(
            {
                "model": str(out),
                "kind": kind,
                "train": len(train),
                "validation": len(val),
                "calibration": det.calibration.to_dict(),
            }
        )
    )


@detector_group.command("eval")
@click.option("--real", required=True, type=folder_type)
@click.option("--fake", required=True, type=folder_type)
@model_option
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a markdown table.")
@device_option
def eval_cmd(real, fake, model, as_json, device):
    """AUC, AP, accuracy at the threshold, TPR at 1% and 5% FPR and calibration error, clean
    and under JPEG 90/75/50 and resize x0.5."""
    import torch

    from aigcguard.detectors.metrics import evaluate, markdown_table

    detector = _load(model, device)

    def tensors(images):
        return [torch.from_numpy(np.array(a, np.uint8)).permute(2, 0, 1) for a in images]

    results = evaluate(detector, tensors(_folder(real, "--real")), tensors(_folder(fake, "--fake")))
    if as_json:
        click.echo(json.dumps({k: v.to_dict() for k, v in results.items()}))
    else:
        click.echo(markdown_table(results))
