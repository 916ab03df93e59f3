"""C2PA Content Credentials (aigcguard.provenance.credentials.c2pa): a dev CA, signing and verifying
our own images, and the verdicts on the public C2PA conformance files and real-world samples
from the shared data folder."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from aigcguard.provenance.credentials.c2pa import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    STATES,
    TRAINED_ALGORITHMIC_MEDIA,
    CredentialCheck,
    DevCa,
    make_dev_ca,
    sign,
    verify,
)
from tests.helpers import SHARED

DATA = SHARED / "c2pa"
CONFORMANCE = DATA / "conformance"
CERTS = DATA / "certs"

# c2pa-rs (0.91) rejects a data-hash exclusion that covers more than the manifest ("data hash
# exclusion does not match the manifest location in the asset"). Truepic's libc2pa 2.5.1
# excluded everything from byte 0 up to the image data, which leaves the EXIF segment (GPS,
# capture time) outside the hash; the expected manifest_store.json files were made by an older
# SDK that accepted this. The hashes themselves match: these files are not tampered with.
KNOWN_STRICTER = {
    f"truepic-20230212-{name}": ("invalid", "assertion.dataHash.mismatch")
    for name in ("camera", "landscape", "library")
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"shared C2PA data not found at {path} (../shared/data/c2pa beside the project)"
        )
    return path


def image(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 64, dtype=np.float32)
    pixels = ramp[None, :, None] + rng.integers(0, 55, (48, 64, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def flip_byte(path: Path, marker: bytes, offset: int) -> None:
    """Change one byte ``offset`` bytes after the last ``marker``: image data, not metadata."""
    data = bytearray(path.read_bytes())
    at = data.rindex(marker) + offset
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCa:
    return make_dev_ca(tmp_path_factory.mktemp("ca"))


def test_dev_ca_files(tmp_path: Path):
    ca = make_dev_ca(tmp_path / "certs")
    names = ("ca.pem", "chain.pem", "key.pem")
    assert (ca.ca, ca.chain, ca.key) == tuple(tmp_path / "certs" / n for n in names)
    assert stat.S_IMODE(os.stat(ca.key).st_mode) == 0o600
    assert ca.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8

    root = x509.load_pem_x509_certificate(ca.ca.read_bytes())
    leaf, issuer = x509.load_pem_x509_certificates(ca.chain.read_bytes())
    assert issuer == root and root.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(root)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"
    ext = leaf.extensions
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert (
        ExtendedKeyUsageOID.EMAIL_PROTECTION
        in ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert leaf.not_valid_before_utc < leaf.not_valid_after_utc <= root.not_valid_after_utc


def test_dev_ca_refuses_to_overwrite(tmp_path: Path):
    (tmp_path / "chain.pem").write_text("mine")
    with pytest.raises(FileExistsError, match=r"chain\.pem"):
        make_dev_ca(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.pem"]  # nothing else written
    assert (tmp_path / "chain.pem").read_text() == "mine"
    ca = make_dev_ca(tmp_path, overwrite=True)
    assert ca.chain.read_text().count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_sign_then_verify(tmp_path: Path, ca: DevCa, suffix: str):
    source = image(tmp_path / f"gen{suffix}")
    out = tmp_path / f"signed{suffix}"
    result = sign(source, out, cert_chain=ca.chain, key=ca.key)
    assert (result.path, result.out, result.alg) == (str(source), str(out), "es256")
    assert result.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert result.soft_binding is None
    json.loads(result.to_json())

    trusted = verify(out, trust_anchors=[ca.ca])
    assert trusted.state == "trusted" and trusted.codes == []
    assert trusted.manifest_label == result.manifest_label
    assert trusted.generator.startswith("aigc-guard/")
    assert trusted.digital_source_types == [TRAINED_ALGORITHMIC_MEDIA]
    assert trusted.signer["common_name"] == "aigc-guard development signer"
    assert trusted.soft_bindings == [] and trusted.ingredients == []
    assert json.loads(trusted.to_json())["state"] == "trusted"

    # No anchors, or anchors the signer does not chain to: intact but not trusted.
    assert verify(out).state == "valid" and verify(out).codes == []
    other = make_dev_ca(tmp_path / "other")
    assert verify(out, trust_anchors=[other.ca.read_text()]).state == "valid"
    assert verify(source).state == "absent"


@pytest.mark.parametrize(("suffix", "marker"), [(".jpg", b"\xff\xda"), (".png", b"IDAT")])
def test_tampered_pixels_are_invalid(tmp_path: Path, ca: DevCa, suffix: str, marker: bytes):
    out = tmp_path / f"signed{suffix}"
    sign(image(tmp_path / f"gen{suffix}"), out, cert_chain=ca.chain, key=ca.key)
    flip_byte(out, marker, 40)
    check = verify(out, trust_anchors=[ca.ca])
    assert check.state == "invalid"
    assert "assertion.dataHash.mismatch" in check.codes
    assert "signingCredential.untrusted" not in check.codes


def test_unreadable_manifest_is_invalid(tmp_path: Path, ca: DevCa):
    out = tmp_path / "signed.jpg"
    sign(image(tmp_path / "gen.jpg"), out, cert_chain=ca.chain, key=ca.key)
    data = out.read_bytes()
    out.write_bytes(data.replace(b"jumd", b"jumx", 1))  # first JUMBF description box
    check = verify(out)
    assert (check.state, check.codes) == ("invalid", ["general.error"])
    assert check.error


def test_soft_binding_parent_and_options(tmp_path: Path, ca: DevCa):
    parent = tmp_path / "parent.png"
    parent_label = sign(image(parent), parent, cert_chain=ca.chain, key=ca.key).manifest_label
    out = tmp_path / "child.png"
    result = sign(
        image(tmp_path / "gen.png", seed=1),
        out,
        cert_chain=ca.chain,
        key=ca.key,
        parent=parent,
        soft_binding=("tilemark", "A1B2c3d4"),
        digital_source_type="compositeWithTrainedAlgorithmicMedia",
        generator="studio",
        generator_version="2.1",
        title="Dawn",
    )
    binding = {"alg": "com.aigc-guard.tilemark", "value": "a1b2c3d4"}
    assert result.soft_binding == binding
    assert result.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA

    check = verify(out, trust_anchors=[ca.ca])
    assert check.state == "trusted"
    assert check.soft_bindings == [binding]
    assert check.digital_source_types == [COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA]
    assert check.generator == "studio/2.1"
    assert check.ingredients == [
        {
            "title": "parent.png",
            "relationship": "parentOf",
            "format": "image/png",
            "manifest_label": parent_label,
        }
    ]
    # The assertion has the C2PA soft-binding-map shape; no thumbnails unless asked for.
    with c2pa.Reader(str(out)) as reader:
        manifest = reader.get_active_manifest()
    assert manifest["title"] == "Dawn" and "thumbnail" not in manifest
    [assertion] = [a for a in manifest["assertions"] if a["label"] == "c2pa.soft-binding"]
    assert assertion["data"] == {
        "alg": binding["alg"],
        "blocks": [{"scope": {}, "value": binding["value"]}],
    }
    sign(out, tmp_path / "thumb.png", cert_chain=ca.chain, key=ca.key, thumbnail=True)
    with c2pa.Reader(str(tmp_path / "thumb.png")) as reader:
        assert "thumbnail" in reader.get_active_manifest()


@pytest.mark.parametrize(
    ("chain", "key", "alg"),
    [
        ("es256_certs.pem", "es256_private.key", "es256"),
        ("ps256.pub", "ps256.pem", "ps256"),  # c2pa-rs's fixtures: .pub is the chain
        ("ed25519.pub", "ed25519.pem", "ed25519"),
    ],
)
def test_sign_with_shared_certs(tmp_path: Path, chain: str, key: str, alg: str):
    settings = json.loads(need(CERTS / "trust_config_test_settings.json").read_text())
    anchors = settings["trust"]["trust_anchors"]  # a PEM string, not a file
    out = tmp_path / "signed.jpg"
    result = sign(image(tmp_path / "gen.jpg"), out, cert_chain=CERTS / chain, key=CERTS / key)
    assert result.alg == alg
    check = verify(out, trust_anchors=[anchors])
    assert check.state == "trusted", check.codes
    assert check.signer["alg"].lower() == alg and check.signer["common_name"] == "C2PA Signer"
    assert verify(out).state == "valid"


def test_sign_in_place(tmp_path: Path, ca: DevCa):
    path = image(tmp_path / "gen.jpg")
    sign(path, path, cert_chain=ca.chain, key=ca.key)
    assert verify(path, trust_anchors=[ca.ca]).state == "trusted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.jpg"]  # no temporary left


def test_bad_inputs(tmp_path: Path, ca: DevCa):
    source = image(tmp_path / "gen.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    out = tmp_path / "out.jpg"
    for bad in (tmp_path / "missing.jpg", text):
        with pytest.raises(ValueError, match=re.escape(bad.name)):
            sign(bad, out, cert_chain=ca.chain, key=ca.key)
        with pytest.raises(ValueError, match=re.escape(bad.name)):
            verify(bad)
    with pytest.raises(ValueError, match=r"missing\.png"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, parent=tmp_path / "missing.png")

    other = make_dev_ca(tmp_path / "other")
    with pytest.raises(ValueError, match="does not belong"):
        sign(source, out, cert_chain=ca.chain, key=other.key)
    with pytest.raises(ValueError, match=re.escape(str(text))):
        sign(source, out, cert_chain=text, key=ca.key)
    with pytest.raises(ValueError, match="digital source type"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, digital_source_type="aiMade")
    with pytest.raises(ValueError, match="hex"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, soft_binding=("tilemark", "xyz"))
    with pytest.raises(ValueError, match=re.escape(str(text))):
        verify(source, trust_anchors=[text])
    with pytest.raises(TypeError):
        verify(source, trust_anchors=str(ca.ca))
    assert not out.exists()


def test_failed_sign_leaves_nothing_behind(tmp_path: Path, ca: DevCa):
    broken = tmp_path / "broken.jpg"  # passes for a JPEG until the library parses it
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    out = tmp_path / "out.jpg"
    out.write_bytes(b"previous")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        sign(broken, out, cert_chain=ca.chain, key=ca.key)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- shared files


def expected_state(name: str) -> tuple[str, set[str]]:
    """State and failure codes the conformance suite's manifest_store.json expects."""
    store = CONFORMANCE / "manifests" / name / "manifest_store.json"
    if not store.exists():
        return "absent", set()
    data = json.loads(store.read_text())
    codes = {s["code"] for s in data.get("validation_status", [])}
    codes.discard("signingCredential.untrusted")
    if "validation_state" in data:
        return data["validation_state"].lower(), codes
    return ("invalid" if codes else "valid"), codes


CONFORMANCE_FILES = (
    sorted(p for p in CONFORMANCE.iterdir() if p.suffix in (".jpg", ".jpeg"))
    if CONFORMANCE.is_dir()
    else []
)


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.stem) for p in CONFORMANCE_FILES]
    or [
        pytest.param(
            CONFORMANCE,
            marks=pytest.mark.skip(reason=f"shared C2PA data not found at {CONFORMANCE}"),
        )
    ],
)
def test_conformance_file(path: Path):
    check = verify(path)
    assert check.state in STATES
    state, codes = expected_state(path.stem)
    if "-E-" in path.name or path.stem.split("-")[-1].startswith("X"):
        assert state == "invalid"  # the error cases, and the assets changed after signing
    if path.stem in KNOWN_STRICTER:
        assert state == "valid"  # else the entry above is stale
        state, code = KNOWN_STRICTER[path.stem]
        codes = {code}
    assert check.state == state, check.codes
    if state == "invalid":
        assert set(check.codes) & codes  # failing for (one of) the expected reasons
    else:
        assert check.codes == ([] if state != "absent" else None)


def test_photoshop_generative_fill():
    check = verify(need(DATA / "signed" / "photoshop_generative_fill.jpg"))
    assert check.state == "valid"
    assert check.digital_source_types == [COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA]
    assert check.generator == "Adobe Photoshop/26.9.0"
    assert check.signer["issuer"] == "Adobe Inc."
    assert check.signed_at.startswith("2025-08-13")
    assert [i["relationship"] for i in check.ingredients] == ["componentOf"]


def test_remote_manifest_is_not_fetched():
    check = verify(need(DATA / "signed" / "cloud.jpg"))
    assert check == CredentialCheck(
        path=str(DATA / "signed" / "cloud.jpg"),
        state="absent",
        remote_manifest=check.remote_manifest,
    )
    assert check.remote_manifest.startswith("https://")


# --- the package ------------------------------------------------------------------------------


def test_dev_ca_is_its_own_module_and_still_importable_from_c2pa():
    from aigcguard.provenance.credentials import dev_ca

    assert make_dev_ca is dev_ca.make_dev_ca and DevCa is dev_ca.DevCa


def test_package_names_load_lazily_and_stay_in_their_domain():
    code = """
import sys
import aigcguard.provenance.credentials as cred
assert "c2pa" not in sys.modules, "the package imported c2pa eagerly"
cred.read_labels, cred.make_dev_ca, cred.Ledger
assert "c2pa" not in sys.modules, "labels, dev_ca or the ledger pulled in c2pa"
from aigcguard.provenance.credentials import c2pa, containers, gb45438, iptc, labels, xmp
assert cred.sign is c2pa.sign and cred.verify is c2pa.verify
others = ("provenance.similarity", "watermark", "detectors", "service", "cli")
print([m for m in sys.modules if m.startswith(tuple("aigcguard." + o for o in others))])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
