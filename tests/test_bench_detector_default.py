"""bench/detector_default.py end to end on synthetic features: every model of its plan is
retrained under both fold kinds and its report holds every row, so the 30-minute bench cannot
break unseen between the sessions that run it."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np

from aigcguard.detectors.grouped import Record
from aigcguard.detectors.spectral import CHANNELS, FEATURE_DIM
from aigcguard.perturb import CONDITIONS
from tests.helpers import bench_module

bench = bench_module("detector_default")


def _records() -> list[Record]:
    spec = [(1, fam, f"gal-{fam}-{k}", 6) for fam in ("flux", "gemini", "sdxl") for k in (0, 1)]
    spec += [(0, "real", f"cam-{k}", 7) for k in range(6)]
    recs = []
    for label, fam, source, n in spec:
        for _ in range(n):
            i, gen = len(recs), fam if label else None
            recs.append(Record(f"{i}.jpg", Path(f"/nowhere/{i}.jpg"), label, gen, gen, source))
    return recs


def test_the_bench_retrains_every_model_and_reports_every_row():
    recs = _records()
    rng = np.random.default_rng(0)
    labels = np.array([r.label for r in recs], float)
    width = CHANNELS["ycbcr"] * FEATURE_DIM * 3  # three scales of colour features
    data = {}
    for c in CONDITIONS:
        x = rng.normal(size=(len(recs), width))
        x[:, :8] += 2.0 * labels[:, None]  # the picture's own scale separates the classes
        data[f"features|{c}"] = x
    for c in ("as stored", "platform"):
        data[f"metadata|{c}"] = rng.normal(size=(len(recs), 13))
    data["seconds"] = np.array(1.0)
    base = types.SimpleNamespace(channels="ycbcr")
    cvs = bench.run(data, recs, base, log=lambda msg: None)
    names = {name for name, _ in cvs}
    assert names == {
        "default", "previous default", "one scale", "group-balanced", "shortcut",
        "shortcut, platform",
    }  # fmt: skip
    assert {by for name, by in cvs if name == "default"} == {"family", "source"}
    assert all("balance" in f.setting for f in cvs[("group-balanced", "family")].fits)
    manifest = types.SimpleNamespace(path=Path("manifest.csv"), records=recs)
    md = bench.report(manifest, data, cvs, {"1": 10.0, "1, 0.5": 12.0}, 50, 60.0)
    for model in ("default", "group-balanced", "previous default", "one scale"):
        for c in CONDITIONS:
            assert f"| {c} | {model} |" in md
    assert "Of group-balanced (family folds): C " in md and "balance " in md
    row = next(line for line in md.splitlines() if line.startswith("| as stored | default |"))
    assert float(row.split("|")[3].split()[0]) > 0.8  # the separating column was found
