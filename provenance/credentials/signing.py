"""Sign an image with a C2PA manifest that declares how it was made.

:func:`sign` embeds a manifest with one action (``c2pa.created`` by default) carrying an IPTC
``digitalSourceType`` (trainedAlgorithmicMedia unless told otherwise), the generator as
claim generator and software agent, optionally the parent image it was made from and the
invisible watermark bound to it (a ``c2pa.soft-binding`` assertion, so a stripped copy can be
matched back to its manifest)::

    ca = make_dev_ca("certs")                     # a test CA; production keys come from a CA
    sign("gen.png", "gen.png", cert_chain=ca.chain, key=ca.key, soft_binding=("tilemark", hex))

The work is done by c2pa-python (the c2pa-rs SDK): nothing here writes JUMBF or hashes assets.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aigcguard import __version__
from aigcguard.fileio import atomic_path
from aigcguard.provenance.credentials.iptc import DIGITAL_SOURCE_TYPES as _SOURCE_TYPES
from aigcguard.provenance.credentials.iptc import TRAINED_ALGORITHMIC_MEDIA
from aigcguard.results import JsonResult

__all__ = ["SOFT_BINDING_ALG_PREFIX", "SignResult", "sign"]

#: Our soft-binding algorithms are named ``com.aigc-guard.<method>`` (an entity-specific name,
#: as the C2PA soft binding algorithm list allows for algorithms not on it).
SOFT_BINDING_ALG_PREFIX = "com.aigc-guard."


@dataclass(frozen=True)
class SignResult(JsonResult):
    path: str  # the source image
    out: str  # the signed image
    manifest_label: str  # label of the new active manifest
    alg: str  # signature algorithm: es256, es384, es512, ps256 or ed25519
    digital_source_type: str | None  # the IPTC URI declared, None for none
    soft_binding: dict[str, str] | None  # {"alg": "com.aigc-guard.<method>", "value": hex}
    action: str = "c2pa.created"  # the manifest's action


#: The long side of the thumbnails ``sign(thumbnail=True)`` embeds (the claim's and the
#: parent's). c2pa-rs's default is 1024 px, enlarging smaller pictures: a 320 px photo's became
#: a 1024 px, 111 KB JPEG, above the 64 KB a check shows inline. At 384 px the scikit-image
#: astronaut and coffee photos gave 31 and 23 KB (512 px: 48 and 39 KB, little margin).
THUMBNAIL_LONG_EDGE = 384

#: Actions that act on an ingredient: C2PA requires them to name it (the parent).
_INGREDIENT_ACTIONS = frozenset({"c2pa.opened", "c2pa.placed"})
_PARENT_ID = "parent"  # the parent ingredient's label inside the builder


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
    digital_source_type: str | None = TRAINED_ALGORITHMIC_MEDIA,
    action: str = "c2pa.created",
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
    (``"trainedAlgorithmicMedia"``), declared on the manifest's one ``action``:
    ``c2pa.created`` (it must declare a source type), or ``c2pa.opened`` / ``c2pa.placed``
    on the ``parent`` (which they require), where None declares no source type: an edit of
    a parent that carries its own declaration. ``thumbnail`` embeds a preview of the image and
    of the parent in the manifest, :data:`THUMBNAIL_LONG_EDGE` px on the long side (off: it
    would carry the pixels into every copy of the manifest).
    ``tsa_url`` asks that time-stamp authority (over the network) to countersign, which
    keeps the signature verifiable after the certificate expires.

    ``out`` is written atomically and may be ``source``; a failure leaves it untouched.
    Raises ValueError naming the file for an unreadable or unsupported image, a bad chain,
    or a key that does not match the chain.
    """
    source, out = Path(source), Path(out)
    source_type = None if digital_source_type is None else _source_type(digital_source_type)
    _check_action(action, source_type, parent)
    mime = _mime_type(source)
    chain_pem, chain_name = _read_pem(cert_chain, "certificate chain")
    key_pem, key_name = _read_pem(key, "private key")
    alg = _check_signing_pair(chain_pem, chain_name, key_pem, key_name)
    version = __version__ if generator_version is None else generator_version
    binding = _soft_binding(soft_binding)
    manifest = _manifest(
        generator,
        version,
        action,
        source_type,
        binding,
        title if title is not None else out.name,
        mime,
    )
    signer_info = c2pa.C2paSignerInfo(alg, chain_pem, key_pem, tsa_url)
    label = _write_signed(source, out, mime, manifest, signer_info, parent, thumbnail, chain_name)
    return SignResult(
        path=str(source),
        out=str(out),
        manifest_label=label,
        alg=alg,
        digital_source_type=source_type,
        soft_binding=binding,
        action=action,
    )


def _write_signed(
    source: Path,
    out: Path,
    mime: str,
    manifest: dict[str, Any],
    signer_info: c2pa.C2paSignerInfo,
    parent: os.PathLike | None,
    thumbnail: bool,
    chain_name: str,
) -> str:
    """Sign ``source`` into ``out`` (atomically) with c2pa's Builder; the new active label.
    c2pa's and the file system's errors become ValueErrors naming the file at fault."""
    settings = {
        "version": 1,
        "builder": {"thumbnail": {"enabled": bool(thumbnail), "long_edge": THUMBNAIL_LONG_EDGE}},
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    }
    try:
        with c2pa.Settings.from_dict(settings) as cfg, c2pa.Context(settings=cfg) as context:
            signer = c2pa.Signer.from_info(signer_info)
            with signer, c2pa.Builder(manifest, context=context) as builder:
                if parent is not None:
                    parent = Path(parent)
                    _add_parent(builder, parent)
                with atomic_path(out) as tmp:
                    with open(source, "rb") as src, open(tmp, "x+b") as dst:
                        builder.sign(signer, mime, src, dst)
                    return _active_label(tmp, mime, context)
    except c2pa.C2paError.Signature as e:  # the library's check of its own signature failed
        raise ValueError(f"{source}: cannot sign with {chain_name}: {_message(e)}") from e
    except c2pa.C2paError as e:
        culprit = parent if parent is not None and "ingredient" in str(e).lower() else source
        raise ValueError(f"{culprit}: cannot sign: {_message(e)}") from e
    except OSError as e:
        culprit = e.filename if e.filename in (str(source), str(parent)) else out
        raise ValueError(f"{culprit}: cannot sign: {e.strerror or e}") from e


def _check_action(action: str, source_type: str | None, parent: os.PathLike | None) -> None:
    if not re.fullmatch(r"c2pa\.[a-z_.]+", action):
        raise ValueError(f"action must be a C2PA action such as c2pa.created, not {action!r}")
    if action == "c2pa.created" and source_type is None:
        raise ValueError("a c2pa.created action must declare a digital source type")
    if action in _INGREDIENT_ACTIONS and parent is None:
        raise ValueError(f"a {action} action needs the parent it acts on")


def _manifest(
    generator: str,
    version: str,
    action: str,
    source_type: str | None,
    binding: dict[str, str] | None,
    title: str,
    mime: str,
) -> dict[str, Any]:
    """The manifest definition :func:`sign` hands to the c2pa Builder."""
    step: dict[str, Any] = {
        "action": action,
        "softwareAgent": {"name": generator, "version": version},
    }
    if source_type is not None:
        step["digitalSourceType"] = source_type
    if action in _INGREDIENT_ACTIONS:
        step["parameters"] = {"ingredientIds": [_PARENT_ID]}
    actions = [step]
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
            {"title": parent.name, "relationship": "parentOf", "label": _PARENT_ID},
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
