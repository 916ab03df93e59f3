"""bench/near_duplicate_fmr.py's arithmetic: the Clopper-Pearson interval, the level picked
for a target rate, and the split of the wild sources (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_module

fmr = bench_module("near_duplicate_fmr")
pairs = bench_module("similarity_pairs")


def test_clopper_pearson_by_known_values():
    assert fmr.clopper_pearson(0, 3000) == (0.0, pytest.approx(1.229e-3, rel=1e-3))
    low, high = fmr.clopper_pearson(10, 10_000)
    assert low == pytest.approx(4.80e-4, rel=1e-2) and high == pytest.approx(1.84e-3, rel=1e-2)


def test_level_keeps_the_upper_bound_under_the_target():
    scores = np.random.default_rng(0).normal(0.0, 0.03, 50_000)
    level = fmr.level_for(scores, 1e-3)
    k = int((scores >= level).sum())
    assert fmr.clopper_pearson(k, len(scores))[1] <= 1e-3
    # one grid step lower would let in a pair too many
    k_lower = int((scores >= level - 1e-4).sum())
    assert k_lower > k and fmr.clopper_pearson(k_lower + 1, len(scores))[1] > 1e-3
    # too few pairs to show the target at all: above every score
    assert fmr.level_for(scores[:100], 1e-3) > scores[:100].max()


def test_source_groups_stay_in_one_half_and_halves_balance():
    rows = [{"label": "real", "source": s} for s in ["a"] * 50 + ["b"] * 30 + ["c"] * 25]
    rows += [{"label": "real", "source": "cvg/LightGlue"}] * 4
    rows += [{"label": "real", "source": "magicleap/SuperGluePretrainedNetwork"}] * 10
    rows += [{"label": "ai", "source": s} for s in ["x"] * 40 + ["y"] * 39]
    halves = pairs.split_groups(rows)
    assert halves["a"] == "calibration" and halves["b"] == halves["c"] == "held_out"
    assert halves["image matching demos"] == "calibration"  # the group, not its sources
    assert "cvg/LightGlue" not in halves
    assert {halves["x"], halves["y"]} == {"calibration", "held_out"}
