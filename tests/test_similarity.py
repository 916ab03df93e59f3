"""The similarity index end to end: register works, find copies, verdicts and evidence."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aigcguard.provenance.similarity import index as S
from aigcguard.provenance.similarity.stores import StoreError
from tests.helpers import to_tensor

WORKS = ("astronaut", "coffee", "chelsea", "camera", "rocket")


def _jpeg(arr: np.ndarray, quality: int = 70) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def _crop(arr: np.ndarray, frac: float) -> np.ndarray:
    h, w = arr.shape[:2]
    dy, dx = int(h * (1 - frac) / 2), int(w * (1 - frac) / 2)
    return np.ascontiguousarray(arr[dy : h - dy, dx : w - dx])


@pytest.fixture(scope="module")
def works_dir(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("works")
    for name in WORKS:
        Image.fromarray(photos[name]).save(folder / f"{name}.png")
    (folder / "meta.csv").write_text(
        "path,title,creator,license\n"
        + "".join(f"{n}.png,{n.title()},Creator {i % 2},CC0\n" for i, n in enumerate(WORKS))
    )
    return folder


@pytest.fixture(scope="module")
def index(works_dir, tmp_path_factory):
    meta = S.read_metadata_csv(works_dir / "meta.csv")
    store = tmp_path_factory.mktemp("idx") / "store"
    idx = S.SimilarityIndex.create(store, descriptor="vlad", device="cpu")
    report = idx.add(list(meta.values()))
    assert len(report.added) == len(WORKS) and not report.errors
    yield idx
    idx.close()


def test_cropped_reencoded_copy_is_a_verified_copy(index, photos):
    query = _jpeg(_crop(photos["chelsea"], 0.6))
    [result] = index.search([to_tensor(query)], k=3)
    top = result.matches[0]
    assert result.verdict == "copy" and top.verdict == "copy"
    assert top.title == "Chelsea" and top.creator == "Creator 0" and top.licence == "CC0"
    assert top.inliers >= 12 and top.region is not None and not top.flipped
    assert top.score < top.cosine  # background normalisation takes something off
    d = result.to_dict()
    assert d["matches"][0]["title"] == "Chelsea" and set(d) == {"path", "verdict", "matches"}
    assert "evidence" not in d["matches"][0]  # working data, not part of the JSON


def test_evidence_picture_reuses_the_search_check(index, photos, monkeypatch):
    import aigcguard.provenance.similarity.verify as V

    query = to_tensor(_jpeg(_crop(photos["chelsea"], 0.6)))
    [result] = index.search([query], k=1)
    top = result.matches[0]
    assert top.evidence is not None and top.evidence.verified

    def no_second_check(*a, **kw):
        raise AssertionError("verified twice")

    monkeypatch.setattr(V, "verify", no_second_check)
    picture = index.match_picture(query, top)
    assert picture.ndim == 3 and picture.shape[2] == 3


def test_mirrored_copy_is_found_as_flipped(index, photos):
    query = np.ascontiguousarray(_crop(photos["coffee"], 0.8)[:, ::-1])
    [result] = index.search([to_tensor(query)])
    top = result.matches[0]
    assert top.title == "Coffee" and top.verdict == "copy" and top.flipped


def test_same_file_is_exact_and_unrelated_photo_is_not_a_copy(index, works_dir, photos):
    exact, other = index.search_files([works_dir / "camera.png", _save(works_dir, photos)])
    assert exact.verdict == "exact" and exact.matches[0].title == "Camera"
    assert other.verdict not in ("exact", "copy")
    assert all(m.inliers is None or m.inliers < 12 for m in other.matches)


def _save(folder, photos):
    path = folder.parent / "unrelated.png"
    Image.fromarray(photos["brick"]).save(path)
    return path


def test_add_skips_registered_and_reports_bad_files(index, works_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(flat)
    report = index.add(
        [
            S.Reference(str(works_dir / "camera.png")),
            S.Reference(str(bad)),
            S.Reference(str(flat)),
            S.Reference(str(tmp_path / "missing.png")),
        ]
    )
    assert report.added == [] and report.skipped == [str(works_dir / "camera.png")]
    assert len(report.errors) == 3
    assert any("bad.png" in e and "not a recognised image" in e for e in report.errors)
    assert any("flat.png" in e and "no local features" in e for e in report.errors)
    assert any("missing.png" in e for e in report.errors)
    assert index.store.info().count == len(WORKS)


def test_reopen_and_remove(index, photos):
    path = index.path
    other = S.SimilarityIndex.open(path, device="cpu")
    try:
        assert other.descriptor.spec == "vlad" and other.store.info().count == len(WORKS)
    finally:
        other.close()
    with pytest.raises(StoreError):
        S.SimilarityIndex.open(path.parent / "nothing-here")


def test_store_calibration_sets_the_levels(works_dir, photos, tmp_path):
    idx = S.SimilarityIndex.create(tmp_path / "s", descriptor="pdq")
    try:
        idx.add([S.Reference(str(works_dir / f"{n}.png")) for n in WORKS])
        (tmp_path / "s" / S.STORE_CALIBRATION).write_text(
            json.dumps({"copy": 0.7, "similar": 0.4, "precision": 0.9})
        )
        idx = S.SimilarityIndex.open(tmp_path / "s")
        assert idx.thresholds.copy == 0.7 and idx.thresholds.source.endswith("calibration.json")
        # Near-identical without geometry (verification off): near_duplicate by score.
        [r] = idx.search([to_tensor(_jpeg(photos["rocket"], 80))], verify=False)
        assert r.matches[0].title is None and r.matches[0].verdict == "near_duplicate"
        assert r.matches[0].path.endswith("rocket.png")
    finally:
        idx.close()


def test_metadata_csv_errors(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("file,title\na.png,A\n")
    with pytest.raises(ValueError, match="needs a 'path' column"):
        S.read_metadata_csv(f)
    f.write_text("path,title\n,A\n")
    with pytest.raises(ValueError, match="line 2 has no path"):
        S.read_metadata_csv(f)


def test_empty_index_and_featureless_query(tmp_path):
    idx = S.SimilarityIndex.create(tmp_path / "e", descriptor="vlad")
    try:
        [r] = idx.search([torch.full((3, 64, 64), 7, dtype=torch.uint8)])
        assert r.verdict == "none" and r.matches == []
    finally:
        idx.close()


def test_own_background_normalises_scores_and_persists(works_dir, photos, tmp_path):
    from click.testing import CliRunner

    from aigcguard.cli import main

    idx = S.SimilarityIndex.create(tmp_path / "p", descriptor="pdq")
    with pytest.raises(ValueError, match="Hamming"):
        idx.set_background([to_tensor(photos["brick"])])
    idx.close()

    store = tmp_path / "v"
    idx = S.SimilarityIndex.create(store, descriptor="vlad")
    idx.add([S.Reference(str(works_dir / "chelsea.png"))])
    query = to_tensor(_jpeg(_crop(photos["chelsea"], 0.7)))
    shipped = idx.search([query])[0].matches[0]
    idx.close()
    folder = tmp_path / "bg"
    folder.mkdir()
    names = ["astronaut", "coffee", "camera", "rocket", "brick", "clock"]
    for n in names:
        for j, frac in enumerate((1.0, 0.6)):
            Image.fromarray(_crop(photos[n], frac)).save(folder / f"{n}{j}.png")
    result = CliRunner().invoke(main, ["index", "background", str(folder), "--index", str(store)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["background"] == 2 * len(names)
    with S.SimilarityIndex.open(store) as again:
        own = again.search([query])[0].matches[0]
    assert own.cosine == pytest.approx(shipped.cosine) and own.score != pytest.approx(shipped.score)
    assert own.score < own.cosine


# ------------------------------------------------- verification outcome, false-match rates


def test_failed_verification_is_reported_and_never_a_copy(index, photos, monkeypatch):
    import dataclasses

    import aigcguard.provenance.similarity.verify as V

    # An unrelated photo: the best candidates are checked and fail; the rest are not checked.
    [r] = index.search([to_tensor(photos["brick"])], k=5)
    failed = [m for m in r.matches if m.verification == "failed"]
    assert len(failed) >= S.VERIFY_TOP
    assert all(m.verdict != "copy" and 0 <= m.inliers < V.MIN_INLIERS for m in failed)
    assert all(m.inliers is None for m in r.matches if m.verification == "not_run")
    d = failed[0].to_dict()
    assert d["verification"] == "failed" and d["inliers"] == failed[0].inliers
    assert failed[0].verification_note == f"verification: failed, {failed[0].inliers} inliers"

    # A real copy whose check comes one inlier short: reported as failed, with its inliers,
    # and not raised to copy whatever its score.
    real = V.verify_features

    def one_short(query, reference):
        v = real(query, reference)
        return dataclasses.replace(v, inliers=min(v.inliers, V.MIN_INLIERS - 1))

    monkeypatch.setattr(V, "verify_features", one_short)
    [r] = index.search([to_tensor(_jpeg(_crop(photos["chelsea"], 0.6)))], k=3)
    top = next(m for m in r.matches if m.title == "Chelsea")
    assert top.verification == "failed" and top.inliers == V.MIN_INLIERS - 1
    assert top.verdict != "copy" and r.verdict != "copy"
    assert top.score >= index.thresholds.copy_failed  # so it is a near_duplicate, no more
    assert top.verdict == "near_duplicate"


def test_verified_copy_says_verified_and_unchecked_ones_not_run(index, photos):
    [r] = index.search([to_tensor(_jpeg(_crop(photos["chelsea"], 0.6)))], k=5)
    top = r.matches[0]
    assert top.verdict == "copy" and top.verification == "verified"
    assert top.verification_note == f"verification: verified, {top.inliers} inliers"
    [r] = index.search([to_tensor(_jpeg(_crop(photos["chelsea"], 0.6)))], k=5, verify=False)
    assert all(m.verification == "not_run" and m.inliers is None for m in r.matches)
    assert r.matches[0].verification_note == "verification: not run"


def test_failed_verification_needs_the_higher_level():
    t = S.Thresholds(copy=0.10, similar=0.05, copy_failed=0.18)
    assert t.grade(0.12, "not_run") == "near_duplicate"  # no reference file, --no-verify
    assert t.grade(0.12, "failed") == "similar"  # local features looked and found nothing
    assert t.grade(0.20, "failed") == "near_duplicate"
    assert t.grade(0.01, "verified") == "copy"
    assert t.grade(0.01, "failed", same_bytes=True) == "exact"
    assert S.Thresholds(copy=0.10, similar=0.05).grade(0.12, "failed") == "near_duplicate"
    with pytest.raises(ValueError, match="verification must be one of"):
        t.grade(0.5, "skipped")


def test_reported_false_match_rate_comes_from_the_calibration_table(index, photos):
    entry = S._shipped_calibration()["embedders"][S._calibration_key(index.descriptor)]
    on, off = entry["false_match"], entry["false_match_unverified"]
    assert index.thresholds.copy == entry["copy"]
    assert index.thresholds.copy_failed == entry["copy_failed"]

    def expect(m):
        if m.verdict not in ("copy", "near_duplicate", "similar"):
            return None
        return (off if m.verification == "not_run" else on)[m.verdict]

    seen = set()
    for query, verify in [
        (_jpeg(_crop(photos["chelsea"], 0.6)), True),  # a verified copy
        (_jpeg(photos["rocket"], 80), False),  # near_duplicate by score alone
        (photos["brick"], True),  # unrelated
    ]:
        [r] = index.search([to_tensor(query)], k=5, verify=verify)
        for m in r.matches:
            want = expect(m)
            if want is None:
                assert m.false_match_rate is None and m.false_match_ci95 is None
                continue
            seen.add((m.verdict, m.verification))
            assert m.false_match_rate == want["rate"]
            assert m.false_match_ci95 == [want["low"], want["high"]]
            assert m.to_dict()["false_match_rate"] == want["rate"]
    assert {("copy", "verified"), ("near_duplicate", "not_run")} <= seen


def test_store_calibration_without_rates_reports_none(works_dir, photos, tmp_path):
    idx = S.SimilarityIndex.create(tmp_path / "s", descriptor="vlad", device="cpu")
    try:
        idx.add([S.Reference(str(works_dir / "rocket.png"))])
        S.save_calibration(tmp_path / "s", S.Thresholds(0.05, 0.01, precision=0.9))
        with S.SimilarityIndex.open(tmp_path / "s", device="cpu") as own:
            [r] = own.search([to_tensor(_jpeg(photos["rocket"], 80))], verify=False)
            assert r.matches[0].verdict == "near_duplicate"
            assert r.matches[0].false_match_rate is None
    finally:
        idx.close()


#: Held-out generated pictures (bench/near_duplicate_fmr.py's held-out half) that the levels
#: shipped before this calibration (near_duplicate at score 0.081) called near_duplicate of
#: an unrelated Kodak photo (01, a red door) with 0 to 3 inliers: issue 20's case. Their
#: scores against it are in the comments; the levels now shipped were chosen on the other
#: half of the sources.
ISSUE_20_QUERIES = (
    "ai/PicoTrex__Awesome-Nano-Banana-images/8a910801a8df64a0.jpg",  # 0.154
    "ai/SupaGruen__StableDiffusion-CheatSheet/22049c839848c3e0.jpg",  # 0.108
    "ai/PicoTrex__Awesome-Nano-Banana-images/b1048f20ef763e43.jpg",  # 0.106
    "ai/PicoTrex__Awesome-Nano-Banana-images/bd9e08249ad76a0c.jpg",  # 0.095
)
ISSUE_20_REFERENCES = ("01",)


def test_unrelated_wild_pictures_stay_within_the_calibrated_rate(tmp_path):
    from scipy.stats import binom

    from tests.helpers import SHARED

    wild, kodak = SHARED / "wild", SHARED / "photos" / "kodak"
    if not (wild / "manifest.csv").is_file() or not kodak.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (wild/ and photos/kodak/)")
    idx = S.SimilarityIndex.create(tmp_path / "k", descriptor="vlad", device="cpu")
    try:
        report = idx.add(
            [S.Reference(str(kodak / f"{n}.png"), title=n) for n in ISSUE_20_REFERENCES]
        )
        assert len(report.added) == len(ISSUE_20_REFERENCES)
        results = idx.search_files([wild / q for q in ISSUE_20_QUERIES], k=len(ISSUE_20_REFERENCES))
        pairs = [m for r in results for m in r.matches]
        assert len(pairs) == len(ISSUE_20_QUERIES) * len(ISSUE_20_REFERENCES)
        rate = idx.thresholds.false_match["near_duplicate"]
        # the most near_duplicates the calibrated rate (its upper 95% bound) allows among
        # these pairs, but for a one-in-a-thousand chance
        allowed = int(binom.ppf(0.999, len(pairs), rate.high))
        strong = [m for m in pairs if m.verdict in ("exact", "copy", "near_duplicate")]
        assert len(strong) <= allowed, [(m.title, m.score, m.inliers) for m in strong]
        checked = [m for m in pairs if m.verification == "failed"]
        assert checked and all(m.inliers < 12 for m in checked)
    finally:
        idx.close()


def test_audit_html_says_what_verification_found():
    from aigcguard.provenance.similarity.audit import AuditReport, render_html

    m = S.Match(
        7,
        "w.png",
        "Dawn",
        "Ann",
        None,
        0.12,
        0.2,
        "similar",
        3,
        False,
        None,
        verification="failed",
        false_match_rate=8.7e-3,
        false_match_ci95=[8.5e-3, 9.0e-3],
    )
    report = AuditReport(
        index="refs",
        embedder="vlad",
        images=1,
        counts={v: int(v == "similar") for v in S.VERDICTS},
        errors=[],
        results=[S.QueryResult("q.jpg", "similar", [m])],
        creators=[],
        pool=None,
        platform_share=None,
        unattributed=0.0,
    )
    page = render_html(report, index=None)
    assert "verification: failed, 3 inliers" in page
    assert "8.7e-03 (95%: 8.5e-03 to 9.0e-03)" in page
