"""Score the pictures of a manifest under each condition, and evaluate a detector by group.

:func:`score_records` decodes the pictures a batch at a time (through
:func:`aigcguard.imageio.load_image`, so every safety check holds), applies each condition of
:data:`aigcguard.perturb.CONDITIONS` and hands the batch to each scorer; only a batch is ever
held. A picture that cannot be decoded, or that a scorer refuses, is named in ``skipped``
and left out of every array. :func:`evaluate_manifest` is ``aigc detector eval --manifest``:
a detector as it is (no retraining), per group, per condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aigcguard.imageio import ImageLoadError, load_image
from aigcguard.perturb import CONDITIONS
from aigcguard.results import NOT_JSON, JsonResult

from .intervals import N_BOOTSTRAP
from .manifest import Manifest, Record, load_manifest
from .report import GroupedEvaluation, grouped_metrics

#: how a picture is grouped: ``by`` -> its group's key, or None for a picture that forms no
#: row of its own (a real photo has no family: it is what every family is measured against)
GROUPINGS: Mapping[str, Callable[[Record], str | None]] = {
    "family": lambda r: r.family if r.label else None,
    "source": lambda r: r.source,
    "generator": lambda r: r.generator if r.label else None,
}

Scorer = Callable[[list[torch.Tensor]], np.ndarray]


@dataclass(frozen=True)
class Scored:
    """``records``: those scored, in manifest order; ``values[(scorer, condition)]``: one row
    per record (a score, or a feature vector); ``skipped``: ``FILE: why`` for the others."""

    records: tuple[Record, ...]
    values: Mapping[tuple[str, str], np.ndarray]
    skipped: tuple[str, ...] = ()


def _batch_values(images, scorers, conditions) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for cname, perturb in conditions.items():
        edited = [perturb(im) for im in images]
        for sname, scorer in scorers.items():
            v = np.asarray(scorer(edited), np.float64)
            if len(v) != len(edited):
                raise ValueError(f"scorer {sname} gave {len(v)} values for {len(edited)} pictures")
            out[(sname, cname)] = v
    return out


def score_records(
    records: Sequence[Record],
    scorers: Mapping[str, Scorer],
    conditions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = CONDITIONS,
    *,
    batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> Scored:
    """Every scorer on every record under every condition (see the module docstring)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    kept: list[Record] = []
    skipped: list[str] = []
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for start in range(0, len(records), batch):
        chunk, images = [], []
        for rec in records[start : start + batch]:
            try:
                images.append(load_image(rec.path).pixels)
                chunk.append(rec)
            except ImageLoadError as exc:
                skipped.append(f"{rec.file}: {exc.reason}")
        if not images:
            continue
        try:
            values = _batch_values(images, scorers, conditions)
        except ValueError:
            # one picture spoils the batch: score them one at a time to name it
            values, chunk = _one_by_one(chunk, images, scorers, conditions, skipped)
        for key, v in values.items():
            parts.setdefault(key, []).append(v)
        kept += chunk
        if progress:
            progress(min(start + batch, len(records)), len(records))
    values = {k: np.concatenate(v) for k, v in parts.items()}
    return Scored(tuple(kept), values, tuple(skipped))


def _one_by_one(chunk, images, scorers, conditions, skipped):
    kept, parts = [], {}
    for rec, im in zip(chunk, images, strict=True):
        try:
            v = _batch_values([im], scorers, conditions)
        except ValueError as exc:
            skipped.append(f"{rec.file}: {exc}")
            continue
        kept.append(rec)
        for key, x in v.items():
            parts.setdefault(key, []).append(x)
    return {k: np.concatenate(v) for k, v in parts.items()}, kept


class NothingToEvaluateError(ValueError):
    """Too little could be scored for a metric (no picture of one class or the other);
    ``skipped`` names what was left out and why."""

    def __init__(self, message: str, skipped: Sequence[str]):
        super().__init__(message)
        self.skipped = tuple(skipped)


@dataclass(frozen=True)
class ManifestEvaluation(JsonResult):
    """``aigc detector eval --manifest``: a detector per group under each condition."""

    manifest: str
    model: str
    threshold: float
    n_real: int
    n_generated: int
    skipped: tuple[str, ...]
    evaluations: tuple[GroupedEvaluation, ...]
    conditions: tuple[str, ...] = field(default=(), metadata=NOT_JSON)

    def markdown(self) -> str:
        parts = [
            f"Model `{self.model}` (threshold {self.threshold:.3f}) on {self.manifest}: "
            f"{self.n_real} real, {self.n_generated} generated"
            + (f", {len(self.skipped)} skipped" if self.skipped else "")
            + ".",
            "",
        ]
        for ev in self.evaluations:
            parts += [f"### {ev.condition}, by {ev.by}", "", ev.markdown()]
        return "\n".join(parts)


def evaluate_scores(
    scores: np.ndarray,
    flagged: np.ndarray,
    records: Sequence[Record],
    *,
    model: str,
    condition: str,
    by: str,
    threshold: float | None,
    scored_by: str = "shipped",
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> GroupedEvaluation:
    """Group rows (:func:`.report.grouped_metrics`) of scores already computed."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; choose from {', '.join(GROUPINGS)}")
    labels = np.array([r.label for r in records], np.int64)
    keys = [GROUPINGS[by](r) for r in records]
    rows = grouped_metrics(scores, labels, flagged, keys, n_boot=n_boot, seed=seed)
    return GroupedEvaluation(model, condition, by, threshold, scored_by, rows)


def evaluate_manifest(
    manifest: str | Path | Manifest,
    detector,
    *,
    by: Sequence[str] = ("family",),
    conditions: Sequence[str] = tuple(CONDITIONS),
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> ManifestEvaluation:
    """A detector (``aigcguard.detectors.load``) on a manifest's pictures, per group and
    condition, at its own ``likely_generated`` threshold. Rows the manifest could not use
    and pictures that could not be scored are in ``skipped``; :class:`NothingToEvaluateError`
    when no picture of one class or the other could be scored."""
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; choose from {', '.join(CONDITIONS)}")
    chosen = {c: CONDITIONS[c] for c in conditions}
    scored = score_records(
        manifest.records, {"p": detector.probabilities}, chosen, batch=batch, progress=progress
    )
    labels = [r.label for r in scored.records]
    n_gen = sum(labels)
    skipped = (*manifest.skipped, *scored.skipped)
    if n_gen == 0 or n_gen == len(labels):
        raise NothingToEvaluateError(
            f"nothing to evaluate: {len(labels) - n_gen} real and {n_gen} generated pictures "
            f"could be scored ({len(skipped)} skipped)",
            skipped,
        )
    threshold = float(detector.calibration.threshold)
    evaluations = []
    for c in conditions:
        p = scored.values[("p", c)]
        for b in by:
            evaluations.append(
                evaluate_scores(
                    p,
                    p >= threshold,
                    scored.records,
                    model=detector.spec,
                    condition=c,
                    by=b,
                    threshold=threshold,
                    n_boot=n_boot,
                    seed=seed,
                )
            )
    return ManifestEvaluation(
        str(manifest.path),
        detector.spec,
        threshold,
        len(labels) - n_gen,
        n_gen,
        skipped,
        tuple(evaluations),
        tuple(conditions),
    )
