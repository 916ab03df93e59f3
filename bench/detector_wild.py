"""Real-versus-generated detectors on pictures from the wild, by generator family and source.

    python bench/detector_wild.py [--sample N] [--boot 1000] [--out bench/results/detector_wild.md]

Data: ``../shared/data/wild`` (or ``AIGC_WILD_DIR``), its manifest.csv (1,500 crops: 701 real
photos from 30 sources, 799 generated pictures of 11 generator families). Models, one column
each:

- ``default`` and ``spectral``: the shipped detectors as they were before issue 21, at their
  shipped ``likely_generated`` thresholds (``default`` here is the CIFAKE NPR network, now
  shipped as ``npr-cifake``; the residual CNN that is ``default`` now is measured by
  bench/detector_cnn.py);
- ``shortcut``: gradient-boosted trees on file metadata alone (size, bits per pixel, pixel
  count, JPEG quality and table origin, chroma subsampling, EXIF, format), read from the files
  as stored: how much the files give away;
- ``reference``: the shipped spectral detector's features (YCbCr, every 64-px tile) with a
  logistic regression retrained per fold on the training pictures as stored and after the
  ``platform`` condition (both classes alike), C chosen by an inner 4-fold CV grouped by
  source, calibrated and thresholded (5% of the inner real pictures) on the inner
  out-of-fold scores: the test fold decides nothing.

Both retrained models are scored under grouped cross-validation
(:mod:`aigcguard.detectors.grouped.splits`): the family tables by leave-one-family-out folds
(each family against a held-out group of real sources; no source on both sides), the source
tables by leave-one-source-out folds. Conditions: ``aigcguard.perturb.CONDITIONS`` (as stored,
platform, screenshot, crop 50%); the shortcut only as stored (under the others every file
would be the platform's own). Intervals: bootstrap 95% (1,000 resamples, seed 0) for AUC and
TPRs, Clopper-Pearson for the shares flagged at the threshold.

Scores and features are cached in bench/cache/ (ignored by git) under a key of the
manifest, the file list, the model files and the conditions, so a rerun only redoes the
cross-validation and the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import subprocess
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from aigcguard.detectors import api
from aigcguard.detectors.grouped import (
    Manifest,
    comparison_table,
    cross_validated_scores,
    evaluate_scores,
    family_folds,
    load_manifest,
    metadata_features,
    score_records,
    shortcut_baseline,
    source_folds,
    spectral_reference,
)
from aigcguard.detectors.spectral import FEATURE_VERSION
from aigcguard.perturb import CONDITIONS

CACHE = Path(__file__).resolve().parent / "cache"
MODELS = ("default", "spectral", "shortcut", "reference")
AS_STORED, PLATFORM = "as stored", "platform"
#: what the reference trains on: the pictures as stored and after a platform's re-encoding
REFERENCE_VIEWS = (AS_STORED, PLATFORM)
BYS = ("family", "source")


def sample(manifest: Manifest, n: int | None) -> Manifest:
    """The first ``n`` records by a hash of their file name (a fixed, spread sample)."""
    if not n or n >= len(manifest.records):
        return manifest
    key = lambda r: hashlib.sha256(r.file.encode()).hexdigest()  # noqa: E731
    picked = sorted(sorted(manifest.records, key=key)[:n], key=manifest.records.index)
    return Manifest(manifest.path, tuple(picked), manifest.skipped)


def _cache_key(manifest: Manifest) -> str:
    """The manifest, the files scored, the shipped model files, the feature version and the
    conditions: a change to any of them computes everything again."""
    h = hashlib.sha256()
    h.update(manifest.path.read_bytes())
    h.update("\n".join(r.file for r in manifest.records).encode())
    for name in ("npr-cifake", "spectral"):
        ref = resources.files("aigcguard.data").joinpath(api.SHIPPED[name])
        h.update(ref.read_bytes())
    h.update(f"{FEATURE_VERSION}|{'|'.join(CONDITIONS)}|v1".encode())
    return h.hexdigest()[:16]


def compute(manifest: Manifest, default, spectral, use_cache: bool) -> dict:
    """NPR probabilities and spectral features under every condition, metadata features;
    from the cache when it has them."""
    path = CACHE / f"detector_wild_{_cache_key(manifest)}.npz"
    if use_cache and path.is_file():
        print(f"(cached: {path})", file=sys.stderr)
        with np.load(path, allow_pickle=False) as z:
            return {**{k: z[k] for k in z.files}, "cached": True}
    t0 = time.perf_counter()

    def progress(done, total):
        if done % 320 < 32 or done == total:
            print(f"  {done}/{total} pictures, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    scored = score_records(
        manifest.records,
        {"default": default.probabilities, "features": spectral.features},
        CONDITIONS,
        progress=progress,
    )
    if scored.skipped:
        raise SystemExit("unreadable pictures:\n" + "\n".join(scored.skipped))
    out = {f"{s}|{c}": v for (s, c), v in scored.values.items()}
    out["metadata"] = metadata_features([r.path for r in scored.records])
    out["seconds"] = np.array(time.perf_counter() - t0)
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return {**out, "cached": False}


def git_commit() -> str:
    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=common.ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def cross_validate(records, data, log) -> dict:
    """Out-of-fold scores of the shortcut and the reference, by family and by source folds."""
    views = {c: data[f"features|{c}"] for c in CONDITIONS}
    out = {}
    for by, folds in (("family", family_folds(records)), ("source", source_folds(records))):
        t0 = time.perf_counter()
        out[("shortcut", by)] = cross_validated_scores(
            shortcut_baseline(), {AS_STORED: data["metadata"]}, records, folds
        )
        out[("reference", by)] = cross_validated_scores(
            spectral_reference(), views, records, folds, train_views=REFERENCE_VIEWS, log=log
        )
        log(f"{by} folds: {len(folds)}, {time.perf_counter() - t0:.0f} s")
    return out


def evaluations(records, data, cv, default, spectral, n_boot, seed) -> dict:
    """(condition, by) -> {model: GroupedEvaluation}."""
    shipped = {
        "default": (lambda c: data[f"default|{c}"], default.calibration.threshold),
        "spectral": (
            lambda c: spectral.calibration.probability(
                spectral.scores_from_features(data[f"features|{c}"])
            ),
            spectral.calibration.threshold,
        ),
    }
    out = {}
    for c in CONDITIONS:
        for by in BYS:
            row = {}
            for name, (scores, thr) in shipped.items():
                p = scores(c)
                row[name] = evaluate_scores(
                    p,
                    p >= thr,
                    records,
                    model=name,
                    condition=c,
                    by=by,
                    threshold=thr,
                    n_boot=n_boot,
                    seed=seed,
                )
            for name in ("shortcut", "reference"):
                fit = cv[(name, by)]
                if c not in fit.scores:
                    continue
                row[name] = evaluate_scores(
                    fit.scores[c],
                    fit.flagged[c],
                    records,
                    model=name,
                    condition=c,
                    by=by,
                    threshold=None,
                    scored_by=f"{by} folds",
                    n_boot=n_boot,
                    seed=seed,
                )
            out[(c, by)] = row
    return out


def summary_table(evals) -> str:
    """Every picture (the ``all`` row of the family tables), a row per condition and model."""
    lines = [
        "| condition | model | AUC [95% CI] | TPR @ 1% FPR | TPR @ 5% FPR | real flagged [95% CI] "
        "| generated flagged [95% CI] |",
        "| --- | --- |" + " ---: |" * 5,
    ]
    for c in CONDITIONS:
        for name, ev in evals[(c, "family")].items():
            r = ev.row("all")
            lines.append(
                f"| {c} | {name} | {r.auc.cell()} | {r.tpr_at_1fpr.cell(2)} | "
                f"{r.tpr_at_5fpr.cell(2)} | {r.fp_rate.cell(2)} | {r.detection_rate.cell(2)} |"
            )
    return "\n".join(lines) + "\n"


#: the compact family table: (column title, model, condition)
FAMILY_COLUMNS = (
    ("default, platform", "default", PLATFORM),
    ("spectral, platform", "spectral", PLATFORM),
    ("reference, platform", "reference", PLATFORM),
    ("reference, as stored", "reference", AS_STORED),
    ("shortcut, as stored", "shortcut", AS_STORED),
)


def family_auc_table(evals) -> str:
    """AUC [95% CI] per family (against all real photos) for the columns of
    :data:`FAMILY_COLUMNS`: the shipped detectors and the reference after a platform's
    re-encoding, the reference and the shortcut on the files as stored."""
    head = ["family", "generated", *(t for t, _, _ in FAMILY_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for base in evals[(PLATFORM, "family")]["default"].rows:
        cells = [base.group, str(base.n_generated)]
        for _, model, cond in FAMILY_COLUMNS:
            r = evals[(cond, "family")][model].row(base.group)
            cells.append(r.auc.cell(2) if r and r.auc else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=common.WILD_DIR)
    ap.add_argument("--sample", type=int, help="a fixed sample of N pictures (a quick run)")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    manifest_path = common.wild_manifest(args.wild)
    busy = common.busy_warning()
    manifest = sample(load_manifest(manifest_path), args.sample)
    if manifest.skipped:
        raise SystemExit("manifest rows skipped:\n" + "\n".join(manifest.skipped))
    records = manifest.records
    default, spectral = api.load("npr-cifake", device="cpu"), api.load("spectral", device="cpu")
    data = compute(manifest, default, spectral, not args.no_cache)
    t0 = time.perf_counter()
    log = common.progress_log()
    cv = cross_validate(records, data, log)
    evals = evaluations(records, data, cv, default, spectral, args.boot, args.seed)
    seconds = time.perf_counter() - t0
    info = common.machine_info()
    scoring_s, cached = float(data["seconds"]), bool(data["cached"])
    markdown = render(manifest, evals, cv, info, busy, seconds, scoring_s, cached, args)
    raw = {
        "commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "busy_warning": busy,
        "data": manifest.to_dict(),
        "sample": args.sample,
        "bootstrap": {"resamples": args.boot, "seed": args.seed, "level": 0.95},
        "thresholds": {
            "default": default.calibration.threshold,
            "spectral": spectral.calibration.threshold,
        },
        "folds": {f"{m}|{by}": [f.to_dict() for f in fit.fits] for (m, by), fit in cv.items()},
        "evaluations": {
            f"{c}|{by}": {m: ev.to_dict() for m, ev in row.items()}
            for (c, by), row in evals.items()
        },
        "seconds": {
            "cross_validation_and_tables": seconds,
            "scoring_and_features": scoring_s,
            "scores_from_cache": cached,
        },
    }
    # a sample's tables stay out of bench/results (its cache folder is ignored by git)
    out = args.out or (CACHE / "detector_wild.quick.md" if args.sample else None)
    out = out or common.RESULTS_DIR / "detector_wild.md"
    common.write_outputs("detector_wild", markdown, raw, str(out), bool(args.sample))
    return 0


def render(manifest, evals, cv, info, busy, seconds, scoring_s, cached, args) -> str:
    n_real = sum(1 for r in manifest.records if r.label == 0)
    n_gen = len(manifest.records) - n_real
    picks = Counter(f.setting["C"] for by in BYS for f in cv[("reference", by)].fits)
    chosen = ", ".join(f"{c:g} in {n}" for c, n in sorted(picks.items()))
    parts = [
        "# Detectors on pictures from the wild, by generator family and source",
        "",
        f"Commit {git_commit()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{info['cpu_model']}, {info['cpu_count']} CPUs (no GPU: CPU only), torch "
        f"{info['torch']}. {busy or 'The machine was quiet at the start.'}",
        "",
        f"Data: {manifest.path} ({n_real} real, {n_gen} generated"
        + (f"; a fixed sample of {args.sample}" if args.sample else "")
        + f"). Bootstrap 95% intervals ({args.boot} resamples, seed {args.seed}) for AUC and "
        "TPR; Clopper-Pearson 95% for the shares flagged. `default` and `spectral` at their "
        "shipped thresholds; `shortcut` (file metadata) and `reference` (spectral features, "
        "logistic regression) retrained per fold under grouped CV, thresholds at 5% of the "
        "inner real pictures. Family tables: leave-one-family-out folds, each family against "
        "all real photos (scored in their own folds); source tables: leave-one-source-out "
        f"folds. Reference C chosen by the inner CV (folds): {chosen}. Time: scoring and "
        f"features {scoring_s:.0f} s when computed"
        + (" (read from bench/cache for this run)" if cached else "")
        + f"; cross-validation and tables {seconds:.0f} s.",
        "",
        "## Summary: every picture",
        "",
        summary_table(evals),
        "## AUC by generator family (each against all real photos)",
        "",
        family_auc_table(evals),
    ]
    for c in CONDITIONS:
        for by in BYS:
            parts += [f"## {c}, by {by}", "", comparison_table(evals[(c, by)])]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
