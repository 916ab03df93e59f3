"""``aigc index ...`` and ``aigc similar`` through click's runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def built(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-sim")
    works = root / "works"
    works.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photos[name]).save(works / f"{name}.png")
    (works / "meta.csv").write_text("path,title,creator\nchelsea.png,Chelsea,Cat Owner\n")
    store = root / "store"
    result = CliRunner().invoke(
        main,
        [
            "index",
            "build",
            str(works),
            "--index",
            str(store),
            "--metadata",
            str(works / "meta.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    added = _lines(result.output)
    assert len(added) == 3 and all(r["status"] == "added" for r in added)
    return root, store


def test_similar_finds_the_copy_with_metadata_and_evidence(built, photos):
    root, store = built
    h, w = photos["chelsea"].shape[:2]
    query = root / "query.jpg"
    Image.fromarray(photos["chelsea"][h // 5 : -h // 5, w // 5 : -w // 5]).save(query, quality=70)
    evidence = root / "evidence"
    result = CliRunner().invoke(
        main,
        ["similar", str(query), "--index", str(store), "--top-k", "2", "--evidence", str(evidence)],
    )
    assert result.exit_code == 0, result.output
    [record] = _lines(result.output)
    top = record["matches"][0]
    assert record["path"] == str(query) and record["verdict"] == "copy"
    assert top["title"] == "Chelsea" and top["creator"] == "Cat Owner" and top["inliers"] >= 12
    assert set(top) >= {"id", "path", "title", "creator", "score", "verdict", "inliers"}
    with Image.open(top["evidence"]) as im:
        assert im.size[0] > im.size[1]  # side by side


def test_info_add_remove_and_bad_inputs(built, tmp_path, photos):
    _, store = built
    runner = CliRunner()
    info = json.loads(runner.invoke(main, ["index", "info", "--index", str(store)]).output)
    assert info["count"] == 3 and info["embedder"] == "vlad" and info["index_type"] == "IDMap2,Flat"

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    good = tmp_path / "clock.png"
    Image.fromarray(photos["clock"]).save(good)
    result = runner.invoke(main, ["index", "add", str(good), str(bad), "--index", str(store)])
    assert result.exit_code == 1
    records = _lines(result.output)
    assert any(r.get("status") == "added" for r in records)
    assert any("error" in r and r["path"] == str(bad) for r in records)
    assert "1 of 2 inputs failed" in result.output

    added_id = next(r["id"] for r in records if r.get("status") == "added")
    result = runner.invoke(
        main, ["index", "remove", str(added_id), "nope.png", "--index", str(store)]
    )
    assert result.exit_code == 1 and "no such work" in result.output
    info = json.loads(runner.invoke(main, ["index", "info", "--index", str(store)]).output)
    assert info["count"] == 3


def test_missing_store_and_existing_store_are_clear_errors(built, tmp_path):
    _, store = built
    runner = CliRunner()
    result = runner.invoke(main, ["similar", str(tmp_path), "--index", str(tmp_path / "none")])
    assert result.exit_code == 1 and "none" in result.output
    result = runner.invoke(main, ["index", "build", str(tmp_path), "--index", str(store)])
    assert result.exit_code == 1 and "error:" in result.output
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    result = runner.invoke(
        main, ["index", "build", str(img), "--index", str(tmp_path / "s2"), "--descriptor", "bogus"]
    )
    assert result.exit_code == 1 and "unknown descriptor 'bogus'" in result.output


def test_old_embedder_option_still_works_with_a_deprecation_warning(tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    runner = CliRunner()
    old = ["index", "build", str(img), "--index", str(tmp_path / "s"), "--embedder", "bogus"]
    result = runner.invoke(main, old)
    assert result.exit_code == 1
    assert "--embedder is deprecated; use --descriptor" in result.output
    assert "unknown descriptor 'bogus'" in result.output  # the old name reached the same option
    both = [*old, "--descriptor", "pdq"]
    result = runner.invoke(main, both)
    assert result.exit_code == 2 and "give --descriptor only" in result.output


@pytest.mark.slow
def test_eval_copy_reports_and_calibrates(built, photos, tmp_path):
    _, store = built
    refs, others = tmp_path / "refs", tmp_path / "others"
    refs.mkdir()
    others.mkdir()
    for name in ("astronaut", "rocket"):
        Image.fromarray(photos[name]).save(refs / f"{name}.png")
    Image.fromarray(photos["brick"]).save(others / "brick.png")
    (refs / "junk.png").write_bytes(b"nope")
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "copy",
            "--refs",
            str(refs),
            "--distractors",
            str(others),
            "--json",
            "--calibrate-into",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["references"] == 2 and report["distractor_queries"] == 1
    assert report["verified"]["muap"] > 0.7
    assert "junk.png" in result.output  # skipped with its reason
    calibration = json.loads((store / "calibration.json").read_text())
    assert calibration["copy"] == report["score_at_p90"] and calibration["precision"] == 0.9
    info = json.loads(CliRunner().invoke(main, ["index", "info", "--index", str(store)]).output)
    assert info["thresholds"]["copy"] == report["score_at_p90"]
    (store / "calibration.json").unlink()


def test_similar_and_build_report_skipped_entries_and_a_picture_that_raises(
    built, tmp_path, photos, monkeypatch
):
    """Every entry of a folder gets a line; an unexpected exception on one picture is that
    picture's error, the others are done, and the command exits 3."""
    from aigcguard.provenance.similarity.index import SimilarityIndex

    _, store = built
    folder = tmp_path / "q"
    folder.mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(photos[name]).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    real_search, real_add = SimilarityIndex.search, SimilarityIndex.add

    def search(self, images, *, paths=None, **kw):
        if paths and paths[0].endswith("coffee.png"):
            raise RuntimeError("search broke")
        return real_search(self, images, paths=paths, **kw)

    def add(self, refs, **kw):
        if any(r.path.endswith("coffee.png") for r in refs):
            raise RuntimeError("add broke")
        return real_add(self, refs, **kw)

    monkeypatch.setattr(SimilarityIndex, "search", search)
    monkeypatch.setattr(SimilarityIndex, "add", add)
    runner = CliRunner()
    result = runner.invoke(main, ["similar", str(folder), "--index", str(store), "--no-verify"])
    assert result.exit_code == 3, result.output
    lines = {r["path"]: r for r in _lines(result.output)}
    assert lines[str(folder / "drawing.svg")]["error"] == "unsupported format (.svg)"
    assert lines[str(folder / "notes.txt")]["error"] == "not a picture (.txt)"
    assert (
        lines[str(folder / "coffee.png")]["error"] == "internal error: RuntimeError: search broke"
    )
    assert lines[str(folder / "astronaut.png")]["matches"]
    build = ["index", "build", str(folder), "--index", str(tmp_path / "s"), "--descriptor", "pdq"]
    result = runner.invoke(main, build)
    assert result.exit_code == 3, result.output
    records = _lines(result.output)
    assert {r.get("status") for r in records} == {"added", None}
    assert {r["path"]: r["error"] for r in records if "error" in r} == {
        str(folder / "drawing.svg"): "unsupported format (.svg)",
        str(folder / "notes.txt"): "not a picture (.txt)",
        str((folder / "coffee.png").resolve()): "internal error: RuntimeError: add broke",
    }
