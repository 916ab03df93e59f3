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

SUMMARY_VERDICTS = ("generated", "likely_generated", "unknown", "likely_real")
#: evidence tiers, strongest first, and the verdict each gives: a verifiable declaration or a
#: mark; trusted camera-capture credentials; a weak label; the detector's band
TIERS = (
    ("strong", "generated"),
    ("real", "likely_real"),
    ("weak", "likely_generated"),
    ("leans_generated", "likely_generated"),
    ("leans_real", "likely_real"),
)
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
        return Summary("unknown", [], self.reasons or [NOTHING_SAID])


Rule = Callable[[Mapping[str, Any], Evidence], None]


def credentials_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """Verified credentials declaring a trained model: strong; trusted ones declaring a camera
    capture: real. Invalid ones are reported (someone edited a signed file), not evidence."""
    from aigcguard.provenance.credentials.iptc import AI_DIGITAL_SOURCE_TYPES

    cred = found.get("credentials")
    if cred is None or cred.state == "absent":
        return
    if cred.state not in ("trusted", "valid"):
        codes = ", ".join(cred.codes or []) or "unknown failure"
        evidence.note(f"Content Credentials are invalid ({codes}): the file was altered")
        return
    types = [t.rsplit("/", 1)[-1] for t in cred.digital_source_types or []]
    ai = [t for t in types if t in AI_DIGITAL_SOURCE_TYPES]
    who = f"signed by {(cred.signer or {}).get('common_name', 'an unknown signer')}"
    if ai:
        evidence.add(
            "strong", "credentials", f"Content Credentials ({cred.state}, {who}) declare {ai[0]}"
        )
    elif cred.state == "trusted" and "digitalCapture" in types:
        evidence.add(
            "real", "credentials", f"trusted Content Credentials ({who}) declare a camera capture"
        )
    else:
        evidence.note(f"Content Credentials ({cred.state}) declare {types or 'nothing'}")


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
    """A GB 45438 Label 1, an IPTC AI source type or generator metadata: strong; a GB 45438
    label of 2 or 3 ("possibly", "suspected"): weak."""
    from aigcguard.provenance.credentials.iptc import AI_DIGITAL_SOURCE_TYPES

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
    if dst in AI_DIGITAL_SOURCE_TYPES:
        evidence.add("strong", "labels", f"the IPTC digital source type in XMP is {dst}")
    for sig in lab.generator_signals or []:
        reason = f"metadata names a generator: {sig.generator} ({sig.key})"
        evidence.add("strong", "labels", reason)


def detector_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """The detector's band decides only when nothing above did: a probability, not a fact."""
    det = found.get("detector")
    if det is None:
        return
    evidence.note(
        f"the detector ({det.model}) gives {det.score:.2f} ({det.band}; threshold "
        f"{det.threshold:.2f})"
    )
    if det.band == "likely_generated":
        evidence.add("leans_generated", "detector")
    elif det.band == "likely_real":
        evidence.add("leans_real", "detector")


def similarity_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    """Reported, never summed up: copying a registered work says nothing of how it was made."""
    sim = found.get("similarity")
    if sim is not None and sim.verdict != "none" and sim.matches:
        top = sim.matches[0]
        evidence.note(f"similarity: {sim.verdict} of registered work {top.title or top.path}")


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
