"""Every signal about one picture, kept apart, and a summary that says which evidence decided.

A C2PA state is not a watermark, a missing label proves nothing, and a detector score is a
probability, not a fact. So :class:`Checker` runs each signal on its own (Content Credentials,
metadata labels, the known marks of Stable Diffusion and SDXL, our watermark and its ledger
record, the detector, similarity against an index), keeps each result as the signal reported
it, and sums up with the strongest evidence present:

1. ``generated``: a verifiable declaration or a mark. Content Credentials that verify
   (``trusted`` or ``valid``) declaring a trained model made or composited the picture; our
   watermark; a known generator's watermark; a label the producer wrote (GB 45438 Label 1,
   IPTC ``trainedAlgorithmicMedia``, generator metadata).
2. ``likely_real``: trusted Content Credentials declaring a camera capture, with nothing above.
3. ``likely_generated`` / ``likely_real``: the detector's band, when nothing above decided;
   a GB 45438 label of 2 or 3 ("possibly", "suspected") also reads ``likely_generated``.
4. ``unknown`` otherwise: no declaration, no mark, a detector that is not sure.

Similarity is reported, never summed up: copying a registered work says nothing about how the
picture was made. Invalid Content Credentials are reported as a reason (someone edited a
signed file), not as evidence either way.

    with Checker(ledger="ledger.sqlite", key=KEY) as checker:
        for result in checker.check_files(["upload.jpg"]):
            print(result.summary.verdict, result.summary.decided_by)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigcguard.results import JsonResult

SUMMARY_VERDICTS = ("generated", "likely_generated", "unknown", "likely_real")
#: detector used by ``auto`` per picture size: the CIFAKE network knows 32-px pictures only
AUTO_DETECTOR_SMALL, AUTO_DETECTOR_LARGE, AUTO_SMALL_SIDE = "default", "spectral", 128


@dataclass(frozen=True)
class Summary(JsonResult):
    """``verdict``: one of :data:`SUMMARY_VERDICTS`; ``decided_by``: the signals behind it;
    ``reasons``: one sentence per signal that said something."""

    verdict: str
    decided_by: list[str]
    reasons: list[str]


@dataclass(frozen=True)
class CheckResult(JsonResult):
    """Each signal's own result (None: not run, or nothing to report), and the summary.
    ``errors`` names a signal that failed on this picture and why; the others still ran."""

    path: str
    summary: Summary
    credentials: JsonResult | None = None
    labels: JsonResult | None = None
    known_watermark: JsonResult | None = None
    watermark: JsonResult | None = None
    ledger: JsonResult | None = None
    detector: JsonResult | None = None
    similarity: JsonResult | None = None
    errors: dict[str, str] = field(default_factory=dict)


class Checker:
    """Loads what the signals need once (detectors, the ledger, the index) and checks pictures.

    ``key``: the watermark key to look for (the public default key when None; a ledger lookup
    needs the key the pipeline used). ``ledger``: a ledger path, or None. ``index``: a
    similarity store path, or None. ``detector``: ``auto`` (the CIFAKE network for pictures
    under 128 px, the full-resolution spectral detector above), a shipped name or a path.
    ``trust``: PEM files of trusted C2PA roots.
    """

    def __init__(
        self,
        *,
        key: str | bytes | None = None,
        ledger: str | Path | None = None,
        index: str | Path | None = None,
        detector: str = "auto",
        trust: Sequence[str | Path] = (),
        device: str | None = "auto",
    ):
        from aigcguard.detectors import api as detector_api
        from aigcguard.provenance.credentials.ledger import Ledger
        from aigcguard.watermark import DEFAULT_KEY

        self.key = DEFAULT_KEY if key is None else key
        self.device = device
        self.trust = [str(t) for t in trust] or None
        names = [AUTO_DETECTOR_SMALL, AUTO_DETECTOR_LARGE] if detector == "auto" else [detector]
        self._detectors = {n: detector_api.load(n, device=device) for n in names}
        self._auto = detector == "auto"
        self.ledger = None if ledger is None else Ledger(ledger, create=False)
        self.index = None
        if index is not None:
            from aigcguard.provenance.similarity.index import SimilarityIndex

            self.index = SimilarityIndex.open(index)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
        if self.index is not None:
            self.index.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- checking

    def check_files(self, paths: Iterable[str | Path]) -> Iterable[CheckResult | str]:
        """One :class:`CheckResult` per file, or the error message of a file that cannot be
        read as a picture (the others go on)."""
        from aigcguard.imageio import ImageLoadError, load_image

        for path in paths:
            try:
                image = load_image(path)
            except ImageLoadError as exc:
                yield str(exc)
                continue
            yield self.check(image.pixels, str(path), on_disk=True)

    def check(self, pixels, path: str, *, on_disk: bool = False) -> CheckResult:
        """Every signal for one uint8 3 x H x W picture. ``on_disk``: ``path`` is the file
        the pixels came from, so its metadata (C2PA, labels) can be read too."""
        found: dict[str, Any] = {}
        errors: dict[str, str] = {}

        def run(name, fn):
            try:
                found[name] = fn()
            except (ValueError, OSError) as exc:
                errors[name] = str(exc)

        if on_disk:
            from aigcguard.provenance.credentials import c2pa as credentials
            from aigcguard.provenance.credentials import labels

            run("credentials", lambda: credentials.verify(path, trust_anchors=self.trust))
            run("labels", lambda: labels.read_labels(path))
        run("known_watermark", lambda: self._known(pixels))
        run("watermark", lambda: self._watermark(pixels))
        if self.ledger is not None:
            source = path if on_disk else None
            run("ledger", lambda: self._ledger(found.get("watermark"), source))
        run("detector", lambda: self._detect(pixels, path))
        if self.index is not None:
            run("similarity", lambda: self._similar(pixels, path, on_disk))
        return CheckResult(path=path, summary=summarise(found), errors=errors, **found)

    def _known(self, pixels):
        from aigcguard.watermark import detect_known

        [det] = detect_known([pixels], device=self.device)
        return det if det.detected else None

    def _watermark(self, pixels):
        from aigcguard.watermark import detect

        if min(pixels.shape[1:]) < 64:
            return None  # too small to carry a mark: not evidence either way
        [det] = detect([pixels], key=self.key, device=self.device)
        return det

    def _ledger(self, watermark, source):
        """The ledger's record: by the mark's payload, or by the file's bytes (on disk)."""
        from aigcguard.provenance.credentials.ledger import find_record, key_fingerprint

        record, _ = find_record(self.ledger, watermark, source, key_id=key_fingerprint(self.key))
        return record

    def _detect(self, pixels, path):
        from aigcguard.detectors import api as detector_api

        if self._auto:
            small = min(pixels.shape[1:]) < AUTO_SMALL_SIDE
            name = AUTO_DETECTOR_SMALL if small else AUTO_DETECTOR_LARGE
        else:
            [name] = self._detectors
        [result] = detector_api.score(self._detectors[name], [pixels], [path])
        return result

    def _similar(self, pixels, path, on_disk):
        digest = None
        if on_disk:
            from aigcguard.fileio import file_sha256

            digest = file_sha256(path)
        [result] = self.index.search([pixels], paths=[path], sha256=[digest])
        return result


def summarise(found: dict[str, Any]) -> Summary:
    """The summary rules of the module docstring, on the signals' results."""
    from aigcguard.provenance.credentials.iptc import AI_DIGITAL_SOURCE_TYPES

    strong, weak, reasons = [], [], []
    real_strong: list[str] = []
    cred = found.get("credentials")
    if cred is not None and cred.state != "absent":
        types = [t.rsplit("/", 1)[-1] for t in cred.digital_source_types or []]
        if cred.state in ("trusted", "valid"):
            ai = [t for t in types if t in AI_DIGITAL_SOURCE_TYPES]
            who = f"signed by {(cred.signer or {}).get('common_name', 'an unknown signer')}"
            if ai:
                strong.append("credentials")
                reasons.append(f"Content Credentials ({cred.state}, {who}) declare {ai[0]}")
            elif cred.state == "trusted" and "digitalCapture" in types:
                real_strong.append("credentials")
                reasons.append(f"trusted Content Credentials ({who}) declare a camera capture")
            else:
                reasons.append(f"Content Credentials ({cred.state}) declare {types or 'nothing'}")
        else:
            codes = ", ".join(cred.codes or []) or "unknown failure"
            reasons.append(f"Content Credentials are invalid ({codes}): the file was altered")
    wm = found.get("watermark")
    if wm is not None and wm.detected:
        strong.append("watermark")
        reasons.append(f"our watermark is present (p = {wm.p_value:.1e})")
    rec = found.get("ledger")
    if rec is not None:
        strong.append("ledger")
        how = "" if wm is not None and wm.detected else " (this very file, by its bytes)"
        reasons.append(f"the ledger records it{how}: {rec.generator}, {rec.created}")
    known = found.get("known_watermark")
    if known is not None and known.detected:
        strong.append("known_watermark")
        reasons.append(f"the {known.known} watermark is present (p = {known.p_value:.1e})")
    lab = found.get("labels")
    if lab is not None:
        gb = lab.gb45438
        if gb is not None and gb.label == 1:
            strong.append("labels")
            reasons.append(f"a GB 45438 label ({gb.source}) declares it AI-generated")
        elif gb is not None and gb.label in (2, 3):
            weak.append("labels")
            reasons.append(f"a GB 45438 label ({gb.source}) says possibly or suspected AI")
        dst = (lab.digital_source_type or "").rsplit("/", 1)[-1]
        if dst in AI_DIGITAL_SOURCE_TYPES:
            strong.append("labels")
            reasons.append(f"the IPTC digital source type in XMP is {dst}")
        for sig in lab.generator_signals or []:
            strong.append("labels")
            reasons.append(f"metadata names a generator: {sig.generator} ({sig.key})")
    det = found.get("detector")
    if det is not None:
        reasons.append(
            f"the detector ({det.model}) gives {det.score:.2f} ({det.band}; threshold "
            f"{det.threshold:.2f})"
        )
    sim = found.get("similarity")
    if sim is not None and sim.verdict != "none" and sim.matches:
        top = sim.matches[0]
        reasons.append(f"similarity: {sim.verdict} of registered work {top.title or top.path}")

    strong = list(dict.fromkeys(strong))
    if strong:
        return Summary("generated", strong, reasons)
    if real_strong:
        return Summary("likely_real", real_strong, reasons)
    if weak:
        return Summary("likely_generated", weak, reasons)
    if det is not None and det.band == "likely_generated":
        return Summary("likely_generated", ["detector"], reasons)
    if det is not None and det.band == "likely_real":
        return Summary("likely_real", ["detector"], reasons)
    return Summary("unknown", [], reasons or ["no signal says anything about this picture"])


# ------------------------------------------------------------------------------------- HTML


def render_html(results: Sequence[CheckResult], checker: Checker | None = None) -> str:
    """A self-contained page: per picture, the picture, the summary and its reasons, each
    signal's result, the detector's score against its bands, and side-by-side pictures of
    copied works (when ``checker`` has an index)."""
    import html

    from aigcguard.imageio import ImageLoadError, load_image
    from aigcguard.report import STYLE, counts_table, data_uri

    e = html.escape
    counts = {v: sum(r.summary.verdict == v for r in results) for v in SUMMARY_VERDICTS}
    parts = [
        "<!doctype html><meta charset='utf-8'><title>aigc check</title>",
        f"<style>{STYLE}</style><h1>Where did these pictures come from?</h1>",
        counts_table(counts),
        "<p>A declaration or a mark decides (<em>generated</em>); otherwise the detector's band "
        "(a probability, not a fact); otherwise <em>unknown</em>. A missing label or mark "
        "proves nothing: platforms strip metadata.</p>",
    ]
    for r in results:
        s = r.summary
        parts.append(f"<section><h2 class='v-{s.verdict}'>{e(r.path)}: {s.verdict}</h2>")
        try:
            query = load_image(r.path).pixels
            parts.append(
                f"<img alt='picture' style='max-width:360px' "
                f"src='{data_uri(query.permute(1, 2, 0).numpy(), 720)}'>"
            )
        except (ImageLoadError, OSError):
            query = None
        decided = ", ".join(s.decided_by) or "nothing"
        parts.append(f"<p>Decided by: <b>{e(decided)}</b></p><ul>")
        parts += [f"<li>{e(reason)}</li>" for reason in s.reasons]
        parts.append("</ul><table><tr><th>signal</th><th>result</th></tr>")
        for name, text in _signal_rows(r):
            parts.append(f"<tr><td>{e(name)}</td><td>{text}</td></tr>")
        parts.append("</table>")
        sim = r.similarity
        if (
            checker is not None
            and checker.index is not None
            and sim is not None
            and query is not None
        ):
            for m in sim.matches[:3]:
                if m.verdict in ("exact", "copy"):
                    try:
                        picture = checker.index.match_picture(query, m)
                        parts.append(f"<p>{e(m.title or m.path)}: {m.verdict}</p>")
                        parts.append(f"<img alt='match' src='{data_uri(picture)}'>")
                    except (ImageLoadError, OSError) as exc:
                        parts.append(f"<p>(no picture of {e(m.path)}: {e(str(exc))})</p>")
        parts.append("</section>")
    return "".join(parts)


def _signal_rows(r: CheckResult) -> list[tuple[str, str]]:
    import html

    e = html.escape
    rows = []
    c = r.credentials
    if c is not None:
        types = ", ".join(t.rsplit("/", 1)[-1] for t in c.digital_source_types or []) or "-"
        codes = f"; codes {e(', '.join(c.codes))}" if c.codes else ""
        rows.append(("Content Credentials", f"{e(c.state)}; source type {e(types)}{codes}"))
    lab = r.labels
    if lab is not None:
        gb = "none" if lab.gb45438 is None else f"label {lab.gb45438.label} ({lab.gb45438.source})"
        gens = ", ".join(sorted({g.generator for g in lab.generator_signals})) or "none"
        dst = (lab.digital_source_type or "none").rsplit("/", 1)[-1]
        rows.append(("Labels", e(f"GB 45438 {gb}; IPTC {dst}; generator metadata {gens}")))
    if r.known_watermark is not None:
        k = r.known_watermark
        rows.append(("Known watermark", e(f"{k.known} (p = {k.p_value:.1e})")))
    if r.watermark is not None:
        w = r.watermark
        found = f"present, p = {w.p_value:.1e}, payload {w.payload}" if w.detected else "absent"
        rows.append(("Our watermark", e(found)))
    if r.ledger is not None:
        rec = r.ledger
        rows.append(("Ledger", e(f"{rec.generator} ({rec.model or '-'}), {rec.created}")))
    d = r.detector
    if d is not None:
        bar = (
            f"<span class='bar'><span style='width:{100 * d.score:.0f}%'></span>"
            f"<i style='left:{100 * d.threshold:.0f}%'></i></span>"
        )
        rows.append(("Detector", f"{bar} {d.score:.2f} {e(d.band)} ({e(d.model)})"))
    if r.similarity is not None:
        top = r.similarity.matches[0] if r.similarity.matches else None
        best = "no registered work" if top is None else f"{top.title or top.path} ({top.score:.2f})"
        rows.append(("Similarity", e(f"{r.similarity.verdict}: {best}")))
    for name, err in r.errors.items():
        rows.append((name, f"<em>failed: {e(err)}</em>"))
    return rows


def write_html(path: str | Path, results: Sequence[CheckResult], checker: Checker | None = None):
    """Write :func:`render_html` atomically."""
    from aigcguard.fileio import atomic_write

    path = Path(path)
    with atomic_write(path) as f:
        f.write(render_html(results, checker).encode("utf-8"))
    return path
