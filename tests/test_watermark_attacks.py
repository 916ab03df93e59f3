"""The attack suite (bench/watermark_attacks.py): its attacks on synthetic arrays, its plan,
and one --quick run on synthetic pictures (no shared data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import bench_module

wa = bench_module("watermark_attacks")


def _smooth(rng, h, w, cells=16) -> np.ndarray:
    """A textured stand-in for a photo: random colour fields at two scales, plus grain."""
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (cells * 4, cells * 4, 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
    b = np.asarray(Image.fromarray(fine).resize((w, h), Image.BICUBIC), np.float32)
    x = 0.6 * a + 0.4 * b + rng.normal(0, 2, (h, w, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_collusion_average_recovers_a_shared_pattern():
    rng = np.random.default_rng(0)
    pattern = rng.normal(0, 3, (128, 128, 1)).repeat(3, axis=2).astype(np.float32)
    pictures = [
        np.clip(_smooth(rng, 128, 128, 8) + pattern, 0, 255).astype(np.uint8) for _ in range(60)
    ]
    truth = wa.highpass(pattern + 128)
    few, many = wa.collusion_average(pictures[:3]), wa.collusion_average(pictures)
    assert _corr(many, truth) > 0.8
    assert _corr(many, truth) > _corr(few, truth)


@pytest.mark.parametrize("target", [35.0, 38.0, 40.0, 46.0])
def test_scaling_hits_the_requested_psnr(target):
    rng = np.random.default_rng(int(target))
    base = _smooth(rng, 96, 160)
    delta = rng.normal(0, 1, base.shape).astype(np.float32)
    out, got = wa.add_at_psnr(base, delta, target)
    assert out.dtype == np.uint8 and out.shape == base.shape
    assert abs(got - target) < 0.1
    assert abs(wa.psnr(out, base) - got) < 1e-9
    with pytest.raises(ValueError, match="zero"):
        wa.add_at_psnr(base, np.zeros_like(delta), target)


def test_fold_estimate_recovers_a_periodic_pattern():
    rng = np.random.default_rng(1)
    tile = rng.normal(0, 4, (32, 32, 3)).astype(np.float32)
    periodic = np.tile(tile, (8, 6, 1))  # 256 x 192
    assert np.allclose(wa.fold_estimate(periodic, 32), periodic, atol=1e-4)
    noisy = periodic + rng.normal(0, 8, periodic.shape).astype(np.float32)
    assert _corr(wa.fold_estimate(noisy, 32), periodic) > 0.9
    # a size that is no multiple of the period keeps its shape and the pattern's phase
    odd = np.tile(tile, (4, 4, 1))[:100, :70]
    assert wa.fold_estimate(odd, 32).shape == odd.shape
    assert np.allclose(wa.fold_estimate(odd, 32), odd, atol=1e-4)


def test_wilson_interval():
    lo, hi = wa.wilson(0, 200)
    assert lo == 0 and 0.018 < hi < 0.02
    lo, hi = wa.wilson(95, 100)
    assert 0.88 < lo < 0.9 < 0.95 < hi < 0.98


def test_plan_spends_trials_where_the_targets_are_judged():
    rows = wa.plan(wa.COLLUDERS, 25, 80, 200)
    by = {(r.attack, r.n, r.strength): r.trials for r in rows}
    assert by[(wa.FORGE, 100, "35 dB")] == 200 and by[(wa.FORGE, 5, "35 dB")] == 25
    assert by[(wa.REMOVE, 20, "38 dB")] == 80 and by[(wa.REMOVE, 20, "40 dB")] == 25
    assert by[(wa.COPY, None, "nlmeans, 35 dB")] == 200
    assert sum(r.attack == wa.ESTIMATE and r.trials == 80 for r in rows) == len(wa.PERIODS)
    need = wa.needs(rows, wa.COPY_SOURCES)
    assert (need.colluders, need.victims, need.sources, need.targets) == (100, 80, 50, 200)
    # the default full run stays under ~40 minutes on both formats
    assert 2 * sum(r.trials for r in rows) * wa.DETECT_S < 36 * 60


def test_missing_data_exits_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="ai/ and real/"):
        wa.main(["--quick", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "x.md")])


@pytest.mark.slow
def test_quick_run_on_synthetic_pictures(tmp_path):
    rng = np.random.default_rng(2)
    for folder, n in (("ai", 9), ("real", 4)):
        (tmp_path / folder / "src").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_smooth(rng, wa.SIDE, wa.SIDE)).save(
                tmp_path / folder / "src" / f"{i}.jpg", quality=95
            )
    out = tmp_path / "attacks.md"
    # the attacks judged through the binding check, on the keyed format, 7 detections (each
    # up to seconds); the other attacks differ only in the perturbation (unit-tested above)
    args = ["--quick", "--formats", "keyed", "--colluders", "2", "--accept-trials", "1"]
    args += ["--attacks", "none,forgery,copy", "--denoisers", "median3"]
    args += ["--data", str(tmp_path), "--out", str(out)]
    assert wa.main(args) == 0
    text = out.read_text()
    assert "| keyed | collusion forgery | 2 | 35 dB | 1 |" in text
    assert "Targets (issue 19):" in text and "commit " in text and "Partial run" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    rows = raw["results"]
    assert [r["attack"] for r in rows] == [wa.NONE] + [wa.FORGE] * 3 + [wa.COPY] * 3
    clean = rows[0]
    assert clean["detected"] == 1 and clean["formats_read"] == {"keyed": 1}
    assert clean["states"] == {"found": 1} and clean["bindings"] == {"match": 1}
    for r in rows[1:]:
        assert abs(r["psnr_mean"] - r["psnr_target"]) < 0.1
        assert set(r["states"]) <= {"found", "not_in_ledger", "payload_unreadable", "no_watermark"}
        # a copied mark may be read, but it leads to a record of another picture
        assert r["accepted"] == 0 and "match" not in r["bindings"]
