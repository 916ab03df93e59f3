"""Point estimates and 95% intervals for AUC, TPR at a fixed FPR and rates at a threshold.

Bootstrap (:func:`bootstrap_metrics`): the real and the generated pictures are resampled
separately (each class keeps its size), ``n`` times with a fixed seed, and the interval is
the 2.5th and 97.5th percentiles of the resampled values. A resample is a vector of
multinomial counts over the pictures, so every statistic is a weighted sum over the pictures
as they are: AUC is ``w_real . H . w_generated / (n_real n_generated)`` with ``H[i, j] = 1``
when generated picture ``j`` scores above real picture ``i`` (0.5 on a tie), the
Mann-Whitney statistic, exactly :func:`sklearn.metrics.roc_auc_score`; TPR at ``a`` FPR is the
share of generated pictures scoring above the ``(floor(a n_real) + 1)``-th highest real
score of the resample, the largest TPR on the ROC curve whose FPR is at most ``a`` (as
:func:`aigcguard.detectors.metrics.binary_metrics` reads it).

A rate at a threshold (the share of a group's real photos flagged ``likely_generated``, or of
its generated pictures) is a binomial proportion: its interval is Clopper-Pearson's exact
one (:func:`clopper_pearson`), which never claims more than the count allows (0 of 40 flagged
is "at most 8.8%", not "0%").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aigcguard.results import JsonResult

#: resamples behind each interval: the percentiles of 1,000 resamples move by about 0.005 AUC
#: from one seed to another on 50 + 50 pictures
N_BOOTSTRAP = 1000
LEVEL = 0.95
#: the false-positive rates at which a TPR is reported
FPRS = (0.01, 0.05)
#: generated pictures' comparison matrix H is built in chunks of this many cells
_CHUNK = 4_000_000


@dataclass(frozen=True)
class Estimate(JsonResult):
    """A value with its 95% interval [``low``, ``high``]."""

    value: float
    low: float
    high: float

    def cell(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact two-sided interval of a binomial proportion ``k / n``."""
    from scipy.stats import beta

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def rate(flags: np.ndarray, level: float = LEVEL) -> Estimate | None:
    """The share of True in ``flags`` with its Clopper-Pearson interval (None when empty)."""
    flags = np.asarray(flags, bool)
    if flags.size == 0:
        return None
    k, n = int(flags.sum()), int(flags.size)
    return Estimate(k / n, *clopper_pearson(k, n, level))


def _weights(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """``draws`` x ``n`` multinomial counts (each row sums to n), row 0 all ones (the
    sample itself)."""
    w = np.ones((draws + 1, n))
    if draws:
        w[1:] = rng.multinomial(n, np.full(n, 1.0 / n), size=draws)
    return w


def _auc(real: np.ndarray, gen: np.ndarray, w_real: np.ndarray, w_gen: np.ndarray) -> np.ndarray:
    """AUC of every weight row (see the module docstring)."""
    out = np.zeros(len(w_real))
    step = max(1, _CHUNK // max(1, len(real)))
    for start in range(0, len(gen), step):
        g = gen[start : start + step]
        h = (g[None, :] > real[:, None]) + 0.5 * (g[None, :] == real[:, None])
        out += np.einsum("bi,ij,bj->b", w_real, h, w_gen[:, start : start + step], optimize=True)
    return out / (len(real) * len(gen))


def _tpr_at(real: np.ndarray, gen: np.ndarray, w_real, w_gen, fpr: float) -> np.ndarray:
    """TPR at ``fpr`` of every weight row (see the module docstring)."""
    n_real = len(real)
    k = int(np.floor(fpr * n_real + 1e-9))  # false positives allowed
    if k >= n_real:
        return np.ones(len(w_real))
    order = np.argsort(-real, kind="stable")
    cum = np.cumsum(w_real[:, order], axis=1)
    # the (k + 1)-th highest real score of each resample: where the cumulated count passes k
    cut = real[order][np.argmax(cum > k + 0.5 - 1e-9, axis=1)]
    gen_order = np.argsort(gen, kind="stable")
    g_sorted = gen[gen_order]
    cum_gen = np.concatenate([np.zeros((len(w_gen), 1)), np.cumsum(w_gen[:, gen_order], axis=1)], 1)
    above_from = np.searchsorted(g_sorted, cut, side="right")
    rows = np.arange(len(w_gen))
    return (cum_gen[:, -1] - cum_gen[rows, above_from]) / len(gen)


def bootstrap_metrics(
    real_scores,
    generated_scores,
    *,
    n: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = LEVEL,
    fprs: tuple[float, ...] = FPRS,
) -> dict[str, Estimate]:
    """``auc`` and ``tpr_at_{100 fpr:g}fpr`` (``tpr_at_1fpr``, ``tpr_at_5fpr``) of the scores,
    each with its bootstrap interval (see the module docstring). Scores: higher = generated."""
    real = np.asarray(real_scores, np.float64).reshape(-1)
    gen = np.asarray(generated_scores, np.float64).reshape(-1)
    if len(real) == 0 or len(gen) == 0:
        raise ValueError(f"need both classes; got {len(real)} real and {len(gen)} generated")
    if not (np.isfinite(real).all() and np.isfinite(gen).all()):
        raise ValueError("scores must be finite")
    if n < 0:
        raise ValueError(f"the number of resamples must be at least 0, got {n}")
    rng = np.random.default_rng(seed)
    w_real, w_gen = _weights(rng, len(real), n), _weights(rng, len(gen), n)
    values = {"auc": _auc(real, gen, w_real, w_gen)}
    for a in fprs:
        values[f"tpr_at_{100 * a:g}fpr"] = _tpr_at(real, gen, w_real, w_gen, a)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for name, v in values.items():
        draws = v[1:] if n else v[:1]
        out[name] = Estimate(float(v[0]), *(float(q) for q in np.percentile(draws, [lo, hi])))
    return out
