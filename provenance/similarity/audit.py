"""A copyright audit of a whole batch: verdict counts, worst offenders, creator attribution.

Attribution. Each image of the batch that resembles registered works (matches at or above the
``similar`` level, or ``copy``/``exact`` by evidence) hands out one unit of contribution among
the creators of those works, in proportion to the match scores; an image that resembles
nothing hands out nothing. A creator's ``share`` is the sum of what they receive over the size
of the batch: the share of the batch that resembles their works.

Payout, with a pool: the revenue-sharing scheme proposed for AI art platforms, works x
contribution x price x (1 - platform share), where the batch's works are its images, the price
of one is the pool over the batch size, and contribution is what each image gives the creator;
summed over the batch this is ``share x pool x (1 - platform_share)``. What no creator
receives stays unattributed.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aigcguard.fileio import atomic_write
from aigcguard.imageio import load_image
from aigcguard.provenance.similarity.index import VERDICTS, QueryResult, SimilarityIndex
from aigcguard.report import STYLE, counts_table, data_uri
from aigcguard.results import JsonResult

UNKNOWN_CREATOR = "(unknown creator)"
_SEVERITY = {v: i for i, v in enumerate(VERDICTS)}
_RESEMBLES = ("exact", "copy", "near_duplicate", "similar")


@dataclass(frozen=True)
class CreatorShare(JsonResult):
    creator: str
    works_matched: int
    images: int  # batch images that resemble at least one of their works
    share: float
    payout: float | None


@dataclass(frozen=True)
class AuditReport(JsonResult):
    index: str
    embedder: str
    images: int
    counts: dict[str, int]  # per verdict, each image counted at its strongest verdict
    errors: list[str]
    results: list[QueryResult]  # worst offenders first
    creators: list[CreatorShare]  # largest share first
    pool: float | None
    platform_share: float | None
    unattributed: float  # share of the batch that resembles no registered work

    def summary(self, report: str | Path, top: int = 10) -> AuditSummary:
        """The few numbers ``aigc audit`` prints, for a report written to ``report``."""
        return AuditSummary(
            str(report),
            self.images,
            self.counts,
            self.creators[:top],
            self.unattributed,
            len(self.errors),
        )


@dataclass(frozen=True)
class AuditSummary(JsonResult):
    """An audit in one line: the report's path, verdict counts, the top creators' shares,
    the unattributed share and how many inputs failed (``errors``: a count)."""

    report: str
    images: int
    counts: dict[str, int]
    creators: list[CreatorShare]
    unattributed: float
    errors: int


def attribute(
    results: Sequence[QueryResult], *, pool: float | None = None, platform_share: float = 0.0
) -> tuple[list[CreatorShare], float]:
    """Creator shares (and payouts when a pool is given) from a batch's results."""
    if not 0.0 <= platform_share <= 1.0:
        raise ValueError(f"platform share must be between 0 and 1, got {platform_share}")
    if pool is not None and pool < 0:
        raise ValueError(f"pool must not be negative, got {pool}")
    n = len(results)
    received: dict[str, float] = {}
    works: dict[str, set[int]] = {}
    images: dict[str, int] = {}
    for r in results:
        matched = [m for m in r.matches if m.verdict in _RESEMBLES]
        weights = np.array([max(m.score, 1e-6) for m in matched])
        if not len(matched):
            continue
        weights /= weights.sum()
        seen = set()
        for m, w in zip(matched, weights, strict=True):
            c = m.creator or UNKNOWN_CREATOR
            received[c] = received.get(c, 0.0) + float(w)
            works.setdefault(c, set()).add(m.id)
            seen.add(c)
        for c in seen:
            images[c] = images.get(c, 0) + 1
    shares = []
    for c, total in received.items():
        share = total / n
        payout = None if pool is None else round(share * pool * (1 - platform_share), 2)
        shares.append(CreatorShare(c, len(works[c]), images[c], round(share, 6), payout))
    shares.sort(key=lambda s: (-s.share, s.creator))
    unattributed = 1.0 - sum(received.values()) / n if n else 0.0
    return shares, round(unattributed, 6)


def run_audit(
    index: SimilarityIndex,
    files: Sequence[str | os.PathLike],
    *,
    k: int = 5,
    pool: float | None = None,
    platform_share: float = 0.0,
) -> AuditReport:
    """Search every file; unreadable ones are listed in ``errors`` and left out of the
    counts and shares."""
    results, errors = [], []
    for out in index.search_files(files, k=k):
        (errors if isinstance(out, str) else results).append(out)
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    results.sort(
        key=lambda r: (_SEVERITY[r.verdict], -max((m.score for m in r.matches), default=0))
    )
    creators, unattributed = attribute(results, pool=pool, platform_share=platform_share)
    return AuditReport(
        index=str(index.path),
        embedder=index.descriptor.spec,
        images=len(results),
        counts=counts,
        errors=errors,
        results=results,
        creators=creators,
        pool=pool,
        platform_share=platform_share if pool is not None else None,
        unattributed=unattributed,
    )


# ------------------------------------------------------------------------------------- HTML


def render_html(report: AuditReport, index: SimilarityIndex, *, pictures: int = 50) -> str:
    """A self-contained HTML page: counts, creator shares, then each image that resembles a
    work, worst first, with side-by-side match pictures for the first ``pictures`` copies."""
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>aigc audit</title>",
        f"<style>{STYLE}</style><h1>Similarity audit</h1>",
        f"<p>{report.images} images against <code>{e(report.index)}</code> "
        f"(embedder <code>{e(report.embedder)}</code>).</p>",
        counts_table({v: report.counts[v] for v in VERDICTS}),
    ]
    if report.creators:
        pay = report.pool is not None
        parts.append(
            "<h2>Creators</h2><table><tr><th>creator</th><th>works matched</th>"
            "<th>images</th><th>share of batch</th>" + ("<th>payout</th>" if pay else "") + "</tr>"
        )
        for c in report.creators:
            parts.append(
                f"<tr><td>{e(c.creator)}</td><td>{c.works_matched}</td><td>{c.images}</td>"
                f"<td>{c.share:.2%}</td>" + (f"<td>{c.payout:.2f}</td>" if pay else "") + "</tr>"
            )
        parts.append(f"</table><p>Unattributed: {report.unattributed:.2%} of the batch.")
        if pay:
            parts.append(f" Pool {report.pool:.2f}, platform share {report.platform_share:.0%}.")
        parts.append("</p>")
    if report.errors:
        parts.append("<h2>Unreadable</h2><ul>")
        parts += [f"<li>{e(err)}</li>" for err in report.errors]
        parts.append("</ul>")
    parts.append("<h2>Images, worst first</h2>")
    drawn = 0
    for r in report.results:
        if r.verdict == "none":
            continue
        parts.append(f"<section><h3 class='v-{r.verdict}'>{e(r.path)}: {r.verdict}</h3>")
        parts.append(
            "<table><tr><th>work</th><th>title</th><th>creator</th><th>score</th>"
            "<th>verdict</th><th>false-match rate</th><th>evidence</th></tr>"
        )
        for m in r.matches:
            parts.append(
                f"<tr><td>{m.id}</td><td>{e(m.title or Path(m.path).name)}</td>"
                f"<td>{e(m.creator or '')}</td><td>{m.score:.3f}</td>"
                f"<td class='v-{m.verdict}'>{m.verdict}</td><td>{_rate(m)}</td>"
                f"<td>{e(m.verification_note)}</td></tr>"
            )
        parts.append("</table>")
        best = r.matches[0] if r.matches else None
        if best is not None and best.verdict in ("copy", "exact") and drawn < pictures:
            try:
                query = load_image(r.path).pixels
                picture = index.match_picture(query, best)
                parts.append(f"<img alt='match' src='{data_uri(picture)}'>")
                drawn += 1
            except Exception as exc:  # a file moved since the search: say so, keep going
                parts.append(f"<p>(no picture: {e(str(exc))})</p>")
        parts.append("</section>")
    return "".join(parts)


def _rate(m) -> str:
    """A match's measured false-match rate and its 95% interval, as a table cell."""
    if m.false_match_rate is None:
        return ""
    text = f"{m.false_match_rate:.1e}"
    if m.false_match_ci95:
        low, high = m.false_match_ci95
        text += f" (95%: {low:.1e} to {high:.1e})"
    return html.escape(text)


def write_report(report: AuditReport, index: SimilarityIndex, path: str | os.PathLike) -> Path:
    """``.html`` or ``.json`` by the suffix; written atomically."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        text = render_html(report, index)
    elif path.suffix.lower() == ".json":
        text = report.to_json()
    else:
        raise ValueError(f"{path}: the report must end in .html or .json")
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return path
