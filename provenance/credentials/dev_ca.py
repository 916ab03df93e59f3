"""A development certificate authority for C2PA signing: a root CA and a signing leaf it
issued, written as PEM files. For development and tests only; production keys come from a CA
on the C2PA trust list.

    ca = make_dev_ca("certs")   # ca.ca, ca.chain, ca.key: see :class:`DevCa`
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aigcguard.fileio import atomic_write
from aigcguard.results import JsonResult

__all__ = ["DevCa", "make_dev_ca"]

_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning


@dataclass(frozen=True)
class DevCa(JsonResult):
    """Files written by :func:`make_dev_ca`: the trust anchor, the chain, the leaf's key."""

    ca: Path  # the self-signed root: pass it to verify(trust_anchors=[...])
    chain: Path  # leaf certificate then the CA certificate: sign(cert_chain=...)
    key: Path  # the leaf's private key (PKCS#8 PEM, mode 0600): sign(key=...)


def make_dev_ca(
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    name: str = "aigc-guard development",
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> DevCa:
    """Write a test root CA (``ca.pem``), a signing chain (``chain.pem``: leaf, then CA) and
    the leaf's key (``key.pem``) into ``out_dir``. For development and tests only: anyone who
    trusts ``ca.pem`` trusts whatever this key signs.

    c2pa-rs rejects self-signed signing certificates, hence the two levels. The leaf meets its
    certificate profile: EC P-256 (ES256), digitalSignature only, extended key usages
    emailProtection and documentSigning, not a CA, subject and authority key identifiers.
    Without a time-stamp a signature is checked against the leaf's validity at verification
    time, so files signed with it verify with standing ``expired`` after ``days``.

    ``name`` is the organisation of both certificates (the CA is "<name> root CA", the leaf
    "<name> signer"). ``not_before`` (timezone-aware) starts the leaf's validity, an hour ago
    by default; the leaf is valid ``days`` from then, so a start far enough back makes a leaf
    that expires soon. (c2pa refuses to sign with an expired leaf: the tests of expired
    signers sign with one that expires seconds later, and wait.)
    """
    out_dir = Path(out_dir)
    paths = DevCa(ca=out_dir / "ca.pem", chain=out_dir / "chain.pem", key=out_dir / "key.pem")
    if not overwrite:
        existing = [str(p) for p in (paths.ca, paths.chain, paths.key) if p.exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    now = datetime.datetime.now(datetime.timezone.utc)
    # an hour back tolerates a verifier's clock running behind
    start = now - datetime.timedelta(hours=1) if not_before is None else not_before
    if start.tzinfo is None:
        raise ValueError("not_before must be timezone-aware")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert, leaf_cert = _certificates(ca_key, leaf_key, name, start, days)
    pem = serialization.Encoding.PEM
    contents = {
        paths.key: leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        paths.ca: ca_cert.public_bytes(pem),
        paths.chain: leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_set(contents, secret=paths.key, overwrite=overwrite)
    return paths


def _certificates(
    ca_key: ec.EllipticCurvePrivateKey,
    leaf_key: ec.EllipticCurvePrivateKey,
    name: str,
    start: datetime.datetime,
    days: int,
) -> tuple[x509.Certificate, x509.Certificate]:
    """The self-signed root, and the signing leaf it issued, valid ``days`` from ``start``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_name = _name(name, f"{name} root CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        # outlives its leaves, and is valid now even when the leaf has expired
        .not_valid_after(max(now, start) + datetime.timedelta(days=max(2 * days, 3650)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name, f"{name} signer"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, _DOCUMENT_SIGNING]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_cert, leaf_cert


def _write_set(contents: dict[Path, bytes], *, secret: Path, overwrite: bool) -> None:
    """Write each file atomically, ``secret`` readable by its owner only."""
    written: list[Path] = []
    try:
        for path, data in contents.items():
            with atomic_write(path) as handle:
                if path == secret and hasattr(os, "fchmod"):
                    os.fchmod(handle.fileno(), 0o600)  # before the key's bytes are written
                handle.write(data)
            written.append(path)
    except BaseException:
        if not overwrite:  # a set that does not belong together is worse than none
            for path in written:
                path.unlink(missing_ok=True)
        raise


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    flags.update(allowed)
    return x509.KeyUsage(**flags)
