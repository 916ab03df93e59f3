"""``aigc audit``: counts, worst first, creator shares and payouts, HTML and JSON reports."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.provenance.similarity.audit import UNKNOWN_CREATOR, attribute
from aigcguard.provenance.similarity.index import Match, QueryResult


def _m(wid, creator, score, verdict):
    return Match(wid, f"w{wid}.png", None, creator, None, score, score, verdict, None, False, None)


def test_attribution_by_hand():
    results = [
        # resembles Ann's work 1 (0.6) and Bob's work 2 (0.2): Ann 0.75, Bob 0.25
        QueryResult("a", "copy", [_m(1, "Ann", 0.6, "copy"), _m(2, "Bob", 0.2, "similar")]),
        # only Ann's work 3
        QueryResult("b", "near_duplicate", [_m(3, "Ann", 0.5, "near_duplicate")]),
        # below the similar level: nobody
        QueryResult("c", "none", [_m(2, "Bob", 0.1, "none")]),
        # a work without a creator
        QueryResult("d", "similar", [_m(4, None, 0.3, "similar")]),
    ]
    shares, unattributed = attribute(results, pool=1000.0, platform_share=0.3)
    by = {s.creator: s for s in shares}
    assert by["Ann"].share == pytest.approx(1.75 / 4) and by["Ann"].works_matched == 2
    assert by["Bob"].share == pytest.approx(0.25 / 4) and by["Bob"].images == 1
    assert by[UNKNOWN_CREATOR].share == pytest.approx(0.25)
    assert unattributed == pytest.approx(0.25)
    # works x contribution x price x (1 - platform share) = share x pool x 0.7
    assert by["Ann"].payout == pytest.approx(1.75 / 4 * 1000 * 0.7, abs=0.01)
    assert shares[0].creator == "Ann"
    with pytest.raises(ValueError, match="platform share"):
        attribute(results, pool=10, platform_share=1.5)


def test_audit_cli_html_and_json(photos, tmp_path):
    works = tmp_path / "works"
    works.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photos[name]).save(works / f"{name}.png")
    (works / "meta.csv").write_text(
        "path,title,creator\nastronaut.png,Astronaut,NASA\ncoffee.png,Coffee,Rachel\n"
        "chelsea.png,Chelsea,Stefan\n"
    )
    store = tmp_path / "store"
    runner = CliRunner()
    r = runner.invoke(
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
    assert r.exit_code == 0, r.output
    batch = tmp_path / "batch"
    batch.mkdir()
    h, w = photos["coffee"].shape[:2]
    Image.fromarray(photos["coffee"][h // 6 :, : -w // 6]).save(batch / "copy.jpg", quality=75)
    Image.fromarray(photos["brick"]).save(batch / "brick.png")
    (batch / "broken.png").write_bytes(b"nope")
    html_report = tmp_path / "report.html"
    r = runner.invoke(
        main,
        [
            "audit",
            str(batch),
            "--index",
            str(store),
            "--report",
            str(html_report),
            "--pool",
            "100",
            "--platform-share",
            "0.3",
        ],
    )
    assert r.exit_code == 1  # the broken file is reported, the rest audited
    summary = json.loads(r.output.splitlines()[0])
    assert summary["images"] == 2 and summary["counts"]["copy"] == 1 and summary["errors"] == 1
    assert summary["creators"][0]["creator"] == "Rachel"
    assert summary["creators"][0]["payout"] == pytest.approx(
        summary["creators"][0]["share"] * 70, abs=0.01
    )
    text = html_report.read_text()
    assert "Rachel" in text and "data:image/jpeg;base64," in text and "broken.png" in text

    json_report = tmp_path / "report.json"
    r = runner.invoke(
        main,
        ["audit", str(batch / "copy.jpg"), "--index", str(store), "--report", str(json_report)],
    )
    assert r.exit_code == 0, r.output
    data = json.loads(json_report.read_text())
    assert (
        data["results"][0]["verdict"] == "copy"
        and data["results"][0]["matches"][0]["title"] == "Coffee"
    )
    r = runner.invoke(
        main, ["audit", str(batch), "--index", str(store), "--report", str(tmp_path / "r.txt")]
    )
    assert r.exit_code == 2 and "html or .json" in r.output
