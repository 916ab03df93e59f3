"""`aigc provenance dev-ca|sign|verify|label|read`: the commands over the library, JSON lines,
failures reported at the end with exit 1."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from aigcguard.cli import main
from aigcguard.imageio import save_image
from aigcguard.provenance.credentials.c2pa import TRUST_ENV, make_dev_ca, sign
from tests.helpers import SHARED, to_tensor


def _lines(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_dev_ca_sign_verify_label_read(tmp_path, photos):
    runner = CliRunner()
    r = runner.invoke(main, ["provenance", "dev-ca", "--out", str(tmp_path / "ca")])
    assert r.exit_code == 0, r.output
    ca = json.loads(r.stdout)
    r = runner.invoke(main, ["provenance", "dev-ca", "--out", str(tmp_path / "ca")])
    assert r.exit_code != 0  # never overwrites keys silently

    picture = save_image(to_tensor(photos["coffee"]), tmp_path / "gen.jpg")
    r = runner.invoke(
        main,
        ["provenance", "label", str(picture), "--out", str(picture), "--producer", "Lab"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["gb45438_action"] == "written"
    signed = tmp_path / "signed.jpg"
    args = ["provenance", "sign", str(picture), "--cert", ca["chain"], "--key", ca["key"]]
    r = runner.invoke(
        main, [*args, "--out", str(signed), "--soft-binding", "tilemark:00112233aabbccdd"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["soft_binding"]["value"] == "00112233aabbccdd"
    r = runner.invoke(main, [*args, "--out", str(signed), "--soft-binding", "nocolon"])
    assert r.exit_code != 0 and "METHOD:PAYLOAD_HEX" in r.output

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    inputs = [str(signed), str(picture), str(tmp_path / "broken.jpg")]
    r = runner.invoke(main, ["provenance", "verify", *inputs, "--trust", ca["ca"]])
    assert r.exit_code == 1  # the broken file, reported after the others
    by_path = {x["path"]: x for x in _lines(r.stdout)}
    assert by_path[str(signed)]["state"] == "trusted"
    assert by_path[str(picture)]["state"] == "absent"
    assert "error" in by_path[str(tmp_path / "broken.jpg")]
    r = runner.invoke(main, ["provenance", "verify", str(signed)])
    assert r.exit_code == 0 and _lines(r.stdout)[0]["state"] == "valid"

    r = runner.invoke(main, ["provenance", "read", str(signed), str(tmp_path / "broken.jpg")])
    assert r.exit_code == 1
    report = next(x for x in _lines(r.stdout) if x["path"] == str(signed))
    assert report["ai_labelled"] and report["gb45438"]["fields"]["ContentProducer"] == "Lab"


def test_verify_conformance_tampered_files_invalid():
    folder = SHARED / "c2pa" / "conformance"
    if not folder.is_dir():
        pytest.skip(f"shared C2PA conformance files not found at {folder}")
    tampered = sorted(p for p in folder.glob("*.jpg") if "-E-" in p.name or "-X" in p.name)
    r = CliRunner().invoke(main, ["provenance", "verify", *map(str, tampered)])
    assert r.exit_code == 0, r.output
    states = {x["path"]: x["state"] for x in _lines(r.stdout)}
    assert len(states) == len(tampered) >= 7
    assert set(states.values()) == {"invalid"}


def test_verify_reads_trust_anchors_from_aigc_trust(tmp_path, photos):
    """AIGC_TRUST holds PEM files (os.pathsep-separated) for when no --trust is given."""
    ca, other = make_dev_ca(tmp_path / "ca"), make_dev_ca(tmp_path / "other")
    picture = save_image(to_tensor(photos["coffee"]), tmp_path / "gen.jpg")
    signed = tmp_path / "signed.jpg"
    sign(picture, signed, cert_chain=ca.chain, key=ca.key)
    runner = CliRunner(env={TRUST_ENV: os.pathsep.join([str(other.ca), str(ca.ca)])})
    r = runner.invoke(main, ["provenance", "verify", str(signed)])
    assert r.exit_code == 0, r.output
    [line] = _lines(r.stdout)
    assert (line["state"], line["integrity"], line["standing"]) == ("trusted", "intact", "trusted")
    assert [m["where"] for m in line["manifests"]] == ["active"]
    assert line["declarations"][0]["source_type"] == "trainedAlgorithmicMedia"
    # --trust, when given, is what counts
    r = runner.invoke(main, ["provenance", "verify", str(signed), "--trust", str(other.ca)])
    assert _lines(r.stdout)[0]["standing"] == "untrusted"
    r = CliRunner(env={TRUST_ENV: str(tmp_path / "missing.pem")}).invoke(
        main, ["provenance", "verify", str(signed)]
    )
    assert r.exit_code != 0 and "missing.pem" in r.output
