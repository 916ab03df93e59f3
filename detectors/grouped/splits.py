"""Grouped cross-validation: no generator family and no source on both sides of a split.

A random split of pictures from the wild measures how well a detector recognises a gallery
(its resizing, its recompression, its subjects), not a generator. Two splitters:

:func:`family_folds`, leave one generator family out. One fold per family of the generated
pictures; the real photos' sources are dealt into as many groups as there are families,
balanced by picture count (largest source first into the lightest group), and group ``i`` is
held out with family ``i`` (families in decreasing size, so the largest family meets the
first, heaviest, group). A fold tests the held-out family against the held-out real photos;
its training set drops every picture of that family and every picture, of either class,
from any source in the test set (a gallery that mixes families, such as a repository of
examples for many generators, never has pictures on both sides). Every family is held out
exactly once and every real source once (when there are fewer real sources than families,
the groups come round again: a source is then held out more than once).

:func:`source_folds`, leave one source out. One fold per source, real or generated: the test
set is that source's pictures, the training set everything from other sources. Every source
is held out exactly once, so every picture gets one out-of-fold score, and a real source's
false-positive rate is measured by a model that never saw its camera, its processing or its
subjects.

:func:`check_folds` states the guarantee and raises when a fold breaks it; the tests and
:func:`aigcguard.detectors.grouped.crossval.cross_validated_scores` call it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aigcguard.results import NOT_JSON, JsonResult

from .manifest import Record


@dataclass(frozen=True)
class Fold(JsonResult):
    """One split: ``train`` and ``test`` are indices into the records; ``by`` is the
    splitter (``family`` or ``source``); ``held_out`` names the groups the test set stands for
    (``family:gemini``, ``source:owner/repo``)."""

    name: str
    by: str
    held_out: tuple[str, ...]
    train: np.ndarray = field(metadata=NOT_JSON)
    test: np.ndarray = field(metadata=NOT_JSON)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "n_train": len(self.train), "n_test": len(self.test)}


def balanced_groups(counts: Counter, k: int) -> list[list[str]]:
    """``k`` groups of the keys of ``counts`` with totals as even as greedy allows: keys by
    decreasing count (then name) each go into the group with the smallest total (then the
    lowest index). Deterministic."""
    if k < 1:
        raise ValueError(f"need at least one group, got {k}")
    groups: list[list[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(k), key=lambda j: (totals[j], j))
        groups[i].append(key)
        totals[i] += n
    return groups


def _by_size(keys: Sequence[str]) -> list[str]:
    counts = Counter(keys)
    return sorted(counts, key=lambda key: (-counts[key], key))


def family_folds(records: Sequence[Record]) -> list[Fold]:
    """Leave one generator family out, each against a held-out group of real sources (see
    the module docstring)."""
    families = _by_size([r.family for r in records if r.label == 1])
    real_sources = Counter(r.source for r in records if r.label == 0)
    if not families or not real_sources:
        raise ValueError(
            f"family folds need both classes; got {len(real_sources)} real sources and "
            f"{len(families)} generator families"
        )
    groups = balanced_groups(real_sources, min(len(families), len(real_sources)))
    family = np.array([r.family if r.label == 1 else "" for r in records], object)
    source = np.array([r.source for r in records], object)
    is_real = np.array([r.label == 0 for r in records])
    folds = []
    for i, fam in enumerate(families):
        group = groups[i % len(groups)]
        test = ((family == fam) & ~is_real) | (is_real & np.isin(source, group))
        test_sources = set(source[test])
        train = ~test & (family != fam) & ~np.isin(source, list(test_sources))
        held = (f"family:{fam}", *(f"source:{s}" for s in group))
        folds.append(
            Fold(f"family {fam}", "family", held, np.flatnonzero(train), np.flatnonzero(test))
        )
    return folds


def source_folds(records: Sequence[Record]) -> list[Fold]:
    """Leave one source out, every source in turn (see the module docstring)."""
    source = np.array([r.source for r in records], object)
    folds = []
    for s in _by_size(list(source)):
        test = source == s
        folds.append(
            Fold(
                f"source {s}",
                "source",
                (f"source:{s}",),
                np.flatnonzero(~test),
                np.flatnonzero(test),
            )
        )
    return folds


def check_folds(records: Sequence[Record], folds: Sequence[Fold]) -> None:
    """Raise ValueError when a fold has a picture on both sides, a source on both sides,
    a generator family of the test set among its generated training pictures, or a training
    set without both classes."""
    for fold in folds:
        train, test = set(fold.train.tolist()), set(fold.test.tolist())
        if train & test:
            raise ValueError(f"{fold.name}: {len(train & test)} pictures on both sides")
        src_train = {records[i].source for i in train}
        src_test = {records[i].source for i in test}
        if src_train & src_test:
            raise ValueError(f"{fold.name}: sources on both sides: {sorted(src_train & src_test)}")
        if fold.by == "family":
            fam_train = {records[i].family for i in train if records[i].label == 1}
            fam_test = {records[i].family for i in test if records[i].label == 1}
            if fam_train & fam_test:
                raise ValueError(
                    f"{fold.name}: families on both sides: {sorted(fam_train & fam_test)}"
                )
        if {records[i].label for i in train} != {0, 1}:
            raise ValueError(f"{fold.name}: the training set lacks a class")
