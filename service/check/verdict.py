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
    wm = found.get("watermark")
    if wm is not None and wm.detected:
        evidence.add("strong", "watermark", f"our watermark is present (p = {wm.p_value:.1e})")


def ledger_rule(found: Mapping[str, Any], evidence: Evidence) -> None:
    rec = found.get("ledger")
    if rec is None:
        return
    wm = found.get("watermark")
    how = "" if wm is not None and wm.detected else " (this very file, by its bytes)"
    evidence.add("strong", "ledger", f"the ledger records it{how}: {rec.generator}, {rec.created}")


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
