"""Train the full-resolution spectral detector on aigc_small; cross-validate it; ship it.

    python bench/train_spectral.py [--repeats 5] [--out data/detector_spectral.pt] [--md FILE]

aigc_small has 100 pictures, too few to hold out a test set and still train on what is left,
so the figures are 5-fold cross-validated (stratified, repeated ``--repeats`` times with other
fold draws; mean and spread over repeats): each fold's pictures are scored by a detector
trained on the other four folds only, clean and under JPEG 90/75/50 and resize x0.5.

Both classes go through the size-matched protocol of bench/detector_eval.py (every picture
first at the generated files' 559 px and JPEG 75, then short side 512, centre crop, JPEG 90):
the photos are 723 to 3996 px wide and the generated pictures all 559 px, and a detector
trained on plainly resized pictures learns how much each was shrunk. The figures on the plain
protocol (same size only) are reported beside them for the detector trained size-matched.

Training sees each picture clean and after the platform operations of ``TRAINING["views"]``
(JPEG 90/75/50, halving), both classes alike; the test columns apply the same operations to
the held-out fold's pictures.

The shipped detector is then trained on all 100 pictures; its calibration (Platt scaling and
the 5%-FPR threshold) is fitted on the pooled out-of-fold scores, which no model saw in
training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from detector_eval import AI_FILES, AIGC_SMALL, aigc_small

from aigcguard.detectors.base import fit_calibration
from aigcguard.detectors.spectral import TRAINING as SETTINGS
from aigcguard.detectors.spectral import SpectralDetector, spectral_features
from aigcguard.perturb import PERTURBATIONS


def tpr_at(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    f, t, _ = roc_curve(labels, scores)
    return float(t[np.searchsorted(f, fpr, side="right") - 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=common.ROOT / "data" / "detector_spectral.pt")
    ap.add_argument("--md", type=Path, help="also write the markdown table here")
    args = ap.parse_args()
    if not AIGC_SMALL.is_dir():
        print(f"error: {AIGC_SMALL} is missing", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    real, fake, _ = aigc_small(AI_FILES)
    images = real + fake
    labels = np.array([0] * len(real) + [1] * len(fake))
    plain_real, plain_fake, _ = aigc_small()
    plain = plain_real + plain_fake
    # Features once per picture and operation (the classifier is refitted per fold on rows of
    # them, as SpectralDetector.fit would compute them); training views and test conditions
    # are the same platform operations, on other pictures.
    feat = dict(tile=64, max_tiles=SETTINGS["max_tiles"], channels=SETTINGS["channels"])
    features = {
        name: spectral_features([f(im) for im in images], **feat)
        for name, f in PERTURBATIONS.items()
    }
    features["plain protocol (same size only)"] = spectral_features(plain, **feat)
    fit_args = {k: v for k, v in SETTINGS.items() if k != "views"}
    train_views = ["clean", *SETTINGS["views"]]
    print(f"features: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    # out-of-fold raw scores, per repeat and test condition
    oof = {name: np.zeros((args.repeats, len(images))) for name in features}
    for r in range(args.repeats):
        folds = StratifiedKFold(5, shuffle=True, random_state=r).split(labels, labels)
        for k, (tr, te) in enumerate(folds):
            det = SpectralDetector.fit_features(
                np.concatenate([features[v][tr] for v in train_views]),
                np.tile(labels[tr], len(train_views)),
                seed=100 * r + k,
                **fit_args,
            )
            for name, f in features.items():
                oof[name][r, te] = det.scores_from_features(f[te])
        print(f"repeat {r + 1}/{args.repeats}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    rows = [
        "| Test pictures | AUC (mean ± sd over repeats) | AP | TPR @ 1% FPR | TPR @ 5% FPR |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, scores in oof.items():
        aucs = [roc_auc_score(labels, s) for s in scores]
        ap_ = np.mean([average_precision_score(labels, s) for s in scores])
        t1 = np.mean([tpr_at(labels, s, 0.01) for s in scores])
        t5 = np.mean([tpr_at(labels, s, 0.05) for s in scores])
        rows.append(
            f"| {name} | {np.mean(aucs):.3f} ± {np.std(aucs):.3f} | {ap_:.3f} | {t1:.3f} | "
            f"{t5:.3f} |"
        )
    clean_oof = oof["clean"]
    cal = fit_calibration(clean_oof.reshape(-1), np.tile(labels, args.repeats), target_fpr=0.05)
    final = SpectralDetector.fit(images, labels, seed=0, **SETTINGS)
    final.calibration = cal
    final.training = {
        "data": "aigc_small",
        "protocol": "size-matched (559 px JPEG 75, then 512 px centre crop, JPEG 90)",
        "settings": SETTINGS,
        "cv_auc": float(np.mean([roc_auc_score(labels, s) for s in clean_oof])),
        "seconds": time.perf_counter() - t0,
    }
    final.save(args.out)
    info = common.machine_info()
    markdown = "\n".join(
        [
            f"### Spectral (YCbCr) detector on aigc_small, {args.repeats} x 5-fold "
            f"cross-validation ({len(real)} real, {len(fake)} generated, size-matched)",
            "",
            *rows,
            "",
            f"Settings {SETTINGS}; {time.perf_counter() - t0:.0f} s in all on "
            f"{info['cpu_model']} (torch {info['torch']}). Shipped as {args.out.name}: "
            f"calibration {cal.to_dict()}.",
        ]
    )
    common.print_markdown(markdown, args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
