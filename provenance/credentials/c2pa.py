"""C2PA Content Credentials: verify the manifest of any file, sign our own
(:mod:`.signing`, re-exported here).

:func:`verify` reads a manifest store and keeps two questions apart that the library's one
``validation_state`` mixes: is the content what was signed (``integrity``), and who stands
behind the signature (``standing``)? An expired certificate leaves the content intact. It
walks the whole chain (:mod:`.chain`), since a generator may declare itself in an ingredient's
manifest rather than the active one, and names the organisation behind known signers
(:mod:`.signers`)::

    ca = make_dev_ca("certs")                     # a test CA; production keys come from a CA
    sign("gen.png", "gen.png", cert_chain=ca.chain, key=ca.key, soft_binding=("tilemark", hex))
    verify("gen.png", trust_anchors=[ca.ca]).state    # "trusted"

The work is done by c2pa-python (the c2pa-rs SDK): nothing here parses JUMBF or checks
signatures; the one hash recomputed is a JPEG data hash the library rejects for its exclusion
alone (:mod:`.datahash`). Verification is offline: remote (cloud) manifests and OCSP are never
fetched, so verifying an untrusted upload makes no network request.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aigcguard.provenance.credentials import datahash
from aigcguard.provenance.credentials.chain import (
    Certificate,
    Chain,
    assertions,
    status_codes,
    walk,
)
from aigcguard.provenance.credentials.dev_ca import DevCa, make_dev_ca
from aigcguard.provenance.credentials.iptc import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    DIGITAL_SOURCE_TYPE_BASE,
    TRAINED_ALGORITHMIC_MEDIA,
)
from aigcguard.provenance.credentials.iptc import DIGITAL_SOURCE_TYPES as _SOURCE_TYPES
from aigcguard.provenance.credentials.signing import SOFT_BINDING_ALG_PREFIX, SignResult, sign
from aigcguard.provenance.credentials.status import (
    EXCLUSION_TOO_WIDE,
    INTEGRITIES,
    STANDINGS,
    UNREADABLE,
    integrity_of,
)
from aigcguard.results import JsonResult

__all__ = [
    "ALGORITHMICALLY_ENHANCED",
    "ALGORITHMIC_MEDIA",
    "COMPOSITE_SYNTHETIC",
    "COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA",
    "DIGITAL_CAPTURE",
    "DIGITAL_CREATION",
    "INTEGRITIES",
    "IPTC_DIGITAL_SOURCE_TYPE",
    "SHRUNK_SIDE",
    "SOFT_BINDING_ALG_PREFIX",
    "STANDINGS",
    "STATES",
    "THUMBNAIL_MAX_BYTES",
    "TRAINED_ALGORITHMIC_MEDIA",
    "TRUST_ENV",
    "CredentialCheck",
    "DevCa",
    "SignResult",
    "check_store",
    "make_dev_ca",
    "sign",
    "state_of",
    "verify",
]

# The IPTC digital source type vocabulary is defined once, in iptc (XMP uses it too).
# DevCa and make_dev_ca live in dev_ca, sign in signing; all stay importable from here.
IPTC_DIGITAL_SOURCE_TYPE = DIGITAL_SOURCE_TYPE_BASE
ALGORITHMIC_MEDIA = _SOURCE_TYPES["algorithmicMedia"]
ALGORITHMICALLY_ENHANCED = _SOURCE_TYPES["algorithmicallyEnhanced"]
COMPOSITE_SYNTHETIC = _SOURCE_TYPES["compositeSynthetic"]
DIGITAL_CAPTURE = _SOURCE_TYPES["digitalCapture"]
DIGITAL_CREATION = _SOURCE_TYPES["digitalCreation"]

#: Values of :attr:`CredentialCheck.state`, strongest first.
STATES = ("trusted", "valid", "invalid", "absent")
#: The environment variable the CLI reads trust anchors from when no ``--trust`` is given:
#: PEM files separated by ``os.pathsep``.
TRUST_ENV = "AIGC_TRUST"

# How c2pa-rs says the image container itself (not a manifest in it) is broken.
_UNPARSEABLE = "asset could not be parsed"
_PEM_CERT = "-----BEGIN CERTIFICATE-----"
_DATA_HASH_MISMATCH = "assertion.dataHash.mismatch"
_UNTRUSTED = "signingCredential.untrusted"  # every signer without anchors: standing says it
_HARD_BINDING = re.compile(r"/c2pa\.assertions/(c2pa\.hash\.data(?:__\d+)?)$")
#: The largest ingredient thumbnail a result carries inline (as a data: URI): enough for a
#: preview (c2pa-rs makes them at most 1024 px, tens of KB for a photo), while a check's JSON
#: stays small whatever a manifest holds.
THUMBNAIL_MAX_BYTES = 64 * 1024
#: A larger thumbnail is shrunk to this long side (JPEG 75: a noisy 256 px preview is about
#: 40 KB), when it is at most SHRINK_MAX_PIXELS (a thumbnail of more is no thumbnail).
SHRUNK_SIDE, SHRINK_MAX_PIXELS = 256, 2048 * 2048
#: ingredient thumbnails read per file (c2pa-rs makes them at most 1024 px a side)
THUMBNAILS_READ = 8
#: The picture types a thumbnail may be shown as, told by its first bytes, never by the
#: manifest's word alone (a data: URI of another type could be anything, SVG script included).
_THUMBNAIL_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


@dataclass(frozen=True)
class CredentialCheck(JsonResult):
    """What a file's C2PA manifests say, and whether they hold up.

    ``integrity``: ``intact`` (the claim signature and every hard binding verify, through
    the whole chain), ``altered`` (a hash or binding mismatch, a broken claim signature, an
    ingredient manifest that does not match what was signed, or a failure code we do not
    know), ``unreadable`` (a manifest is there but does not parse or breaks C2PA's
    structural rules); None when absent. ``standing``: the active manifest's signer,
    ``trusted`` (chains to a configured trust anchor), ``untrusted``, ``expired`` (the
    certificate has expired and no trusted time-stamp shows it signed in time) or
    ``revoked``; None when absent or unreadable. ``signed_at`` holds the time-stamp.

    ``state``, kept for compatibility, follows from the two: ``absent`` (no manifest
    embedded; ``remote_manifest`` holds the URL when the file points at a cloud manifest,
    which is not fetched), ``invalid`` (integrity not intact, or standing revoked),
    ``trusted`` (intact and trusted), ``valid`` (intact; untrusted or expired).

    ``manifests``: one dict per manifest of the chain, the active one first, then every
    ingredient manifest the store carries, breadth first: ``label``, ``where`` (``active`` or
    ``ingredient``), ``relationship`` (``parentOf``, ``componentOf``, ``inputTo``; None for the
    active one), ``parent`` (the label of the manifest listing it as an ingredient),
    ``scope`` (how much of the picture it speaks for: ``whole`` for the active manifest and
    manifests reached through parentOf links only, ``component`` once a componentOf link is
    on the way, ``input`` once an inputTo link is: :data:`.chain.SCOPES`), ``generator``,
    ``signer``, ``signed_at``, ``integrity``, ``standing`` and ``codes`` (its failure codes,
    those recorded when it was taken in as an ingredient included).
    ``declarations``: one dict per action declaring a digital source type anywhere in the
    chain: ``source_type`` (the IPTC term), ``uri``, ``finding`` (``generated``,
    ``partly_generated``, ``captured`` or ``other``: :data:`.iptc.FINDINGS`), ``manifest``,
    ``where``, ``relationship``, ``scope`` (a ``generated`` finding with scope ``component``
    speaks of a part: the picture is partly generated), ``action``, ``software_agent``,
    ``signer`` (common name), ``organisation`` and that manifest's ``integrity`` and
    ``standing``.
    ``digital_source_types``: every declared URI, the active manifest's first.

    ``ingredients``: one dict per ingredient of the active manifest: ``title``,
    ``relationship``, ``format``, ``manifest_label`` (its own active manifest, when it came
    with credentials), and ``thumbnail``, the preview the manifest carries for it as a
    ``data:image/jpeg;base64,...`` URI (or PNG, WebP), when it is one of those types, as it is
    when at most :data:`THUMBNAIL_MAX_BYTES`, else shrunk to a :data:`SHRUNK_SIDE` px JPEG;
    otherwise None, with ``thumbnail_omitted`` saying why (too large even shrunk, not such a
    picture, unreadable, beyond the first :data:`THUMBNAILS_READ`; None when the ingredient
    has no thumbnail or it is given). A thumbnail never fails the check.

    ``signer``: the active manifest's ``common_name``, ``issuer`` (the certificate's
    organisation, as c2pa-rs names it), ``alg``, ``cert_serial_number`` and, for a known
    signer, ``organisation`` (:mod:`.signers`; display only, never trust). ``codes``: the
    C2PA failure codes this validation found anywhere in the file (``signingCredential.
    untrusted`` left out: standing says it), and our caveat ``aigc.dataHash.exclusionTooWide``
    (:mod:`.datahash`); [] for a clean file, None when absent. Fields other than ``state``,
    ``integrity``, ``standing``, ``codes`` and ``error`` come from the manifests as read:
    on an altered file they are claims that did not verify.
    """

    path: str
    state: str
    manifest_label: str | None = None
    generator: str | None = None  # claim generator "name/version"
    # common_name, issuer, alg, cert_serial_number, organisation (known signers only)
    signer: dict[str, str] | None = None
    signed_at: str | None = None  # RFC 3339, from the signature's time-stamp, if it has one
    digital_source_types: list[str] | None = None  # every one in the chain, active first
    soft_bindings: list[dict[str, str]] | None = None  # [{"alg": ..., "value": ...}]
    # the active manifest's ingredients: [{"title", "relationship" (parentOf, componentOf,
    # inputTo), "format", "manifest_label", "thumbnail", "thumbnail_omitted"}]: see the class
    # docstring for the two thumbnail fields
    ingredients: list[dict[str, str | None]] | None = None
    codes: list[str] | None = None  # see the class docstring; None if absent
    error: str | None = None  # the library's message when it could not read the manifest
    remote_manifest: str | None = None
    integrity: str | None = None  # intact, altered, unreadable; None if absent
    standing: str | None = None  # trusted, untrusted, expired, revoked; None if no verdict
    manifests: list[dict[str, Any]] | None = None  # the chain, active first
    declarations: list[dict[str, Any]] | None = None  # digital source types, with where


def state_of(integrity: str, standing: str | None) -> str:
    """``state`` from integrity and standing (see :class:`CredentialCheck`)."""
    if integrity != "intact" or standing == "revoked":
        return "invalid"
    return "trusted" if standing == "trusted" else "valid"


# --------------------------------------------------------------------------- verify


def verify(
    path: str | os.PathLike,
    *,
    trust_anchors: Sequence[str | os.PathLike] | None = None,
) -> CredentialCheck:
    """Read and validate the C2PA manifests of ``path`` (see :class:`CredentialCheck`).

    ``trust_anchors``: PEM files (or PEM strings) whose certificates are trusted roots, such
    as the C2PA Trust List (docs/provenance.md says where to get it); a signer chaining to
    one stands ``trusted``. Raises ValueError naming the file when it is missing or
    unreadable, of a type c2pa cannot read, or so broken that its container cannot be parsed
    (then nobody can tell whether it holds a manifest).
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
                certificates = _certificates(reader)
                thumbnails = _ingredient_thumbnails(reader, store)
                label = _exclusion_to_recheck(store)
                if label is not None:
                    detailed = json.loads(reader.detailed_json())
                    handle.seek(0)
                    store = _recheck_data_hash(store, detailed, label, handle.read())
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
            path=str(path),
            state="invalid",
            codes=[UNREADABLE],
            error=message,
            integrity="unreadable",
            manifests=[],
            declarations=[],
        )
    return check_store(path, store, certificates, thumbnails)


def _anchor_bundle(anchors: Iterable[str | os.PathLike]) -> str:
    """One PEM bundle of every anchor's certificates, each checked to parse."""
    if isinstance(anchors, (str, bytes, os.PathLike)):
        raise TypeError("trust_anchors is a list of PEM files or PEM strings")
    bundle = []
    for anchor in anchors:
        if isinstance(anchor, str) and _PEM_CERT in anchor:
            data, name = anchor.encode(), "<PEM string>"
        else:
            try:  # bytes: trust lists put UTF-8 "Subject" lines between certificates
                data, name = Path(anchor).read_bytes(), str(anchor)
            except OSError as e:
                raise ValueError(f"{anchor}: cannot read trust anchors ({e})") from e
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise ValueError(f"{name}: no PEM certificates in the trust anchors ({e})") from e
        bundle.extend(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    return "".join(bundle)


def _message(error: Exception) -> str:
    return str(error).strip() or type(error).__name__


def _certificates(reader: c2pa.Reader) -> dict[str, Certificate]:
    """Manifest label -> its signing :class:`.chain.Certificate`, from the reader's crJSON;
    {} when the library cannot give it (the signer is then named from ``signature_info``,
    which has the subject's O and CN only)."""
    try:
        data = json.loads(reader.crjson())
    except (c2pa.C2paError, ValueError):
        return {}
    found = {}
    for manifest in data.get("manifests") or []:
        if not isinstance(manifest, Mapping):
            continue
        signature = manifest.get("signature") or {}
        info = signature.get("certificateInfo") or {}
        subject, issuer = info.get("subject"), info.get("issuer")
        if isinstance(subject, Mapping) and isinstance(issuer, Mapping):
            found[manifest.get("label")] = Certificate(
                dict(subject),
                dict(issuer),
                _time((info.get("validity") or {}).get("notAfter")),
                bool(signature.get("timeStampInfo")),
            )
    return found


def _ingredient_thumbnails(reader: c2pa.Reader, store: Mapping[str, Any]) -> dict[str, bytes | str]:
    """The thumbnails the active manifest's ingredients point at, by resource identifier:
    their bytes, or why they cannot be read. Never raises: a thumbnail is decoration."""
    active = (store.get("manifests") or {}).get(store.get("active_manifest")) or {}
    found: dict[str, bytes | str] = {}
    read = 0
    for ingredient in active.get("ingredients") or []:
        ident = _thumbnail_id(ingredient)
        if ident is None or ident in found:
            continue
        if read == THUMBNAILS_READ:  # a crafted store's hundreds would each be decoded
            found[ident] = f"not read: only the first {THUMBNAILS_READ} thumbnails are"
            continue
        read += 1
        buf = io.BytesIO()
        try:
            reader.resource_to_stream(ident, buf)
            found[ident] = buf.getvalue()
        except Exception as e:  # the library's errors, or anything a crafted store provokes
            found[ident] = f"cannot be read ({_message(e)})"
    return found


def _thumbnail_id(ingredient: Any) -> str | None:
    """The resource identifier of an ingredient's thumbnail, None when it has none."""
    thumb = ingredient.get("thumbnail") if isinstance(ingredient, Mapping) else None
    ident = thumb.get("identifier") if isinstance(thumb, Mapping) else None
    return ident if isinstance(ident, str) and ident else None


def _time(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# ------------------------------------------------------------------ the data-hash recheck


def _exclusion_to_recheck(store: Mapping[str, Any]) -> str | None:
    """The label of the active manifest's data hash assertion, when the one thing that keeps
    the file from intact is ``assertion.dataHash.mismatch`` on it, under a claim signature
    that verified: the case :mod:`.datahash` rechecks. Else None."""
    results = store.get("validation_results") or {}
    active = results.get("activeManifest")
    if not isinstance(active, Mapping):
        return None
    codes = status_codes(active)
    deltas = [status_codes(d.get("validationDeltas")) for d in results.get("ingredientDeltas") or []
              if isinstance(d, Mapping)]  # fmt: skip
    others = [c for c in codes.failures if c != _DATA_HASH_MISMATCH]
    others += [c for d in deltas for c in d.failures]
    if integrity_of(others) != "intact" or "claimSignature.validated" not in codes.successes:
        return None
    labels = set()
    for status in active.get("failure") or []:
        if isinstance(status, Mapping) and status.get("code") == _DATA_HASH_MISMATCH:
            found = _HARD_BINDING.search(str(status.get("url", "")))
            if found is None or f"/{store.get('active_manifest')}/" not in str(status["url"]):
                return None
            labels.add(found[1])
    return labels.pop() if len(labels) == 1 else None


def _recheck_data_hash(
    store: dict[str, Any], detailed: Mapping[str, Any], label: str, data: bytes
) -> dict[str, Any]:
    """``store`` with the data hash mismatch turned into our caveat when
    :func:`.datahash.matches` finds the hash intact; else ``store`` as it was."""
    active = store.get("active_manifest")
    manifest = (detailed.get("manifests") or {}).get(active) or {}
    assertion = (manifest.get("assertion_store") or {}).get(label)
    if not isinstance(assertion, Mapping) or not datahash.matches(data, assertion):
        return store
    store = copy.deepcopy(store)
    results = store["validation_results"]["activeManifest"]
    dropped = [s for s in results["failure"] if s.get("code") == _DATA_HASH_MISMATCH]
    results["failure"] = [s for s in results["failure"] if s.get("code") != _DATA_HASH_MISMATCH]
    results.setdefault("informational", []).append({
        "code": EXCLUSION_TOO_WIDE,
        "url": dropped[0].get("url"),
        "explanation": "the data hash matches, but its exclusion covers metadata beside the "
        "manifest, which is therefore not protected",
    })  # fmt: skip
    store["validation_status"] = [
        s for s in store.get("validation_status") or [] if s.get("code") != _DATA_HASH_MISMATCH
    ]
    return store


# ------------------------------------------------------------------ the result


def check_store(
    path: str | os.PathLike,
    store: Mapping[str, Any],
    certificates: Mapping[str, Certificate] | None = None,
    thumbnails: Mapping[str, bytes | str] | None = None,
) -> CredentialCheck:
    """The :class:`CredentialCheck` of a manifest store as a c2pa Reader gives it (its
    ``json()``); ``certificates`` and ``thumbnails`` as :func:`verify` reads them (label ->
    certificate; an ingredient thumbnail's identifier -> its bytes or why it cannot be read).
    Without ``thumbnails``, an ingredient's thumbnail is omitted as not read."""
    chain: Chain = walk(store, certificates or {})
    active = chain.manifests[0]
    manifest = (store.get("manifests") or {}).get(active["label"]) or {}
    integrity = integrity_of(chain.failures)
    # no verdict on a signer whose own manifest cannot be read
    standing = active["standing"] if active["integrity"] != "unreadable" else None
    codes = [c for c in dict.fromkeys(chain.failures) if c != _UNTRUSTED]
    return CredentialCheck(
        path=str(path),
        state=state_of(integrity, standing),
        manifest_label=active["label"],
        generator=active["generator"],
        signer=active["signer"],
        signed_at=active["signed_at"],
        digital_source_types=list(dict.fromkeys(d["uri"] for d in chain.declarations)),
        soft_bindings=_soft_bindings(manifest),
        ingredients=[
            _ingredient(i, thumbnails or {})
            for i in manifest.get("ingredients") or []
            if isinstance(i, dict)
        ],
        codes=codes + chain.caveats,
        integrity=integrity,
        standing=standing,
        manifests=chain.manifests,
        declarations=chain.declarations,
    )


def _ingredient(i: Mapping[str, Any], thumbnails: Mapping[str, bytes | str]) -> dict[str, Any]:
    thumbnail, omitted = _thumbnail(i, thumbnails)
    return {
        "title": i.get("title"),
        "relationship": i.get("relationship"),
        "format": i.get("format"),
        "manifest_label": i.get("active_manifest"),  # its own credentials, if any
        "thumbnail": thumbnail,
        "thumbnail_omitted": omitted,
    }


def _thumbnail(
    ingredient: Mapping[str, Any], thumbnails: Mapping[str, bytes | str]
) -> tuple[str | None, str | None]:
    """An ingredient's thumbnail as a data: URI, or None and why it is left out (None, None:
    it has none)."""
    ident = _thumbnail_id(ingredient)
    if ident is None:
        return None, None
    data = thumbnails.get(ident, "not read")
    if isinstance(data, str):
        return None, data
    declared = (ingredient.get("thumbnail") or {}).get("format") or "no type"
    mime = next((m for magic, m in _THUMBNAIL_MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        return None, f"not a JPEG, PNG or WebP picture (declared {declared})"
    if len(data) > THUMBNAIL_MAX_BYTES:
        data, mime = _shrunk(data), "image/jpeg"
        if isinstance(data, str):
            return None, data
        if len(data) > THUMBNAIL_MAX_BYTES:
            return None, f"more than the {THUMBNAIL_MAX_BYTES:,} bytes shown inline, even shrunk"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", None


def _shrunk(data: bytes) -> bytes | str:
    """A thumbnail above the inline size as a smaller JPEG (:data:`SHRUNK_SIDE` px a side):
    real ones are often 1024 px and 100 KB or more. Its bytes, or why it cannot be made. The
    picture is checked for size before it is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > SHRINK_MAX_PIXELS:
                return f"cannot be shrunk: {im.width} x {im.height} pixels"
            im.draft("RGB", (SHRUNK_SIDE, SHRUNK_SIDE))  # JPEG: decode at a reduced scale
            small = im.convert("RGB")
        small.thumbnail((SHRUNK_SIDE, SHRUNK_SIDE))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=75)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"cannot be shrunk: not a readable picture ({e})"
    return out.getvalue()


def _soft_bindings(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    found = []
    for data in assertions(manifest, "c2pa.soft-binding"):
        for block in data.get("blocks") or []:
            if isinstance(block, dict) and "value" in block:
                found.append({"alg": str(data.get("alg", "")), "value": str(block["value"])})
    return found
