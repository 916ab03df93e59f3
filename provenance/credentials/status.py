"""What each C2PA validation status code says about a manifest: whether the content it signs
is unchanged (its *integrity*) and who stands behind the signature (its *standing*).

c2pa-rs reports one flat list of codes; a certificate that has since expired and a pixel
that was changed both make the library's ``validation_state`` "Invalid". They are different
facts: an expired certificate says nothing about the bytes. :data:`CODES` files every code the
C2PA specification (2.2, "Standard Status Codes") and c2pa-rs 0.91 (c2pa-python 0.38) define
under one of the two, and :func:`integrity_of` / :func:`standing_of` read a manifest's codes
through it. A failure code missing from the table counts as ``altered``: an unknown failure
must not pass for an intact file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CODES",
    "EXCLUSION_TOO_WIDE",
    "INTEGRITIES",
    "STANDINGS",
    "UNREADABLE",
    "CodeMeaning",
    "integrity_of",
    "meaning",
    "standing_of",
]

#: Values of ``integrity``, worst last.
INTEGRITIES = ("intact", "unreadable", "altered")
#: Values of ``standing``.
STANDINGS = ("trusted", "untrusted", "expired", "revoked")

#: Our own caveat: the data hash matched only once the library's stricter exclusion check was
#: set aside (see :mod:`.datahash`); bytes inside the over-wide exclusion are not protected.
EXCLUSION_TOO_WIDE = "aigc.dataHash.exclusionTooWide"
#: C2PA's code for a failure with no code of its own; we also report it when the library
#: cannot parse a manifest it found.
UNREADABLE = "general.error"


@dataclass(frozen=True)
class CodeMeaning:
    """``kind``: how C2PA files the code (``success``, ``informational``, ``failure``).
    ``effect``: ``altered`` or ``unreadable`` (integrity), ``trusted``, ``untrusted``,
    ``expired`` or ``revoked`` (standing), or ``none``. ``origin``: ``c2pa-rs`` when the
    bundled library (c2pa-python 0.38, c2pa-rs 0.91) can emit it, ``spec`` when only the
    specification or c2pa-rs's constants name it, ``aigc-guard`` for ours."""

    kind: str
    effect: str
    origin: str = "c2pa-rs"


def _table(kind: str, effect: str, codes: str, origin: str = "c2pa-rs") -> dict[str, CodeMeaning]:
    return dict.fromkeys(codes.split(), CodeMeaning(kind, effect, origin))


CODES: dict[str, CodeMeaning] = {
    # -- success: checks that passed; only a trusted signer changes anything
    **_table(
        "success",
        "none",
        """claimSignature.validated claimSignature.insideValidity signingCredential.ocsp.notRevoked
        timeStamp.validated timeStamp.trusted assertion.hashedURI.match assertion.dataHash.match
        assertion.bmffHash.match assertion.boxesHash.match assertion.collectionHash.match
        ingredient.manifest.validated ingredient.claimSignature.validated""",
    ),
    **_table("success", "none", "assertion.accessible", "spec"),
    "signingCredential.trusted": CodeMeaning("success", "trusted"),
    # -- informational: the time-stamp's own troubles only decide whether an expired
    # certificate is excused, which the library has already folded into its codes
    **_table(
        "informational",
        "none",
        """signingCredential.ocsp.skipped signingCredential.ocsp.inaccessible timeStamp.mismatch
        timeStamp.malformed timeStamp.outsideValidity timeStamp.untrusted
        ingredient.unknownProvenance assertion.dataHash.additionalExclusionsPresent
        assertion.bmffHash.additionalExclusionsPresent
        assertion.boxesHash.additionalExclusionsPresent""",
    ),
    **_table(
        "informational",
        "none",
        """manifest.unknownProvenance manifest.unreferenced algorithm.deprecated
        timeOfSigning.insideValidity""",
        "spec",
    ),
    EXCLUSION_TOO_WIDE: CodeMeaning("informational", "none", "aigc-guard"),
    # -- standing: about the certificate, not the bytes it signed
    "signingCredential.untrusted": CodeMeaning("failure", "untrusted"),
    # a certificate unfit to sign claims (profile, key usage): nobody vouches for it; a
    # signature that does not verify is reported apart, as claimSignature.mismatch
    "signingCredential.invalid": CodeMeaning("failure", "untrusted"),
    "signingCredential.ocsp.unknown": CodeMeaning("failure", "untrusted"),
    "signingCredential.expired": CodeMeaning("failure", "expired"),
    # a time-stamp shows the certificate was not valid when it signed: outside its validity,
    # as an expired one is now
    "claimSignature.outsideValidity": CodeMeaning("failure", "expired", "spec"),
    "signingCredential.ocsp.revoked": CodeMeaning("failure", "revoked"),
    # -- altered: a hash or signature that does not match, or a part missing or added after
    # signing; and what cannot be checked at all (fail safe: not shown intact)
    **_table(
        "failure",
        "altered",
        """assertion.dataHash.mismatch assertion.bmffHash.mismatch assertion.boxesHash.mismatch
        assertion.boxesHash.unknownBox assertion.collectionHash.mismatch
        assertion.collectionHash.incorrectFileCount assertion.hashedURI.mismatch
        hashedURI.mismatch claimSignature.mismatch claimSignature.missing claim.missing
        claim.hardBindings.missing assertion.missing assertion.undeclared
        assertion.outsideManifest assertion.notRedacted assertion.hardBinding.redacted
        assertion.action.redacted assertion.action.redactionMismatch
        assertion.action.ingredientMismatch ingredient.manifest.missing
        ingredient.manifest.mismatch ingredient.claimSignature.missing
        ingredient.claimSignature.mismatch manifest.inaccessible algorithm.unsupported
        general.error""",
    ),
    **_table(
        "failure",
        "altered",
        """ingredient.hashedURI.mismatch hashedURI.missing assertion.dataHash.redacted
        assertion.multiAssetHash.missingPart assertion.inaccessible""",
        "spec",
    ),
    # -- unreadable: a manifest that does not parse or breaks C2PA's structural rules
    **_table(
        "failure",
        "unreadable",
        """claim.malformed claim.multiple assertion.multipleHardBindings
        assertion.required.missing assertion.json.invalid assertion.cbor.invalid
        assertion.action.malformed assertion.action.softBindingMissing
        assertion.bmffHash.malformed assertion.boxesHash.malformed
        assertion.cloud-data.malformed assertion.cloud-data.hardBinding
        assertion.cloud-data.actions assertion.collectionHash.invalidURI
        assertion.collectionHash.malformed assertion.ingredient.malformed
        assertion.timestamp.malformed assertion.external-reference.malformed
        assertion.selfRedacted ingredient.malformed manifest.multipleParents
        manifest.update.invalid manifest.update.wrongParents""",
    ),
    **_table(
        "failure",
        "unreadable",
        """claim.required.missing claim.cbor.invalid assertion.dataHash.malformed
        assertion.multiAssetHash.malformed assertion.metadata.disallowed
        manifest.timestamp.invalid manifest.timestamp.wrongParents manifest.compressed.invalid""",
        "spec",
    ),
}

#: CAWG identity-assertion codes (``cawg.identity.*``, ``cawg.ica.*``, ``cawg.x509.*``) judge a
#: named person's identity credential, a separate signature over a separate claim: they are
#: reported but change neither integrity nor standing. (Tampering with the identity
#: assertion itself breaks its hashed URI in the claim: assertion.hashedURI.mismatch.)
_IDENTITY_PREFIX = "cawg."
_UNKNOWN_FAILURE = CodeMeaning("failure", "altered", "unknown")


def meaning(code: str) -> CodeMeaning:
    """The table's entry for ``code``; an unknown code is a failure that counts as altered."""
    found = CODES.get(code)
    if found is not None:
        return found
    if code.startswith(_IDENTITY_PREFIX):
        return CodeMeaning("failure", "none", "cawg")
    return _UNKNOWN_FAILURE


def integrity_of(failures: Iterable[str]) -> str:
    """``intact``, ``unreadable`` or ``altered`` (the worst) from a manifest's failure codes."""
    worst = 0
    for code in failures:
        effect = meaning(code).effect
        if effect in INTEGRITIES:
            worst = max(worst, INTEGRITIES.index(effect))
    return INTEGRITIES[worst]


def standing_of(failures: Iterable[str], successes: Iterable[str]) -> str:
    """The signer's standing: ``revoked`` over ``expired`` (no trusted time-stamp; the
    library reports an excused expiry as no failure at all) over ``trusted`` (a success
    code from this validation) over ``untrusted``."""
    effects = {meaning(code).effect for code in failures}
    for standing in ("revoked", "expired"):
        if standing in effects:
            return standing
    if any(meaning(code).effect == "trusted" for code in successes):
        return "trusted"
    return "untrusted"
