"""Out-of-fold scores of a model retrained per fold, its settings chosen by nested grouped CV.

:func:`cross_validated_scores` trains a :class:`Trainable` on each fold's training pictures
and scores its test pictures, so every picture is scored by a model that never saw its
generator family or source (whatever :mod:`.splits` promised for the folds). Inside a fold,
and only there, the settings (``Trainable.grid``) are chosen by an inner cross-validation
grouped by source (:data:`INNER_FOLDS` folds of whole sources, the classes spread over them
evenly): the pooled inner out-of-fold AUC decides, ties to the first setting of the grid.
The same inner out-of-fold scores, of the chosen setting, calibrate the fold's model (Platt
scaling) and set its threshold at :data:`TARGET_FPR` of the inner real pictures, as ``aigc
detector train`` calibrates on its validation split: the test fold never touches a choice.

Features come as one matrix per *view* (the same pictures under a condition of
:data:`aigcguard.perturb.CONDITIONS`): the model trains on the rows of every view in
``train_views`` (both classes alike), chooses and calibrates on the first of them, and scores
the test pictures under every view given. With ``train_view_choices`` the inner CV also
chooses which views to train on, as one more part of the setting (``"train_views"``); with
``choose_view`` naming several views it chooses on the mean of their inner AUCs. A grid with a
:data:`BALANCE` part lets it choose how the training pictures are weighed by group
(:func:`group_weights`: every generator family and real source alike, or every picture).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aigcguard.detectors.base import Calibration, fit_calibration, real_quantile_threshold
from aigcguard.results import NOT_JSON, JsonResult

from .manifest import Record
from .splits import Fold, check_folds

INNER_FOLDS = 4
#: threads per fit: the models here see at most a few thousand rows, where OpenMP and BLAS
#: threads cost more than they save, and on a busy machine they spin: the shortcut baseline's
#: gradient boosting took 0.18 s a fit on one thread and over ten minutes for a
#: cross-validation of 190 fits with the default threads on the shared 2-core machine
FIT_THREADS = 1
#: the share of real validation pictures a fold's threshold lets through, as shipped
TARGET_FPR = 0.05


@dataclass(frozen=True)
class Trainable:
    """A model to retrain per fold: ``make(**setting)`` returns an unfitted scikit-learn
    classifier (``fit``, and ``decision_function`` or ``predict_proba``); ``grid`` lists the
    settings the inner cross-validation chooses from."""

    name: str
    make: Callable[..., object]
    grid: tuple[Mapping[str, object], ...]
    about: str = ""
    #: the keyword of ``fit`` that takes per-picture weights (a pipeline routes it to a step:
    #: ``"logisticregression__sample_weight"``); needed for a grid with :data:`BALANCE`
    weight_param: str | None = None


def shortcut_baseline() -> Trainable:
    """Gradient-boosted trees on file metadata alone (:mod:`.metadata`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def make(**kw):
        return HistGradientBoostingClassifier(max_iter=200, random_state=0, **kw)

    grid = tuple(
        {"max_leaf_nodes": leaves, "learning_rate": lr} for leaves in (4, 15) for lr in (0.05, 0.2)
    )
    return Trainable("shortcut", make, grid, "gradient-boosted trees on file metadata")


def spectral_reference(
    scales: Sequence[Sequence[float]] = ((1.0,),),
    width: int = 0,
    balance: Sequence[float] = (0.0,),
) -> Trainable:
    """Standardised spectral features, L2 logistic regression (the shipped ``spectral``
    detector's classifier, retrained), C chosen from 0.01, 0.1, 1. With several ``scales``
    (each a leading part of the same list of factors, e.g. ``((1,), (1, 0.5))``) the features
    come as blocks of ``width`` columns, one block a factor in that list's order
    (:func:`aigcguard.detectors.spectral.multiscale_features`), and the inner CV also chooses
    how many leading blocks to use: setting ``scales``. With ``balance`` other than ``(0,)``
    it also chooses how the training pictures are weighted by group (:data:`BALANCE`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    longest = max(scales, key=len)
    for option in scales:
        if tuple(option) != tuple(longest[: len(option)]):
            raise ValueError(f"scales {list(option)} is not a leading part of {list(longest)}")
    if len(longest) > 1 and width < 1:
        raise ValueError("features at several scales need the width of one block of features")

    def make(C, scales=scales[0]):
        steps = [StandardScaler(), LogisticRegression(C=C, max_iter=5000)]
        if len(longest) > 1:
            # the leading blocks only: the views hold the features at every factor
            cols = len(scales) * width
            steps.insert(0, FunctionTransformer(lambda x: x[:, :cols]))
        return make_pipeline(*steps)

    balance = tuple(float(b) for b in balance)
    if not balance or any(not 0 <= b <= 1 for b in balance):
        raise ValueError(f"balance must offer powers between 0 and 1, not {list(balance)}")
    grid = tuple(
        {"C": c}
        | ({} if len(scales) == 1 else {"scales": tuple(option)})
        | ({} if balance == (0.0,) else {BALANCE: b})
        for b in balance
        for option in scales
        for c in (0.01, 0.1, 1.0)
    )
    return Trainable(
        "reference", make, grid, "spectral features, logistic regression",
        weight_param="logisticregression__sample_weight",
    )  # fmt: skip


def _raw(model, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(x), np.float64)
    p = np.clip(model.predict_proba(x)[:, 1], 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class FoldFit(JsonResult):
    """What one fold chose: its setting, the inner AUC of each setting, its calibration."""

    fold: str
    setting: Mapping[str, object]
    inner_auc: tuple[float, ...]
    calibration: Calibration
    n_train: int
    n_test: int


@dataclass(frozen=True)
class CrossValidated(JsonResult):
    """``scores[view]``: each picture's calibrated probability of "generated" from the fold
    that tested it (NaN for a picture no fold tested; the mean where several did);
    ``flagged[view]``: whether it reached its fold's threshold. ``fits``: one per fold."""

    model: str
    by: str
    scores: Mapping[str, np.ndarray] = field(metadata=NOT_JSON)
    flagged: Mapping[str, np.ndarray] = field(metadata=NOT_JSON)
    fits: tuple[FoldFit, ...] = ()


#: the part of a fold's setting that names the views it trained on, when the inner CV chose them
TRAIN_VIEWS = "train_views"
#: the part of a setting that weighs the training pictures by group (:func:`group_weights`)
BALANCE = "balance"


def group_weights(records: Sequence[Record], idx: np.ndarray, power: float) -> np.ndarray:
    """Training weights of the pictures ``idx``: each counts ``1 / n ** power``, ``n`` the
    number of pictures of its group among them (its generator family for a generated picture,
    its source for a real photo), each class's weights scaled to sum to its count. With 0
    every picture counts alike; with 1 every group does, so that the largest family and the
    largest photo set do not set the boundary for the groups a model has never seen."""
    groups = np.array(
        [f"{r.label}:{r.family if r.label else r.source}" for r in (records[i] for i in idx)],
        object,
    )
    labels = np.array([records[i].label for i in idx])
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse].astype(np.float64) ** power
    for c in (0, 1):
        m = labels == c
        if m.any():
            w[m] *= m.sum() / w[m].sum()
    return w


def _fit(trainable: Trainable, setting, views, train_views, idx, labels, records):
    setting = dict(setting)
    train_views = setting.pop(TRAIN_VIEWS, train_views)
    power = float(setting.pop(BALANCE, 0.0))
    x = np.concatenate([views[v][idx] for v in train_views])
    y = np.tile(labels[idx], len(train_views))
    model = trainable.make(**setting)
    if not power:
        return model.fit(x, y)
    if trainable.weight_param is None:
        raise ValueError(f"{trainable.name} takes no sample weights: it cannot balance groups")
    w = np.tile(group_weights(records, idx, power), len(train_views))
    return model.fit(x, y, **{trainable.weight_param: w})


def _settings(trainable: Trainable, train_view_choices) -> tuple[dict, ...]:
    """The grid the inner CV chooses from: the trainable's, times the training views offered."""
    if not train_view_choices:
        return tuple(dict(g) for g in trainable.grid)
    return tuple({**g, TRAIN_VIEWS: tuple(tv)} for tv in train_view_choices for g in trainable.grid)


def _calibrate(raw, labels, target_fpr=TARGET_FPR, groups=None) -> Calibration:
    try:
        return fit_calibration(raw, labels, target_fpr=target_fpr, groups=groups)
    except ValueError:
        # inner scores that do not separate the classes: no temperature can be fitted, so the
        # raw score goes through a plain sigmoid and the threshold still keeps target_fpr
        thr = real_quantile_threshold(Calibration().probability(raw), labels, target_fpr, groups)
        return Calibration(threshold=thr, target_fpr=target_fpr, uncertain_below=min(0.5, thr))


def _inner_splits(
    records: Sequence[Record], idx: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds of whole sources, the classes spread over them as evenly as the sources
    allow (scikit-learn's StratifiedGroupKFold, unshuffled: deterministic)."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.array([records[i].source for i in idx], object)
    labels = np.array([records[i].label for i in idx])
    k = min(INNER_FOLDS, len(set(groups)))
    if k < 2:
        raise ValueError("a fold's training set has a single source: no inner cross-validation")
    split = StratifiedGroupKFold(n_splits=k).split(idx, labels, groups=groups)
    return [(idx[a], idx[b]) for a, b in split]


def _choose(
    trainable, views, train_views, records, idx, labels, choose_view, calibrate_views,
    train_view_choices=None,
):  # fmt: skip
    """The grid setting with the best pooled inner out-of-fold AUC under ``choose_view``, and
    its inner scores under that view and each of ``calibrate_views`` (NaN for pictures no
    inner model could score: an inner training set of one class is passed over)."""
    from sklearn.metrics import roc_auc_score

    inner = [(tr, va) for tr, va in _inner_splits(records, idx) if len(set(labels[tr])) == 2]
    scored = np.zeros(len(labels), bool)
    for _, va in inner:
        scored[va] = True
    scored = scored[idx]
    if len(set(labels[idx][scored].tolist())) < 2:
        raise ValueError("no inner split could score both classes: too few sources")
    choose = _named(choose_view)
    wanted = list(dict.fromkeys([*choose, *calibrate_views]))
    best, aucs = None, []
    for setting in _settings(trainable, train_view_choices):
        raw = {v: np.full(len(labels), np.nan) for v in wanted}
        for tr, va in inner:
            model = _fit(trainable, setting, views, train_views, tr, labels, records)
            for v in wanted:
                raw[v][va] = _raw(model, views[v][va])
        auc = float(
            np.mean([roc_auc_score(labels[idx][scored], raw[v][idx][scored]) for v in choose])
        )
        aucs.append(auc)
        if best is None or auc > best[0]:
            best = (auc, setting, {v: r[idx] for v, r in raw.items()})
    return best[1], best[2], tuple(aucs)


def _named(views: str | Sequence[str]) -> tuple[str, ...]:
    """A view's name, or several, as a tuple."""
    return (views,) if isinstance(views, str) else tuple(views)


def _nested_fit(
    trainable, views, records, idx, labels, train_views, choose_view, target_fpr,
    calibrate_views=None, train_view_choices=None,
):  # fmt: skip
    choose_view = choose_view or train_views[0]
    calibrate_views = list(calibrate_views or _named(choose_view))
    setting, inner_raw, aucs = _choose(
        trainable, views, train_views, records, idx, labels, choose_view, calibrate_views,
        train_view_choices,
    )  # fmt: skip
    raw = np.concatenate([inner_raw[v] for v in calibrate_views])
    lab = np.tile(labels[idx], len(calibrate_views))
    groups = np.repeat(np.array(calibrate_views, object), len(idx))
    ok = np.isfinite(raw)
    cal = _calibrate(raw[ok], lab[ok], target_fpr, groups[ok] if len(calibrate_views) > 1 else None)
    model = _fit(trainable, setting, views, train_views, idx, labels, records)
    return model, cal, setting, aucs


def _one_thread_fit(*args):
    """:func:`_nested_fit` with its fits on :data:`FIT_THREADS` threads (in this process, or
    in a worker of :func:`cross_validated_scores`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=FIT_THREADS):
        return _nested_fit(*args)


def fit_nested(
    trainable: Trainable,
    views: Mapping[str, np.ndarray],
    records: Sequence[Record],
    idx: np.ndarray,
    *,
    train_views: Sequence[str] | None = None,
    choose_view: str | None = None,
    calibrate_views: Sequence[str] | None = None,
    train_view_choices: Sequence[Sequence[str]] | None = None,
    target_fpr: float = TARGET_FPR,
):
    """What one fold of :func:`cross_validated_scores` makes of the pictures ``idx``: the
    setting chosen by the inner CV of whole sources, the model fitted with it on all of
    ``idx``, and its calibration from the inner out-of-fold scores. The same recipe on every
    picture is how a model that was cross-validated this way ships. Returns (model,
    calibration, setting, the inner AUC of each setting)."""
    train_views = _check_views(
        views, records, train_views, choose_view, calibrate_views, train_view_choices
    )
    labels = np.array([r.label for r in records], np.int64)
    return _one_thread_fit(
        trainable, views, records, np.asarray(idx), labels, train_views, choose_view,
        target_fpr, calibrate_views, train_view_choices,
    )  # fmt: skip


def _check_views(views, records, train_views, choose_view, calibrate_views, train_view_choices):
    """The training views to use (the first choice's, or the first view, when none is given),
    once every view named is one of ``views`` and every view has a row a record."""
    names = list(views)
    for v in names:
        if len(views[v]) != len(records):
            raise ValueError(f"view {v!r} has {len(views[v])} rows for {len(records)} records")
    if choose_view is not None and (
        not _named(choose_view) or any(v not in views for v in _named(choose_view))
    ):
        raise ValueError(f"choose_view {choose_view!r} is not one of the views {names}")
    for what, named in (
        ("train_views", list(train_views or ())),
        ("calibrate_views", list(calibrate_views or ())),
        ("train_view_choices", [v for c in train_view_choices or () for v in c]),
    ):
        unknown = [v for v in named if v not in views]
        if unknown:
            raise ValueError(f"{what} {unknown} are not among the views {names}")
    if train_view_choices is not None and not all(train_view_choices):
        raise ValueError("train_view_choices must offer at least one view in each choice")
    if train_views:
        return list(train_views)
    return list(train_view_choices[0]) if train_view_choices else names[:1]


def cross_validated_scores(
    trainable: Trainable,
    views: Mapping[str, np.ndarray],
    records: Sequence[Record],
    folds: Sequence[Fold],
    *,
    train_views: Sequence[str] | None = None,
    choose_view: str | None = None,
    calibrate_views: Sequence[str] | None = None,
    train_view_choices: Sequence[Sequence[str]] | None = None,
    target_fpr: float = TARGET_FPR,
    log: Callable[[str], None] | None = None,
    n_jobs: int = 1,
) -> CrossValidated:
    """Out-of-fold calibrated scores of ``trainable`` under every view (see the module
    docstring). ``views``: name -> N x D features of the N records; ``train_views``: which
    of them it trains on (default: the first); ``choose_view``: the view whose inner
    out-of-fold scores choose the setting and calibrate (default: the first training view;
    a model trained on random re-encodings is best calibrated on the condition it will be
    read under); ``calibrate_views``: calibrate on the inner scores of these views pooled
    instead, the threshold the strictest of theirs, so that each keeps ``target_fpr`` (a
    picture may reach the detector as stored, re-encoded, as a screenshot or cropped);
    ``train_view_choices``: sets of views to train on that the inner CV chooses from with
    the grid (the chosen set is the setting's ``"train_views"``; ``train_views`` then only
    names the default ``choose_view``); ``target_fpr``: the share of inner real pictures a
    fold's threshold lets through; ``n_jobs``: folds fitted at once, each in a process of its
    own with one thread (the results are the same whatever the number)."""
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, not {n_jobs}")
    train_views = _check_views(
        views, records, train_views, choose_view, calibrate_views, train_view_choices
    )
    labels = np.array([r.label for r in records], np.int64)
    check_folds(records, folds)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=FIT_THREADS):
        return _cross_validate(
            trainable, views, records, folds, labels, train_views, log, choose_view, target_fpr,
            calibrate_views, train_view_choices, n_jobs,
        )  # fmt: skip


def _cross_validate(
    trainable,
    views,
    records,
    folds,
    labels,
    train_views,
    log,
    choose_view=None,
    target_fpr=TARGET_FPR,
    calibrate_views=None,
    train_view_choices=None,
    n_jobs=1,
) -> CrossValidated:
    names = list(views)
    total = {v: np.zeros(len(records)) for v in names}
    hits = {v: np.zeros(len(records)) for v in names}
    count = np.zeros(len(records))
    fits = []
    args = (views, records)
    rest = (labels, train_views, choose_view, target_fpr, calibrate_views, train_view_choices)
    if n_jobs == 1:
        done = (_nested_fit(trainable, *args, f.train, *rest) for f in folds)
    else:
        from joblib import Parallel, delayed

        # loky gives each worker cpu_count // n_jobs threads; the fits want one (FIT_THREADS)
        run = Parallel(n_jobs=n_jobs, return_as="generator", max_nbytes="1M")
        done = run(delayed(_one_thread_fit)(trainable, *args, f.train, *rest) for f in folds)
    for n, (fold, (model, cal, setting, aucs)) in enumerate(zip(folds, done, strict=True), 1):
        for v in names:
            p = cal.probability(_raw(model, views[v][fold.test]))
            total[v][fold.test] += p
            hits[v][fold.test] += p >= cal.threshold
        count[fold.test] += 1
        fits.append(FoldFit(fold.name, dict(setting), aucs, cal, len(fold.train), len(fold.test)))
        if log:
            log(f"{trainable.name} {fold.by} fold {n}/{len(folds)} ({fold.name}): {dict(setting)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = {v: total[v] / count for v in names}
        flagged = {v: hits[v] / count >= 0.5 for v in names}
    by = folds[0].by if folds else ""
    return CrossValidated(trainable.name, by, scores, flagged, tuple(fits))
