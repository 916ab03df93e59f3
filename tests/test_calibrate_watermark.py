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
            name, key, p = line.split("\t")
            kept[(name, key)] = float(p)
    assert len(kept) == 6
    for name, img in zip(names, pictures, strict=True):
        [direct] = detect([img], key="k3")
        assert kept[(name, "k3")] == pytest.approx(min(1.0, direct.p_value), rel=1e-9)
    # a run stopped mid-line leaves a plain file with a partial line: skipped, the rest
    # still counted, and packed by the next run
    (folder / "stopped-0.tsv").write_text("camera#0\tk7\t0.5\ncamera#0\tk9")
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
