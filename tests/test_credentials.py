"""C2PA Content Credentials (aigcguard.provenance.credentials.c2pa): a dev CA, signing and verifying
our own images, and the verdicts on the public C2PA conformance files and real-world samples
from the shared data folder."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from aigcguard.provenance.credentials import datahash, signers
from aigcguard.provenance.credentials.c2pa import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    DIGITAL_CAPTURE,
    DIGITAL_CREATION,
    STATES,
    TRAINED_ALGORITHMIC_MEDIA,
    CredentialCheck,
    DevCa,
    check_store,
    make_dev_ca,
    sign,
    state_of,
    verify,
)
from aigcguard.provenance.credentials.status import (
    CODES,
    EXCLUSION_TOO_WIDE,
    INTEGRITIES,
    STANDINGS,
    meaning,
)
from tests.helpers import SHARED

DATA = SHARED / "c2pa"
CONFORMANCE = DATA / "conformance"
CERTS = DATA / "certs"

# The three untouched Truepic conformance files whose data-hash exclusion c2pa-rs (0.91)
# rejects; aigcguard.provenance.credentials.datahash rechecks the hash (docs/provenance.md).
TRUEPIC = ("truepic-20230212-camera", "truepic-20230212-landscape", "truepic-20230212-library")


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
    assert (trusted.integrity, trusted.standing) == ("intact", "trusted")
    assert [m["where"] for m in trusted.manifests] == ["active"]
    assert trusted.manifests[0]["label"] == result.manifest_label
    assert trusted.manifest_label == result.manifest_label
    assert trusted.generator.startswith("aigc-guard/")
    assert trusted.digital_source_types == [TRAINED_ALGORITHMIC_MEDIA]
    assert trusted.signer["common_name"] == "aigc-guard development signer"
    assert trusted.soft_bindings == [] and trusted.ingredients == []
    assert json.loads(trusted.to_json())["state"] == "trusted"

    # No anchors, or anchors the signer does not chain to: intact but not trusted.
    untrusted = verify(out)
    assert (untrusted.state, untrusted.integrity, untrusted.standing) == (
        "valid",
        "intact",
        "untrusted",
    )
    assert untrusted.codes == []
    other = make_dev_ca(tmp_path / "other")
    assert verify(out, trust_anchors=[other.ca.read_text()]).state == "valid"
    absent = verify(source)
    assert absent.state == "absent" and absent.integrity is None and absent.standing is None
    assert absent.manifests is None and absent.declarations is None and absent.codes is None
    assert set(json.loads(trusted.to_json())) >= {
        "integrity",
        "standing",
        "manifests",
        "declarations",
    }


@pytest.mark.parametrize(("suffix", "marker"), [(".jpg", b"\xff\xda"), (".png", b"IDAT")])
def test_tampered_pixels_are_altered(tmp_path: Path, ca: DevCa, suffix: str, marker: bytes):
    out = tmp_path / f"signed{suffix}"
    sign(image(tmp_path / f"gen{suffix}"), out, cert_chain=ca.chain, key=ca.key)
    flip_byte(out, marker, 40)
    check = verify(out, trust_anchors=[ca.ca])
    # the signer is still who it was; what it signed is not what the file holds
    assert (check.state, check.integrity, check.standing) == ("invalid", "altered", "trusted")
    assert "assertion.dataHash.mismatch" in check.codes
    assert "signingCredential.untrusted" not in check.codes
    [declaration] = check.declarations  # still reported, marked as not holding up
    assert declaration["integrity"] == "altered"


def test_unreadable_manifest_is_invalid(tmp_path: Path, ca: DevCa):
    out = tmp_path / "signed.jpg"
    sign(image(tmp_path / "gen.jpg"), out, cert_chain=ca.chain, key=ca.key)
    data = out.read_bytes()
    out.write_bytes(data.replace(b"jumd", b"jumx", 1))  # first JUMBF description box
    check = verify(out)
    assert (check.state, check.codes) == ("invalid", ["general.error"])
    assert (check.integrity, check.standing) == ("unreadable", None)
    assert check.error and check.manifests == [] and check.declarations == []


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
    # its own declaration, then the parent's (the whole chain counts)
    assert check.digital_source_types == [
        COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
        TRAINED_ALGORITHMIC_MEDIA,
    ]
    assert check.generator == "studio/2.1"
    assert check.ingredients == [
        {
            "title": "parent.png",
            "relationship": "parentOf",
            "format": "image/png",
            "manifest_label": parent_label,
            "thumbnail": None,  # signed without thumbnails: none to show, none left out
            "thumbnail_omitted": None,
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


def test_only_the_first_thumbnails_are_read_and_huge_ones_are_not_decoded():
    """A crafted store with many ingredients costs at most THUMBNAILS_READ reads, and a
    thumbnail declaring more pixels than a thumbnail has is left out before decoding."""
    import io

    from aigcguard.provenance.credentials import c2pa as credentials

    class Reader:  # c2pa.Reader's one method this needs
        def __init__(self):
            self.asked = []

        def resource_to_stream(self, ident, stream):
            self.asked.append(ident)
            stream.write(b"\xff\xd8\xff" + ident.encode())

    ingredients = [{"title": f"i{k}", "thumbnail": {"identifier": f"t{k}"}} for k in range(20)]
    store = {"active_manifest": "m", "manifests": {"m": {"ingredients": ingredients}}}
    reader = Reader()
    found = credentials._ingredient_thumbnails(reader, store)
    assert reader.asked == [f"t{k}" for k in range(credentials.THUMBNAILS_READ)]
    assert found["t19"].startswith("not read: only the first")
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, format="PNG")  # flat: a few KB, 6 MP
    assert credentials._shrunk(big.getvalue()) == "cannot be shrunk: 3000 x 2000 pixels"


def test_ingredient_thumbnails_inline_small_or_shrunk(tmp_path: Path, ca: DevCa, monkeypatch):
    import base64
    import io

    from aigcguard.provenance.credentials import c2pa as credentials
    from aigcguard.provenance.credentials.signing import THUMBNAIL_LONG_EDGE

    by = {"cert_chain": ca.chain, "key": ca.key}
    y, x = np.mgrid[0:96, 0:128]
    smooth = np.stack([x * 2, y * 2, x + y], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "smooth.jpg", quality=90)
    parent = tmp_path / "smooth.jpg"
    sign(parent, parent, **by, digital_source_type="digitalCapture")
    out = tmp_path / "edit.jpg"
    made = {"parent": parent, "thumbnail": True}
    sign(image(tmp_path / "gen.jpg"), out, **by, **made, digital_source_type=DIGITAL_CREATION)
    check = verify(out, trust_anchors=[ca.ca])
    assert check.state == "trusted"
    [ingredient] = check.ingredients
    assert ingredient["title"] == "smooth.jpg" and ingredient["thumbnail_omitted"] is None
    head, data = ingredient["thumbnail"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert len(base64.b64decode(data)) <= credentials.THUMBNAIL_MAX_BYTES
    with Image.open(io.BytesIO(base64.b64decode(data))) as preview:
        assert preview.format == "JPEG"
        assert preview.width / preview.height == pytest.approx(4 / 3, abs=0.01)
        assert preview.width == THUMBNAIL_LONG_EDGE  # sign's size, not c2pa-rs's 1024 px
    assert json.loads(check.to_json())["ingredients"][0]["thumbnail"] == ingredient["thumbnail"]

    # a noisy parent's preview is too large to carry inline: shrunk, or left out saying why
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 600, 3), np.uint8)).save(noisy)
    sign(image(tmp_path / "gen2.jpg"), tmp_path / "big.jpg", **by, parent=noisy, thumbnail=True)
    with c2pa.Reader(str(tmp_path / "big.jpg")) as reader:
        big_store = json.loads(reader.json())
        [taken] = big_store["manifests"][big_store["active_manifest"]]["ingredients"]
        raw = io.BytesIO()
        reader.resource_to_stream(taken["thumbnail"]["identifier"], raw)
    assert len(raw.getvalue()) > credentials.THUMBNAIL_MAX_BYTES  # the case to shrink
    [big] = verify(tmp_path / "big.jpg").ingredients
    assert big["thumbnail_omitted"] is None
    shrunk = base64.b64decode(big["thumbnail"].split(",", 1)[1])
    assert len(shrunk) <= credentials.THUMBNAIL_MAX_BYTES
    with Image.open(io.BytesIO(shrunk)) as preview:
        assert preview.format == "JPEG" and preview.size == (credentials.SHRUNK_SIDE, 171)
    monkeypatch.setattr(credentials, "THUMBNAIL_MAX_BYTES", 1000)
    [big] = verify(tmp_path / "big.jpg").ingredients
    assert big["thumbnail"] is None
    assert big["thumbnail_omitted"] == "more than the 1,000 bytes shown inline, even shrunk"
    monkeypatch.undo()

    # what the bytes are decides, not the manifest's word; without a reader nothing is read
    with c2pa.Reader(str(out)) as reader:
        store = json.loads(reader.json())
    [taken] = store["manifests"][store["active_manifest"]]["ingredients"]
    ident = taken["thumbnail"]["identifier"]
    svg = check_store(out, store, thumbnails={ident: b"<svg onload='alert(1)'/>"})
    assert svg.ingredients[0]["thumbnail"] is None
    omitted = svg.ingredients[0]["thumbnail_omitted"]
    assert omitted == "not a JPEG, PNG or WebP picture (declared image/jpeg)"
    assert check_store(out, store).ingredients[0]["thumbnail_omitted"] == "not read"
    png = io.BytesIO()
    Image.fromarray(smooth).save(png, format="PNG")
    as_png = check_store(out, store, thumbnails={ident: png.getvalue()}).ingredients[0]
    assert as_png["thumbnail"].startswith("data:image/png;base64,")

    # a thumbnail that cannot be read never fails the check
    def broken(self, uri, stream):
        raise c2pa.C2paError("resource gone")

    monkeypatch.setattr(c2pa.Reader, "resource_to_stream", broken)
    again = verify(out, trust_anchors=[ca.ca])
    assert again.state == "trusted" and again.ingredients[0]["thumbnail"] is None
    assert again.ingredients[0]["thumbnail_omitted"].startswith("cannot be read (")


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


def expected_codes(name: str) -> set[str] | None:
    """The failure codes the conformance suite's manifest_store.json expects (None: no
    manifest), signingCredential.untrusted left out."""
    store = CONFORMANCE / "manifests" / name / "manifest_store.json"
    if not store.exists():
        return None
    data = json.loads(store.read_text())
    return {s["code"] for s in data.get("validation_status", [])} - {"signingCredential.untrusted"}


CONFORMANCE_FILES = (
    sorted(p for p in CONFORMANCE.iterdir() if p.suffix in (".jpg", ".jpeg"))
    if CONFORMANCE.is_dir()
    else []
)


def tampered(path: Path) -> bool:
    """The conformance suite's error cases (-E-) and assets changed after signing (X...)."""
    return "-E-" in path.name or path.stem.split("-")[-1].startswith("X")


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
    """Issue 20's done-when: every tampered conformance file is altered, every untouched one
    intact (without trust anchors: their signers stand untrusted, Nikon's expired)."""
    check = verify(path)
    assert check.state in STATES
    expected = expected_codes(path.stem)
    if expected is None:
        assert check.state == "absent" and check.integrity is None
    elif tampered(path):
        assert (check.state, check.integrity) == ("invalid", "altered"), check.codes
        assert set(check.codes) & expected  # failing for (one of) the expected reasons
    else:
        assert check.integrity == "intact", check.codes
        assert check.state == "valid" and check.standing in ("untrusted", "expired")
        assert all(m["integrity"] in INTEGRITIES for m in check.manifests)


def test_conformance_standings_and_caveats():
    nikon = verify(need(CONFORMANCE / "nikon-20221019-building.jpeg"))
    # expired since 2023 and not time-stamped: the signer's standing, not the bytes
    assert (nikon.state, nikon.integrity, nikon.standing) == ("valid", "intact", "expired")
    assert nikon.codes == ["signingCredential.expired"]
    assert nikon.signer["organisation"] == "Nikon"
    for name in TRUEPIC:
        check = verify(CONFORMANCE / f"{name}.jpg")
        assert (check.state, check.integrity, check.standing) == ("valid", "intact", "untrusted")
        assert check.codes == [EXCLUSION_TOO_WIDE]
        assert check.manifests[0]["codes"] == [EXCLUSION_TOO_WIDE]
        assert check.signer["organisation"] == "Truepic"
    # a signed ingredient whose own signature was already broken when it was taken in (and
    # recorded so): the file is intact, that manifest is not
    composite = verify(CONFORMANCE / "adobe-20220124-CIE-sig-CA.jpg")
    assert composite.integrity == "intact"
    ingredient = composite.manifests[1]
    assert (ingredient["where"], ingredient["relationship"]) == ("ingredient", "componentOf")
    assert ingredient["integrity"] == "altered"
    assert "claimSignature.mismatch" in ingredient["codes"]
    assert ingredient["parent"] == composite.manifest_label
    # an ingredient manifest changed after the composite was signed: the file is altered
    broken = verify(CONFORMANCE / "adobe-20220124-E-uri-CIE-sig-CA.jpg")
    assert broken.integrity == "altered" and broken.manifests[0]["integrity"] == "intact"
    assert broken.manifests[1]["integrity"] == "altered"


def test_photoshop_generative_fill():
    check = verify(need(DATA / "signed" / "photoshop_generative_fill.jpg"))
    assert (check.state, check.integrity, check.standing) == ("valid", "intact", "untrusted")
    # the composite's own declaration first, then the Firefly image placed in it
    assert check.digital_source_types == [
        COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
        TRAINED_ALGORITHMIC_MEDIA,
    ]
    assert check.generator == "Adobe Photoshop/26.9.0"
    assert check.signer["issuer"] == "Adobe Inc." and check.signer["organisation"] == "Adobe"
    assert check.signed_at.startswith("2025-08-13")
    assert [i["relationship"] for i in check.ingredients] == ["componentOf"]
    found = [(d["source_type"], d["finding"], d["where"], d["scope"]) for d in check.declarations]
    assert found == [
        ("compositeWithTrainedAlgorithmicMedia", "partly_generated", "active", "whole"),
        ("compositeWithTrainedAlgorithmicMedia", "partly_generated", "active", "whole"),
        # generated, but only a component of this picture
        ("trainedAlgorithmicMedia", "generated", "ingredient", "component"),
    ]
    firefly = check.declarations[-1]
    assert firefly["software_agent"] == "Adobe Firefly" and firefly["action"] == "c2pa.created"
    assert firefly["signer"] == "Adobe Firefly C2PA Stage" and firefly["organisation"] == "Adobe"
    assert check.manifests[1]["generator"].startswith("Adobe_Firefly")


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


# --------------------------------------------------------------------------- issue 20
# Integrity apart from standing, the whole chain, known signers.

LIFE = datetime.timedelta(seconds=6)  # how long the short-lived signing certificate is valid


def leaf_expiry(ca: DevCa) -> datetime.datetime:
    return x509.load_pem_x509_certificates(ca.chain.read_bytes())[0].not_valid_after_utc


@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files signed with a certificate that has expired since (c2pa refuses to sign with an
    expired one, so it is valid for a few seconds, signs, and the fixture waits it out): an
    AI picture, and an edit of it that opens it as its parent and declares nothing itself,
    both with the same certificate, as ChatGPT's pictures are."""
    folder = tmp_path_factory.mktemp("expired")
    now = datetime.datetime.now(datetime.timezone.utc)
    short = make_dev_ca(
        folder / "ca",
        name="Lapsed Lab",
        not_before=now - datetime.timedelta(days=1) + LIFE,
        days=1,
    )
    made = image(folder / "gen.jpg")
    sign(made, folder / "ai.jpg", cert_chain=short.chain, key=short.key)
    sign(
        made,
        folder / "edit.jpg",
        cert_chain=short.chain,
        key=short.key,
        parent=folder / "ai.jpg",
        action="c2pa.opened",
        digital_source_type=None,
    )
    wait = (leaf_expiry(short) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert wait < LIFE.total_seconds()
    time.sleep(max(0.0, wait) + 1.5)
    return {"ca": short.ca, "ai": folder / "ai.jpg", "edit": folder / "edit.jpg"}


def test_an_expired_certificate_leaves_the_content_intact(expired: dict[str, Path]):
    """Issue 20: an intact manifest whose certificate expired since (no time-stamp) was
    reported invalid, and "the file was altered"."""
    for anchors in (None, [expired["ca"]]):
        check = verify(expired["ai"], trust_anchors=anchors)
        assert (check.state, check.integrity, check.standing) == ("valid", "intact", "expired")
        assert check.codes == ["signingCredential.expired"]
    [declaration] = check.declarations
    assert (declaration["source_type"], declaration["finding"]) == (
        "trainedAlgorithmicMedia",
        "generated",
    )
    assert (declaration["integrity"], declaration["standing"]) == ("intact", "expired")
    assert state_of("intact", "expired") == "valid"


def test_an_ai_declaration_in_an_expired_parent(expired: dict[str, Path]):
    """Issue 20, the ChatGPT case: the active manifest declares no source type, its parentOf
    ingredient's manifest declares trainedAlgorithmicMedia; both certificates expired."""
    check = verify(expired["edit"])
    assert (check.state, check.integrity, check.standing) == ("valid", "intact", "expired")
    assert check.digital_source_types == [TRAINED_ALGORITHMIC_MEDIA]
    assert [m["where"] for m in check.manifests] == ["active", "ingredient"]
    assert [m["standing"] for m in check.manifests] == ["expired", "expired"]
    [declaration] = check.declarations
    assert declaration["where"] == "ingredient" and declaration["relationship"] == "parentOf"
    assert (
        declaration["scope"] == "whole" and declaration["manifest"] == check.manifests[1]["label"]
    )
    assert declaration["signer"] == "Lapsed Lab signer"


def test_an_ai_declaration_only_in_an_ingredient(tmp_path: Path, ca: DevCa):
    parent = tmp_path / "parent.jpg"
    sign(image(tmp_path / "gen.jpg"), parent, cert_chain=ca.chain, key=ca.key)
    edit = tmp_path / "edit.jpg"
    sign(
        image(tmp_path / "base.jpg", seed=2),
        edit,
        cert_chain=ca.chain,
        key=ca.key,
        parent=parent,
        action="c2pa.opened",
        digital_source_type=None,
    )
    check = verify(edit, trust_anchors=[ca.ca])
    assert (check.state, check.integrity, check.standing) == ("trusted", "intact", "trusted")
    assert check.digital_source_types == [TRAINED_ALGORITHMIC_MEDIA]  # was [] before
    [declaration] = check.declarations
    assert (declaration["where"], declaration["relationship"], declaration["finding"]) == (
        "ingredient",
        "parentOf",
        "generated",
    )
    assert declaration["standing"] == "trusted"  # the ingredient's signer, checked today
    child = check.manifests[1]
    assert child["parent"] == check.manifest_label and child["label"] == declaration["manifest"]

    # a non-AI declaration of its own comes first; the parent's still counts
    made = tmp_path / "made.jpg"
    sign(
        image(tmp_path / "base2.jpg", seed=3),
        made,
        cert_chain=ca.chain,
        key=ca.key,
        parent=parent,
        digital_source_type="digitalCreation",
    )
    check = verify(made)
    assert check.digital_source_types == [DIGITAL_CREATION, TRAINED_ALGORITHMIC_MEDIA]
    assert [d["finding"] for d in check.declarations] == ["other", "generated"]


def test_a_composite_declaration(tmp_path: Path, ca: DevCa):
    out = tmp_path / "composite.png"
    sign(
        image(tmp_path / "gen.png"),
        out,
        cert_chain=ca.chain,
        key=ca.key,
        digital_source_type="compositeWithTrainedAlgorithmicMedia",
    )
    [declaration] = verify(out).declarations
    assert declaration["finding"] == "partly_generated" and declaration["where"] == "active"
    assert declaration["action"] == "c2pa.created"
    assert declaration["software_agent"].startswith("aigc-guard/")


def test_a_trusted_camera_capture(tmp_path: Path):
    camera = make_dev_ca(tmp_path / "camera", name="Leica Camera AG")
    out = tmp_path / "capture.jpg"
    sign(
        image(tmp_path / "raw.jpg"),
        out,
        cert_chain=camera.chain,
        key=camera.key,
        digital_source_type=DIGITAL_CAPTURE,
        generator="camera",
    )
    check = verify(out, trust_anchors=[camera.ca])
    assert (check.state, check.integrity, check.standing) == ("trusted", "intact", "trusted")
    [declaration] = check.declarations
    assert (declaration["finding"], declaration["standing"]) == ("captured", "trusted")
    # the known-signer table names the organisation from the certificate; it never trusts
    assert declaration["organisation"] == "Leica" == check.signer["organisation"]
    untrusted = verify(out)
    assert untrusted.standing == "untrusted" and untrusted.signer["organisation"] == "Leica"


def test_sign_action_options(tmp_path: Path, ca: DevCa):
    source, out = image(tmp_path / "gen.jpg"), tmp_path / "out.jpg"
    with pytest.raises(ValueError, match="must declare a digital source type"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, digital_source_type=None)
    with pytest.raises(ValueError, match="needs the parent"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, action="c2pa.opened")
    with pytest.raises(ValueError, match="C2PA action"):
        sign(source, out, cert_chain=ca.chain, key=ca.key, action="opened")
    assert not out.exists()


def test_dev_ca_validity_window(tmp_path: Path):
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    ca = make_dev_ca(tmp_path / "old", not_before=start, days=2)
    leaf, root = x509.load_pem_x509_certificates(ca.chain.read_bytes())
    assert leaf.not_valid_before_utc == start
    assert leaf.not_valid_after_utc == start + datetime.timedelta(days=2)
    assert root.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_dev_ca(tmp_path / "naive", not_before=datetime.datetime(2020, 1, 1))


# --- the code table --------------------------------------------------------------------------

ACTIVE, CHILD = "urn:test:active", "urn:test:child"
INGREDIENT_URI = f"self#jumbf=/c2pa/{ACTIVE}/c2pa.assertions/c2pa.ingredient.v3"


def status_store(code: str, kind: str, *, in_ingredient: bool = False) -> dict:
    """A manifest store as c2pa-python gives it: an active manifest with a parentOf ingredient
    whose manifest declares trainedAlgorithmicMedia; ``code`` reported (as ``kind``) for the
    active manifest, or for the ingredient's among the ingredient deltas."""

    def manifest(label: str, **extra) -> dict:
        return {
            "label": label,
            "claim_generator_info": [{"name": "ChatGPT"}],
            "signature_info": {
                "alg": "Es256",
                "issuer": "OpenAI",
                "common_name": "Truepic Lens CLI in Sora",
            },
            **extra,
        }

    created = {
        "action": "c2pa.created",
        "softwareAgent": {"name": "GPT-4o"},
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
    }
    status = {"code": code, "url": f"self#jumbf=/c2pa/{CHILD if in_ingredient else ACTIVE}"}
    codes = {"success": [], "informational": [], "failure": []}
    delta = {"success": [], "informational": [], "failure": []}
    (delta if in_ingredient else codes)[kind].append(status)
    return {
        "active_manifest": ACTIVE,
        "manifests": {
            ACTIVE: manifest(
                ACTIVE,
                ingredients=[
                    {
                        "label": "c2pa.ingredient.v3",
                        "relationship": "parentOf",
                        "active_manifest": CHILD,
                    }
                ],
                assertions=[
                    {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.opened"}]}}
                ],
            ),
            CHILD: manifest(
                CHILD,
                assertions=[
                    {
                        "label": "c2pa.actions.v2",
                        "data": {"actions": [created, {"action": "c2pa.converted"}]},
                    }
                ],
            ),
        },
        "validation_results": {
            "activeManifest": codes,
            "ingredientDeltas": [
                {"ingredientAssertionURI": INGREDIENT_URI, "validationDeltas": delta}
            ],
        },
    }


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_in_the_table(code: str):
    """Each code, reported for the active manifest and for an ingredient's, comes out as the
    table says: integrity for the file (whichever manifest it is in) and that manifest,
    standing for that manifest only."""
    entry = CODES[code]
    check = check_store("x.jpg", status_store(code, entry.kind))
    integrity = entry.effect if entry.effect in INTEGRITIES else "intact"
    standing = entry.effect if entry.effect in STANDINGS else "untrusted"
    assert check.integrity == integrity
    assert check.standing == (None if integrity == "unreadable" else standing)
    assert check.state == state_of(integrity, check.standing)
    reported = entry.kind == "failure" and code != "signingCredential.untrusted"
    assert (code in check.codes) == (reported or entry.origin == "aigc-guard")
    assert check.manifests[0]["integrity"] == integrity

    inner = check_store("x.jpg", status_store(code, entry.kind, in_ingredient=True))
    assert inner.integrity == integrity and inner.standing == "untrusted"
    child = inner.manifests[1]
    assert (child["integrity"], child["standing"]) == (integrity, standing)
    assert inner.declarations[0]["integrity"] == integrity
    assert (code in child["codes"]) == reported


@pytest.mark.parametrize(
    ("code", "effect"),
    [
        ("assertion.dataHash.mismatch", "altered"),  # pixels changed
        ("assertion.hashedURI.mismatch", "altered"),  # an assertion changed
        ("claimSignature.mismatch", "altered"),
        ("ingredient.manifest.missing", "altered"),
        ("assertion.undeclared", "altered"),
        ("claim.malformed", "unreadable"),
        ("assertion.cbor.invalid", "unreadable"),
        ("signingCredential.untrusted", "untrusted"),
        ("signingCredential.expired", "expired"),
        ("signingCredential.ocsp.revoked", "revoked"),
        ("signingCredential.trusted", "trusted"),
        ("timeStamp.untrusted", "none"),
        ("ingredient.unknownProvenance", "none"),
    ],
)
def test_main_codes(code: str, effect: str):
    assert meaning(code).effect == effect


def test_unknown_failure_codes_count_as_altered_and_are_reported():
    check = check_store("x.jpg", status_store("vendor.brandNewFailure", "failure"))
    assert (check.state, check.integrity) == ("invalid", "altered")
    assert check.codes == ["vendor.brandNewFailure"]
    # a CAWG identity credential judges a person's identity, not the content or the signer
    identity = check_store("x.jpg", status_store("cawg.ica.untrusted_issuer", "failure"))
    assert identity.integrity == "intact" and identity.codes == ["cawg.ica.untrusted_issuer"]


def test_the_table_names_codes_the_library_emits():
    """A code marked as emitted by c2pa-rs must be spelt as the bundled library spells it."""
    libs = Path(c2pa.__file__).parent.joinpath("libs")
    found = [p for p in libs.glob("*c2pa_c*") if p.suffix in (".so", ".dylib", ".dll")]
    library = found[0] if found else None
    if library is None:
        pytest.skip("the c2pa native library is not where c2pa-python 0.38 keeps it")
    data = library.read_bytes()
    missing = [c for c, m in CODES.items() if m.origin == "c2pa-rs" and c.encode() not in data]
    assert missing == []


def test_a_chatgpt_shaped_store():
    """The shape of a real ChatGPT image's store (contentauth/example-assets,
    ChatGPT_Image.json): the parent's validation recorded when it was taken in, the signer
    untrusted in both, the declaration in the parent."""
    store = status_store("signingCredential.untrusted", "failure")
    ingredient = store["manifests"][ACTIVE]["ingredients"][0]
    ingredient["validation_results"] = {"activeManifest": {
        "success": [{"code": "claimSignature.validated"}], "informational": [],
        "failure": [{"code": "signingCredential.untrusted"}]}}  # fmt: skip
    check = check_store("chatgpt.png", store)
    assert (check.state, check.integrity, check.standing) == ("valid", "intact", "untrusted")
    assert check.codes == [] and check.generator == "ChatGPT"
    assert check.signer["organisation"] == "OpenAI"
    assert check.digital_source_types == [TRAINED_ALGORITHMIC_MEDIA]
    [declaration] = check.declarations
    assert declaration["software_agent"] == "GPT-4o" and declaration["organisation"] == "OpenAI"
    assert declaration["signer"] == "Truepic Lens CLI in Sora"
    # a failure recorded at ingestion marks that manifest, not the file
    ingredient["validation_results"]["activeManifest"]["failure"].append(
        {"code": "claimSignature.mismatch"}
    )
    check = check_store("chatgpt.png", store)
    assert check.integrity == "intact" and check.manifests[1]["integrity"] == "altered"
    assert check.declarations[0]["integrity"] == "altered"


def test_state_follows_integrity_and_standing():
    assert state_of("intact", "trusted") == "trusted"
    assert state_of("intact", "untrusted") == state_of("intact", "expired") == "valid"
    assert state_of("intact", "revoked") == "invalid"
    for standing in (*STANDINGS, None):
        assert state_of("altered", standing) == state_of("unreadable", standing) == "invalid"


# --- the data-hash recheck -------------------------------------------------------------------


def truepic_copy(tmp_path: Path) -> Path:
    source = need(CONFORMANCE / f"{TRUEPIC[0]}.jpg")
    return Path(shutil.copy(source, tmp_path / source.name))


def test_a_truepic_pixel_change_is_still_altered(tmp_path: Path):
    copy = truepic_copy(tmp_path)
    flip_byte(copy, b"\xff\xda", 4000)  # in the scan: pixels
    check = verify(copy)
    assert (check.state, check.integrity) == ("invalid", "altered")
    assert "assertion.dataHash.mismatch" in check.codes and EXCLUSION_TOO_WIDE not in check.codes


def test_a_truepic_exif_change_is_not_protected(tmp_path: Path):
    """What the caveat says: bytes inside the over-wide exclusion (EXIF) may change."""
    copy = truepic_copy(tmp_path)
    data = bytearray(copy.read_bytes())
    at = data.index(b"Exif\x00\x00") + 400  # inside the EXIF block, before the manifest
    data[at] ^= 0x01
    copy.write_bytes(bytes(data))
    check = verify(copy)
    assert check.integrity == "intact" and check.codes == [EXCLUSION_TOO_WIDE]


def test_the_recheck_never_excuses_unprotected_pixels():
    data = need(CONFORMANCE / f"{TRUEPIC[0]}.jpg").read_bytes()
    with c2pa.Reader(str(CONFORMANCE / f"{TRUEPIC[0]}.jpg")) as reader:
        detailed = json.loads(reader.detailed_json())
    assertion = detailed["manifests"][detailed["active_manifest"]]["assertion_store"][
        "c2pa.hash.data"
    ]
    assert datahash.matches(data, assertion)
    [(start, length)] = [(e["start"], e["length"]) for e in assertion["exclusions"]]
    wider = {**assertion, "exclusions": [{"start": start, "length": length + 134}]}  # + DQT
    assert not datahash.covers_only_metadata(data, datahash.exclusions(wider, len(data)))
    assert not datahash.matches(data, wider)
    assert not datahash.matches(data, {**assertion, "hash": "AAAA"})
    png = (DATA / "signed" / "C.jpg").read_bytes()  # another file's bytes: hash differs
    assert not datahash.matches(png, assertion)
    assert not datahash.covers_only_metadata(b"\x89PNG\r\n\x1a\n", [(0, 8)])


# --- known signers ---------------------------------------------------------------------------


def test_known_signers_table():
    entries = signers.known_signers()
    assert {e["organisation"] for e in entries} >= {
        "OpenAI", "Google", "Adobe", "Microsoft", "Truepic", "Nikon", "Leica", "Sony", "Canon"
    }  # fmt: skip
    for entry in entries:
        assert entry["source"] and entry["kind"] and entry["match"]
        for field, names in entry["match"].items():  # every name leads back to its entry
            part, attribute = ("subject" if field.startswith("subject") else "issuer"), field[-1]
            for name in names:
                names_of = {"subject": {}, "issuer": {}}
                names_of[part] = {"O" if attribute == "o" else "CN": name.upper()}
                assert signers.organisation(**names_of) == entry["organisation"], name
    # ChatGPT's leaf: OpenAI's organisation, Truepic's software
    openai = signers.organisation({"O": "OpenAI", "CN": "Truepic Lens CLI in Sora"}, {})
    assert openai == "OpenAI"
    assert signers.organisation({"CN": "x"}, {"CN": "Google C2PA Media Services 1P ICA G3"}) == (
        "Google"
    )
    assert signers.organisation({"O": "Example Lab"}, {"O": "Example CA"}) is None
    assert signers.organisation({}, {}) is None


def test_a_trust_list_bundle_with_subject_lines(tmp_path: Path, ca: DevCa):
    """The C2PA Trust List's PEM puts a "Subject<TAB>CN=..." line (UTF-8) before each
    certificate; such a bundle is read as it is."""
    out = tmp_path / "signed.jpg"
    sign(image(tmp_path / "gen.jpg"), out, cert_chain=ca.chain, key=ca.key)
    other = make_dev_ca(tmp_path / "other")
    bundle = tmp_path / "C2PA-TRUST-LIST.pem"
    bundle.write_bytes(
        "Subject\tCN=Café Root, O=Other\n".encode() + other.ca.read_bytes()
        + b"\nSubject\tCN=aigc-guard development root CA\n" + ca.ca.read_bytes()
    )  # fmt: skip
    assert verify(out, trust_anchors=[bundle]).standing == "trusted"


# What the check's summary makes of them (service/check/verdict.py), on real signed files.


def test_the_check_calls_expired_ai_credentials_generated(expired: dict[str, Path]):
    """Issue 20: intact credentials with an expired certificate decide ``generated``, the
    reason says the certificate expired and the content matches, nothing says "altered";
    also when the declaration is in the parent's manifest only (ChatGPT)."""
    from aigcguard.service.check import summarise

    for name in ("ai", "edit"):
        s = summarise({"credentials": verify(expired[name])})
        assert s.verdict == "generated" and s.decided_by == ["credentials"], (name, s)
        assert any("certificate has expired" in r and "content matches" in r for r in s.reasons)
        assert not any("altered" in r for r in s.reasons)
    s = summarise({"credentials": verify(expired["edit"])})
    assert any("parentOf ingredient" in r for r in s.reasons)


def test_the_check_calls_a_generative_fill_partly_generated():
    """Photoshop's generative fill: a composite whose Firefly component was generated is
    partly generated, not generated as a whole."""
    from aigcguard.service.check import summarise

    s = summarise({"credentials": verify(need(DATA / "signed" / "photoshop_generative_fill.jpg"))})
    assert s.verdict == "partly_generated" and s.decided_by == ["credentials"], s
    assert any("(a component)" in r for r in s.reasons)


def test_the_check_reports_tampered_credentials_as_no_evidence(tmp_path: Path, ca: DevCa):
    from aigcguard.service.check import summarise

    signed = tmp_path / "s.png"
    sign(image(tmp_path / "x.png"), signed, cert_chain=ca.chain, key=ca.key)
    flip_byte(signed, b"IDAT", 40)
    s = summarise({"credentials": verify(signed, trust_anchors=[ca.ca])})
    assert s.verdict == "no_evidence" and any("integrity check" in r for r in s.reasons)
