"""`aigc check`: each signal kept apart, and a summary that names the evidence behind it."""

from __future__ import annotations

import io
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aigcguard.cli import main
from aigcguard.detectors.api import Detection
from aigcguard.imageio import save_image
from aigcguard.provenance.credentials import c2pa as credentials
from aigcguard.provenance.credentials.ledger import Ledger, LedgerRecord
from aigcguard.service.binding import Binding
from aigcguard.service.check import Checker, summarise
from aigcguard.service.pipeline import ProvenancePipeline, Signing
from aigcguard.watermark import WatermarkDetection, embed
from tests.helpers import to_tensor

KEY = "check test key"


def _det(band: str, target_fpr: float | None = 0.01) -> Detection:
    score = {"likely_real": 0.1, "uncertain": 0.5}.get(band, 0.9)
    return Detection("x.jpg", score, band, "m", 0.8, target_fpr=target_fpr)


def _cred(state="valid", integrity="intact", standing="untrusted", declarations=(), **kw):
    return credentials.CredentialCheck(
        "x.jpg",
        state,
        signer={"common_name": "Signer CA", "organisation": "Org"},
        integrity=integrity,
        standing=standing,
        declarations=list(declarations),
        codes=kw.pop("codes", []),
        **kw,
    )


def _decl(source_type, finding, where="active", standing="untrusted", integrity="intact"):
    return {
        "source_type": source_type,
        "finding": finding,
        "where": where,
        "relationship": None if where == "active" else "parentOf",
        "manifest": "urn:c2pa:x",
        "action": "c2pa.created",
        "software_agent": None,
        "signer": "Signer CA",
        "organisation": "Org",
        "integrity": integrity,
        "standing": standing,
    }


GENERATED = _decl("trainedAlgorithmicMedia", "generated")


def test_summary_rules():
    assert summarise({}).verdict == "no_evidence"
    assert summarise({"detector": _det("uncertain")}).verdict == "no_evidence"
    s = summarise({"detector": _det("likely_generated")})
    assert s.verdict == "likely_generated" and s.decided_by == ["detector"]
    tampered = _cred(
        "invalid", "altered", codes=["assertion.dataHash.mismatch"], declarations=[GENERATED]
    )
    s = summarise({"credentials": tampered})
    # a broken hash is reported, not taken as a declaration either way
    assert s.verdict == "no_evidence" and any("integrity check" in r for r in s.reasons)
    capture = _cred(
        "trusted",
        standing="trusted",
        declarations=[_decl("digitalCapture", "captured", standing="trusted")],
    )
    s = summarise({"credentials": capture, "detector": _det("likely_generated")})
    assert s.verdict == "captured" and s.decided_by == ["credentials"]
    untrusted_capture = _cred(declarations=[_decl("digitalCapture", "captured")])
    s = summarise({"credentials": untrusted_capture})
    assert s.verdict == "no_evidence" and any("only from a trusted signer" in r for r in s.reasons)


def test_a_low_detector_score_is_no_evidence_of_real():
    """Issue 20: "likely_real" from a detector is a claim it cannot back."""
    s = summarise({"detector": _det("likely_real")})
    assert s.verdict == "no_evidence" and s.decided_by == []
    assert any("no evidence that the picture is real" in r for r in s.reasons)
    assert any("0.10" in r for r in s.reasons)  # the score is still shown


def test_a_loose_detector_threshold_does_not_decide():
    """likely_generated needs a threshold that at most 1% of real photos reach."""
    for fpr in (0.05, None):
        s = summarise({"detector": _det("likely_generated", target_fpr=fpr)})
        assert s.verdict == "no_evidence" and s.decided_by == [], (fpr, s)
        assert any("shown, not summed up" in r for r in s.reasons)


def test_intact_credentials_with_an_expired_certificate_declare_generated():
    """Issue 20: ChatGPT's and Google's expired certificates read as tampering."""
    cred = _cred(
        standing="expired",
        declarations=[_decl("trainedAlgorithmicMedia", "generated", standing="expired")],
    )
    s = summarise({"credentials": cred, "detector": _det("likely_real")})
    assert s.verdict == "generated" and s.decided_by == ["credentials"]
    assert any("certificate has expired" in r and "content matches" in r for r in s.reasons)
    assert not any("altered" in r for r in s.reasons)


def test_a_declaration_in_an_ingredient_counts():
    cred = _cred(declarations=[_decl("trainedAlgorithmicMedia", "generated", where="ingredient")])
    s = summarise({"credentials": cred})
    assert s.verdict == "generated"
    assert any("parentOf ingredient" in r for r in s.reasons)
    broken = _decl("trainedAlgorithmicMedia", "generated", where="ingredient", integrity="altered")
    s = summarise({"credentials": _cred(declarations=[broken])})
    assert s.verdict == "no_evidence"


def test_composites_revocation_and_labels():
    composite = _cred(
        declarations=[_decl("compositeWithTrainedAlgorithmicMedia", "partly_generated")]
    )
    s = summarise({"credentials": composite})
    assert s.verdict == "partly_generated" and s.decided_by == ["credentials"]
    # generated evidence outranks a composite
    s = summarise({"credentials": composite, "watermark": _wm(public=True)})
    assert s.verdict == "generated"
    revoked = _cred("invalid", standing="revoked", declarations=[GENERATED])
    s = summarise({"credentials": revoked})
    assert s.verdict == "no_evidence" and any("revoked" in r for r in s.reasons)


def _wm(*, public=False, fmt="keyed", payload="00" * 8) -> WatermarkDetection:
    return WatermarkDetection(
        True, "tilemark", 60, 64, 1e-12, 1e-6, payload=payload, public_key=public, format=fmt
    )


REC = LedgerRecord("00" * 8, "k", "tilemark", "gen-service", created="2025-01-01T00:00:00")
MATCH = Binding("match", 80, "80 local features agree with the recorded picture")
MISMATCH = Binding("mismatch", 2, "a different picture from the recorded one")
UNVERIFIABLE = Binding("unverifiable", 0, "the recorded picture has too little detail")
FORGERY = "possible forgery: the mark's ledger record is of a different picture"


def test_a_public_key_mark_is_a_declaration_like_a_label():
    s = summarise({"watermark": _wm(public=True)})
    assert s.verdict == "generated" and s.decided_by == ["watermark"]
    assert any(
        "under the public key: a declaration anyone can add, like a label; it says nothing "
        "about who made the picture" in r
        for r in s.reasons
    )
    # found in a ledger by its payload but not bound to this picture: reported, not counted
    s = summarise({"watermark": _wm(public=True), "ledger": REC, "binding": UNVERIFIABLE})
    assert s.verdict == "generated" and s.decided_by == ["watermark"]
    assert any("public key, not bound" in r for r in s.reasons)


def test_a_private_mark_bound_to_its_record_is_strong():
    s = summarise({"watermark": _wm(fmt="legacy"), "ledger": REC, "binding": MATCH})
    assert s.verdict == "generated" and s.decided_by == ["watermark", "ledger"]
    assert any("leads to a ledger record of this very picture" in r for r in s.reasons)


def test_a_binding_mismatch_is_no_evidence():
    for public in (False, True):
        found = {"watermark": _wm(public=public), "ledger": REC, "binding": MISMATCH}
        s = summarise(found)
        assert s.verdict == "no_evidence" and s.decided_by == [], s
        assert any(r.startswith(FORGERY) for r in s.reasons)
        s = summarise({**found, "detector": _det("likely_generated")})
        assert s.verdict == "likely_generated" and s.decided_by == ["detector"]


def test_a_private_mark_the_ledger_cannot_place_is_weak():
    for payload, why in ((None, "cannot be read"), ("ab" * 8, "is not there")):
        s = summarise({"watermark": _wm(payload=payload), "ledger": None})
        assert s.verdict == "likely_generated" and s.decided_by == ["watermark"]
        assert any("cannot be bound to a picture the ledger knows" in r for r in s.reasons)
        assert any(why in r for r in s.reasons)


def test_a_private_mark_without_a_ledger_is_as_strong_as_its_format():
    s = summarise({"watermark": _wm(fmt="keyed")})
    assert s.verdict == "generated" and s.decided_by == ["watermark"]
    assert any("not checked (no ledger)" in r for r in s.reasons)
    for fmt in ("legacy", None):
        s = summarise({"watermark": _wm(fmt=fmt)})
        assert s.verdict == "likely_generated" and s.decided_by == ["watermark"]
        assert any("can be forged from marked pictures" in r for r in s.reasons)
    # a record found by the mark but made before fingerprints: the record counts as much as
    # the mark
    found = {"watermark": _wm(fmt="keyed"), "ledger": REC, "binding": None}
    s = summarise(found)
    assert s.verdict == "generated" and s.decided_by == ["watermark", "ledger"]
    assert any("no fingerprint" in r for r in s.reasons)
    s = summarise({**found, "watermark": _wm(fmt="legacy")})
    assert s.verdict == "likely_generated" and s.decided_by == ["watermark", "ledger"]


def test_a_record_too_plain_to_compare_binds_nothing():
    """Only a match binds: an unverifiable binding is weak, whatever the mark's format (a
    copy shrunk or blurred until it cannot be compared must not pass for bound)."""
    for fmt in ("keyed", "legacy"):
        s = summarise({"watermark": _wm(fmt=fmt), "ledger": REC, "binding": UNVERIFIABLE})
        assert s.verdict == "likely_generated" and s.decided_by == ["watermark", "ledger"]
        assert any("cannot be bound to this picture (unverifiable" in r for r in s.reasons)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, photos):
    """A picture made by the pipeline (marked, labelled, signed, recorded), and a copy of it
    stripped of all metadata and re-encoded, as a platform would serve it."""
    folder = tmp_path_factory.mktemp("check")
    ca = credentials.make_dev_ca(folder / "ca")

    def generate(prompt):
        arr = photos["coffee"][:400, :400]
        return torch.from_numpy(arr).permute(2, 0, 1)[None]

    with Ledger(folder / "ledger.sqlite") as ledger:
        pipe = ProvenancePipeline(
            generate,
            ledger=ledger,
            out_dir=folder / "out",
            key=KEY,
            generator_name="check-service",
            signing=Signing(ca.chain, ca.key),
        )
        [item] = pipe(["a cup of coffee"])
    buf = io.BytesIO()
    Image.open(item.path).convert("RGB").save(buf, format="JPEG", quality=85)
    stripped = folder / "stripped.jpg"
    stripped.write_bytes(buf.getvalue())
    plain = save_image(to_tensor(photos["astronaut"]), folder / "plain.png")
    return folder, ca, item, stripped, plain


def test_the_ledger_finds_an_untouched_file_without_a_readable_mark(tmp_path, photos):
    """A recorded file too small to carry a mark is still found, by its bytes; a re-encoded
    copy of it is not (no mark, other bytes)."""
    from aigcguard.fileio import file_sha256
    from aigcguard.provenance.credentials.ledger import LedgerRecord, key_fingerprint

    tiny = save_image(to_tensor(photos["coffee"][:48, :48]), tmp_path / "tiny.png")
    copy = tmp_path / "copy.jpg"
    Image.open(tiny).save(copy, quality=90)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        record = LedgerRecord(
            payload="00" * 8,
            key_id=key_fingerprint(KEY),
            method="tilemark",
            generator="thumbnailer",
            image_sha256=file_sha256(tiny),
        )
        ledger.record([record])
    with Checker(key=KEY, ledger=tmp_path / "ledger.sqlite") as checker:
        found, other = checker.check_files([tiny, copy])
    assert found.watermark is None and found.ledger.generator == "thumbnailer"
    assert found.summary.verdict == "generated" and found.summary.decided_by == ["ledger"]
    assert any("this very file" in r for r in found.summary.reasons)
    assert found.binding.state == "match" and found.binding.inliers is None
    assert other.ledger is None and "ledger" not in other.summary.decided_by


def test_every_signal_on_a_pipeline_picture(generated):
    folder, ca, item, stripped, plain = generated
    with Checker(key=KEY, ledger=folder / "ledger.sqlite", trust=[ca.ca]) as checker:
        signed, copy, photo = checker.check_files([item.path, stripped, plain])
    assert signed.summary.verdict == "generated"
    assert set(signed.summary.decided_by) >= {"credentials", "watermark", "ledger", "labels"}
    assert signed.credentials.state == "trusted" and signed.ledger.payload == item.payload
    assert signed.binding.state == "match" and signed.binding.inliers is None  # same bytes
    # metadata gone: the mark and the ledger still decide
    assert copy.summary.verdict == "generated"
    assert copy.summary.decided_by == ["watermark", "ledger"]
    assert copy.binding.state == "match" and copy.binding.inliers >= 12
    assert any("ledger record of this very picture" in r for r in copy.summary.reasons)
    assert copy.credentials.state == "absent" and not copy.labels.ai_labelled
    # an unmarked photo: nothing declares anything; the detector has its say
    assert "watermark" not in photo.summary.decided_by and photo.ledger is None
    assert photo.binding is None
    # the default detector, the same as `aigc detect` (not one picked by size any more)
    assert photo.detector is not None and photo.detector.model == "default"
    assert photo.summary.verdict in ("no_evidence", "likely_generated")
    d = signed.to_dict()
    assert d["summary"]["verdict"] == "generated" and d["watermark"]["detected"] is True
    assert d["binding"]["state"] == "match" and "binding" not in d["ledger"]


def test_a_copied_mark_is_a_possible_forgery(generated, photos, tmp_path):
    """The copy attack at its best: the recorded mark, payload and all, on another picture."""
    from aigcguard.service.check import write_html

    folder, _, item, _, _ = generated
    photo = to_tensor(photos["astronaut"][:400, :400])
    [forged] = embed([photo], message=bytes.fromhex(item.payload), key=KEY)
    path = save_image(forged, tmp_path / "forged.png")
    with Checker(key=KEY, ledger=folder / "ledger.sqlite", detector="spectral") as checker:
        [result] = checker.check_files([path])
        page = write_html(tmp_path / "r.html", [result], checker).read_text()
    assert result.watermark.detected and result.ledger.payload == item.payload
    assert result.binding.state == "mismatch"
    assert result.summary.verdict != "generated"
    assert not {"watermark", "ledger"} & set(result.summary.decided_by)
    assert any(r.startswith(FORGERY) for r in result.summary.reasons)
    assert "Binding" in page and "<b>mismatch</b>" in page


def test_cli_check_json_table_and_bad_files(generated, tmp_path):
    folder, _, _, stripped, plain = generated
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    runner = CliRunner()
    args = ["check", str(stripped), str(plain), str(tmp_path / "broken.jpg"), "--key", KEY]
    r = runner.invoke(main, [*args, "--ledger", str(folder / "ledger.sqlite")])
    assert r.exit_code == 1  # the broken file, reported after the others were checked
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    by_path = {x["path"]: x for x in lines}
    assert by_path[str(stripped)]["summary"]["verdict"] == "generated"
    assert by_path[str(stripped)]["ledger"]["generator"] == "check-service"
    assert "error" in by_path[str(tmp_path / "broken.jpg")]
    report = tmp_path / "report.html"
    r = runner.invoke(
        main, [*args, "--ledger", str(folder / "ledger.sqlite"), "--html", str(report)]
    )
    page = report.read_text()
    assert "stripped.jpg" in page and "plain.png" in page and "data:image/jpeg;base64" in page
    assert "class='v-generated'" in page and "Ledger" in page and "broken.jpg" not in page
    assert "Binding" in page
    r = runner.invoke(main, ["check", str(plain), "--format", "table", "--detector", "default"])
    assert r.exit_code == 0, r.output
    assert "verdict" in r.stdout.splitlines()[0] and "plain.png" in r.stdout
    assert "detector (default)" in r.stdout


def test_similarity_is_reported_not_summed_up(generated, photos, tmp_path):
    from aigcguard.provenance.similarity.index import Reference, SimilarityIndex
    from aigcguard.service.check import write_html

    _, _, _, stripped, plain = generated
    work = tmp_path / "coffee.png"
    Image.fromarray(photos["coffee"]).save(work)
    with SimilarityIndex.create(tmp_path / "refs", descriptor="vlad", device="cpu") as index:
        index.add([Reference(str(work), title="Coffee", creator="Ann")])
    with Checker(index=tmp_path / "refs", detector="spectral") as checker:
        copy, photo = checker.check_files([stripped, plain])
        assert copy.similarity.verdict == "copy" and copy.similarity.matches[0].title == "Coffee"
        assert "similarity" not in copy.summary.decided_by  # copying says nothing of origin
        assert any("Coffee" in r and "verification: verified" in r for r in copy.summary.reasons)
        page = write_html(tmp_path / "r.html", [copy, photo], checker).read_text()
    assert page.count("alt='match'") == 1 and "Coffee" in page
    assert "verification: verified" in page


def test_readme_try_it_on_the_bundled_samples(tmp_path):
    """The README's first command: mark the bundled photos, then check originals and marks."""
    from importlib import resources

    with resources.as_file(resources.files("aigcguard.data").joinpath("samples")) as samples:
        runner = CliRunner()
        r = runner.invoke(
            main,
            ["watermark", "embed", str(samples), "--out", str(tmp_path), "--message", "hello"],
        )
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["check", str(samples), str(tmp_path)])
    assert r.exit_code == 0, r.output
    verdicts = {json.loads(x)["path"]: json.loads(x)["summary"] for x in r.stdout.splitlines()}
    marked = [v for p, v in verdicts.items() if p.startswith(str(tmp_path))]
    originals = [v for p, v in verdicts.items() if not p.startswith(str(tmp_path))]
    assert len(marked) == len(originals) >= 2
    assert all(v["verdict"] == "generated" and v["decided_by"] == ["watermark"] for v in marked)
    assert all("watermark" not in v["decided_by"] for v in originals)


def test_an_iptc_composite_label_is_partly_generated_and_a_captured_label_no_evidence():
    from aigcguard.provenance.credentials.iptc import DIGITAL_SOURCE_TYPES
    from aigcguard.provenance.credentials.labels import LabelReport

    def labels(code):
        return LabelReport("x.jpg", "JPEG", None, DIGITAL_SOURCE_TYPES[code], [], [], True)

    s = summarise({"labels": labels("compositeWithTrainedAlgorithmicMedia")})
    assert s.verdict == "partly_generated" and s.decided_by == ["labels"]
    s = summarise({"labels": labels("trainedAlgorithmicMedia")})
    assert s.verdict == "generated"
    # anyone can write an unsigned "captured" label: reported, no evidence
    s = summarise({"labels": labels("digitalCapture")})
    assert s.verdict == "no_evidence" and any("unsigned label" in r for r in s.reasons)
