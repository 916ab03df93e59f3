"""The summary rules: small functions, each reading one signal's result and adding evidence.

A rule is ``rule(found, evidence)``: ``found`` maps signal names to their results (a signal
that did not run is absent; one with nothing to report is None), and the rule adds reasons and
evidence to ``evidence``. :data:`RULES` run in this order (the order of the reasons), then the
rules that registered signals bring with them (``signal(..., rule=...)``), in signal order.
The first :data:`TIERS` entry with any evidence gives the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aigcguard.results import JsonResult
from aigcguard.service.check.signals import SIGNALS, signal_names

SUMMARY_VERDICTS = ("generated", "partly_generated", "likely_generated", "captured", "no_evidence")
#: evidence tiers, strongest first, and the verdict each gives: a verifiable declaration or a
#: mark; a declared composite; intact credentials of a trusted signer declaring a capture; a
#: weak label or a mark that cannot be bound; a detector whose threshold lets at most
#: DETECTOR_MAX_FPR of real photos through. Nothing says "real" but trusted credentials: a low
#: detector score is absence of evidence, not evidence of absence.
TIERS = (
    ("strong", "generated"),
    ("partial", "partly_generated"),
    ("captured", "captured"),
    ("weak", "likely_generated"),
    ("leans_generated", "likely_generated"),
)
#: the largest share of real photos a detector's threshold may pass for its band to decide
#: ``likely_generated``; a looser detector's score is shown, not summed up
DETECTOR_MAX_FPR = 0.01
NOTHING_SAID = "no signal says anything about this picture"


@dataclass(frozen=True)
class Summary(JsonResult):
    """``verdict``: one of :data:`SUMMARY_VERDICTS`; ``decided_by``: the signals behind it;
    ``reasons``: one sentence per signal that said something."""

    verdict: str
    decided_by: list[str]
    reasons: list[str]


@dataclass
class Evidence:
    """What the rules found so far: signal names per tier, and the reasons in order."""

    tiers: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t, _ in TIERS})
    reasons: list[str] = field(default_factory=list)

    def add(self, tier: str, signal: str, reason: str | None = None) -> None:
        """``signal`` is evidence of ``tier`` (one of :data:`TIERS`), for ``reason``."""
        if tier not in self.tiers:
            raise ValueError(f"unknown evidence tier {tier!r}; known: {list(self.tiers)}")
        self.tiers[tier].append(signal)
        if reason is not None:
            self.reasons.append(reason)

    def note(self, reason: str) -> None:
        """A reason that is no evidence either way (reported, not summed up)."""
        self.reasons.append(reason)

    def summary(self) -> Summary:
        for tier, verdict in TIERS:
            names = list(dict.fromkeys(self.tiers[tier]))
            if names:
                return Summary(verdict, names, self.reasons)
        return Summary("no_evidence", [], self.reasons or [NOTHING_SAID])


Rule = Callable[[Mapping[str, Any], Evidence], None]


def _finding(source_type: str) -> str:
    from aigcguard.provenance.credentials.iptc import source_type_finding

    return source_type_finding(source_type)


def credentials_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """What intact Content Credentials declare, anywhere in their chain (the active manifest
    or an ingredient's): a trained model made it (strong, whatever the signer's standing but
    revoked: an expired or untrusted certificate does not change what the file says, and the
    reason says so); a composite with generated parts (partial); a capture, from a trusted
    signer only (captured). Credentials that fail their integrity check are reported (the
    file was changed after signing), not evidence either way."""
    cred = found.get("credentials")
    if cred is None or cred.state == "absent":
        return
    integrity = cred.integrity
    if integrity != "intact":
        codes = ", ".join(cred.codes or []) or "unknown failure"
        what = (
            "cannot be read"
            if integrity == "unreadable"
            else "fail their integrity check: the file was changed after it was signed"
        )
        evidence.note(f"Content Credentials {what} ({codes}); what they declare is no evidence")
        return
    if cred.standing == "revoked":
        evidence.note(
            f"Content Credentials {_signed_by(cred.signer)}: the signing certificate was "
            "revoked, so what they declare is no evidence"
        )
        return
    declarations = cred.declarations or []
    if not declarations:
        evidence.note(
            f"Content Credentials ({_standing_words(cred.standing)}) {_signed_by(cred.signer)} "
            "declare no digital source type"
        )
        return
    tier_of = {"generated": "strong", "partly_generated": "partial"}
    for d in declarations:
        finding = d.get("finding")
        if finding == "generated" and d.get("scope") == "component":
            # a generated ingredient composited into the picture (Photoshop's generative
            # fill lists its Firefly part so): the picture is partly generated
            finding = "partly_generated"
        if d.get("integrity", "intact") != "intact":
            evidence.note(
                f"an ingredient's Content Credentials declare {d.get('source_type')} but fail "
                "their integrity check; not evidence"
            )
            continue
        said = (
            f"Content Credentials declare {d.get('source_type')} ({_where(d)}, "
            f"{_signed_by(d)}; {_standing_words(d.get('standing'))})"
        )
        if finding in tier_of:
            evidence.add(tier_of[finding], "credentials", said)
        elif finding == "captured" and d.get("standing") == "trusted":
            evidence.add("captured", "credentials", said)
        elif finding == "captured":
            evidence.note(f"{said}: a capture is believed only from a trusted signer")
        else:
            evidence.note(said)


def _signed_by(who: Mapping[str, Any] | None) -> str:
    who = who or {}
    name = who.get("common_name") or who.get("signer") or "an unknown signer"
    org = who.get("organisation")
    return f"signed by {name}" + (f" ({org})" if org and org not in name else "")


def _where(d: Mapping[str, Any]) -> str:
    if d.get("where") == "ingredient":
        part = " (a component)" if d.get("scope") == "component" else ""
        return f"in the manifest of a {d.get('relationship') or 'listed'} ingredient{part}"
    return "in the active manifest"


#: what each standing means for a declaration, said in the reasons
_STANDING_WORDS = {
    "trusted": "the signer is on the trust list",
    "untrusted": "the signer is not on the configured trust lists: it is the signer's own claim",
    "expired": "the certificate has expired and no time-stamp proves it was valid at signing; "
    "the content matches what was signed",
    None: "the signer's standing is unknown",
}


def _standing_words(standing: str | None) -> str:
    return _STANDING_WORDS.get(standing, f"signer {standing}")


def watermark_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """Our mark, by what it can prove. A copied mark (binding mismatch) proves nothing; under
    the public key it is a declaration anyone can add, like a label; under a private key it is
    strong when it leads to a record of this very picture, weak when a ledger cannot bind it to
    one (no record, or one too plain to compare), and without a binding check as strong as
    its format is hard to forge."""
    wm = found.get("watermark")
    if wm is None or not wm.detected:
        return
    present = f"our watermark is present (p = {wm.p_value:.1e})"
    bound = _binding_state(found)
    if bound == "mismatch":
        evidence.note(
            f"possible forgery: the mark's ledger record is of a different picture "
            f"({found['binding'].reason}); neither the mark nor the record counts as evidence"
        )
    elif wm.public_key:
        evidence.add(
            "strong",
            "watermark",
            f"{present} under the public key: a declaration anyone can add, like a label; it "
            "says nothing about who made the picture",
        )
    elif bound == "match":
        evidence.add(
            "strong", "watermark", f"{present}: it leads to a ledger record of this very picture"
        )
    elif "ledger" in found and found["ledger"] is None:
        why = "its payload cannot be read" if wm.payload is None else "its payload is not there"
        evidence.add(
            "weak",
            "watermark",
            f"{present}, but it cannot be bound to a picture the ledger knows ({why})",
        )
    else:
        tier, why = _unbound(wm, found)
        evidence.add(tier, "watermark", f"{present}; {why}")


def _binding_state(found: Mapping[str, Any]) -> str | None:
    b = found.get("binding")
    return None if b is None else b.state


def _unbound(wm: Any, found: Mapping[str, Any]) -> tuple[str, str]:
    """The tier of a private-key mark not bound to a picture, and why. A record too plain to
    compare (``unverifiable``) is weak: only a match binds a mark, and a copy made too plain
    to compare must not pass for one. Unchecked (no ledger, a record without a fingerprint):
    as strong as its format is hard to forge."""
    b = found.get("binding")
    if b is not None:  # unverifiable: match and mismatch are decided before
        return "weak", f"it cannot be bound to this picture ({b.state}: {b.reason})"
    if "ledger" not in found:
        unchecked = "binding to a picture not checked (no ledger)"
    elif "binding" not in found:
        unchecked = "binding to a picture could not be checked"
    else:
        unchecked = "binding not checked (the ledger record has no fingerprint: made before them)"
    if wm.format == "keyed":
        return "strong", f"a keyed mark, hard to forge from marked pictures; {unchecked}"
    what = "a legacy mark" if wm.format == "legacy" else "a mark not in the keyed format"
    return "weak", f"{what}, which can be forged from marked pictures; {unchecked}"


def ledger_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """A record found by the file's bytes or bound to this picture: strong. One found by a
    mark whose picture differs (a mismatch): nothing (the watermark rule says why). One found
    by a mark not bound either way: as strong as that mark, and under the public key only
    reported (anyone can write a payload seen on another picture)."""
    rec = found.get("ledger")
    if rec is None:
        return
    wm = found.get("watermark")
    bound = _binding_state(found)

    def said(how: str) -> str:
        return f"the ledger records it ({how}): {rec.generator}, {rec.created}"

    if wm is None or not wm.detected:
        evidence.add("strong", "ledger", said("this very file, by its bytes"))
    elif bound == "match":
        evidence.add("strong", "ledger", said("this very picture"))
    elif bound == "mismatch":
        return
    elif wm.public_key:
        evidence.note(said("by a mark under the public key, not bound to this picture"))
    else:
        evidence.add(_unbound(wm, found)[0], "ledger", said("by its mark"))


def known_watermark_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    known = found.get("known_watermark")
    if known is not None and known.detected:
        reason = f"the {known.known} watermark is present (p = {known.p_value:.1e})"
        evidence.add("strong", "known_watermark", reason)


def labels_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """A GB 45438 Label 1, an IPTC generated source type or generator metadata: strong; an
    IPTC composite with generated parts: partial; a GB 45438 label of 2 or 3 ("possibly",
    "suspected"): weak. An unsigned label saying "captured" is no evidence (anyone can write
    it)."""
    lab = found.get("labels")
    if lab is None:
        return
    gb = lab.gb45438
    if gb is not None and gb.label == 1:
        evidence.add("strong", "labels", f"a GB 45438 label ({gb.source}) declares it AI-generated")
    elif gb is not None and gb.label in (2, 3):
        reason = f"a GB 45438 label ({gb.source}) says possibly or suspected AI"
        evidence.add("weak", "labels", reason)
    dst = (lab.digital_source_type or "").rsplit("/", 1)[-1]
    finding = _finding(dst) if dst else None
    if finding == "generated":
        evidence.add("strong", "labels", f"the IPTC digital source type in XMP is {dst}")
    elif finding == "partly_generated":
        reason = f"the IPTC digital source type in XMP is {dst}: partly generated"
        evidence.add("partial", "labels", reason)
    elif dst:
        evidence.note(f"the IPTC digital source type in XMP is {dst} (an unsigned label)")
    for sig in lab.generator_signals or []:
        reason = f"metadata names a generator: {sig.generator} ({sig.key})"
        evidence.add("strong", "labels", reason)


def detector_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """The detector decides only when nothing above did, only ``likely_generated`` and only
    when its threshold passes at most :data:`DETECTOR_MAX_FPR` of real photos. A low score is
    never called real: detectors miss many generators, so it is no evidence."""
    det = found.get("detector")
    if det is None:
        return
    if det.score is None:
        evidence.note(f"the detector ({det.model}) did not score it: {det.reason}")
        return
    said = f"the detector ({det.model}) gives {det.score:.2f} (threshold {det.threshold:.2f})"
    fpr = det.target_fpr
    if det.band != "likely_generated":
        evidence.note(
            f"{said}: below its threshold, which is no evidence that the picture is real "
            "(detectors miss many generators)"
        )
    elif fpr is not None and fpr <= DETECTOR_MAX_FPR:
        evidence.add(
            "leans_generated",
            "detector",
            f"{said}: above a threshold that {fpr:.1%} of real photos reach",
        )
    else:
        allows = "an unknown share" if fpr is None else f"{fpr:.0%}"
        evidence.note(
            f"{said}: above its threshold, but that threshold lets {allows} of real photos "
            f"through (a verdict needs at most {DETECTOR_MAX_FPR:.0%}): shown, not summed up"
        )


def similarity_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """Reported, never summed up: copying a registered work says nothing of how it was made."""
    sim = found.get("similarity")
    if sim is not None and sim.verdict != "none" and sim.matches:
        top = sim.matches[0]
        evidence.note(
            f"similarity: {sim.verdict} of registered work {top.title or top.path} "
            f"({top.verification_note})"
        )


#: the built-in rules, in the order of the module docstring of :mod:`aigcguard.service.check`
RULES: list[Rule] = [
    credentials_rule,
    watermark_rule,
    ledger_rule,
    known_watermark_rule,
    labels_rule,
    detector_rule,
    similarity_rule,
]


def signal_rules() -> list[Rule]:
    """The rules registered signals bring with them, in signal order."""
    return [rule for n in signal_names() if (rule := SIGNALS.meta(n).get("rule")) is not None]


def summarise(found: Mapping[str, Any]) -> Summary:
    """The summary rules of :mod:`aigcguard.service.check` on the signals' results."""
    evidence = Evidence()
    for rule in (*RULES, *signal_rules()):
        rule(found, evidence)
    return evidence.summary()
