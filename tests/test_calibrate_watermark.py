"""The watermark calibration's accumulated trials: runs add up per detector version, a line cut
short by a stopped run is skipped, and the kept p-values are detect's."""

from __future__ import annotations

import gzip

import pytest

from aigcguard.watermark import detect
from tests.helpers import bench_module, to_tensor

cal = bench_module("calibrate_watermark")


@pytest.fixture
def pictures(photos):
    return [to_tensor(photos["camera"][:160, :192]), to_tensor(photos["coffee"][100:260, :160])]


def test_runs_add_up_and_keep_detects_p_values(pictures, tmp_path):
    names = ["camera#0", "coffee#0"]
    first = cal.soft_trials(pictures, names, "tilemark", ["k1", "k2"], accumulate=tmp_path)
    assert first["trials"] == 4 and first["images"] == 2 and first["keys"] == 2
    assert first["detector_version"] == cal.detector_version()
    # a second run with other keys, in two processes, adds its trials to the first's
    second = cal.soft_trials(pictures, names, "tilemark", ["k3"], workers=2, accumulate=tmp_path)
    assert second["trials"] == 6 and second["keys"] == 3
    kept = {}
    folder = tmp_path / cal.detector_version()
    assert not list(folder.glob("*.tsv"))  # finished runs are packed
    for path in folder.glob("*.tsv.gz"):
        for line in gzip.decompress(path.read_bytes()).decode().splitlines():
            name, key, p, kind = line.split("\t")
            assert kind == "gated"  # the detector as it ships
            kept[(name, key)] = float(p)
    assert len(kept) == 6
    for name, img in zip(names, pictures, strict=True):
        [direct] = detect([img], key="k3")
        assert kept[(name, "k3")] == pytest.approx(min(1.0, direct.p_value), rel=1e-9)
    # a run stopped mid-line leaves a plain file with a partial line: skipped, the rest
    # still counted, and packed by the next run
    (folder / "stopped-0.tsv").write_text("camera#0\tk7\t0.5\tgated\ncamera#0\tk9")
    assert cal.summarise_kept(folder)["trials"] == 7
    assert cal.soft_trials(pictures, names, "tilemark", [], accumulate=tmp_path)["trials"] == 7
    assert not list(folder.glob("*.tsv"))


def test_without_a_folder_nothing_is_kept(pictures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cal.soft_trials(pictures[:1], ["camera#0"], "tilemark", ["k1"])
    assert out["trials"] == 1 and "detector_version" not in out
    assert not any(tmp_path.iterdir())


def test_detector_version_ignores_comments_and_docstrings(tmp_path):
    import shutil

    root = cal.ROOT
    (tmp_path / "watermark").mkdir()
    shutil.copytree(root / "watermark" / "tilemark", tmp_path / "watermark" / "tilemark")
    shutil.copy(root / "watermark" / "payload.py", tmp_path / "watermark" / "payload.py")
    assert cal.detector_version(tmp_path) == cal.detector_version()
    keyed = tmp_path / "watermark" / "tilemark" / "keyed_search.py"
    text = keyed.read_text()
    keyed.write_text(text.replace('"""Finding', '"""Reworded docs. Finding', 1) + "# a comment\n")
    assert cal.detector_version(tmp_path) == cal.detector_version()
    keyed.write_text(text.replace("SCREEN = 256", "SCREEN = 128"))
    assert cal.detector_version(tmp_path) != cal.detector_version()


def test_trials_carry_over_only_when_a_rerun_reproduces_them(pictures, tmp_path):
    names = ["camera#0", "coffee#0"]
    images = dict(zip(names, pictures, strict=True))
    cal.soft_trials(pictures, names, "tilemark", ["k1", "k2"], accumulate=tmp_path)
    current = tmp_path / cal.detector_version()
    old = tmp_path / "0ld0ld0ld0ld0ld0"
    current.rename(old)
    assert cal.carry(old, current, images, n_verify=3, seed=1) == []
    assert cal.summarise_kept(current)["trials"] == 4
    assert (current / f"carried-{old.name}.txt").read_text().startswith("trials of")
    # trials the code does not reproduce (another version's results) are not carried
    forged = tmp_path / "f0rged0000000000"
    forged.mkdir()
    with gzip.open(forged / "x-0.tsv.gz", "wt") as handle:
        handle.write("camera#0\tk1\t0.123\ncoffee#0\tk2\t0.5\n")
    elsewhere = tmp_path / "elsewhere"
    bad = cal.carry(forged, elsewhere, images, n_verify=2, seed=1)
    assert len(bad) == 2 and "kept p 0.123" in " ".join(bad) and not elsewhere.exists()
    assert cal.carry(forged, elsewhere, {}, n_verify=1, seed=1)[0].endswith(
        "not among this run's images (other --variants or photos?)"
    )


def test_a_run_still_going_is_not_packed(tmp_path):
    import os
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "20260101T000000-0.tsv").write_text("a#0\tk\t0.5\tgated\n")
        (tmp_path / "20260101T000000.pid").write_text(str(live.pid))
        (tmp_path / "20250101T000000-0.tsv").write_text("b#0\tk\t0.5\tgated\n")
        (tmp_path / "20250101T000000.pid").write_text("999999999")  # a stopped run's
        cal.pack(tmp_path)
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == [
            "20250101T000000-0.tsv.gz",
            "20260101T000000-0.tsv",
            "20260101T000000.pid",
        ]
        assert cal.summarise_kept(tmp_path)["trials"] == 2
    finally:
        live.kill()
        live.wait()
    cal.pack(tmp_path)
    assert not list(tmp_path.glob("*.tsv")) and not list(tmp_path.glob("*.pid"))
    assert os.path.exists(tmp_path / "20260101T000000-0.tsv.gz")
    # a file whose packed name is taken (two runs in one stamp) adds to it, never replaces
    (tmp_path / "20260101T000000-0.tsv").write_text("c#0\tk\t0.25\tgated\n")
    cal.pack(tmp_path)
    assert cal.summarise_kept(tmp_path)["trials"] == 3


def test_detector_version_covers_the_search_and_the_gate_not_embedding(tmp_path):
    import shutil

    root = cal.ROOT
    (tmp_path / "watermark").mkdir()
    shutil.copytree(root / "watermark" / "tilemark", tmp_path / "watermark" / "tilemark")
    shutil.copy(root / "watermark" / "payload.py", tmp_path / "watermark" / "payload.py")
    base = cal.detector_version(tmp_path)
    folder = tmp_path / "watermark" / "tilemark"
    embedding = folder / "embedding.py"
    embedding.write_text(embedding.read_text() + "\nTARGET = 1\n")
    method = folder / "method.py"
    text = method.read_text()
    method.write_text(text.replace("judged = min(", "judged = min(  # noqa\n    "))
    method.write_text(text + "\n\ndef read_faster():\n    return None\n")
    assert cal.detector_version(tmp_path) == base
    gate = folder / "gate.py"  # the gate decides which families are judged: it counts
    gate_text = gate.read_text()
    gate.write_text(gate_text.replace("GATE_LEVEL = 9.0", "GATE_LEVEL = 8.0"))
    assert cal.detector_version(tmp_path) != base
    gate.write_text(gate_text)
    gated = "if not seen.open:"
    assert gated in text
    method.write_text(text.replace(gated, "if False and not seen.open:"))
    assert cal.detector_version(tmp_path) != base
    method.write_text(text.replace('"legacy": 0.3', '"legacy": 0.31'))
    assert cal.detector_version(tmp_path) != base
    method.write_text(
        text.replace("out = [", "out = list([", 1).replace("]\n    share", "])\n    share", 1)
    )
    assert cal.detector_version(tmp_path) != base
    shared = "def _judged(w, key, code, memo, places, legacy_search: bool)"
    assert shared in text  # the helpers the two family functions share count too
    method.write_text(text.replace(shared, shared.replace("bool)", "bool = True)")))
    assert cal.detector_version(tmp_path) != base


def test_trials_of_the_full_search_are_kept_apart_and_carry_as_such(pictures, tmp_path):
    """Trials made before the gate (three columns) are the full search's: they carry when the
    full search reproduces them, and the summary counts them apart from the gated ones."""
    names = ["camera#0", "coffee#0"]
    images = dict(zip(names, pictures, strict=True))
    old = tmp_path / "0ld0ld0ld0ld0ld0"
    old.mkdir()
    with gzip.open(old / "x-0.tsv.gz", "wt") as handle:
        for name in names:
            p = cal._tilemark_image((name, images[name], ["k1"], None), "full")[0]
            handle.write(f"{name}\tk1\t{p!r}\n")
    current = tmp_path / cal.detector_version()
    assert cal.carry(old, current, images, n_verify=2, seed=1) == []
    cal.soft_trials(pictures, names, "tilemark", ["k2"], accumulate=tmp_path)
    summary = cal.summarise_kept(current)
    # the rate is the shipped (gated) detector's alone: the gated search is no subset of
    # the full one, whose trials are counted apart
    assert summary["trials"] == 2 and summary["trials_by_kind"] == {"gated": 2, "full": 2}


def test_the_shipped_tilemark_rate_is_of_this_code_and_holds_its_claim():
    """data/watermark_calibration.json measures the detector as it is: its fingerprint is the
    code's (a change to the search or the gate needs a new calibration or a verified carry),
    on at least 100,000 unmarked trials (issue 19), none detected at the default threshold."""
    from aigcguard.watermark.calibration import load_calibration

    entry = load_calibration()["methods"]["tilemark"]
    assert entry["detector_version"] == cal.detector_version()
    assert entry["trials"] >= 100_000 and entry["false_positives"] == 0
    assert entry["fpr_upper95"] < 1e-4
    assert sum(entry["trials_by_kind"].values()) == entry["trials"]
