"""Prediction and interpretability metrics (see docs/ARCHITECTURE.md).

* ``auc_accuracy``: pooled ROC AUC (scikit-learn) and accuracy at ``p >= 0.5``.
* ``per_student_correlation``: Pearson r per student, averaged, with a bootstrap 95% CI over
  students (``summarize_mean``); ``fisher_ci`` is kept for a single pooled r only.
* ``partial_correlation_or_none`` / ``auc_or_none``: per-student concept-level statistics
  (see docs/metrics.md).
* ``violation_rates``: share of students whose mastery/gain trajectories break the
  model's own constraints (monotone mastery, non-negative gains, mastery in [0, 1]).
* ``stratified_sample``: deterministic, length-stratified subset of students.
* ``head_statistics``: mean, variance and skewness of a head's outputs.
* ``saturation``: how much of a set of mastery series sits at the clamp (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

TOLERANCE = 1e-6  # float32 round-off must not count as a violation
_R_CLIP = 0.999999  # keeps atanh finite for |r| = 1
_Z95 = 1.959963984540054
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # recorded in every summary (``interval``) so the CI can be recomputed


def auc_accuracy(y_true, y_prob) -> tuple[float, float]:
    """Return ``(AUC, accuracy)`` over all given predictions, pooled.

    AUC is ``sklearn.metrics.roc_auc_score``; it is NaN when only one class is present
    (AUC is undefined then) and both values are NaN for empty input. Accuracy counts
    ``p >= 0.5`` as predicting 1.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but y_prob has {p.size}")
    if y.size == 0:
        return math.nan, math.nan
    acc = float(np.mean((p >= 0.5) == (y >= 0.5)))
    auc = float(roc_auc_score(y, p)) if np.unique(y).size == 2 else math.nan
    return auc, acc


@dataclass
class CorrelationSummary:
    """A mean over students, the number of students used, and a 95% CI of that mean.

    ``interval`` says how the CI was computed: ``"bootstrap-bca(resamples=2000,seed=0)"`` (a
    bootstrap over students, scipy.stats.bootstrap), ``"degenerate"`` (all values equal) or
    ``"none"`` (fewer than 3 students: NaN bounds).
    """

    mean: float
    n: int
    ci_low: float
    ci_high: float
    interval: str = "none"

    def to_dict(self) -> dict:
        """Return the fields as a plain dict."""
        return asdict(self)


def summarize_mean(values, *, seed: int = BOOTSTRAP_SEED, n_resamples: int = BOOTSTRAP_RESAMPLES,
                   method: str = "BCa") -> CorrelationSummary:
    """Mean of the finite ``values`` (one per student) with a seeded bootstrap 95% CI over students.

    ``method`` is scipy.stats.bootstrap's (``"BCa"``, ``"percentile"``, ``"basic"``) or ``"t"`` for
    the Student-t interval ``mean -/+ t_{0.975, n-1} * sd / sqrt(n)``. NaN bounds when n < 3
    (a resample of two values says nothing); ``(mean, mean)`` when all values are equal.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return CorrelationSummary(math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 3:
        return CorrelationSummary(mean, int(x.size), math.nan, math.nan)
    if np.ptp(x) == 0:
        return CorrelationSummary(mean, int(x.size), mean, mean, "degenerate")
    if method == "t":
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
        return CorrelationSummary(mean, int(x.size), mean - half, mean + half, "t")
    res = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=n_resamples,
                          method=method, rng=np.random.default_rng(seed), vectorized=True)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return CorrelationSummary(mean, int(x.size), low, high,
                              f"bootstrap-{method.lower()}(resamples={n_resamples},seed={seed})")


def pearson_or_none(x: np.ndarray, y: np.ndarray) -> float | None:
    """Return Pearson r of two series over their finite pairs, or None when undefined.

    Undefined means fewer than 3 finite pairs or either series constant.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"series of different lengths: {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    # Relative threshold: a series that only varies by round-off counts as constant.
    if sxx <= 1e-24 * max(1.0, float(x @ x)) or syy <= 1e-24 * max(1.0, float(y @ y)):
        return None
    return float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))


TIME_CONTROL_DEGREE = 3  # the time control removes a cubic in the step index (a clamped ramp bends)


def partial_correlation_or_none(x: np.ndarray, y: np.ndarray, control: np.ndarray,
                                degree: int = TIME_CONTROL_DEGREE) -> float | None:
    """Pearson r of ``x`` and ``y`` after removing a polynomial in ``control`` from each (or None).

    The residuals of the least-squares fits ``x ~ sum_k a_k s^k`` and ``y ~ sum_k b_k s^k``
    (k = 0..degree, ``s = control / max|control|``) are correlated; with ``degree=1`` this is the
    textbook first-order partial correlation. The default cubic also removes a ramp that
    saturates (mastery is clamped at 1). None when undefined (see ``pearson_or_none``), e.g. when
    ``x`` is itself such a polynomial of ``control``, or with fewer than ``degree + 3`` points.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    x, y, c = x[keep], y[keep], c[keep]
    if x.size < degree + 3:
        return None
    s = c / max(float(np.abs(c).max()), 1e-12)
    design = np.column_stack([s**k for k in range(degree + 1)])
    xy = np.column_stack([x, y])
    coef, *_ = np.linalg.lstsq(design, xy, rcond=None)
    resid = xy - design @ coef
    # A residual that is round-off of a series explained by the control counts as constant.
    scale = np.maximum(np.abs(xy).max(axis=0), 1.0)
    if (np.abs(resid).max(axis=0) <= 1e-9 * scale).any():
        return None
    return pearson_or_none(resid[:, 0], resid[:, 1])


def auc_or_none(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` as a predictor of binary ``y_true``, or None with only one class.

    Computed as the Mann-Whitney statistic ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with
    average ranks for ties (scipy.stats.rankdata): the same value as sklearn's roc_auc_score
    without its per-call input validation, which dominated per-student use.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(score, dtype=np.float64).ravel()
    keep = np.isfinite(y) & np.isfinite(p)
    pos = y[keep] >= 0.5
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(p[keep])
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    """95% CI of ONE correlation estimated from n independent pairs: ``tanh(atanh(r) -/+ 1.96/sqrt(n-3))``.

    Not an interval of a mean of per-student correlations (use ``summarize_mean`` for that).
    NaN bounds when n <= 3.
    """
    if n <= 3 or not math.isfinite(r):
        return math.nan, math.nan
    z = math.atanh(max(-_R_CLIP, min(_R_CLIP, r)))
    half = _Z95 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def per_student_correlation(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                            controls: Sequence[np.ndarray] | None = None) -> CorrelationSummary:
    """Return the mean Pearson correlation over students with its n and a bootstrap 95% CI.

    A student counts when the two series have >= 3 finite pairs and neither is constant;
    others are skipped, so the mean is never NaN because of them. ``mean`` is the plain
    average of the per-student r; the CI is ``summarize_mean`` over those r (a seeded bootstrap
    over students). With ``controls`` (one series per student) the per-student statistic is the
    partial correlation with the control removed. With no usable student, mean is NaN and n is 0.
    """
    if len(xs) != len(ys) or (controls is not None and len(controls) != len(xs)):
        raise ValueError(f"{len(xs)} x-series but {len(ys)} y-series")
    if controls is None:
        rs = [pearson_or_none(x, y) for x, y in zip(xs, ys, strict=True)]
    else:
        rs = [partial_correlation_or_none(x, y, c) for x, y, c in zip(xs, ys, controls, strict=True)]
    return summarize_mean([r for r in rs if r is not None])


def per_student_auc(ys: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> CorrelationSummary:
    """Mean over students of the per-student AUC of ``scores`` predicting ``ys`` (bootstrap CI)."""
    aucs = [auc_or_none(y, p) for y, p in zip(ys, scores, strict=True)]
    return summarize_mean([a for a in aucs if a is not None])


def true_mastery_correlation(
    pred_list: Sequence[np.ndarray], true_list: Sequence[np.ndarray]
) -> CorrelationSummary:
    """Return the per-student correlation between predicted and true mastery series."""
    return per_student_correlation(pred_list, true_list)


SATURATION_LEVEL = 1.0 - 1e-6  # a mastery value at or above this sits at the clamp (1, up to float32 round-off)


def saturation(series: Sequence[np.ndarray], steps: Sequence[np.ndarray] | None = None) -> dict[str, float | int]:
    """How much of a set of mastery series sits at the clamp.

    ``series`` holds one array per segment (a window, or a whole student), ``steps`` the step index of
    each value inside its segment (default 0, 1, ...). Returns ``saturated_share`` (share of all values,
    pooled, that are >= ``SATURATION_LEVEL``), ``reached_share`` (share of segments with at least one
    such value), ``steps_median`` (median over those segments of the step of the first one) and
    ``segments`` (how many segments have values). Shares and the median are NaN when undefined.
    """
    values, total, reached, first = 0, 0, 0, []
    for i, x in enumerate(series):
        x = np.asarray(x, dtype=np.float64).ravel()
        if not x.size:
            continue
        total += 1
        at = x >= SATURATION_LEVEL
        values += int(at.sum())
        if at.any():
            reached += 1
            k = int(np.argmax(at))
            first.append(float(np.asarray(steps[i]).ravel()[k]) if steps is not None else float(k))
    n_values = sum(int(np.asarray(x).size) for x in series)
    return {
        "saturated_share": values / n_values if n_values else math.nan,
        "reached_share": reached / total if total else math.nan,
        "steps_median": float(np.median(first)) if first else math.nan,
        "segments": total,
    }


def violation_flags(mastery: torch.Tensor, gains: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, on the tensors' device: [B, 3] bools (monotonicity, negative gain, bounds).

    ``mastery``/``gains`` are [B, T, C], ``mask`` [B, T] marks valid positions. Monotonicity: the
    mean-over-concepts mastery drops by more than 1e-6 between consecutive valid steps; negative
    gain: any gain below -1e-6; bounds: any mastery outside [-1e-6, 1 + 1e-6].
    """
    mean_m = mastery.mean(-1)
    pairs = mask[:, 1:] & mask[:, :-1]
    mono = ((mean_m[:, :-1] - mean_m[:, 1:] > TOLERANCE) & pairs).any(-1)
    neg = ((gains < -TOLERANCE).any(-1) & mask).any(-1)
    bounds = (((mastery < -TOLERANCE) | (mastery > 1 + TOLERANCE)).any(-1) & mask).any(-1)
    return torch.stack([mono, neg, bounds], -1)


def violation_rates(
    mastery: Sequence[np.ndarray], gains: Sequence[np.ndarray] | None = None
) -> dict[str, float | int]:
    """Return the share of students with each kind of violation, plus ``students``.

    Per student (``mastery`` and ``gains`` are ``[L, C]``):
    ``monotonicity_violation_rate`` - the mean-over-concepts mastery drops by more than
    1e-6 between consecutive steps; ``negative_gain_rate`` - any gain below -1e-6;
    ``bounds_violation_rate`` - any mastery outside [-1e-6, 1 + 1e-6]. Each student
    counts at most once per kind. Rates are NaN when there are no students, and the
    gain rate is NaN when ``gains`` is None.
    """
    n = len(mastery)
    if gains is not None and len(gains) != n:
        raise ValueError(f"{n} mastery arrays but {len(gains)} gain arrays")
    mono = bounds = neg = 0
    for i, m in enumerate(mastery):
        m_t = torch.as_tensor(np.asarray(m, dtype=np.float64)).reshape(len(m), -1).unsqueeze(0)
        g_t = (torch.as_tensor(np.asarray(gains[i], dtype=np.float64)).reshape(len(m), -1).unsqueeze(0)
               if gains is not None else torch.zeros_like(m_t))
        flags = violation_flags(m_t, g_t, torch.ones(m_t.shape[:2], dtype=torch.bool))[0]
        mono, neg, bounds = mono + int(flags[0]), neg + int(flags[1]), bounds + int(flags[2])
    rate = (lambda k: k / n) if n else (lambda k: math.nan)
    return {
        "monotonicity_violation_rate": rate(mono),
        "negative_gain_rate": rate(neg) if gains is not None else math.nan,
        "bounds_violation_rate": rate(bounds),
        "students": n,
    }


def stratified_sample(lengths: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Return k sorted student indices drawn evenly across length deciles (deterministic).

    Students are put in decile bins of their sequence length; each non-empty bin gets an
    equal share of k (bins too small to fill their share pass the rest on, lowest bins
    first take any remainder), drawn without replacement with
    ``numpy.random.default_rng(seed)``. All indices when ``k >= len(lengths)``.
    """
    lengths = np.asarray(lengths).ravel()
    n = lengths.size
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(lengths, np.linspace(0.1, 0.9, 9))
    bins = np.searchsorted(edges, lengths, side="right")
    members = [np.flatnonzero(bins == b) for b in range(10)]
    members = [m for m in members if m.size]
    quota = _allocate(np.array([m.size for m in members]), k)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(m, size=q, replace=False) for m, q in zip(members, quota, strict=True) if q]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _allocate(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split k into per-bin counts as equal as possible without exceeding any bin's size."""
    quota = np.zeros(len(sizes), dtype=np.int64)
    left = k
    while left > 0:
        open_bins = np.flatnonzero(quota < sizes)
        share, extra = divmod(left, len(open_bins))
        add = np.full(len(open_bins), share, dtype=np.int64)
        add[:extra] += 1
        add = np.minimum(add, sizes[open_bins] - quota[open_bins])
        quota[open_bins] += add
        left -= int(add.sum())
    return quota


LOSS_TERMS = ("bce", "constraint", "alignment", "lag", "retention")  # total = their sum


def loss_abs_shares(means: dict[str, float | None]) -> dict[str, float]:
    """``{term}_abs_share = |mean term| / sum over LOSS_TERMS of |mean term|``: non-negative, sum 1.

    The weighted terms of ``total`` can be negative (alignment and lag reward correlation), so
    ``term / total`` shares are signed and need not lie in [0, 1]; these show each term's part of
    the objective's magnitude. NaN when every term is 0 or missing.
    """
    mags = {k: abs(float(means.get(k) or 0.0)) for k in LOSS_TERMS}
    total = sum(mags.values())
    return {f"{k}_abs_share": (v / total if total > 0 else math.nan) for k, v in mags.items()}


def head_statistics(values) -> dict[str, float | int]:
    """Return ``{"mean", "variance", "skewness", "count"}`` of a flat array (population moments).

    Skewness is ``E[(x - mean)^3] / variance^1.5``, 0 for a constant array; all NaN when empty.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return {"mean": math.nan, "variance": math.nan, "skewness": math.nan, "count": 0}
    mean = float(x.mean())
    centered = x - mean
    var = float(np.mean(centered**2))
    skew = float(np.mean(centered**3) / var**1.5) if var > 0 else 0.0
    return {"mean": mean, "variance": var, "skewness": skew, "count": int(x.size)}
