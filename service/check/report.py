"""The HTML report of :class:`~aigcguard.service.check.Checker` results."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigcguard.results import JsonResult
from aigcguard.service.check.verdict import SUMMARY_VERDICTS

if TYPE_CHECKING:
    from aigcguard.service.check.checker import Checker, CheckResult

e = html.escape
#: the only pictures the report puts inline from a result (ingredient thumbnails)
INLINE_PICTURES = ("data:image/jpeg;base64,", "data:image/png;base64,", "data:image/webp;base64,")


def render_html(
    results: Sequence[CheckResult],
    checker: Checker | None = None,
    pictures: Mapping[str, Any] | None = None,
) -> str:
    """A self-contained page: per picture, the picture, the summary and its reasons, each
    signal's result, the detector's score against its bands, and side-by-side pictures of
    copied works (when ``checker`` has an index). ``pictures``: the uint8 3 x H x W pixels of
    results whose ``path`` is no file to read (an upload to the service), by path."""
    from aigcguard.report import STYLE, counts_table

    counts = {v: sum(r.summary.verdict == v for r in results) for v in SUMMARY_VERDICTS}
    parts = [
        "<!doctype html><meta charset='utf-8'><title>aigc check</title>",
        f"<style>{STYLE}</style><h1>Where did these pictures come from?</h1>",
        counts_table(counts),
        "<p>A declaration or a mark decides (<em>generated</em>, <em>partly_generated</em>); "
        "intact Content Credentials of a trusted signer can say <em>captured</em>; a weak "
        "label, an unbound mark or a strict detector say <em>likely_generated</em>; otherwise "
        "<em>no_evidence</em>. A low detector score is not evidence that a picture is real, and "
        "a missing label or mark proves nothing: platforms strip metadata. A mark whose ledger "
        "record is of another picture (binding <em>mismatch</em>) was copied: it decides "
        "nothing.</p>",
    ]
    for r in results:
        parts += _section(r, checker, (pictures or {}).get(r.path))
    return "".join(parts)


def _section(r: CheckResult, checker: Checker | None, query=None) -> list[str]:
    """One picture: its verdict, the picture, the reasons, the signals, copied works."""
    from aigcguard.imageio import ImageLoadError, load_image
    from aigcguard.report import data_uri

    s = r.summary
    parts = [f"<section><h2 class='v-{s.verdict}'>{e(r.path)}: {s.verdict}</h2>"]
    try:
        if query is None:
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
    if checker is not None and checker.index is not None and sim is not None and query is not None:
        parts += _copied_works(checker, query, sim)
    parts.append("</section>")
    return parts


def _copied_works(checker: Checker, query, sim) -> list[str]:
    """Side-by-side pictures of the top exact or copied registered works."""
    from aigcguard.imageio import ImageLoadError
    from aigcguard.report import data_uri

    parts = []
    for m in sim.matches[:3]:
        if m.verdict in ("exact", "copy"):
            try:
                picture = checker.index.match_picture(query, m)
                parts.append(f"<p>{e(m.title or m.path)}: {m.verdict}</p>")
                parts.append(f"<img alt='match' src='{data_uri(picture)}'>")
            except (ImageLoadError, OSError) as exc:
                parts.append(f"<p>(no picture of {e(m.path)}: {e(str(exc))})</p>")
    return parts


def _signal_rows(r: CheckResult) -> list[tuple[str, str]]:
    """(signal, HTML text) for each signal with something to report, then the failures."""
    rows = []
    c = r.credentials
    if c is not None:
        rows.append(("Content Credentials", _credentials_text(c)))
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
        if w.detected and w.public_key:
            found += " (public key: anyone can add it)"
        elif w.detected and w.format:
            found += f" ({w.format} format)"
        rows.append(("Our watermark", e(found)))
    if r.ledger is not None:
        rec = r.ledger
        rows.append(("Ledger", e(f"{rec.generator} ({rec.model or '-'}), {rec.created}")))
    if r.binding is not None:
        b = r.binding
        state = f"<b>{e(b.state)}</b>" if b.state == "mismatch" else e(b.state)
        rows.append(("Binding", f"{state}: {e(b.reason)}"))
    d = r.detector
    if d is not None and d.score is None:
        rows.append(("Detector", e(f"not scored: {d.reason} ({d.model})")))
    elif d is not None:
        bar = (
            f"<span class='bar'><span style='width:{100 * d.score:.0f}%'></span>"
            f"<i style='left:{100 * d.threshold:.0f}%'></i></span>"
        )
        side = (
            "above its threshold"
            if d.band == "likely_generated"
            else "below its threshold (not evidence that it is real)"
        )
        fpr = "" if d.target_fpr is None else f"; {d.target_fpr:.0%} of real photos pass it"
        text = f"{d.score:.2f}, {side}: {d.threshold:.2f}{fpr} ({d.model})"
        rows.append(("Detector", f"{bar} {e(text)}"))
    if r.similarity is not None:
        top = r.similarity.matches[0] if r.similarity.matches else None
        best = (
            "no registered work"
            if top is None
            else f"{top.title or top.path} ({top.score:.2f}; {top.verification_note})"
        )
        rows.append(("Similarity", e(f"{r.similarity.verdict}: {best}")))
    for name, value in r.extra.items():  # a signal without a row of its own: its JSON
        if value is not None:
            text = value.to_json() if isinstance(value, JsonResult) else json.dumps(value)
            rows.append((name, e(text)))
    for name, err in r.errors.items():
        rows.append((name, f"<em>failed: {e(err)}</em>"))
    return rows


def _credentials_text(c) -> str:
    """Integrity and standing, then each declaration with where it was made and who signed,
    then the ingredients' thumbnails that the credentials carry."""
    if c.state == "absent":
        return "none" + (f" (points at {e(c.remote_manifest)})" if c.remote_manifest else "")
    integrity = c.integrity or c.state
    standing = c.standing
    head = f"integrity <b>{e(integrity)}</b>" + (f", signer {e(standing)}" if standing else "")
    signer = c.signer or {}
    who = signer.get("common_name")
    if who:
        org = signer.get("organisation")
        head += f", signed by {e(who)}" + (f" ({e(org)})" if org else "")
    if c.signed_at:
        head += f" at {e(c.signed_at)}"
    if c.codes:
        head += f"; codes {e(', '.join(c.codes))}"
    items = []
    for d in c.declarations or []:
        where = (
            "active manifest"
            if d.get("where") == "active"
            else (f"{d.get('relationship') or 'ingredient'} ingredient")
        )
        by = d.get("organisation") or d.get("signer") or "unknown signer"
        items.append(
            f"<li>{e(str(d.get('source_type')))} ({e(str(d.get('finding')))}): {e(where)}, "
            f"{e(str(d.get('action') or 'action'))}, {e(str(by))}</li>"
        )
    if not items and c.digital_source_types:
        types = ", ".join(t.rsplit("/", 1)[-1] for t in c.digital_source_types)
        items.append(f"<li>{e(types)}</li>")
    text = head + (f"<ul>{''.join(items)}</ul>" if items else "; no source type declared")
    return text + _ingredient_thumbnails(c.ingredients or [])


def _ingredient_thumbnails(ingredients) -> str:
    """The ingredients' thumbnails (data: URIs the check made), each titled."""
    shown = []
    for i in ingredients:
        thumb = i.get("thumbnail")
        if isinstance(thumb, str) and thumb.startswith(INLINE_PICTURES):
            title = e(str(i.get("title") or "untitled"))
            shown.append(
                f"<figure style='display:inline-block;margin:0 8px 0 0'><img alt='ingredient: "
                f"{title}' style='max-height:96px' src='{e(thumb)}'>"
                f"<figcaption>{title}</figcaption></figure>"
            )
    return f"<p>Made from:</p>{''.join(shown)}" if shown else ""


def write_html(path: str | Path, results: Sequence[CheckResult], checker: Checker | None = None):
    """Write :func:`render_html` atomically."""
    from aigcguard.fileio import atomic_write

    path = Path(path)
    with atomic_write(path) as f:
        f.write(render_html(results, checker).encode("utf-8"))
    return path
