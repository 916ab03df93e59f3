"""Walk a manifest store's chain: the active manifest, then every ingredient manifest the store
carries, each judged on its own codes (:mod:`.status`), and every digital source type declared
anywhere along it.

A generator may declare what made a picture in an earlier manifest than the active one:
ChatGPT's active manifest opens a ``parentOf`` ingredient whose own manifest holds the
``c2pa.created`` action with ``trainedAlgorithmicMedia``. Reading the active manifest alone
finds nothing.

Codes come from c2pa-rs's ``validation_results``: ``activeManifest`` for the active manifest,
``ingredientDeltas`` (keyed by the ingredient assertion's URI) for what this validation found
in an ingredient's manifest beyond what the ingredient assertion already recorded when it was
taken in (``validation_results`` or, in older ingredients, ``validation_status``). A manifest is
judged on both; the file only on what this validation found, since a failure recorded at
ingestion was known to, and signed over by, the manifest that took the ingredient in.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aigcguard.provenance.credentials.iptc import source_type_code, source_type_finding
from aigcguard.provenance.credentials.signers import organisation
from aigcguard.provenance.credentials.status import integrity_of, meaning, standing_of

__all__ = [
    "SCOPES",
    "Certificate",
    "Chain",
    "Codes",
    "assertions",
    "generator",
    "status_codes",
    "walk",
]

#: How much of the picture a manifest speaks for, by the links from the active manifest down to
#: it: ``whole`` (the active manifest, or reached through parentOf links only: the picture
#: derives from it), ``component`` (a componentOf link on the way: it is a part placed in the
#: picture) or ``input`` (an inputTo link: something a tool used, such as a prompt image).
SCOPES = ("whole", "component", "input")
_SCOPE_OF = {"parentOf": "whole", "componentOf": "component", "inputTo": "input"}

# Always reported by standing (untrusted is what every signer is without trust anchors).
_UNTRUSTED = "signingCredential.untrusted"
_SIGNER_FIELDS = ("common_name", "issuer", "alg", "cert_serial_number")


@dataclass(frozen=True)
class Certificate:
    """What the reader tells of a manifest's signing certificate: the subject's and issuer's
    distinguished-name attributes (``{"O": ..., "CN": ...}``), when it expires, and whether
    the signature carries a time-stamp."""

    subject: Mapping[str, str] = field(default_factory=dict)
    issuer: Mapping[str, str] = field(default_factory=dict)
    not_after: datetime | None = None
    time_stamped: bool = False


@dataclass(frozen=True)
class Codes:
    """One validation's codes for one manifest: failures, successes, and our own caveats."""

    failures: tuple[str, ...] = ()
    successes: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chain:
    manifests: list[dict[str, Any]]  # active first, then ingredients breadth first
    declarations: list[dict[str, Any]]
    failures: list[str]  # everything this validation found, anywhere in the file
    caveats: list[str]


def status_codes(results: Mapping[str, Any] | None, flat: Iterable[Any] = ()) -> Codes:
    """The codes of one ``StatusCodes`` object (``success``, ``informational``,
    ``failure``), or of a flat ``validation_status`` list, filed by :mod:`.status`."""
    if isinstance(results, Mapping):
        failures = _codes(results.get("failure"))
        successes = _codes(results.get("success"))
        informational = _codes(results.get("informational"))
    else:
        flat_codes = _codes(flat)
        failures = [c for c in flat_codes if meaning(c).kind == "failure"]
        successes = [c for c in flat_codes if meaning(c).kind == "success"]
        informational = [c for c in flat_codes if meaning(c).kind == "informational"]
    caveats = [c for c in informational if meaning(c).origin == "aigc-guard"]
    return Codes(tuple(failures), tuple(successes), tuple(caveats))


def _codes(statuses: Any) -> list[str]:
    if not isinstance(statuses, list):
        return []
    return [
        s["code"] for s in statuses if isinstance(s, Mapping) and isinstance(s.get("code"), str)
    ]


def walk(
    store: Mapping[str, Any],
    certificates: Mapping[str, Certificate],
    now: datetime | None = None,
) -> Chain:
    """The chain of ``store`` (a c2pa Reader's JSON) as validated at ``now`` (default: now).
    ``certificates``: manifest label -> its signing :class:`Certificate`, where the reader
    gave one; else the signer is named from ``signature_info``."""
    now = now or datetime.now(timezone.utc)
    manifests = store.get("manifests") or {}
    results = store.get("validation_results") or {}
    if "activeManifest" in results:
        active = status_codes(results["activeManifest"])
    else:  # a library without validation_results: the flat list is the active manifest's
        active = status_codes(None, store.get("validation_status") or [])
    failures = list(active.failures)
    deltas: dict[str, Codes] = {}  # an ingredient assertion's URI may come more than once
    for delta in results.get("ingredientDeltas") or []:
        if not isinstance(delta, Mapping):
            continue
        codes = status_codes(delta.get("validationDeltas"))
        failures += codes.failures  # mapped to a manifest or not, they count for the file
        had = deltas.get(delta.get("ingredientAssertionURI"), Codes())
        deltas[delta.get("ingredientAssertionURI")] = Codes(
            had.failures + codes.failures, had.successes + codes.successes, had.caveats
        )

    entries: list[dict[str, Any]] = []
    declarations: list[dict[str, Any]] = []
    label = store.get("active_manifest")
    queue = deque([(label, "active", None, None, "whole", active, Codes())])
    seen = {label}
    while queue:
        label, where, relationship, parent, scope, found, recorded = queue.popleft()
        manifest = manifests.get(label) or {}
        certificate = certificates.get(label)
        entry = _entry(label, where, relationship, parent, manifest, found, recorded, certificate)
        entry["scope"] = scope
        if where == "ingredient" and _expired(certificate, found, now):
            entry["standing"] = "expired"
        entries.append(entry)
        declarations += _declarations(manifest, entry)
        for ingredient in manifest.get("ingredients") or []:
            child = ingredient.get("active_manifest") if isinstance(ingredient, Mapping) else None
            if not isinstance(child, str) or child in seen or child not in manifests:
                continue
            seen.add(child)
            uri = f"self#jumbf=/c2pa/{label}/c2pa.assertions/{ingredient.get('label')}"
            then = ingredient.get("validation_results")
            then = then.get("activeManifest") if isinstance(then, Mapping) else None
            link = _SCOPE_OF.get(ingredient.get("relationship"), "component")  # unknown: a part
            queue.append((
                child,
                "ingredient",
                ingredient.get("relationship"),
                label,
                max(scope, link, key=SCOPES.index),
                deltas.get(uri, Codes()),
                status_codes(then, ingredient.get("validation_status") or []),
            ))  # fmt: skip
    return Chain(entries, declarations, failures, list(active.caveats))


def _entry(
    label: str | None,
    where: str,
    relationship: str | None,
    parent: str | None,
    manifest: Mapping[str, Any],
    found: Codes,
    recorded: Codes,
    certificate: Certificate | None,
) -> dict[str, Any]:
    failures = found.failures + recorded.failures
    info = manifest.get("signature_info") or {}
    signer = {k: str(info[k]) for k in _SIGNER_FIELDS if info.get(k) is not None}
    # c2pa-rs names the leaf's subject organisation "issuer" in signature_info
    if certificate is None:
        certificate = Certificate({"O": info.get("issuer"), "CN": info.get("common_name")})
    known = organisation(certificate.subject, certificate.issuer)
    if known is not None:
        signer["organisation"] = known
    return {
        "label": label,
        "where": where,
        "relationship": relationship,
        "parent": parent,
        "scope": None,  # set by the walk, which knows the links above
        "generator": generator(manifest),
        "signer": signer or None,
        "signed_at": info.get("time"),
        "integrity": integrity_of(failures),
        "standing": standing_of(failures, found.successes),
        "codes": _reported(failures) + list(found.caveats),
    }


def _expired(certificate: Certificate | None, found: Codes, now: datetime) -> bool:
    """An ingredient's certificate that has expired, with no time-stamp to show it signed in
    time. c2pa-rs checks the active manifest's certificate dates, but an ingredient's only
    when it was taken in: today's validation reports nothing of its expiry (measured with
    c2pa-python 0.38), so a ChatGPT ingredient would read ``untrusted`` where its active
    manifest, signed with the same certificate, reads ``expired``."""
    if certificate is None or certificate.time_stamped or certificate.not_after is None:
        return False
    said = {meaning(code).effect for code in found.failures}
    return not said & {"expired", "revoked"} and certificate.not_after < now


def _reported(failures: Iterable[str]) -> list[str]:
    return [c for c in dict.fromkeys(failures) if c != _UNTRUSTED]


def _declarations(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    signer = entry["signer"] or {}
    found = []
    for data in assertions(manifest, "c2pa.actions"):
        for action in data.get("actions") or []:
            uri = action.get("digitalSourceType") if isinstance(action, Mapping) else None
            if not isinstance(uri, str) or not uri.strip():
                continue
            found.append({
                "source_type": source_type_code(uri),
                "uri": uri,
                "finding": source_type_finding(uri),
                "manifest": entry["label"],
                "where": entry["where"],
                "relationship": entry["relationship"],
                "scope": entry["scope"],
                "action": action.get("action"),
                "software_agent": _agent(action.get("softwareAgent")),
                "signer": signer.get("common_name"),
                "organisation": signer.get("organisation"),
                "integrity": entry["integrity"],
                "standing": entry["standing"],
            })  # fmt: skip
    return found


def _agent(value: Any) -> str | None:
    """``softwareAgent``: a string (C2PA 1.x) or ``{"name", "version"}`` (2.x)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping) and value.get("name"):
        version = value.get("version")
        return f"{value['name']}/{version}" if version else str(value["name"])
    return None


def generator(manifest: Mapping[str, Any]) -> str | None:
    """The claim generator, "name/version"."""
    for info in manifest.get("claim_generator_info") or []:
        if isinstance(info, Mapping) and info.get("name"):
            version = info.get("version")
            return f"{info['name']}/{version}" if version else str(info["name"])
    return manifest.get("claim_generator")  # v1 claims: a free-form string


def assertions(manifest: Mapping[str, Any], prefix: str) -> Iterable[dict[str, Any]]:
    """The data of every assertion labelled ``prefix``, with any version (``.v2``) and
    instance suffix (``__1``)."""
    pattern = re.compile(re.escape(prefix) + r"(\.v\d+)?(__\d+)?")
    for assertion in manifest.get("assertions") or []:
        if isinstance(assertion, Mapping) and pattern.fullmatch(str(assertion.get("label", ""))):
            data = assertion.get("data")
            if isinstance(data, dict):
                yield data
