"""Metrics per group (generator family, source...) with intervals, and their tables.

:func:`grouped_metrics` takes one score per picture (higher = generated), whether each
reached its threshold, and a group key per picture; it gives one :class:`GroupMetrics` per
group and one for ``all``. A group with both classes is measured on its own pictures; a group
of one class (a generator family, a camera corpus) against *every* picture of the other class,
so a family's row reads "this family against all the real photos" and a real source's row
"all the generated pictures against this source's photos". AUC and TPR at 1% and 5% FPR have
bootstrap intervals, the flagged rates Clopper-Pearson intervals (:mod:`.intervals`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aigcguard.results import JsonResult

from .intervals import N_BOOTSTRAP, Estimate, bootstrap_metrics, rate

ALL = "all"


@dataclass(frozen=True)
class GroupMetrics(JsonResult):
    """One group's figures. ``n_real`` / ``n_generated``: the pictures measured (the other
    class's are all of them when the group has one class); ``fp_rate``: the share of the
    group's real pictures at or above the threshold (None without real pictures);
    ``detection_rate``: the same for its generated pictures. AUC and TPRs are None when the
    measured set lacks a class."""

    group: str
    n_real: int
    n_generated: int
    auc: Estimate | None
    tpr_at_1fpr: Estimate | None
    tpr_at_5fpr: Estimate | None
    fp_rate: Estimate | None
    detection_rate: Estimate | None


def _row(group, scores, labels, flagged, members, n_boot, seed) -> GroupMetrics:
    own_real, own_gen = members & (labels == 0), members & (labels == 1)
    # a one-class group is measured against every picture of the other class
    real = own_real if own_real.any() else labels == 0
    gen = own_gen if own_gen.any() else labels == 1
    metrics = {}
    if real.any() and gen.any():
        metrics = bootstrap_metrics(scores[real], scores[gen], n=n_boot, seed=seed)
    return GroupMetrics(
        group,
        int(real.sum()),
        int(gen.sum()),
        metrics.get("auc"),
        metrics.get("tpr_at_1fpr"),
        metrics.get("tpr_at_5fpr"),
        rate(flagged[own_real]),
        rate(flagged[own_gen]),
    )


def grouped_metrics(
    scores,
    labels,
    flagged,
    groups: Sequence[str],
    *,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> tuple[GroupMetrics, ...]:
    """One row per group (largest first, then by name), then ``all``. A picture whose group
    is None forms no row (it still counts for ``all`` and as the other class of one-class
    groups); a picture whose score is NaN (not scored) is left out."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    flagged = np.asarray(flagged, bool).reshape(-1)
    keys = np.asarray(list(groups), object)
    if not len(scores) == len(labels) == len(flagged) == len(keys):
        raise ValueError("scores, labels, flags and groups differ in length")
    ok = np.isfinite(scores)
    scores, labels, flagged, keys = scores[ok], labels[ok], flagged[ok], keys[ok]
    counts = Counter(k for k in keys.tolist() if k is not None)
    order = sorted(counts, key=lambda g: (-counts[g], str(g)))
    rows = [_row(str(g), scores, labels, flagged, keys == g, n_boot, seed) for g in order]
    rows.append(_row(ALL, scores, labels, flagged, np.ones(len(keys), bool), n_boot, seed))
    return tuple(rows)


@dataclass(frozen=True)
class GroupedEvaluation(JsonResult):
    """One model under one condition, rows by ``by`` (``family``, ``source``, ``generator``).
    ``threshold``: the model's ``likely_generated`` threshold (None when it differs from
    fold to fold, for a model retrained per fold); ``scored_by``: ``shipped`` (the model as
    it is) or the cross-validation that produced the scores (``family folds``...)."""

    model: str
    condition: str
    by: str
    threshold: float | None
    scored_by: str
    rows: tuple[GroupMetrics, ...]

    def row(self, group: str) -> GroupMetrics | None:
        return next((r for r in self.rows if r.group == group), None)

    def markdown(self) -> str:
        return markdown_table(self)


def _cell(e: Estimate | None, interval: bool = True) -> str:
    if e is None:
        return "—"
    return e.cell() if interval else f"{e.value:.3f}"


def markdown_table(evaluation: GroupedEvaluation) -> str:
    """One model under one condition: a row per group."""
    head = (
        f"| {evaluation.by} | real | generated | AUC [95% CI] | TPR @ 1% FPR | TPR @ 5% FPR | "
        "real flagged [95% CI] | generated flagged [95% CI] |"
    )
    lines = [head, "| --- |" + " ---: |" * 7]
    for r in evaluation.rows:
        cells = [
            r.group,
            str(r.n_real),
            str(r.n_generated),
            _cell(r.auc),
            _cell(r.tpr_at_1fpr),
            _cell(r.tpr_at_5fpr),
            _cell(r.fp_rate),
            _cell(r.detection_rate),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(evaluations: Mapping[str, GroupedEvaluation]) -> str:
    """Several models, same condition and grouping: a row per group (the first model's), for
    each model its AUC [95% CI], TPR at 1% / 5% FPR, and the share flagged at its threshold
    with its 95% interval: of the group's real pictures for a real group, of its generated
    pictures otherwise; for ``all``, real then generated."""
    models = list(evaluations)
    first = evaluations[models[0]]
    head = [first.by, "pictures"]
    for m in models:
        head += [f"{m} AUC [95% CI]", f"{m} TPR @ 1% / 5% FPR", f"{m} flagged"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for base in first.rows:
        cells = [base.group, _count(base)]
        for m in models:
            r = evaluations[m].row(base.group)
            if r is None:
                cells += ["—"] * 3
                continue
            tprs = "—"
            if r.tpr_at_1fpr is not None and r.tpr_at_5fpr is not None:
                tprs = f"{r.tpr_at_1fpr.value:.2f} / {r.tpr_at_5fpr.value:.2f}"
            cells += [_cell(r.auc), tprs, _flag_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _count(r: GroupMetrics) -> str:
    if r.fp_rate is not None and r.detection_rate is not None:
        return f"{r.n_real} + {r.n_generated}"
    if r.fp_rate is not None:
        return f"{r.n_real} real"
    return f"{r.n_generated} gen"


def _rate(e: Estimate) -> str:
    return f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}]"


def _flag_cell(r: GroupMetrics) -> str:
    if r.fp_rate is not None and r.detection_rate is not None:
        return f"real {_rate(r.fp_rate)}, gen {_rate(r.detection_rate)}"
    e = r.detection_rate if r.detection_rate is not None else r.fp_rate
    return "—" if e is None else _rate(e)
