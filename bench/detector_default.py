"""The default detector's recipe under grouped CV on the wild set, beside the previous
default's recipe (the same features at one scale) and the shortcut baseline, in one run.

    python bench/detector_default.py [--boot 1000] [--jobs 2]
        [--out bench/results/detector_default.md]

Data: ``../shared/data/wild`` (manifest.csv, 1,500 crops). Features
(:func:`aigcguard.detectors.spectral.multiscale_features`: Y, Cb and Cr of every 64 px tile of
the picture, its half and its quarter, short side at most 512) under every condition of
:data:`aigcguard.perturb.CONDITIONS`, and file metadata (:mod:`.grouped.metadata`) of each file
as stored and of the JPEG a platform would serve (long side at most 1024, JPEG 75, 4:2:0);
cached in bench/cache/.

Models, each retrained per fold by :func:`aigcguard.detectors.grouped.cross_validated_scores`
(settings and calibration from the inner 4-fold CV of whole sources, chosen on the inner
scores *as stored*; thresholds at 1% of the inner real pictures):

- ``default``: what bench/train_spectral_wild.py ships, the inner CV choosing C, the scales
  from :data:`aigcguard.detectors.spectral.SCALE_CHOICES` and the conditions to train on
  (:data:`TRAIN_CHOICES`: *as stored* and *platform*, or all four); calibrated on the inner
  scores under all four conditions, its threshold the strictest of the four conditions' 1%
  thresholds;
- ``previous default``: the same, always trained on *as stored* and *platform* (what shipped
  before; family folds only);
- ``one scale``: the recipe before that, the picture's own scale only, trained on *as stored*
  and *platform*, its threshold from the scores as stored;
- ``group-balanced``: a candidate, not shipped (family folds only): the default's recipe at the
  half scale with the inner CV also choosing whether to weigh the training pictures so that
  every generator family and every real source counts alike
  (:func:`aigcguard.detectors.grouped.group_weights`), choosing on the mean of the inner AUCs
  under all four conditions instead of as stored;
- ``shortcut``: gradient-boosted trees on file metadata, as stored; ``shortcut, platform``: the
  same on the metadata of the platform's files (trained and tested on them).

Folds: leave one generator family out (each family against a rotating group of held-out real
sources, :func:`~aigcguard.detectors.grouped.family_folds`) and leave one source out. Speed:
the features of a 1024 x 1024 picture at one scale and at the default's scales, same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from detector_wild import CACHE, git_commit
from train_spectral_wild import CALIBRATE_ON, TRAIN_CHOICES, feature_settings, features

from aigcguard.detectors.grouped import (
    clopper_pearson,
    cross_validated_scores,
    evaluate_scores,
    family_folds,
    file_metadata,
    load_manifest,
    score_records,
    shortcut_baseline,
    source_folds,
    spectral_reference,
)
from aigcguard.detectors.spectral import (
    CHANNELS,
    FEATURE_DIM,
    FEATURE_VERSION,
    SCALE_CHOICES,
)
from aigcguard.perturb import CONDITIONS, PLATFORM_LONG_SIDE, PLATFORM_QUALITY

TARGET_FPR = 0.01
#: the candidate's weighting of the training pictures: none, or every group alike
BALANCE_CHOICES = (0.0, 1.0)
#: what the previous default and the one-scale recipe train on
TRAIN_VIEWS = TRAIN_CHOICES[0]
VERSION = "default-v1"  # of the cached features


def platform_file_metadata(path: Path) -> np.ndarray:
    """Metadata features of the file a platform would serve for ``path``."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        s = PLATFORM_LONG_SIDE / max(im.size)
        if s < 1:
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), 3)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=PLATFORM_QUALITY, subsampling=2)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(buf.getvalue())
        f.flush()
        return file_metadata(f.name).vector()


def compute(manifest, base, log) -> dict:
    text = "\n".join(f"{r.file},{r.path.stat().st_size}" for r in manifest.records)
    key = hashlib.sha256(f"{text}|{VERSION}|{FEATURE_VERSION}".encode()).hexdigest()[:12]
    path = CACHE / f"detector_default_{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    scored = score_records(
        manifest.records, {"features": lambda images: features(images, base)}, CONDITIONS
    )
    if scored.skipped or len(scored.records) != len(manifest.records):
        raise SystemExit("unreadable pictures:\n" + "\n".join(scored.skipped))
    out = {f"features|{c}": scored.values[("features", c)] for c in CONDITIONS}
    log(f"features {time.perf_counter() - t0:.0f} s")
    out["metadata|as stored"] = np.stack([file_metadata(r.path).vector() for r in manifest.records])
    out["metadata|platform"] = np.stack([platform_file_metadata(r.path) for r in manifest.records])
    out["seconds"] = np.array(time.perf_counter() - t0)
    CACHE.mkdir(exist_ok=True)
    np.savez(path, **out)
    return out


def run(data, records, base, log, jobs: int = 1) -> dict:
    """{(model, folds): CrossValidated}"""
    width = CHANNELS[base.channels] * FEATURE_DIM  # one scale's block of columns
    views = {c: data[f"features|{c}"] for c in CONDITIONS}
    one = {c: v[:, :width] for c, v in views.items()}
    two = spectral_reference(SCALE_CHOICES, width=width)
    # name: trainable, views, train_views, calibrate_views, train_view_choices, choose_view
    # (None: the first training view, as stored); the candidate is chosen on all four
    # conditions, since the detector must hold up in each
    plan = {
        "default": (two, views, None, CALIBRATE_ON, TRAIN_CHOICES, None),
        "previous default": (two, views, TRAIN_VIEWS, CALIBRATE_ON, None, None),
        "one scale": (spectral_reference(), one, TRAIN_VIEWS, None, None, None),
        "group-balanced": (
            spectral_reference(SCALE_CHOICES[1:2], width=width, balance=BALANCE_CHOICES),
            views, None, CALIBRATE_ON, TRAIN_CHOICES, CALIBRATE_ON,
        ),
        "shortcut": (
            shortcut_baseline(), {"as stored": data["metadata|as stored"]}, None, None, None, None
        ),
        "shortcut, platform": (
            shortcut_baseline(), {"platform": data["metadata|platform"]}, None, None, None, None
        ),
    }  # fmt: skip
    out = {}
    for by, folds in (("family", family_folds(records)), ("source", source_folds(records))):
        for name, (trainable, v, train, calibrate, choices, choose) in plan.items():
            if by == "source" and name not in ("default", "one scale"):
                continue
            t0 = time.perf_counter()
            out[(name, by)] = cross_validated_scores(
                trainable, v, records, folds, train_views=train, calibrate_views=calibrate,
                train_view_choices=choices, target_fpr=TARGET_FPR, log=log, choose_view=choose,
                n_jobs=jobs,
            )  # fmt: skip
            log(f"{name}, {by} folds: {time.perf_counter() - t0:.0f} s")
    return out


def speed(manifest, base, repeat: int = 3) -> dict:
    """ms a 1024 x 1024 picture (shrunk to 512 as the detector does) at one scale and at the
    default's scales, median of ``repeat`` passes over 16 pictures."""
    rng = np.random.default_rng(0)
    pics = []
    for r in manifest.records[:: max(1, len(manifest.records) // 16)][:16]:
        with Image.open(r.path) as im:
            arr = np.asarray(im.convert("RGB").resize((1024, 1024), 3))
        noise = rng.integers(-2, 3, arr.shape)  # not a pure upscale: keep detail at full size
        arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
        pics.append(torch.from_numpy(arr).permute(2, 0, 1))
    out = {}
    for scales in ((1.0,), SCALE_CHOICES[1]):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for p in pics:
                features([p], base, scales)
            times.append((time.perf_counter() - t0) / len(pics) * 1000)
        out[", ".join(f"{s:g}" for s in scales)] = float(np.median(times))
    return out


def summary(cvs, records, boot) -> tuple[list, dict]:
    labels = np.array([r.label for r in records])
    n_real = int((labels == 0).sum())
    rows, fam = [], {}
    for (name, by), cv in cvs.items():
        if by != "family":
            continue
        for c in cv.scores:
            ev = evaluate_scores(
                cv.scores[c], cv.flagged[c], records, model=name, condition=c, by="family",
                threshold=None, scored_by="family folds", n_boot=boot,
            )  # fmt: skip
            fam[(name, c)] = ev
            a = ev.row("all")
            per = [r for r in ev.rows if r.group != "all"]
            worst = min(per, key=lambda r: r.auc.value)
            k = int(cv.flagged[c][labels == 0].sum())
            lo, hi = clopper_pearson(k, n_real)
            rows.append([
                c, name, a.auc.cell(), f"{np.mean([r.auc.value for r in per]):.3f}",
                f"{worst.group} {worst.auc.cell(2)}", a.tpr_at_1fpr.cell(2),
                a.tpr_at_5fpr.cell(2), f"{k / n_real:.3f} [{lo:.3f}, {hi:.3f}]",
                a.detection_rate.cell(2),
            ])  # fmt: skip
    return rows, fam


def by_source(cvs, records, boot) -> list[str]:
    labels = np.array([r.label for r in records])
    n_real = int((labels == 0).sum())
    out = []
    for name in ("default", "one scale"):
        cv = cvs[(name, "source")]
        for c in TRAIN_VIEWS:
            ev = evaluate_scores(
                cv.scores[c], cv.flagged[c], records, model=name, condition=c, by="source",
                threshold=None, scored_by="source folds", n_boot=boot,
            )  # fmt: skip
            k = int(cv.flagged[c][labels == 0].sum())
            lo, hi = clopper_pearson(k, n_real)
            a = ev.row("all")
            out.append(
                f"### {name}, {c}, source folds: pooled AUC {a.auc.cell()}, real photos "
                f"flagged {k / n_real:.3f} [{lo:.3f}, {hi:.3f}], generated flagged "
                f"{a.detection_rate.cell(2)}"
            )
            out.append("")
            if name == "default":
                out += [ev.markdown(), ""]
    return out


def _choices(cvs, model: str) -> Counter:
    """How often the inner CV of ``model``'s folds chose each setting."""
    out = Counter()
    for (name, _), cv in cvs.items():
        for f in cv.fits if name == model else ():
            st = f.setting
            scales = st.get("scales", SCALE_CHOICES[1])  # group-balanced: the half, fixed
            out[
                f"C {st['C']:g}, scales {', '.join(f'{s:g}' for s in scales)}, "
                f"trained on {', '.join(st['train_views'])}"
                + (f", balance {st['balance']:g}" if "balance" in st else "")
            ] += 1
    return out


def report(manifest, data, cvs, ms, boot, seconds) -> str:
    records = manifest.records
    labels = np.array([r.label for r in records])
    rows, fam = summary(cvs, records, boot)
    head = [
        "condition", "model", "AUC, pooled [95% CI]", "AUC, mean of families",
        "worst family AUC", "TPR @ 1% FPR", "TPR @ 5% FPR", "real flagged [95% CI]",
        "generated flagged",
    ]  # fmt: skip
    cols = [k for k in fam if k[1] in TRAIN_VIEWS or k[0] == "default"]
    first = fam[("default", "as stored")]
    famrows = [
        [r.group, str(r.n_generated)] + [fam[k].row(r.group).auc.cell(2) for k in cols]
        for r in first.rows
    ]
    gaps = []
    for c, short in (("as stored", "shortcut"), ("platform", "shortcut, platform")):
        d, s = fam[("default", c)].row("all").auc.value, fam[(short, c)].row("all").auc.value
        gaps.append([c, f"{d:.3f}", f"{s:.3f}", f"{d - s:+.3f}"])
    chosen = {m: _choices(cvs, m) for m in ("default", "group-balanced")}
    info = common.machine_info()
    base = ms["1"]
    return "\n".join([
        "# The default detector on pictures from the wild: grouped CV",
        "",
        f"Commit {git_commit()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{info['cpu_model']}, {info['cpu_count']} CPUs, no GPU. Data: {manifest.path} "
        f"({int((labels == 0).sum())} real, {int(labels.sum())} generated). Models retrained "
        "per fold, settings and calibration from the inner CV of whole sources (module "
        f"docstring of bench/detector_default.py); bootstrap 95% intervals ({boot} "
        "resamples), Clopper-Pearson for the real pictures flagged. Features "
        f"{float(data['seconds']):.0f} s (cached); this run {seconds / 60:.1f} min.",
        "",
        "\"AUC, mean of families\": the mean over the held-out families of each family's AUC "
        "against every real photo (the issue's leave-one-family-out average). Inner CV "
        "choices of the default over all folds: "
        + "; ".join(f"{k} ({n})" for k, n in chosen["default"].most_common()) + ". Of "
        "group-balanced (family folds): "
        + "; ".join(f"{k} ({n})" for k, n in chosen["group-balanced"].most_common()) + ".",
        "",
        "## Leave one generator family out",
        "",
        common.markdown_table(head, rows),
        "### Against the shortcut baseline (pooled AUC, same condition)",
        "",
        common.markdown_table(["condition", "default", "shortcut", "difference"], gaps),
        "### AUC by family (each held-out family against all real photos)",
        "",
        common.markdown_table(
            ["family", "generated"] + [n if n.endswith(c) else f"{n}, {c}" for n, c in cols],
            famrows,
        ),
        "## Leave one source out",
        "",
        "Each of the sources held out in turn: a gallery or photo set the model never saw, "
        "its generator family still in training through other galleries.",
        "",
        *by_source(cvs, records, boot),
        "## Speed",
        "",
        "Features of a 1024 x 1024 picture (shrunk to 512 as the detector does), median of 3 "
        "passes over 16 pictures, this machine, one process:",
        "",
        common.markdown_table(
            ["scales", "ms a picture", "ratio to one scale"],
            [[k, f"{v:.1f}", f"{v / base:.2f}"] for k, v in ms.items()],
        ),
        "",
    ])  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=common.WILD_DIR)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1),
        help="folds fitted at once, a process each (default: 2, or 1 on one CPU)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=common.RESULTS_DIR / "detector_default.md")
    args = ap.parse_args()
    manifest_path = common.wild_manifest(args.wild)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    log = common.progress_log()
    manifest = load_manifest(manifest_path)
    base = feature_settings()
    data = compute(manifest, base, log)
    cvs = run(data, manifest.records, base, log, args.jobs)
    ms = speed(manifest, base)
    md = report(manifest, data, cvs, ms, args.boot, time.perf_counter() - t0)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(md)
    raw = {f"{name} | {by}": [f.to_dict() for f in cv.fits] for (name, by), cv in cvs.items()}
    raw = {"speed_ms": ms, "fits": raw}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
