"""Candidates for a real-versus-generated detector that generalises, under nested grouped CV.

    python bench/detector_residual.py [--features-only] [--boot 1000] [--out FILE.md]

Data: ``../shared/data/wild`` (manifest.csv, 1,500 crops). Every picture is measured under
three views: ``as stored``, ``platform`` (:data:`aigcguard.perturb.CONDITIONS`: long side at
most 1024, JPEG 75) and ``train``, a *common re-encoding* drawn for each picture from the same
distribution whatever its class (with probability 0.7 a bicubic downscale by a factor drawn
from [0.5, 1], then JPEG of a quality drawn from 60..95, 4:2:0; the draw seeded by the file
name), so that how a file was compressed cannot be what a model learns. Candidates train on
the ``train`` view (``+platform``: and ``platform``) and are scored under ``platform``
(primary) and ``as stored``:

- ``residual-lr``: :func:`aigcguard.detectors.residual.residual_features` (437 noise-residual
  co-occurrence values), standardised, L2 logistic regression, C from :data:`C_GRID`;
- ``residual+spectral-lr``: the same with the spectral detector's 480 features appended;
- ``residual+spectral-hgb``: gradient-boosted trees (scikit-learn HistGradientBoosting) on
  both, learning rate from 0.05 / 0.2;
- ``fusion``: a stacked logistic regression over two logistic regressions (residual
  features; spectral features), their out-of-fold scores from a grouped 3-fold CV of sources
  inside each training set, their C from 0.01 / 0.1 / 1;
- ``... +platform``: the same trained on the ``platform`` view too (both are common
  re-encodings; the reference trains on it as well);

beside ``reference`` (spectral features, logistic regression, trained as stored and after
*platform*, as bench/detector_wild.py) and ``shortcut`` (file metadata) in the same run.

Every candidate goes through :func:`aigcguard.detectors.grouped.cross_validated_scores`:
leave-one-family-out folds, hyper-parameters chosen by the inner 4-fold CV of whole sources,
Platt calibration and the threshold (1% of the inner real pictures; the candidates' inner
scores under ``platform``) on the inner out-of-fold scores only. Features are cached in
bench/cache/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from detector_wild import CACHE, _cache_key, git_commit

from aigcguard.detectors.grouped import (
    Trainable,
    clopper_pearson,
    cross_validated_scores,
    family_folds,
    load_manifest,
    shortcut_baseline,
    spectral_reference,
)
from aigcguard.detectors.residual import FEATURE_DIM, FEATURE_VERSION, residual_features
from aigcguard.imageio import load_image
from aigcguard.perturb import tensor_platform

AS_STORED, PLATFORM, TRAIN = "as stored", "platform", "train"
VIEWS = (AS_STORED, PLATFORM, TRAIN)


def common_reencoding(image: torch.Tensor, key: str) -> torch.Tensor:
    """The training view: the same random distribution for both classes (module docstring)."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
    arr = image.permute(1, 2, 0).numpy()
    im = Image.fromarray(arr)
    if rng.random() < 0.7:
        s = rng.uniform(0.5, 1.0)
        size = (max(8, round(im.width * s)), max(8, round(im.height * s)))
        im = im.resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(rng.integers(60, 96)), subsampling=2)
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return torch.from_numpy(np.array(out.convert("RGB"))).permute(2, 0, 1).contiguous()


def features(manifest, spectral) -> dict:
    """Residual features under the three views, spectral features under ``train`` (the other
    views' spectral features come from bench/detector_wild.py's cache)."""
    key = hashlib.sha256(
        f"{_cache_key(manifest)}|{FEATURE_VERSION}|{FEATURE_DIM}|train-v1".encode()
    ).hexdigest()[:16]
    path = CACHE / f"residual_wild_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    n = len(manifest.records)
    out = {f"residual|{v}": np.zeros((n, FEATURE_DIM)) for v in VIEWS}
    out[f"spectral|{TRAIN}"] = np.zeros((n, 480))
    t0 = time.perf_counter()
    for i, rec in enumerate(manifest.records):
        im = load_image(rec.path).pixels
        views = {
            AS_STORED: im,
            PLATFORM: tensor_platform(im),
            TRAIN: common_reencoding(im, rec.file),
        }
        for v, x in views.items():
            out[f"residual|{v}"][i] = residual_features([x])[0]
        out[f"spectral|{TRAIN}"][i] = spectral.features([views[TRAIN]])[0]
        if i % 100 == 99:
            print(f"  {i + 1}/{n}, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out["seconds"] = np.array(time.perf_counter() - t0)
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return out


# ------------------------------------------------------------------------------- candidates


def _lr(C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))


#: C of the logistic regressions: 0.001 to 0.1 first, the inner CV chose 0.1 (the edge) in
#: every fold, so the grid reaches further
C_GRID = (0.01, 0.1, 1.0, 10.0)


def residual_lr() -> Trainable:
    return Trainable(
        "residual-lr",
        _lr,
        tuple({"C": c} for c in C_GRID),
        "residual co-occurrences, logistic regression",
    )


def both_lr() -> Trainable:
    return Trainable(
        "residual+spectral-lr",
        _lr,
        tuple({"C": c} for c in C_GRID),
        "residual co-occurrences and spectral features, logistic regression",
    )


def both_hgb() -> Trainable:
    from sklearn.ensemble import HistGradientBoostingClassifier

    def make(learning_rate):
        return HistGradientBoostingClassifier(
            max_iter=150,
            max_leaf_nodes=15,
            learning_rate=learning_rate,
            l2_regularization=1.0,
            random_state=0,
        )

    return Trainable(
        "residual+spectral-hgb",
        make,
        tuple({"learning_rate": lr} for lr in (0.05, 0.2)),
        "residual co-occurrences and spectral features, gradient-boosted trees",
    )


class Stacked:
    """Two logistic regressions (residual columns, spectral columns) and a logistic
    regression over their scores. X's last column is the picture's source (a number): the
    base models' scores the stacker learns from are out-of-fold over 3 groups of whole
    sources, so it weighs them as they behave on sources they never saw."""

    def __init__(self, C):
        self.C = C

    def _split(self, x):
        return x[:, :FEATURE_DIM], x[:, FEATURE_DIM:-1], x[:, -1]

    def fit(self, x, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold

        r, s, g = self._split(x)
        oof = np.zeros((len(y), 2))
        for tr, va in GroupKFold(n_splits=3).split(r, y, groups=g):
            if len(set(y[tr])) < 2:
                continue
            for j, part in enumerate((r, s)):
                oof[va, j] = _lr(self.C).fit(part[tr], y[tr]).decision_function(part[va])
        self.stack = LogisticRegression(C=1.0).fit(oof, y)
        self.base = [_lr(self.C).fit(part, y) for part in (r, s)]
        return self

    def decision_function(self, x):
        r, s, _ = self._split(x)
        z = np.column_stack(
            [m.decision_function(p) for m, p in zip(self.base, (r, s), strict=True)]
        )
        return self.stack.decision_function(z)


def fusion() -> Trainable:
    return Trainable(
        "fusion",
        Stacked,
        tuple({"C": c} for c in (0.01, 0.1, 1.0)),
        "stacked logistic regression over residual-lr and spectral-lr",
    )


# ------------------------------------------------------------------------------- evaluation


def auc_difference(a, b, labels, n=1000, seed=0):
    """Bootstrap (classes resampled apart, the same draws for both models) of AUC(a) - AUC(b)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    real, gen = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    d = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(real, len(real)), rng.choice(gen, len(gen))])
        d.append(roc_auc_score(labels[idx], a[idx]) - roc_auc_score(labels[idx], b[idx]))
    point = roc_auc_score(labels, a) - roc_auc_score(labels, b)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def evaluate(manifest, feats, args) -> int:
    from aigcguard.detectors.grouped import evaluate_scores

    records = manifest.records
    labels = np.array([r.label for r in records])
    with np.load(CACHE / f"detector_wild_{_cache_key(manifest)}.npz") as z:
        wild = {k: z[k] for k in z.files}
    sources = sorted({r.source for r in records})
    gid = np.array([[sources.index(r.source)] for r in records], np.float64)
    R = {v: feats[f"residual|{v}"] for v in VIEWS}
    S = {
        AS_STORED: wild["features|as stored"],
        PLATFORM: wild["features|platform"],
        TRAIN: feats[f"spectral|{TRAIN}"],
    }
    both = {v: np.hstack([R[v], S[v]]) for v in VIEWS}
    stacked = {v: np.hstack([R[v], S[v], gid]) for v in VIEWS}
    folds = family_folds(records)
    plan = {
        "shortcut": (shortcut_baseline(), {AS_STORED: wild["metadata"]}, [AS_STORED], AS_STORED),
        "reference": (
            spectral_reference(),
            {AS_STORED: S[AS_STORED], PLATFORM: S[PLATFORM]},
            [AS_STORED, PLATFORM],
            AS_STORED,
        ),
        "residual-lr": (residual_lr(), R, [TRAIN], PLATFORM),
        "residual+spectral-lr": (both_lr(), both, [TRAIN], PLATFORM),
        "fusion": (fusion(), stacked, [TRAIN], PLATFORM),
        "residual+spectral-hgb": (both_hgb(), both, [TRAIN], PLATFORM),
        # the same trained on the platform view too (both common re-encodings; the platform
        # one is the condition scored, as the reference trains on it)
        "residual-lr +platform": (residual_lr(), R, [TRAIN, PLATFORM], PLATFORM),
        "residual+spectral-lr +platform": (both_lr(), both, [TRAIN, PLATFORM], PLATFORM),
        "fusion +platform": (fusion(), stacked, [TRAIN, PLATFORM], PLATFORM),
        "residual+spectral-hgb +platform": (both_hgb(), both, [TRAIN, PLATFORM], PLATFORM),
    }
    only = set(args.only.split(",")) if args.only else None
    t_all = time.perf_counter()
    results, seconds, fits = {}, {}, {}
    for name, (trainable, views, train_views, choose) in plan.items():
        if only and name not in only and name not in ("shortcut", "reference"):
            continue
        t0 = time.perf_counter()
        cv = cross_validated_scores(
            trainable,
            views,
            records,
            folds,
            train_views=train_views,
            choose_view=choose,
            target_fpr=0.01,
        )
        seconds[name] = time.perf_counter() - t0
        results[name] = cv
        fits[name] = [f.to_dict() for f in cv.fits]
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr)
    rows, fam = [], {}
    for name, cv in results.items():
        for c in (PLATFORM, AS_STORED):
            if c not in cv.scores:
                continue
            ev = evaluate_scores(
                cv.scores[c],
                cv.flagged[c],
                records,
                model=name,
                condition=c,
                by="family",
                threshold=None,
                scored_by="family folds",
                n_boot=args.boot,
            )
            fam[(name, c)] = ev
            a = ev.row("all")
            worst = min((r for r in ev.rows if r.group != "all"), key=lambda r: r.auc.value)
            k = int(cv.flagged[c][labels == 0].sum())
            lo, hi = clopper_pearson(k, int((labels == 0).sum()))
            diff = (
                "—"
                if name == "reference"
                or "reference" not in results
                or c not in results["reference"].scores
                else "{:+.3f} [{:+.3f}, {:+.3f}]".format(
                    *auc_difference(cv.scores[c], results["reference"].scores[c], labels, args.boot)
                )
            )
            rows.append(
                [
                    c,
                    name,
                    a.auc.cell(),
                    a.tpr_at_1fpr.cell(2),
                    a.tpr_at_5fpr.cell(2),
                    f"{k / (labels == 0).sum():.3f} [{lo:.3f}, {hi:.3f}]",
                    a.detection_rate.cell(2),
                    f"{worst.group} {worst.auc.cell(2)}",
                    diff,
                    f"{seconds[name]:.0f}",
                ]
            )
    head = [
        "condition",
        "model",
        "AUC [95% CI]",
        "TPR @ 1% FPR",
        "TPR @ 5% FPR",
        "real flagged [95% CI]",
        "generated flagged",
        "worst family AUC",
        "AUC - reference [95% CI]",
        "CV s",
    ]
    table = common.markdown_table(head, rows)
    names = list(results)
    famrows = []
    for r in fam[(names[0], AS_STORED)].rows:
        cells = [r.group, str(r.n_generated)]
        for n in names:
            for c in (PLATFORM, AS_STORED):
                ev = fam.get((n, c))
                if ev:
                    cells.append(ev.row(r.group).auc.cell(2))
        famrows.append(cells)
    famhead = ["family", "generated"] + [
        f"{n}, {c}" for n in names for c in (PLATFORM, AS_STORED) if (n, c) in fam
    ]
    chosen = {n: [dict(f["setting"]) for f in fits[n]] for n in names}
    info = common.machine_info()
    md = "\n".join(
        [
            "# Detector candidates on pictures from the wild: nested grouped CV",
            "",
            f"Commit {git_commit()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"{info['cpu_model']}, {info['cpu_count']} CPUs (no GPU), shared with other jobs. "
            f"Data: {manifest.path} ({int((labels == 0).sum())} real, {int(labels.sum())} "
            f"generated). Leave-one-family-out folds ({len(folds)}); settings chosen by the inner "
            "4-fold CV of whole sources; thresholds at 1% of the inner real pictures (candidates: "
            "inner scores under *platform*; reference and shortcut: as stored, as in "
            "bench/detector_wild.py). Bootstrap 95% intervals "
            f"({args.boot} resamples), Clopper-Pearson for the real pictures flagged. Features: "
            f"{float(feats['seconds']):.0f} s for 1,500 pictures x 3 views (residual) + 1 view "
            f"(spectral); cross-validation and tables {time.perf_counter() - t_all:.0f} s.",
            "",
            "## Every picture",
            "",
            table,
            "## AUC by family (leave-one-family-out, each family against all real photos)",
            "",
            common.markdown_table(famhead, famrows),
            "## Settings chosen by the inner CV, per fold",
            "",
            "\n".join(f"- {n}: {chosen[n]}" for n in names),
            "",
        ]
    )
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(md)
    raw = {n: {"fits": fits[n], "seconds": seconds[n]} for n in names}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    np.savez_compressed(
        CACHE / "residual_cv_scores.npz",
        **{f"{n}|{c}": results[n].scores[c] for n in names for c in results[n].scores},
        **{f"{n}|{c}|flag": results[n].flagged[c] for n in names for c in results[n].flagged},
    )
    print(md)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=common.WILD_DIR)
    ap.add_argument("--features-only", action="store_true")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--only", help="comma-separated candidate names")
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "detector_residual.md")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    from aigcguard.detectors import api

    manifest = load_manifest(args.wild / "manifest.csv")
    feats = features(manifest, api.load("spectral", device="cpu"))
    if args.features_only:
        print(f"features: {float(feats['seconds']):.0f} s")
        return 0
    return evaluate(manifest, feats, args)


if __name__ == "__main__":
    raise SystemExit(main())
