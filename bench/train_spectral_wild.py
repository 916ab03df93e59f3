"""Train the default detector: the spectral features retrained on the wild set, made exactly as
each leave-one-family-out fold made its model, on every picture.

    python bench/train_spectral_wild.py [--out data/detector_spectral_wild.pt]

Data: ``../shared/data/wild`` (manifest.csv, 1,500 crops: 701 real photos of 30 sources, 799
generated pictures of 11 generator families). Features: the shipped ``spectral`` detector's
(:func:`aigcguard.detectors.spectral.spectral_features`, Y, Cb and Cr of every 64 px tile,
short side at most 512), measured on the picture, its half and its quarter
(:func:`~aigcguard.detectors.spectral.multiscale_features`), of each picture under each
condition of :data:`aigcguard.perturb.CONDITIONS` (*as stored*; *platform*: long side at most
1024, JPEG 75; *screenshot*; *crop 50%*), both classes alike. Model: the ``reference`` of
bench/detector_cnn.py and bench/detector_residual.py
(:func:`aigcguard.detectors.grouped.spectral_reference`: standardised features, logistic
regression), through :func:`aigcguard.detectors.grouped.fit_nested`: C from 0.01, 0.1, 1, the
scales from :data:`~aigcguard.detectors.spectral.SCALE_CHOICES` (the picture; and its half;
and its quarter) and the conditions to train on (:data:`TRAIN_CHOICES`: *as stored* and
*platform*, or all four) chosen together by a 4-fold CV of whole sources (on the inner scores
*as stored*), fitted on those conditions of every picture, calibrated (Platt scaling) on the
inner out-of-fold scores under all four conditions pooled, the threshold the strictest of the
four that let 1% of their real pictures through. Its grouped-CV figures are the ``default``
rows of bench/results/detector_default.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from detector_wild import git_commit

from aigcguard.detectors import api
from aigcguard.detectors.grouped import (
    fit_nested,
    load_manifest,
    score_records,
    spectral_reference,
)
from aigcguard.detectors.spectral import (
    CHANNELS,
    FEATURE_DIM,
    SCALE_CHOICES,
    SpectralDetector,
    multiscale_features,
    shrink,
)
from aigcguard.perturb import CONDITIONS

#: the threshold keeps 1% of real photos under each of these (the strictest of their
#: thresholds): a picture may reach the detector as stored, re-encoded, shot or cropped
CALIBRATE_ON = ("as stored", "platform", "screenshot", "crop 50%")
#: the conditions the inner CV may choose to train on: as stored and platform, or all four
TRAIN_CHOICES = (("as stored", "platform"), CALIBRATE_ON)
TARGET_FPR = 0.01
MIN_SIDE = 128
LONGEST = max(SCALE_CHOICES, key=len)


def feature_settings() -> SpectralDetector:
    """The shipped ``spectral`` detector: its feature settings (tile, tiles, planes, the
    512 px short side), not its classifier, are the default's."""
    return api.load("spectral", device="cpu")


def features(images, base: SpectralDetector, scales=LONGEST) -> np.ndarray:
    """The default's features of ``images`` at ``scales`` (by default every scale its nested
    CV may choose; a choice is a leading block of columns), with ``base``'s settings."""
    return multiscale_features(
        [shrink(im, base.max_side) for im in images],
        scales=scales,
        tile=base.tile,
        max_tiles=base.max_tiles,
        channels=base.channels,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=common.WILD_DIR)
    ap.add_argument("--out", type=Path, default=common.ROOT / "data" / "detector_spectral_wild.pt")
    args = ap.parse_args()
    manifest_path = common.wild_manifest(args.wild)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    manifest = load_manifest(manifest_path)
    base = feature_settings()
    scored = score_records(
        manifest.records,
        {"features": lambda images: features(images, base)},
        {v: CONDITIONS[v] for v in CALIBRATE_ON},
    )
    if scored.skipped:
        raise SystemExit("unreadable pictures:\n" + "\n".join(scored.skipped))
    views = {v: scored.values[("features", v)] for v in CALIBRATE_ON}
    t_features = time.perf_counter() - t0
    records = scored.records
    model, cal, setting, aucs = fit_nested(
        spectral_reference(SCALE_CHOICES, width=CHANNELS[base.channels] * FEATURE_DIM),
        views,
        records,
        np.arange(len(records)),
        train_view_choices=TRAIN_CHOICES,
        calibrate_views=CALIBRATE_ON,
        target_fpr=TARGET_FPR,
    )
    scaler, lr = model[-2], model[-1]
    det = SpectralDetector(
        scaler.mean_,
        scaler.scale_,
        lr.coef_[0],
        lr.intercept_[0],
        tile=base.tile,
        max_tiles=base.max_tiles,
        channels=base.channels,
        max_side=base.max_side,
        min_side=MIN_SIDE,
        scales=setting["scales"],
        calibration=cal,
    )
    # the detector must give what the fitted pipeline gives, from pictures
    from aigcguard.imageio import load_image

    probe = np.arange(0, len(records), 150)
    got = det.raw_scores([load_image(records[i].path).pixels for i in probe])
    want = model.decision_function(views["as stored"][probe])
    if not np.allclose(got, want, atol=1e-6):
        raise SystemExit(f"detector and pipeline disagree: {got} vs {want}")
    labels = np.array([r.label for r in records])
    det.training = {
        "data": "wild",
        "manifest": _shown(manifest_path),
        "pictures": {"real": int((labels == 0).sum()), "generated": int(labels.sum())},
        "views": list(setting["train_views"]),
        "calibrated_on": list(CALIBRATE_ON),
        "setting": {k: list(v) if isinstance(v, tuple) else v for k, v in setting.items()},
        "inner_auc": [round(float(a), 4) for a in aucs],
        "target_fpr": TARGET_FPR,
        "commit": git_commit(),
        "made": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": common.machine_info()["cpu_model"],
        "seconds": round(time.perf_counter() - t0, 1),
        "feature_seconds": round(t_features, 1),
    }
    det.save(args.out)
    print(json.dumps({"out": str(args.out), **det.training, **cal.to_dict()}, indent=1))
    return 0


def _shown(path: Path) -> str:
    """The manifest as the docs name it: relative to the project's parent when it is the
    shared copy, so the file records no machine's absolute path."""
    try:
        return "../" + path.resolve().relative_to(common.ROOT.parent.resolve()).as_posix()
    except ValueError:
        return path.name


if __name__ == "__main__":
    raise SystemExit(main())
