"""The residual CNN under leave-one-family-out CV on the wild set, beside the reference and
the shortcut baseline; and the shipped model.

    python bench/detector_cnn.py [--boot 1000] [--device auto] [--steps 1200]
        [--ship data/detector_residual_cnn.pt]

Data: ``../shared/data/wild`` (manifest.csv, 1,500 crops). Folds:
:func:`aigcguard.detectors.grouped.family_folds` (each generator family held out with a
rotating group of real sources; no source on both sides). Per fold, nothing is chosen on its
test pictures: the training part is split once more by whole sources (the first split of a
stratified 4-fold grouping), the network (:mod:`aigcguard.detectors.residual_cnn`, fixed
settings, no grid) trains on three quarters and the last quarter calibrates it (Platt scaling
and the threshold at 1% of its real pictures, their scores *as stored* and after *platform*
pooled). The test pictures are then scored under every condition of
:data:`aigcguard.perturb.CONDITIONS`. A fold's scores are cached in bench/cache/, so a run
stopped part way resumes at the next fold (a fold's network resumes from its checkpoint).

``reference`` (spectral features at the picture's own scale, logistic regression: the previous
default's recipe) and ``shortcut`` (file metadata) come from
:func:`aigcguard.detectors.grouped.cross_validated_scores` on the same folds, with the features
bench/detector_wild.py caches (run it first on a fresh clone). The current default (the picture
and its half, two scales) is evaluated by bench/detector_default.py.

``--device``: where the networks train (``auto``: CUDA when present; what each ran on goes
into its fold's record and the report); ``--steps``: training steps a network (the figures in
docs/detectors.md Part 3 are of the default, on the CPU; a GPU affords more). Folds are cached
per number of steps.

``--ship OUT``: a network made as each fold's is (three quarters of the sources train, the
last quarter calibrates) from every picture. None ships: the spectral reference did better
on every held-out measure (docs/detectors.md, Part 3), and bench/train_spectral_wild.py makes
the default (since then at two scales, docs/detectors.md, Part 4).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from detector_wild import CACHE, _cache_key, git_commit

from aigcguard.detectors.base import fit_calibration
from aigcguard.detectors.grouped import (
    check_folds,
    clopper_pearson,
    cross_validated_scores,
    evaluate_scores,
    family_folds,
    load_manifest,
    shortcut_baseline,
    source_folds,
    spectral_reference,
)
from aigcguard.detectors.residual_cnn import STEPS, ResidualCnnDetector, train_network
from aigcguard.device import pick_device
from aigcguard.imageio import load_image
from aigcguard.perturb import CONDITIONS

TARGET_FPR = 0.01
CALIBRATE_ON = ("as stored", "platform")
VERSION = "cnn-v2"


def calibration_split(records, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three quarters of ``idx`` to train, a quarter to calibrate, by whole sources (the
    first split of scikit-learn's unshuffled StratifiedGroupKFold: deterministic)."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.array([records[i].source for i in idx], object)
    labels = np.array([records[i].label for i in idx])
    tr, ca = next(StratifiedGroupKFold(n_splits=4).split(idx, labels, groups=groups))
    return idx[tr], idx[ca]


def raw_under(det, tensors, idx, condition) -> np.ndarray:
    fn = CONDITIONS[condition]
    return det.raw_scores([fn(tensors[i]) for i in idx])


def fit(records, arrays, tensors, idx, checkpoint, log, device="cpu", steps=STEPS):
    """A calibrated detector from the pictures ``idx`` (module docstring)."""
    tr, ca = calibration_split(records, idx)
    labels = np.array([r.label for r in records])
    net, info = train_network(
        [arrays[i] for i in tr], labels[tr], checkpoint=checkpoint, log=log, device=device,
        steps=steps,
    )  # fmt: skip
    det = ResidualCnnDetector(net)
    raw = np.concatenate([raw_under(det, tensors, ca, c) for c in CALIBRATE_ON])
    det.calibration = fit_calibration(
        raw, np.tile(labels[ca], len(CALIBRATE_ON)), target_fpr=TARGET_FPR
    )
    info = {**info, "calibration_pictures": len(ca), "calibrated_on": list(CALIBRATE_ON)}
    det.training = info
    return det, info


def run_folds(manifest, arrays, tensors, log, device="cpu", steps=STEPS) -> dict:
    records = manifest.records
    folds = family_folds(records)
    check_folds(records, folds)
    # the default keeps the key of the folds cached before --steps existed
    extra = "" if steps == STEPS else f"|steps {steps}"
    key = hashlib.sha256(f"{_cache_key(manifest)}|{VERSION}{extra}".encode()).hexdigest()[:12]
    n = len(records)
    out = {c: np.full(n, np.nan) for c in CONDITIONS}
    flags = {c: np.zeros(n, bool) for c in CONDITIONS}
    fits = []
    for k, fold in enumerate(folds):
        path = CACHE / f"cnn_{key}_fold{k}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            det, info = fit(
                records, arrays, tensors, fold.train, path.with_suffix(".ckpt"), log, device,
                steps,
            )  # fmt: skip
            cal = det.calibration
            t1 = time.perf_counter()
            probs = {c: cal.probability(raw_under(det, tensors, fold.test, c)) for c in CONDITIONS}
            info["score_seconds"] = round(time.perf_counter() - t1, 1)
            info["fold_seconds"] = round(time.perf_counter() - t0, 1)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(
                tmp,
                test=fold.test,
                **{f"p|{c}": p for c, p in probs.items()},
                calibration=json.dumps(cal.to_dict()),
                info=json.dumps(info),
            )
            tmp.replace(path)
            path.with_suffix(".ckpt").unlink(missing_ok=True)
        with np.load(path) as z:
            test = z["test"]
            cal = json.loads(str(z["calibration"]))
            for c in CONDITIONS:
                out[c][test] = z[f"p|{c}"]
                flags[c][test] = z[f"p|{c}"] >= cal["threshold"]
            fits.append({"fold": fold.name, "calibration": cal, "info": json.loads(str(z["info"]))})
        log(f"fold {k + 1}/{len(folds)} ({fold.name}) done")
    return {"scores": out, "flagged": flags, "fits": fits, "folds": folds}


def baselines(manifest, folds):
    """The reference and the shortcut on the family folds, and the reference on the source
    folds: ({name: CrossValidated}, CrossValidated)."""
    records = manifest.records
    path = CACHE / f"detector_wild_{_cache_key(manifest)}.npz"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run bench/detector_wild.py first (it caches them)")
    with np.load(path) as z:
        wild = {k: z[k] for k in z.files}
    ref = cross_validated_scores(
        spectral_reference(),
        {"as stored": wild["features|as stored"], "platform": wild["features|platform"]},
        records,
        folds,
        train_views=["as stored", "platform"],
        target_fpr=TARGET_FPR,
    )
    short = cross_validated_scores(
        shortcut_baseline(), {"as stored": wild["metadata"]}, records, folds, target_fpr=TARGET_FPR
    )
    # the previous default's recipe (one scale) with every source held out in turn (its
    # generator family stays in training through the family's other galleries): how it does
    # on a gallery it never saw
    by_source = cross_validated_scores(
        spectral_reference(),
        {"as stored": wild["features|as stored"], "platform": wild["features|platform"]},
        records,
        source_folds(records),
        train_views=["as stored", "platform"],
        target_fpr=TARGET_FPR,
    )
    return {"reference": ref, "shortcut": short}, by_source


def report(manifest, cnn, base, loso_cv, boot, seconds) -> str:
    records = manifest.records
    labels = np.array([r.label for r in records])
    n_real = int((labels == 0).sum())
    models = {"residual-cnn": (cnn["scores"], cnn["flagged"])}
    for name, cv in base.items():
        models[name] = (cv.scores, cv.flagged)
    rows, fam = [], {}
    for name, (scores, flagged) in models.items():
        for c in CONDITIONS:
            if c not in scores:
                continue
            ev = evaluate_scores(
                scores[c], flagged[c], records, model=name, condition=c, by="family",
                threshold=None, scored_by="family folds", n_boot=boot,
            )  # fmt: skip
            fam[(name, c)] = ev
            a = ev.row("all")
            per = [r for r in ev.rows if r.group != "all"]
            worst = min(per, key=lambda r: r.auc.value)
            mean = float(np.mean([r.auc.value for r in per]))
            k = int(flagged[c][labels == 0].sum())
            lo, hi = clopper_pearson(k, n_real)
            rows.append([
                c, name, a.auc.cell(), f"{mean:.3f}", f"{worst.group} {worst.auc.cell(2)}",
                a.tpr_at_1fpr.cell(2), a.tpr_at_5fpr.cell(2),
                f"{k / n_real:.3f} [{lo:.3f}, {hi:.3f}]", a.detection_rate.cell(2),
            ])  # fmt: skip
    head = [
        "condition", "model", "AUC, pooled [95% CI]", "AUC, mean of families",
        "worst family AUC", "TPR @ 1% FPR", "TPR @ 5% FPR", "real flagged [95% CI]",
        "generated flagged",
    ]  # fmt: skip
    first = fam[("residual-cnn", "as stored")]
    famhead = ["family", "generated"] + [f"{n}, {c}" for (n, c) in fam]
    famrows = [
        [r.group, str(r.n_generated)] + [ev.row(r.group).auc.cell(2) for ev in fam.values()]
        for r in first.rows
    ]
    by_source = [
        f"### {name}, {c}, by source (family-fold scores)\n\n"
        + evaluate_scores(
            models[name][0][c], models[name][1][c], records, model=name, condition=c,
            by="source", threshold=None, scored_by="family folds", n_boot=boot,
        ).markdown()
        for name in ("residual-cnn", "reference")
        for c in CALIBRATE_ON
    ]  # fmt: skip
    loso = []
    cv = loso_cv
    for c in CALIBRATE_ON:
        ev = evaluate_scores(
            cv.scores[c], cv.flagged[c], records, model="reference", condition=c, by="source",
            threshold=None, scored_by="source folds", n_boot=boot,
        )  # fmt: skip
        k = int(cv.flagged[c][labels == 0].sum())
        lo, hi = clopper_pearson(k, n_real)
        a = ev.row("all")
        loso += [
            f"### reference, {c}, source folds: pooled AUC {a.auc.cell()}, real photos flagged "
            f"{k / n_real:.3f} [{lo:.3f}, {hi:.3f}], generated flagged {a.detection_rate.cell(2)}",
            "",
            ev.markdown(),
        ]
    info = common.machine_info()
    fits = cnn["fits"]
    train_s = sum(f["info"]["seconds"] for f in fits)
    gpu = f", {info['gpu']}" if info["gpu"] else ", no GPU"
    return "\n".join([
        "# The residual CNN on pictures from the wild: leave-one-family-out CV",
        "",
        f"Commit {git_commit()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{info['cpu_model']}, {info['cpu_count']} CPUs{gpu}. Data: {manifest.path} "
        f"({n_real} real, {int(labels.sum())} generated). {len(fits)} leave-one-family-out "
        "folds; per fold the network trains on three quarters of the training sources and the "
        "last quarter calibrates it (threshold at 1% of its real pictures, as stored and "
        "after platform pooled); fixed settings, no grid. Bootstrap 95% intervals "
        f"({boot} resamples), Clopper-Pearson for the real pictures flagged. Training "
        f"{train_s / 60:.0f} min for the {len(fits)} folds ({fits[0]['info']['device']}, "
        f"{fits[0]['info']['threads']} threads, {fits[0]['info']['steps']} steps a network); "
        f"this run {seconds / 60:.0f} min (folds already "
        "in bench/cache are read, not retrained).",
        "",
        "\"AUC, mean of families\": the mean over the held-out families of each family's AUC "
        "against every real photo (the issue's leave-one-family-out average).",
        "",
        common.markdown_table(head, rows),
        "## AUC by family (each held-out family against all real photos)",
        "",
        common.markdown_table(famhead, famrows),
        "## The previous default's recipe, leave one source out",
        "",
        "The `reference` (the previous default's recipe, one scale; the current default, at "
        "two scales, is evaluated by bench/detector_default.py) retrained with each of the "
        f"{len(source_folds(records))} sources held out in turn: a gallery or photo set it "
        "never saw, its generator family still in training through other galleries.",
        "",
        *loso,
        "## By source",
        "",
        "Each picture's score from the family fold that held it out; a real source's \"real "
        "flagged\" is its false-positive rate at its fold's threshold, a one-class source's AUC "
        "is against every picture of the other class.",
        "",
        *by_source,
        "",
    ])  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=common.WILD_DIR)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--ship", type=Path, help="also train a network on every picture, saved here")
    ap.add_argument("--ship-only", action="store_true", help="skip the cross-validation")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "detector_cnn.md")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda[:N]")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"a network's (default {STEPS})")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, not {args.steps}")
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    log = common.progress_log()
    manifest = load_manifest(common.wild_manifest(args.wild))
    tensors = [load_image(r.path).pixels for r in manifest.records]
    arrays = [t.permute(1, 2, 0).numpy() for t in tensors]
    if not args.ship_only:
        cnn = run_folds(manifest, arrays, tensors, log, device, args.steps)
        base, loso_cv = baselines(manifest, cnn["folds"])
        md = report(manifest, cnn, base, loso_cv, args.boot, time.perf_counter() - t0)
        args.out.parent.mkdir(exist_ok=True)
        args.out.write_text(md)
        raw = {"fits": cnn["fits"]}
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
        print(md)
    if args.ship:
        idx = np.arange(len(manifest.records))
        ckpt = CACHE / "cnn_ship.ckpt"
        det, info = fit(manifest.records, arrays, tensors, idx, ckpt, log, device, args.steps)
        det.save(args.ship)
        ckpt.unlink(missing_ok=True)
        log(f"shipped model saved to {args.ship}: {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
