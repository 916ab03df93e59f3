"""Every signal about one picture, kept apart, and a summary that says which evidence decided.

A C2PA state is not a watermark, a missing label proves nothing, and a detector score is a
probability, not a fact. So :class:`Checker` runs each signal on its own (Content Credentials,
metadata labels, the known marks of Stable Diffusion and SDXL, our watermark, its ledger
record and whether the picture is the one recorded (``binding``), the detector, similarity
against an index), keeps each result as the signal reported it, and sums up with the
strongest evidence present:

1. ``generated``: a verifiable declaration or a mark that proves its origin. Content
   Credentials that verify (``trusted`` or ``valid``) declaring a trained model made or
   composited the picture; our watermark under a private key leading to a ledger record of
   this very picture (or, with no ledger to check, in the keyed format); the ledger's record
   of this very file; a known generator's watermark; a label the producer wrote (GB 45438
   Label 1, IPTC ``trainedAlgorithmicMedia``, generator metadata); our watermark under the
   public key, which anyone can add, counts as such a label and never as proof of origin.
2. ``likely_real``: trusted Content Credentials declaring a camera capture, with nothing above.
3. ``likely_generated``: our private-key mark that the ledger cannot bind to a picture it
   knows (payload unreadable or not recorded), or a legacy mark with no ledger to check (its
   pattern can be forged from marked pictures); a GB 45438 label of 2 or 3 ("possibly",
   "suspected").
4. ``likely_generated`` / ``likely_real``: the detector's band, when nothing above decided.
5. ``unknown`` otherwise: no declaration, no mark, a detector that is not sure.

A mark whose ledger record is of a different picture (binding ``mismatch``) was copied onto
this one: it is reported as a possible forgery and neither the mark nor the record counts.
Similarity is reported, never summed up: copying a registered work says nothing about how the
picture was made. Invalid Content Credentials are reported as a reason (someone edited a
signed file), not as evidence either way.

    with Checker(ledger="ledger.sqlite", key=KEY) as checker:
        for result in checker.check_files(["upload.jpg"]):
            print(result.summary.verdict, result.summary.decided_by)

One file per job: ``signals`` (each signal a function registered in :data:`SIGNALS`),
``verdict`` (the rules above, one small function each), ``checker`` (:class:`Checker`,
:class:`CheckResult`), ``report`` (the HTML page). A new signal is its own module with one
``@signal(name, needs=..., rule=...)`` registration: the Checker runs it, its result appears
under ``extra`` in the JSON, and its ``rule`` adds its evidence to the summary.
"""

from aigcguard.service.check.checker import Checker, CheckResult
from aigcguard.service.check.report import render_html, write_html
from aigcguard.service.check.signals import (
    AUTO_DETECTOR_LARGE,
    AUTO_DETECTOR_SMALL,
    AUTO_SMALL_SIDE,
    SIGNALS,
    Picture,
    signal,
    signal_names,
)
from aigcguard.service.check.verdict import (
    RULES,
    SUMMARY_VERDICTS,
    TIERS,
    Evidence,
    Summary,
    summarise,
)

__all__ = [
    "AUTO_DETECTOR_LARGE",
    "AUTO_DETECTOR_SMALL",
    "AUTO_SMALL_SIDE",
    "RULES",
    "SIGNALS",
    "SUMMARY_VERDICTS",
    "TIERS",
    "CheckResult",
    "Checker",
    "Evidence",
    "Picture",
    "Summary",
    "render_html",
    "signal",
    "signal_names",
    "summarise",
    "write_html",
]
