"""Grouped evaluation of real-versus-generated detectors on labelled pictures from the wild.

    from aigcguard.detectors.grouped import load_manifest, evaluate_manifest
    manifest = load_manifest("../shared/data/wild/manifest.csv")   # records, skipped rows
    result = evaluate_manifest(manifest, load("spectral"), by=("family", "source"))
    print(result.markdown())                                          # or result.to_dict()

One job per module: :mod:`.families` (generator name to family, the shipped table),
:mod:`.manifest` (CSV rows to :class:`Record`), :mod:`.splits` (leave one family out against
held-out real sources; leave one source out; :func:`check_folds`), :mod:`.intervals`
(bootstrap and Clopper-Pearson intervals), :mod:`.report` (metrics per group, tables),
:mod:`.metadata` (what a file gives away: the shortcut baseline's features),
:mod:`.crossval` (a model retrained per fold, settings by nested grouped CV) and
:mod:`.scoring` (pictures through the conditions of :data:`aigcguard.perturb.CONDITIONS`
and the scorers, a detector's grouped evaluation). ``aigc detector eval --manifest`` and
bench/detector_wild.py are thin over these.
"""

from aigcguard.detectors.grouped.crossval import (
    CrossValidated,
    FoldFit,
    Trainable,
    cross_validated_scores,
    fit_nested,
    group_weights,
    shortcut_baseline,
    spectral_reference,
)
from aigcguard.detectors.grouped.families import FAMILIES, Family, family_names, family_of
from aigcguard.detectors.grouped.intervals import (
    Estimate,
    bootstrap_metrics,
    clopper_pearson,
)
from aigcguard.detectors.grouped.manifest import Manifest, Record, load_manifest
from aigcguard.detectors.grouped.metadata import (
    FEATURE_NAMES,
    FileMetadata,
    file_metadata,
    jpeg_quality,
    metadata_features,
)
from aigcguard.detectors.grouped.report import (
    GroupedEvaluation,
    GroupMetrics,
    comparison_table,
    grouped_metrics,
)
from aigcguard.detectors.grouped.scoring import (
    GROUPINGS,
    ManifestEvaluation,
    NothingToEvaluateError,
    Scored,
    evaluate_manifest,
    evaluate_scores,
    score_records,
)
from aigcguard.detectors.grouped.splits import Fold, check_folds, family_folds, source_folds

__all__ = [
    "FAMILIES",
    "FEATURE_NAMES",
    "GROUPINGS",
    "CrossValidated",
    "Estimate",
    "Family",
    "FileMetadata",
    "Fold",
    "FoldFit",
    "GroupMetrics",
    "GroupedEvaluation",
    "Manifest",
    "ManifestEvaluation",
    "NothingToEvaluateError",
    "Record",
    "Scored",
    "Trainable",
    "bootstrap_metrics",
    "check_folds",
    "clopper_pearson",
    "comparison_table",
    "cross_validated_scores",
    "evaluate_manifest",
    "evaluate_scores",
    "family_folds",
    "family_names",
    "family_of",
    "file_metadata",
    "fit_nested",
    "group_weights",
    "grouped_metrics",
    "jpeg_quality",
    "load_manifest",
    "metadata_features",
    "score_records",
    "shortcut_baseline",
    "source_folds",
    "spectral_reference",
]
