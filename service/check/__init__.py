"""Every signal about one picture, kept apart, and a summary that says which evidence decided.

A C2PA state is not a watermark, a missing label proves nothing, and a detector score is a
probability, not a fact. So :class:`Checker` runs each signal on its own (Content Credentials,
metadata labels, the known marks of Stable Diffusion and SDXL, our watermark, its ledger
record and whether the picture is the one recorded (``binding``), the detector, similarity
against an index), keeps each result as the signal reported it, and sums up with the
strongest evidence present:

1. ``generated``: a declaration or a mark that proves its origin. Content Credentials whose
   integrity holds (``intact``) declaring, in the active manifest or an ingredient's, that a
   model made the picture (``trainedAlgorithmicMedia``, ``algorithmicMedia``), whatever the
   signer's standing but ``revoked`` (an expired certificate or an untrusted signer does not
   change what the file says; the reasons say so); our watermark under a private key leading
   to a ledger record of this very picture (or, with no ledger to check, in the keyed
   format); the ledger's record of this very file; a known generator's watermark; a label the
   producer wrote (GB 45438 Label 1, IPTC ``trainedAlgorithmicMedia``, generator metadata);
   our watermark under the public key, which anyone can add, counts as such a label and never
   as proof of origin.
2. ``partly_generated``: a declared composite with generated parts
   (``compositeWithTrainedAlgorithmicMedia``, ``compositeSynthetic``) in intact credentials
   or an IPTC label.
3. ``captured``: intact credentials of a trusted signer declaring a capture
   (``digitalCapture`` and the other capture types), with nothing above.
4. ``likely_generated``: our private-key mark that the ledger cannot bind to a picture it
   knows (payload unreadable or not recorded), or a legacy mark with no ledger to check (its
   pattern can be forged from marked pictures); a GB 45438 label of 2 or 3 ("possibly",
   "suspected"); else the detector above a threshold that at most 1% of real photos reach
   (``verdict.DETECTOR_MAX_FPR``; a looser detector's score is shown, not summed up).
5. ``no_evidence`` otherwise. The detector's score is still shown, but a low score is never
   called real: detectors miss many generators, and absence of evidence is not evidence.

A mark whose ledger record is of a different picture (binding ``mismatch``) was copied onto
this one: it is reported as a possible forgery and neither the mark nor the record counts.
Similarity is reported, never summed up: copying a registered work says nothing about how the
picture was made. Content Credentials that fail their integrity check (``altered``: someone
changed the file after signing) or whose certificate was revoked are reported as a reason, not
as evidence either way.

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
