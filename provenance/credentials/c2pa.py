"""C2PA Content Credentials: sign a generated image with a manifest, and verify one.

A manifest says who made an asset and how. :func:`sign` embeds one that declares the image
AI-generated (an IPTC ``digitalSourceType`` on a ``c2pa.created`` action), optionally names
the parent image it was made from and the invisible watermark bound to it (a
``c2pa.soft-binding`` assertion, so a stripped copy can be matched back to its manifest).
:func:`verify` reads any manifest and condenses the library's validation into one state::

    ca = make_dev_ca("certs")                     # a test CA; production keys come from a CA
    sign("gen.png", "gen.png", cert_chain=ca.chain, key=ca.key, soft_binding=("tilemark", hex))
    verify("gen.png", trust_anchors=[ca.ca]).state    # "trusted"

The work is done by c2pa-python (the c2pa-rs SDK): nothing here parses JUMBF, hashes assets
or checks signatures. Verification is offline: remote (cloud) manifests and OCSP are never
fetched, so verifying an untrusted upload makes no network request.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aigcguard import __version__
from aigcguard.fileio import atomic_path
from aigcguard.provenance.credentials.dev_ca import DevCa, make_dev_ca
from aigcguard.provenance.credentials.iptc import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    DIGITAL_SOURCE_TYPE_BASE,
    TRAINED_ALGORITHMIC_MEDIA,
)
from aigcguard.provenance.credentials.iptc import DIGITAL_SOURCE_TYPES as _SOURCE_TYPES
from aigcguard.results import JsonResult

__all__ = [
    "ALGORITHMICALLY_ENHANCED",
    "ALGORITHMIC_MEDIA",
    "COMPOSITE_SYNTHETIC",
    "COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA",
    "DIGITAL_CAPTURE",
    "DIGITAL_CREATION",
    "IPTC_DIGITAL_SOURCE_TYPE",
    "SOFT_BINDING_ALG_PREFIX",
    "STATES",
    "TRAINED_ALGORITHMIC_MEDIA",
    "CredentialCheck",
    "DevCa",
    "SignResult",
    "make_dev_ca",
    "sign",
    "verify",
]

# The IPTC digital source type vocabulary is defined once, in iptc (XMP uses it too).
# DevCa and make_dev_ca live in dev_ca and stay importable from here.
IPTC_DIGITAL_SOURCE_TYPE = DIGITAL_SOURCE_TYPE_BASE
ALGORITHMIC_MEDIA = _SOURCE_TYPES["algorithmicMedia"]
ALGORITHMICALLY_ENHANCED = _SOURCE_TYPES["algorithmicallyEnhanced"]
COMPOSITE_SYNTHETIC = _SOURCE_TYPES["compositeSynthetic"]
DIGITAL_CAPTURE = _SOURCE_TYPES["digitalCapture"]
DIGITAL_CREATION = _SOURCE_TYPES["digitalCreation"]

#: Our soft-binding algorithms are named ``com.aigc-guard.<method>`` (an entity-specific name,
#: as the C2PA soft binding algorithm list allows for algorithms not on it).
SOFT_BINDING_ALG_PREFIX = "com.aigc-guard."

#: Values of :attr:`CredentialCheck.state`, strongest first.
STATES = ("trusted", "valid", "invalid", "absent")

# Validation codes that only say the signer is not on the trust list: a file is still valid.
_UNTRUSTED_CODES = frozenset({"signingCredential.untrusted"})
# C2PA's code for a failure it has no specific code for; used when the library cannot even
# parse the manifest (a corrupted JUMBF box, undecodable CBOR).
_GENERAL_ERROR = "general.error"
# How c2pa-rs says the image container itself (not a manifest in it) is broken.
_UNPARSEABLE = "asset could not be parsed"

_PEM_CERT = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class SignResult(JsonResult):
    path: str  # the source image
    out: str  # the signed image
    manifest_label: str  # label of the new active manifest
    alg: str  # signature algorithm: es256, es384, es512, ps256 or ed25519
    digital_source_type: str
    soft_binding: dict[str, str] | None  # {"alg": "com.aigc-guard.<method>", "value": hex}


@dataclass(frozen=True)
class CredentialCheck(JsonResult):
    """What the active manifest of a file says, and whether it holds up.

    ``state``: ``trusted`` (valid and the signer chains to a configured trust anchor),
    ``valid`` (signature and hashes check out; signer not trusted), ``invalid`` (tampered,
    bad signature, expired certificate, malformed manifest...; ``codes`` says what) or
    ``absent`` (no manifest embedded; ``remote_manifest`` holds the URL when the file points
    at a cloud manifest, which is not fetched). Fields other than ``state``, ``codes`` and
    ``error`` come from the manifest as read, so on an ``invalid`` file they are claims that
    did not verify.
    """

    path: str
    state: str
    manifest_label: str | None = None
    generator: str | None = None  # claim generator "name/version"
    signer: dict[str, str] | None = None  # common_name, issuer, alg, cert_serial_number
    signed_at: str | None = None  # RFC 3339, from the signature's time-stamp, if it has one
    digital_source_types: list[str] | None = None  # every one in the active manifest's actions
    soft_bindings: list[dict[str, str]] | None = None  # [{"alg": ..., "value": ...}]
    # [{"title", "relationship" (parentOf, componentOf, inputTo), "format", "manifest_label"}]
    ingredients: list[dict[str, str | None]] | None = None
    codes: list[str] | None = None  # C2PA failure codes; [] unless invalid, None if absent
    error: str | None = None  # the library's message when it could not read the manifest
    remote_manifest: str | None = None


# --------------------------------------------------------------------------- sign


def sign(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cert_chain: str | os.PathLike | bytes,
    key: str | os.PathLike | bytes,
    generator: str = "aigc-guard",
    generator_version: str | None = None,
    parent: str | os.PathLike | None = None,
    soft_binding: tuple[str, str | bytes] | None = None,
    digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA,
    title: str | None = None,
    thumbnail: bool = False,
    tsa_url: str | None = None,
) -> SignResult:
    """Embed a signed C2PA manifest declaring ``source`` generated, writing ``out``.

    ``cert_chain`` and ``key`` are PEM files (or PEM bytes): the signing certificate first,
    then its issuers; the signing algorithm follows the key (EC P-256/384/521: ES256/384/512,
    RSA: PS256, Ed25519). ``parent`` is an image this one was made from (recorded as a
    ``parentOf`` ingredient, with its own manifests if it has any). ``soft_binding`` is
    ``(method, payload)`` of a watermark embedded in the pixels, the payload as hex (or bytes),
    e.g. ``("tilemark", "a1b2...")``. ``digital_source_type`` is an IPTC URI or a bare IPTC term
    (``"trainedAlgorithmicMedia"``). ``thumbnail`` embeds a preview of the image in the
    manifest (off: it would carry the pixels into every copy of the manifest).
    ``tsa_url`` asks that time-stamp authority (over the network) to countersign, which
    keeps the signature verifiable after the certificate expires.

    ``out`` is written atomically and may be ``source``; a failure leaves it untouched.
    Raises ValueError naming the file for an unreadable or unsupported image, a bad chain,
    or a key that does not match the chain.
    """
    source, out = Path(source), Path(out)
    source_type = _source_type(digital_source_type)
    mime = _mime_type(source)
    chain_pem, chain_name = _read_pem(cert_chain, "certificate chain")
    key_pem, key_name = _read_pem(key, "private key")
    alg = _check_signing_pair(chain_pem, chain_name, key_pem, key_name)
    version = __version__ if generator_version is None else generator_version
    binding = _soft_binding(soft_binding)
    manifest = _manifest(
        generator, version, source_type, binding, title if title is not None else out.name, mime
    )
    settings = {
        "version": 1,
        "builder": {"thumbnail": {"enabled": bool(thumbnail)}},
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    }

    try:
        with c2pa.Settings.from_dict(settings) as cfg, c2pa.Context(settings=cfg) as context:
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, chain_pem, key_pem, tsa_url))
            with signer, c2pa.Builder(manifest, context=context) as builder:
                if parent is not None:
                    parent = Path(parent)
                    _add_parent(builder, parent)
                with atomic_path(out) as tmp:
                    with open(source, "rb") as src, open(tmp, "x+b") as dst:
                        builder.sign(signer, mime, src, dst)
                    label = _active_label(tmp, mime, context)
    except c2pa.C2paError.Signature as e:  # the library's check of its own signature failed
        raise ValueError(f"{source}: cannot sign with {chain_name}: {_message(e)}") from e
    except c2pa.C2paError as e:
        culprit = parent if parent is not None and "ingredient" in str(e).lower() else source
        raise ValueError(f"{culprit}: cannot sign: {_message(e)}") from e
    except OSError as e:
        culprit = e.filename if e.filename in (str(source), str(parent)) else out
        raise ValueError(f"{culprit}: cannot sign: {e.strerror or e}") from e
    return SignResult(
        path=str(source),
        out=str(out),
        manifest_label=label,
        alg=alg,
        digital_source_type=source_type,
        soft_binding=binding,
    )


def _manifest(
    generator: str,
    version: str,
    source_type: str,
    binding: dict[str, str] | None,
    title: str,
    mime: str,
) -> dict[str, Any]:
    """The manifest definition :func:`sign` hands to the c2pa Builder."""
    actions = [
        {
            "action": "c2pa.created",
            "digitalSourceType": source_type,
            "softwareAgent": {"name": generator, "version": version},
        }
    ]
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]
    if binding is not None:
        # C2PA 2.x soft-binding-map: the value is in the algorithm's own format (hex for ours);
        # an empty scope means the whole asset.
        assertions.append(
            {
                "label": "c2pa.soft-binding",
                "data": {
                    "alg": binding["alg"],
                    "blocks": [{"scope": {}, "value": binding["value"]}],
                },
            }
        )
    return {
        "claim_generator_info": [{"name": generator, "version": version}],
        "title": title,
        "format": mime,
        "assertions": assertions,
    }


def _add_parent(builder: c2pa.Builder, parent: Path) -> None:
    """Record ``parent`` as a ``parentOf`` ingredient, with its own manifests if it has any."""
    parent_mime = _mime_type(parent)
    with open(parent, "rb") as handle:
        builder.add_ingredient(
            {"title": parent.name, "relationship": "parentOf"},
            parent_mime,
            handle,
        )


def _source_type(value: str) -> str:
    if "://" in value:
        return value
    if value in _SOURCE_TYPES:
        return _SOURCE_TYPES[value]
    raise ValueError(
        f"unknown digital source type {value!r}: give an IPTC URI or one of "
        f"{', '.join(sorted(_SOURCE_TYPES))}"
    )


def _soft_binding(value: tuple[str, str | bytes] | None) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        method, payload = value
    except (TypeError, ValueError):
        raise ValueError(f"soft_binding must be (method, payload hex), not {value!r}") from None
    if not isinstance(method, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", method):
        raise ValueError(f"soft binding method must be a lower-case name, not {method!r}")
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).hex()
    if not isinstance(payload, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", payload):
        raise ValueError(f"soft binding payload must be a hex string, not {payload!r}")
    return {"alg": SOFT_BINDING_ALG_PREFIX + method, "value": payload.lower()}


# Magic numbers of the image formats c2pa embeds into; sniffed so that a misnamed file is
# signed as what it is, and a non-image is refused before the library sees it.
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_SNIFFED = frozenset({m for _, m in _MAGIC} | {"image/webp"})


def _mime_type(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from e
    mime = next((m for magic, m in _MAGIC if head.startswith(magic)), None)
    if mime is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:  # containers without a fixed magic (MP4, HEIF, PDF...): go by the name
        mime = mimetypes.guess_type(path.name)[0]
        if mime in _SNIFFED:
            raise ValueError(f"{path}: named like {mime} but its contents are not")
    if mime is None or mime not in c2pa.Builder.get_supported_mime_types():
        raise ValueError(f"{path}: not a format C2PA credentials can be embedded in")
    return mime


def _read_pem(value: str | os.PathLike | bytes, what: str) -> tuple[bytes, str]:
    """PEM bytes and a name for error messages, from a path or from PEM content."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), f"<{what}>"
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode(), f"<{what}>"
    try:
        return Path(value).read_bytes(), str(value)
    except OSError as e:
        raise ValueError(f"{value}: cannot read the {what}: {e.strerror or e}") from e


def _check_signing_pair(chain_pem: bytes, chain_name: str, key_pem: bytes, key_name: str) -> str:
    """The c2pa algorithm name for the key, after checking it belongs to the chain's leaf."""
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except ValueError as e:
        raise ValueError(f"{chain_name}: not a PEM certificate chain ({e})") from e
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        # TypeError: an encrypted key; c2pa takes keys unencrypted
        raise ValueError(f"{key_name}: not an unencrypted PEM private key ({e})") from e
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        leaf_public = leaf.public_key().public_bytes(*spki)
    except ValueError as e:
        raise ValueError(f"{chain_name}: unsupported certificate key ({e})") from e
    if private.public_key().public_bytes(*spki) != leaf_public:
        raise ValueError(
            f"{key_name}: this key does not belong to the first certificate of {chain_name}"
        )
    if isinstance(private, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(
            private.curve.name
        )
        if alg is not None:
            return alg
    elif isinstance(private, rsa.RSAPrivateKey):
        return "ps256"  # C2PA allows RSA only with PSS padding
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"{key_name}: key type not usable for C2PA (EC P-256/384/521, RSA, Ed25519)")


def _active_label(path: Path, mime: str, context: c2pa.Context) -> str:
    with open(path, "rb") as handle, c2pa.Reader(mime, handle, context=context) as reader:
        return json.loads(reader.json())["active_manifest"]


def _message(error: Exception) -> str:
    return str(error).strip() or type(error).__name__


# --------------------------------------------------------------------------- verify


def verify(
    path: str | os.PathLike,
    *,
    trust_anchors: Sequence[str | os.PathLike] | None = None,
) -> CredentialCheck:
    """Read and validate the C2PA manifest of ``path`` (see :class:`CredentialCheck`).

    ``trust_anchors``: PEM files (or PEM strings) whose certificates are trusted roots; a
    signer chaining to one makes the file ``trusted``. Raises ValueError naming the file when
    it is missing or unreadable, of a type c2pa cannot read, or so broken that its container
    cannot be parsed (then nobody can tell whether it holds a manifest).
    """
    path = Path(path)
    settings: dict[str, Any] = {
        "version": 1,
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            "remote_manifest_fetch": False,  # offline: no request on behalf of an upload
            "ocsp_fetch": False,
        },
    }
    anchors = _anchor_bundle(trust_anchors or ())
    if anchors:
        settings["trust"] = {"trust_anchors": anchors}

    try:
        with (
            open(path, "rb") as handle,
            c2pa.Settings.from_dict(settings) as cfg,
            c2pa.Context(settings=cfg) as context,
        ):
            reader = c2pa.Reader.try_create(None, handle, context=context)
            if reader is None:
                return CredentialCheck(path=str(path), state="absent")
            with reader:
                store = json.loads(reader.json())
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from e
    except c2pa.C2paError.NotSupported as e:
        raise ValueError(f"{path}: not a format C2PA credentials can be read from") from e
    except c2pa.C2paError.Io as e:
        raise ValueError(f"{path}: cannot read: {_message(e)}") from e
    except c2pa.C2paError as e:
        message = _message(e)
        if _UNPARSEABLE in message:  # the container itself, so no telling what it holds
            raise ValueError(f"{path}: cannot parse the file: {message}") from e
        # c2pa-python raises remote-manifest refusals as a bare C2paError "Remote: ..."
        if message.startswith("Remote"):
            url = re.search(r"\b(https?://\S+)", message)
            return CredentialCheck(
                path=str(path), state="absent", remote_manifest=url[1] if url else message
            )
        # A manifest is there but cannot be parsed: that is a failed validation too.
        return CredentialCheck(
            path=str(path), state="invalid", codes=[_GENERAL_ERROR], error=message
        )
    return _check(path, store)


def _anchor_bundle(anchors: Iterable[str | os.PathLike]) -> str:
    """One PEM bundle of every anchor's certificates, each checked to parse."""
    if isinstance(anchors, (str, bytes, os.PathLike)):
        raise TypeError("trust_anchors is a list of PEM files or PEM strings")
    bundle = []
    for anchor in anchors:
        if isinstance(anchor, str) and _PEM_CERT in anchor:
            text, name = anchor, "<PEM string>"
        else:
            try:
                text, name = Path(anchor).read_text(encoding="ascii"), str(anchor)
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"{anchor}: cannot read trust anchors ({e})") from e
        try:
            certs = x509.load_pem_x509_certificates(text.encode())
        except ValueError as e:
            raise ValueError(f"{name}: no PEM certificates in the trust anchors ({e})") from e
        bundle.extend(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    return "".join(bundle)


def _check(path: Path, store: dict[str, Any]) -> CredentialCheck:
    label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(label) or {}
    status_codes = [s.get("code", "") for s in store.get("validation_status") or []]
    state = {"Trusted": "trusted", "Valid": "valid", "Invalid": "invalid"}.get(
        store.get("validation_state", "")
    )
    if state is None:  # not reported (older library): any failure but trust is a failure
        state = "invalid" if set(status_codes) - _UNTRUSTED_CODES else "valid"
    codes: list[str] = []
    if state == "invalid":
        codes = list(dict.fromkeys(c for c in status_codes if c not in _UNTRUSTED_CODES))
        codes = codes or [_GENERAL_ERROR]

    info = manifest.get("signature_info") or {}
    signer = {
        k: str(info[k])
        for k in ("common_name", "issuer", "alg", "cert_serial_number")
        if info.get(k) is not None
    }
    return CredentialCheck(
        path=str(path),
        state=state,
        manifest_label=label,
        generator=_generator(manifest),
        signer=signer or None,
        signed_at=info.get("time"),
        digital_source_types=_source_types(manifest),
        soft_bindings=_soft_bindings(manifest),
        ingredients=[
            {
                "title": i.get("title"),
                "relationship": i.get("relationship"),
                "format": i.get("format"),
                "manifest_label": i.get("active_manifest"),  # its own credentials, if any
            }
            for i in manifest.get("ingredients") or []
            if isinstance(i, dict)
        ],
        codes=codes,
    )


def _generator(manifest: dict[str, Any]) -> str | None:
    for info in manifest.get("claim_generator_info") or []:
        if isinstance(info, dict) and info.get("name"):
            version = info.get("version")
            return f"{info['name']}/{version}" if version else str(info["name"])
    return manifest.get("claim_generator")  # v1 claims: a free-form string


def _assertions(manifest: dict[str, Any], prefix: str) -> Iterable[dict[str, Any]]:
    for assertion in manifest.get("assertions") or []:
        label = assertion.get("label", "")
        # labels may carry a version (.v2) or an instance suffix (__1)
        if re.fullmatch(re.escape(prefix) + r"(\.v\d+)?(__\d+)?", label):
            data = assertion.get("data")
            if isinstance(data, dict):
                yield data


def _source_types(manifest: dict[str, Any]) -> list[str]:
    found = []
    for data in _assertions(manifest, "c2pa.actions"):
        for action in data.get("actions") or []:
            uri = action.get("digitalSourceType") if isinstance(action, dict) else None
            if isinstance(uri, str) and uri not in found:
                found.append(uri)
    return found


def _soft_bindings(manifest: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    for data in _assertions(manifest, "c2pa.soft-binding"):
        for block in data.get("blocks") or []:
            if isinstance(block, dict) and "value" in block:
                found.append({"alg": str(data.get("alg", "")), "value": str(block["value"])})
    return found
