"""Loss terms of GainAKT2Exp, their settings, and the per-epoch schedule of their weights.

Every term of the launch guide is here, with the reference's defects fixed (docs/losses.md gives each
formula and how it differs from the reference):

* every term is computed over valid positions only (``batch.mask``); padding never affects a loss;
* one time convention for all terms: the model's output at position t is about the *next*
  interaction, so the "relevant" mastery/gain at t is that of concept ``qry[t]`` and it is judged
  against ``target[t]`` (the response at t+1). The reference used ``q[t]``/``r[t]``, which the model
  has already seen in its input token at t;
* correlations (alignment, retention, lag) are Pearson correlations *per student row*, averaged over
  rows, and they carry gradient (retention and lag included);
* a term whose weight is 0 (or whose flag is off) is not computed at all.

Batch contract (``gainakt.data.SequenceSet`` or any object/dict with these [B, T] tensors):
``q`` concept at t, ``r`` response at t, ``qry`` concept at t+1, ``target`` response at t+1 (float),
``mask`` valid positions (bool).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gainakt.config import (
    ABLATION_FLAGS,
    ABLATION_MODES,
    AlignmentConfig,
    InterpretabilityConfig,
    RetentionLagConfig,
    SchedulingConfig,
    StabilityConfig,
    TrainConfig,
    check_value,
    field_default,
    resolve_ablation,
)

__all__ = [
    "ABLATION_FLAGS",
    "ABLATION_MODES",
    "CONSTRAINT_TERMS",
    "EpochWeights",
    "LossSchedule",
    "LossSettings",
    "alignment_loss",
    "bce_loss",
    "compute_losses",
    "consistency_loss",
    "gain_performance_loss",
    "lag_gain_loss",
    "mastery_performance_loss",
    "mastery_variance",
    "monotonicity_loss",
    "non_negative_loss",
    "pooled_pearson",
    "residualise_rows",
    "resolve_ablation",
    "retention_loss",
    "rowwise_pearson",
    "sparsity_loss",
]

# ---------------------------------------------------------------------------------------------
# Ablation modes
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

CONSTRAINT_TERMS = (
    "monotonicity",
    "non_negative",
    "mastery_performance",
    "gain_performance",
    "sparsity",
    "consistency",
)


_LOSS_SECTIONS = (InterpretabilityConfig, AlignmentConfig, RetentionLagConfig, SchedulingConfig, StabilityConfig)


def _d(name: str) -> Any:
    """The default of loss parameter ``name``, as its config section declares it (gainakt.config)."""
    return field_default(_owner(name), name)


def _owner(name: str) -> Any:
    """The config section class that declares loss parameter ``name``."""
    for section in _LOSS_SECTIONS:
        if name in section.__dataclass_fields__:
            return section
    raise KeyError(name)


@dataclass
class LossSettings:
    """Every loss, alignment, retention, lag and schedule parameter, named as its CLI flag.

    Defaults and rules are those of the config sections in ``gainakt.config`` (the launch guide's,
    ablation mode both_lag); this flat view is what the loss schedule reads.
    """

    # the six constraint losses
    monotonicity_loss_weight: float = _d("monotonicity_loss_weight")
    mastery_performance_loss_weight: float = _d("mastery_performance_loss_weight")
    gain_performance_loss_weight: float = _d("gain_performance_loss_weight")
    sparsity_loss_weight: float = _d("sparsity_loss_weight")
    consistency_loss_weight: float = _d("consistency_loss_weight")
    non_negative_loss_weight: float = _d("non_negative_loss_weight")
    enhanced_constraints: bool = _d("enhanced_constraints")
    warmup_constraint_epochs: int = _d("warmup_constraint_epochs")
    enable_cosine_perf_schedule: bool = _d("enable_cosine_perf_schedule")
    # alignment
    enable_alignment_loss: bool = _d("enable_alignment_loss")
    alignment_weight: float = _d("alignment_weight")
    alignment_warmup_epochs: int = _d("alignment_warmup_epochs")
    adaptive_alignment: bool = _d("adaptive_alignment")
    alignment_min_correlation: float = _d("alignment_min_correlation")
    alignment_share_cap: float = _d("alignment_share_cap")
    alignment_share_decay_factor: float = _d("alignment_share_decay_factor")
    enable_global_alignment_pass: bool = _d("enable_global_alignment_pass")
    alignment_global_students: int = _d("alignment_global_students")
    use_residual_alignment: bool = _d("use_residual_alignment")
    alignment_residual_window: int = _d("alignment_residual_window")
    # retention
    enable_retention_loss: bool = _d("enable_retention_loss")
    retention_weight: float = _d("retention_weight")
    retention_delta: float = _d("retention_delta")
    # lag gain
    enable_lag_gain_loss: bool = _d("enable_lag_gain_loss")
    lag_gain_weight: float = _d("lag_gain_weight")
    lag_max_lag: int = _d("lag_max_lag")
    lag_l1_weight: float = _d("lag_l1_weight")
    lag_l2_weight: float = _d("lag_l2_weight")
    lag_l3_weight: float = _d("lag_l3_weight")
    # consistency rebalance
    consistency_rebalance_epoch: int = _d("consistency_rebalance_epoch")
    consistency_rebalance_threshold: float = _d("consistency_rebalance_threshold")
    consistency_rebalance_new_weight: float = _d("consistency_rebalance_new_weight")
    # variance floor
    variance_floor: float = _d("variance_floor")
    variance_floor_patience: int = _d("variance_floor_patience")
    variance_floor_reduce_factor: float = _d("variance_floor_reduce_factor")
    freeze_sparsity: bool = _d("freeze_sparsity")
    # reference semantics (each default is our fixed behaviour; docs/losses.md "Reference semantics")
    constraints_over_padding: bool = _d("constraints_over_padding")
    constraints_current_step: bool = _d("constraints_current_step")
    pooled_correlations: bool = _d("pooled_correlations")
    alignment_max_students: int | None = _d("alignment_max_students")
    retention_detached: bool = _d("retention_detached")
    lag_detached: bool = _d("lag_detached")
    variance_floor_per_batch: bool = _d("variance_floor_per_batch")

    def __post_init__(self) -> None:
        """The sections' rules, one per parameter (e.g. lag_max_lag 1-3, weights >= 0)."""
        for f in fields(self):
            section = _owner(f.name)
            declared = section.__dataclass_fields__[f.name]
            problem = check_value(typing.get_type_hints(section)[f.name], declared.metadata, getattr(self, f.name))
            if problem:
                raise ValueError(f"{section.SECTION}.{f.name}: {problem}")

    @classmethod
    def from_config(cls, config: TrainConfig) -> LossSettings:
        """The flat loss view of a typed training config."""
        return cls(**config.loss_fields())

    @classmethod
    def from_flat(cls, d: Mapping[str, Any]) -> LossSettings:
        """Build settings from a flat parameter dict, ignoring keys this class does not own.

        A value of None keeps the default. If ``d`` has ``ablation_mode``, the four objective flags
        come from ``resolve_ablation(d["ablation_mode"], <those flags in d>)``.
        """
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names and v is not None}
        mode = d.get("ablation_mode")
        if mode is not None:
            kwargs.update(resolve_ablation(mode, {k: d.get(k) for k in ABLATION_FLAGS}))
        return cls(**kwargs)

    def lag_weights(self) -> tuple[float, ...]:
        """Weights of lags 1..lag_max_lag."""
        return (self.lag_l1_weight, self.lag_l2_weight, self.lag_l3_weight)[: self.lag_max_lag]


@dataclass
class EpochWeights:
    """Effective weights of one epoch (the output of ``LossSchedule.begin_epoch``).

    A weight of 0 switches its term off (it is then not computed).
    """

    epoch: int = 0
    warmup_scale: float = 1.0  # scale of the two performance constraints
    alignment_warmup_scale: float = 1.0
    monotonicity: float = 0.0
    non_negative: float = 0.0
    mastery_performance: float = 0.0
    gain_performance: float = 0.0
    sparsity: float = 0.0
    consistency: float = 0.0
    # alignment: current (decayed) base weight x warm-up x adaptive boost when its reference is known
    alignment: float = 0.0
    alignment_boost: float = 1.0  # already included in `alignment`
    # adaptive boost wanted but no epoch-level reference yet: boost from the batch's own correlation
    alignment_boost_from_batch: bool = False
    alignment_min_correlation: float = 0.05
    use_residual_alignment: bool = False
    alignment_residual_window: int = 5
    lag: float = 0.0
    lag_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    retention: float = 0.0
    retention_peak: float | None = None
    retention_delta: float = 0.005
    variance_floor: float = 1e-4
    gain_scale: float = 0.1
    # reference semantics (all off: our fixed behaviour)
    constraints_over_padding: bool = False
    constraints_current_step: bool = False
    pooled_correlations: bool = False
    alignment_max_students: int | None = None
    retention_detached: bool = False
    lag_detached: bool = False

    @property
    def alignment_active(self) -> bool:
        return self.alignment > 0

    @property
    def lag_active(self) -> bool:
        return self.lag > 0 and any(w > 0 for w in self.lag_weights)

    @property
    def retention_active(self) -> bool:
        return self.retention > 0 and self.retention_peak is not None

    def as_dict(self) -> dict[str, Any]:
        """All fields plus the three ``*_active`` properties (JSON-ready)."""
        d = asdict(self)
        d["lag_weights"] = list(self.lag_weights)
        d.update(
            alignment_active=self.alignment_active,
            lag_active=self.lag_active,
            retention_active=self.retention_active,
        )
        return d


# ---------------------------------------------------------------------------------------------
# Loss terms. Each returns an *unweighted* scalar; `compute_losses` weights them.
# ---------------------------------------------------------------------------------------------


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (broadcast to values) is true; 0 when nothing is selected."""
    mask = mask.expand_as(values)
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / mask.sum().clamp(min=1)


def _pairs(mask: Tensor) -> Tensor:
    """[B, T-1] mask of consecutive valid positions (t-1, t)."""
    return mask[:, 1:] & mask[:, :-1]


def bce_loss(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy with logits, mean over valid positions (0 if there are none)."""
    per_position = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return _masked_mean(per_position, mask)


def monotonicity_loss(mastery: Tensor, mask: Tensor) -> Tensor:
    """mean relu(m_{t-1} - m_t) over consecutive valid positions and all concepts.

    Zero by construction for this model (mastery is a clamped cumulative sum of non-negative gains);
    kept as a guard for head variants that are not monotone by construction.
    """
    drop = F.relu(mastery[:, :-1] - mastery[:, 1:])
    return _masked_mean(drop, _pairs(mask).unsqueeze(-1))


def non_negative_loss(gains: Tensor, mask: Tensor) -> Tensor:
    """mean relu(-g) over valid positions and all concepts (zero for ReLU gains; a guard)."""
    return _masked_mean(F.relu(-gains), mask.unsqueeze(-1))


def _relevant(values: Tensor, concept: Tensor) -> Tensor:
    """values[b, t, concept[b, t]] -> [B, T]."""
    return values.gather(-1, concept.long().unsqueeze(-1)).squeeze(-1)


def mastery_performance_loss(mastery: Tensor, qry: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """mean(1 - m_rel | target = 1) + mean(m_rel | target = 0), m_rel[t] = m[t, qry[t]].

    Over valid positions; an empty group contributes 0 (never NaN).
    """
    m_rel = _relevant(mastery, qry)
    correct = mask & (target > 0.5)
    wrong = mask & (target <= 0.5)
    return _masked_mean(1.0 - m_rel, correct) + _masked_mean(m_rel, wrong)


def gain_performance_loss(
    gains: Tensor, qry: Tensor, target: Tensor, mask: Tensor, margin: float = 0.1
) -> Tensor:
    """relu(mean(g_rel | target = 0) - mean(g_rel | target = 1) + margin), g_rel[t] = g[t, qry[t]].

    Over valid positions; 0 unless both groups are non-empty.
    """
    g_rel = _relevant(gains, qry)
    correct = mask & (target > 0.5)
    wrong = mask & (target <= 0.5)
    hinge = F.relu(_masked_mean(g_rel, wrong) - _masked_mean(g_rel, correct) + margin)
    both = (correct.any() & wrong.any()).to(hinge.dtype)
    return hinge * both


def sparsity_loss(gains: Tensor, q: Tensor, mask: Tensor) -> Tensor:
    """mean |g_t[c]| over valid positions t and concepts c other than the one practised at t (q[t]).

    The gains at t describe the learning from the interaction at t, so only q[t] may gain.
    """
    num_c = gains.shape[-1]
    if num_c < 2:
        return gains.new_zeros(())
    magnitude = gains.abs()
    off_concept = magnitude.sum(-1) - _relevant(magnitude, q)
    total = torch.where(mask, off_concept, torch.zeros((), dtype=gains.dtype, device=gains.device)).sum()
    return total / (mask.sum().clamp(min=1) * (num_c - 1))


def consistency_loss(mastery: Tensor, gains: Tensor, mask: Tensor, gain_scale: float) -> Tensor:
    """mean |(m_t - m_{t-1}) - gain_scale * g_t| over consecutive valid positions and all concepts.

    Non-zero only where the clamp at 1 is active (it penalises gains on saturated concepts).
    """
    gap = (mastery[:, 1:] - mastery[:, :-1] - gain_scale * gains[:, 1:]).abs()
    return _masked_mean(gap, _pairs(mask).unsqueeze(-1))


def mastery_variance(mastery: Tensor, mask: Tensor) -> Tensor:
    """Unbiased variance of mastery over valid positions and all concepts (detached)."""
    with torch.no_grad():
        values = mastery[mask]
        if values.numel() < 2:
            return mastery.new_zeros(())
        return values.float().var()


def rowwise_pearson(
    x: Tensor, y: Tensor, mask: Tensor, *, min_count: int = 3, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Differentiable Pearson correlation of x and y along dim 1, per row, over ``mask``.

    Returns (corr [B], usable [B]); a row is usable with >= ``min_count`` masked points and a
    non-constant y. ``eps`` is added to both variances, so a constant x gives 0, not NaN.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x = torch.where(mask, x, zero)
    y = torch.where(mask, y.to(x.dtype), zero)
    maskf = mask.to(x.dtype)
    n = maskf.sum(1)
    n_safe = n.clamp(min=1)
    dx = (x - (x.sum(1) / n_safe).unsqueeze(1)) * maskf
    dy = (y - (y.sum(1) / n_safe).unsqueeze(1)) * maskf
    cov = (dx * dy).sum(1) / n_safe
    var_x = (dx * dx).sum(1) / n_safe
    var_y = (dy * dy).sum(1) / n_safe
    corr = cov * torch.rsqrt((var_x + eps) * (var_y + eps))
    usable = (n >= min_count) & (var_y.detach() > 1e-12)
    return corr, usable


def _mean_over_usable(values: Tensor, usable: Tensor) -> Tensor:
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(usable, values, zero).sum() / usable.sum().clamp(min=1)


def residualise_rows(y: Tensor, mask: Tensor, window: int) -> Tensor:
    """y minus its moving average (width ``window``, reflect padding), per row over its valid positions.

    Rows with fewer than window + 2 valid positions are returned unchanged. The result is detached.
    Each row is processed on its own valid positions (in time order), never across students.
    """
    with torch.no_grad():
        b, t = y.shape
        y = y.float()
        n = mask.sum(1)
        # valid positions first, in time order, so that position k of a row is its k-th valid step
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
        compact = y.gather(1, order)
        half = window // 2
        offsets = torch.arange(window, device=y.device) - half
        idx = torch.arange(t, device=y.device).view(1, t, 1) + offsets.view(1, 1, window)
        last = (n - 1).clamp(min=0).view(b, 1, 1)
        idx = idx.abs()  # reflect at the start: -k -> k
        idx = torch.where(idx > last, 2 * last - idx, idx)  # reflect at the end
        idx = torch.minimum(idx.clamp(min=0), last).expand(b, t, window)
        moving = compact.gather(1, idx.reshape(b, t * window)).view(b, t, window).mean(-1)
        residual = torch.empty_like(y).scatter_(1, order, compact - moving)
        long_enough = (n >= window + 2).unsqueeze(1)
        return torch.where(long_enough & mask, residual, y)


def pooled_pearson(
    x: Tensor, y: Tensor, mask: Tensor, *, min_count: int = 3, eps: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """The reference's correlation (defect 10): one Pearson correlation over the masked positions of all rows.

    ``corr = mean((x - mean x)(y - mean y)) / (std_pop(x) std_pop(y) + eps)`` over the pooled positions,
    as the reference computed it (between-student differences count). Returns (corr [1], usable [1]);
    usable with >= ``min_count`` masked positions (the reference returned 0 below 3). A standard
    deviation is floored at 1e-6 so that the gradient of a constant series stays finite.
    """
    flat = mask.reshape(1, -1)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    maskf = flat.to(x.dtype)
    n = maskf.sum(1)
    n_safe = n.clamp(min=1)
    xs = torch.where(flat, x.reshape(1, -1), zero)
    ys = torch.where(flat, y.reshape(1, -1).to(x.dtype), zero)
    dx = (xs - (xs.sum(1) / n_safe).unsqueeze(1)) * maskf
    dy = (ys - (ys.sum(1) / n_safe).unsqueeze(1)) * maskf
    cov = (dx * dy).sum(1) / n_safe
    std_x = ((dx * dx).sum(1) / n_safe).clamp(min=1e-12).sqrt()
    std_y = ((dy * dy).sum(1) / n_safe).clamp(min=1e-12).sqrt()
    return cov / (std_x * std_y + eps), n >= min_count


def alignment_loss(
    mastery: Tensor,
    gains: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    residual_window: int | None = None,
    pooled: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """-(corr(mean_c m, perf) + corr(mean_c g, perf)), correlations per student row, averaged over rows.

    perf is ``target`` (the response at t+1), residualised per row when ``residual_window`` is
    given. Rows need >= 3 valid positions and a non-constant target. ``pooled`` (reference
    semantics) uses one ``pooled_pearson`` correlation over all rows' valid positions instead.
    Returns (loss, mean mastery correlation, mean gain correlation); the correlations carry gradient.
    """
    perf = target if residual_window is None else residualise_rows(target, mask, residual_window)
    correlate = pooled_pearson if pooled else rowwise_pearson
    corr_m, usable = correlate(mastery.mean(-1), perf, mask)
    corr_g, _ = correlate(gains.mean(-1), perf, mask)
    if residual_window is not None and not pooled:
        # usability is decided on the raw target (a residual can be non-constant by rounding)
        usable = usable & rowwise_pearson(target, target, mask)[1]
    mean_m = _mean_over_usable(corr_m, usable)
    mean_g = _mean_over_usable(corr_g, usable)
    return -(mean_m + mean_g), mean_m, mean_g


def retention_loss(
    mastery: Tensor, target: Tensor, mask: Tensor, *, peak: float, delta: float, pooled: bool = False
) -> tuple[Tensor, Tensor]:
    """relu(peak - delta - corr_batch), corr_batch = mean per-row corr(mean_c m, target) of this batch.

    ``peak`` is the running maximum of the epoch-level mastery correlation. The penalty is
    differentiable through corr_batch. ``pooled`` (reference semantics): corr_batch is one
    ``pooled_pearson`` correlation over the batch. Returns (penalty, corr_batch).
    """
    correlate = pooled_pearson if pooled else rowwise_pearson
    corr, usable = correlate(mastery.mean(-1), target, mask)
    corr_batch = _mean_over_usable(corr, usable)
    return F.relu(peak - delta - corr_batch), corr_batch


def lag_gain_loss(
    gains: Tensor, target: Tensor, mask: Tensor, lag_weights: tuple[float, ...], *, pooled: bool = False
) -> tuple[Tensor, Tensor]:
    """-(mean over rows of the lag-weighted correlation of mean gains at t with target at t+lag).

    For lag l = 1..len(lag_weights) and each row: Pearson of mean_c g[t] vs target[t+l] over the t
    where both positions are valid (>= 3 pairs, non-constant target). A row's value is
    sum_l w_l corr_l / sum of the w_l of its usable lags; the mean is over rows with a usable lag.
    ``pooled`` (reference semantics, Era A): one ``pooled_pearson`` correlation per lag over the pairs
    of all rows (>= 10 pairs), weighted the same way. Returns (loss, mean lagged correlation); both
    carry gradient.
    """
    g_mean = gains.mean(-1)
    t = g_mean.shape[1]
    numerator = torch.zeros(1 if pooled else g_mean.shape[0], dtype=g_mean.dtype, device=g_mean.device)
    denominator = torch.zeros_like(numerator)
    for lag, weight in enumerate(lag_weights, start=1):
        if weight <= 0 or lag >= t:
            continue
        pair_mask = mask[:, :-lag] & mask[:, lag:]
        if pooled:
            corr, usable = pooled_pearson(g_mean[:, :-lag], target[:, lag:], pair_mask, min_count=10)
        else:
            corr, usable = rowwise_pearson(g_mean[:, :-lag], target[:, lag:], pair_mask)
        usable_f = usable.to(corr.dtype)
        numerator = numerator + weight * torch.where(usable, corr, torch.zeros_like(corr))
        denominator = denominator + weight * usable_f
    rows = denominator > 0
    per_row = numerator / denominator.clamp(min=1e-12)
    mean_corr = _mean_over_usable(per_row, rows)
    return -mean_corr, mean_corr


# ---------------------------------------------------------------------------------------------
# compute_losses
# ---------------------------------------------------------------------------------------------


def _field(batch: Any, name: str) -> Tensor:
    return batch[name] if isinstance(batch, Mapping) else getattr(batch, name)


def compute_losses(out: Mapping[str, Any], batch: Any, w: EpochWeights) -> dict[str, Tensor]:
    """All loss terms of one batch.

    Returns a dict of scalar tensors:
    ``total`` = bce + constraint + alignment + lag + retention (the value to back-propagate);
    ``bce``; the six *unweighted* constraint terms (``monotonicity``, ``non_negative``,
    ``mastery_performance``, ``gain_performance``, ``sparsity``, ``consistency``); ``constraint``
    (their weighted sum); ``alignment``, ``lag``, ``retention`` (weighted); and detached diagnostics
    ``mastery_variance``, ``alignment_corr_mastery``, ``alignment_corr_gain``, ``lag_corr``,
    ``retention_corr``, ``alignment_weight_effective``. A diagnostic that was not computed this
    batch is NaN. Terms with weight 0, and every head term when the model has no heads, are 0 and
    are not computed. The reference-semantics switches of ``w`` (docs/losses.md) change the terms
    they name; all off is our fixed behaviour.
    """
    logits = out["logits"]
    mastery = out.get("mastery")
    gains = out.get("gains")
    target = _field(batch, "target").to(logits.device).float()
    mask = _field(batch, "mask").to(logits.device).bool()

    zero = torch.zeros((), device=logits.device)
    nan = torch.full((), float("nan"), device=logits.device)
    res: dict[str, Tensor] = {"bce": bce_loss(logits, target, mask)}
    res.update({name: zero for name in CONSTRAINT_TERMS})
    res.update(
        alignment=zero, lag=zero, retention=zero, mastery_variance=nan, alignment_corr_mastery=nan,
        alignment_corr_gain=nan, lag_corr=nan, retention_corr=nan, alignment_weight_effective=nan,
    )
    constraint = zero
    if mastery is not None and gains is not None:
        mastery = mastery.float()
        gains = gains.float()
        res.update(_constraint_terms(mastery, gains, batch, mask, target, w))
        for name in CONSTRAINT_TERMS:
            weight = getattr(w, name)
            if weight > 0:
                constraint = constraint + weight * res[name]
        res.update(_correlation_terms(mastery, gains, target, mask, w))

    res["constraint"] = constraint
    res["total"] = res["bce"] + constraint + res["alignment"] + res["lag"] + res["retention"]
    return res


def _constraint_terms(mastery: Tensor, gains: Tensor, batch: Any, mask: Tensor, target: Tensor,
                      w: EpochWeights) -> dict[str, Tensor]:
    """The unweighted constraint terms whose weight is > 0.

    Reference semantics: ``constraints_over_padding`` counts every position (padding reads concept 0,
    incorrect); ``constraints_current_step`` judges the performance terms on (q[t], r[t]).
    """
    device = mastery.device
    q = _field(batch, "q").to(device)
    concept, outcome = _field(batch, "qry").to(device), target
    if w.constraints_current_step:
        concept, outcome = q, _field(batch, "r").to(device).float()
    cmask = torch.ones_like(mask) if w.constraints_over_padding else mask
    res: dict[str, Tensor] = {}
    if w.monotonicity > 0:
        res["monotonicity"] = monotonicity_loss(mastery, cmask)
    if w.non_negative > 0:
        res["non_negative"] = non_negative_loss(gains, cmask)
    if w.mastery_performance > 0:
        res["mastery_performance"] = mastery_performance_loss(mastery, concept, outcome, cmask)
    if w.gain_performance > 0:
        res["gain_performance"] = gain_performance_loss(gains, concept, outcome, cmask)
    if w.sparsity > 0:
        res["sparsity"] = sparsity_loss(gains, q, cmask)
    if w.consistency > 0:
        res["consistency"] = consistency_loss(mastery, gains, cmask, w.gain_scale)
    return res


def _correlation_terms(mastery: Tensor, gains: Tensor, target: Tensor, mask: Tensor,
                       w: EpochWeights) -> dict[str, Tensor]:
    """Alignment, lag and retention (weighted) with their detached diagnostics and the mastery variance.

    Reference semantics: ``pooled_correlations`` pools the batch's positions; ``alignment_max_students``
    keeps the first rows for alignment and lag; ``retention_detached`` / ``lag_detached`` cut the
    gradient of those terms (their values are unchanged).
    """
    res: dict[str, Tensor] = {}
    variance = mastery_variance(mastery, mask)
    res["mastery_variance"] = variance
    # Alignment and lag are skipped on a batch whose mastery has collapsed (reference behaviour):
    # a correlation of a near-constant series only amplifies noise.
    collapsed = float(variance) < w.variance_floor
    rows = slice(None, w.alignment_max_students)
    a_mastery, a_gains, a_target, a_mask = mastery[rows], gains[rows], target[rows], mask[rows]
    if w.alignment_active and not collapsed:
        window = w.alignment_residual_window if w.use_residual_alignment else None
        align, corr_m, corr_g = alignment_loss(a_mastery, a_gains, a_target, a_mask, residual_window=window,
                                               pooled=w.pooled_correlations)
        weight_t = torch.full((), w.alignment, device=mastery.device)
        if w.alignment_boost_from_batch:
            # boost = min(3, 1 + 4 (min_corr - ref)) when ref < min_corr, else 1
            weight_t = weight_t * (1 + 4 * (w.alignment_min_correlation - corr_m.detach())).clamp(1, 3)
        res["alignment"] = weight_t * align
        res["alignment_corr_mastery"] = corr_m.detach()
        res["alignment_corr_gain"] = corr_g.detach()
        res["alignment_weight_effective"] = weight_t.detach()
    if w.lag_active and not collapsed:
        lag, lag_corr = lag_gain_loss(a_gains, a_target, a_mask, w.lag_weights, pooled=w.pooled_correlations)
        res["lag"] = w.lag * (lag.detach() if w.lag_detached else lag)
        res["lag_corr"] = lag_corr.detach()
    if w.retention_active:
        assert w.retention_peak is not None
        penalty, corr_batch = retention_loss(
            mastery, target, mask, peak=w.retention_peak, delta=w.retention_delta, pooled=w.pooled_correlations
        )
        res["retention"] = w.retention * (penalty.detach() if w.retention_detached else penalty)
        res["retention_corr"] = corr_batch.detach()
    return res


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------

# Sums kept by observe_batch (detached, NaN-skipping) to derive epoch means and loss shares.
_OBSERVED = (
    "total", "bce", "constraint", "alignment", "lag", "retention", "mastery_variance",
    "alignment_corr_mastery", "alignment_corr_gain", "lag_corr", "alignment_weight_effective",
)
_ALIGNMENT_WEIGHT_FLOOR = 0.05
_PLATEAU_IMPROVEMENT = 0.005


@dataclass
class _Accumulator:
    sums: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: Tensor) -> None:
        value = value.detach().float()
        ok = ~torch.isnan(value)
        self.sums[name] = self.sums.get(name, 0.0) + torch.where(ok, value, torch.zeros_like(value))
        self.counts[name] = self.counts.get(name, 0) + ok.to(torch.int64)

    def mean(self, name: str) -> float | None:
        if name not in self.sums:
            return None
        count = int(self.counts[name])
        return float(self.sums[name]) / count if count else None


class LossSchedule:
    """Per-epoch loss weights and the adaptive rules between epochs.

    Use: ``w = schedule.begin_epoch(epoch)``; per batch ``terms = compute_losses(out, batch, w)`` and
    optionally ``schedule.observe_batch(terms)``; then ``log = schedule.end_epoch(epoch, ...)``.

    Rules applied by ``begin_epoch`` (epoch is 0-based, e1 = epoch + 1):
    * mastery/gain performance weights x min(1, e1 / warmup_constraint_epochs), or with
      enable_cosine_perf_schedule x 0.5 (1 - cos(pi e1 / num_epochs));
    * enhanced_constraints=False sets the six constraint weights to 0;
    * alignment: current base weight x min(1, e1 / alignment_warmup_epochs) x adaptive boost (once
      the warm-up is complete; boost = min(3, 1 + 4 (alignment_min_correlation - ref)) when the
      previous epoch's reference correlation ref < alignment_min_correlation; without a reference
      yet, each batch's own mastery correlation is used);
    * lag active from e1 >= warmup_constraint_epochs + 2; retention active from
      e1 > warmup_constraint_epochs once a peak correlation exists.
    ``end_epoch`` applies the share-cap decay, the retention peak, the boost reference, the
    consistency rebalance and the variance floor (see its docstring).
    """

    def __init__(self, settings: LossSettings, num_epochs: int, gain_scale: float = 0.1) -> None:
        self.settings = settings
        self.num_epochs = int(num_epochs)
        self.gain_scale = float(gain_scale)
        self.alignment_weight_current = float(settings.alignment_weight)
        self.consistency_weight_current = float(settings.consistency_loss_weight)
        self.sparsity_weight_current = float(settings.sparsity_loss_weight)
        self.peak_mastery_corr: float | None = None
        self.boost_reference: float | None = None
        self.reference_history: list[float | None] = []
        self.variance_low_epochs = 0
        self.sparsity_reductions = 0
        self.consistency_rebalanced = False
        self._weights: EpochWeights | None = None
        self._acc = _Accumulator()
        self._sparsity_at_begin = self.sparsity_weight_current

    # -- per epoch -------------------------------------------------------------------------------

    def _performance_scale(self, epoch: int) -> float:
        s = self.settings
        e1 = epoch + 1
        if s.enable_cosine_perf_schedule and self.num_epochs > 0:
            return 0.5 * (1.0 - math.cos(math.pi * min(e1, self.num_epochs) / self.num_epochs))
        if s.warmup_constraint_epochs <= 0:
            return 1.0
        return min(1.0, e1 / s.warmup_constraint_epochs)

    def begin_epoch(self, epoch: int) -> EpochWeights:
        """Return the effective weights of ``epoch`` (0-based) and reset the batch accumulators."""
        s = self.settings
        e1 = epoch + 1
        on = 1.0 if s.enhanced_constraints else 0.0
        warm = self._performance_scale(epoch)
        align_warm = 1.0 if s.alignment_warmup_epochs <= 0 else min(1.0, e1 / s.alignment_warmup_epochs)

        alignment = boost = 0.0
        from_batch = False
        if s.enable_alignment_loss and s.alignment_weight > 0:
            boost = 1.0
            if s.adaptive_alignment and align_warm >= 1.0:
                if self.boost_reference is None:
                    from_batch = True
                elif self.boost_reference < s.alignment_min_correlation:
                    boost = min(3.0, 1.0 + 4.0 * (s.alignment_min_correlation - self.boost_reference))
            alignment = self.alignment_weight_current * align_warm * boost

        lag_on = s.enable_lag_gain_loss and s.lag_max_lag > 0 and e1 >= s.warmup_constraint_epochs + 2
        retention_on = (
            s.enable_retention_loss and e1 > s.warmup_constraint_epochs and self.peak_mastery_corr is not None
        )
        self._weights = EpochWeights(
            epoch=epoch,
            warmup_scale=warm,
            alignment_warmup_scale=align_warm,
            monotonicity=on * s.monotonicity_loss_weight,
            non_negative=on * s.non_negative_loss_weight,
            mastery_performance=on * s.mastery_performance_loss_weight * warm,
            gain_performance=on * s.gain_performance_loss_weight * warm,
            sparsity=on * self.sparsity_weight_current,
            consistency=on * self.consistency_weight_current,
            alignment=alignment,
            alignment_boost=boost,
            alignment_boost_from_batch=from_batch,
            alignment_min_correlation=s.alignment_min_correlation,
            use_residual_alignment=s.use_residual_alignment,
            alignment_residual_window=s.alignment_residual_window,
            lag=s.lag_gain_weight if lag_on else 0.0,
            lag_weights=s.lag_weights(),
            retention=s.retention_weight if retention_on else 0.0,
            retention_peak=self.peak_mastery_corr,
            retention_delta=s.retention_delta,
            variance_floor=s.variance_floor,
            gain_scale=self.gain_scale,
            constraints_over_padding=s.constraints_over_padding,
            constraints_current_step=s.constraints_current_step,
            pooled_correlations=s.pooled_correlations,
            alignment_max_students=s.alignment_max_students,
            retention_detached=s.retention_detached,
            lag_detached=s.lag_detached,
        )
        self._acc = _Accumulator()
        self._sparsity_at_begin = self.sparsity_weight_current
        return self._weights

    def observe_batch(self, terms: Mapping[str, Tensor]) -> None:
        """Accumulate one batch's ``compute_losses`` output (detached, no device sync)."""
        for name in _OBSERVED:
            if name in terms:
                self._acc.add(name, terms[name])
        if self.settings.variance_floor_per_batch and "mastery_variance" in terms:
            self._variance_floor_batch(terms["mastery_variance"])

    def _variance_floor_batch(self, variance: Tensor) -> None:
        """Reference semantics (defect 11), with alignment on: count consecutive low-variance *batches*;
        while the count is >= patience, every such batch multiplies the sparsity weight by the factor
        (compounding; the count is not reset). The next batch uses the reduced weight. One host sync
        per batch, only with this switch."""
        s = self.settings
        if not s.enable_alignment_loss:
            return
        value = float(variance)
        if math.isnan(value):
            return
        self.variance_low_epochs = self.variance_low_epochs + 1 if value < s.variance_floor else 0
        if self.variance_low_epochs < s.variance_floor_patience or s.freeze_sparsity:
            return
        self.sparsity_weight_current *= s.variance_floor_reduce_factor
        self.sparsity_reductions += 1
        if self._weights is not None:
            self._weights.sparsity = (1.0 if s.enhanced_constraints else 0.0) * self.sparsity_weight_current

    def observed_means(self) -> dict[str, float | None]:
        """Epoch means of the observed batch values so far (None where nothing was observed)."""
        return {name: self._acc.mean(name) for name in _OBSERVED}

    def observed_loss_shares(self) -> dict[str, float]:
        """Loss shares from the observed batches: mean(term) / mean(total).

        main = bce; constraint = constraint + alignment + lag (as the reference counts it);
        alignment, lag, retention on their own.
        """
        means = self.observed_means()
        total = means["total"]
        if not total:
            return {}

        def m(name: str) -> float:
            return means[name] or 0.0

        return {
            "main": m("bce") / total,
            "constraint": (m("constraint") + m("alignment") + m("lag")) / total,
            "alignment": m("alignment") / total,
            "lag": m("lag") / total,
            "retention": m("retention") / total,
        }

    def end_epoch(
        self,
        epoch: int,
        *,
        loss_shares: Mapping[str, float] | None = None,
        mastery_corr_reference: float | None = None,
        mean_mastery_variance: float | None = None,
    ) -> dict[str, Any]:
        """Apply the end-of-epoch rules and return the log fields of this epoch.

        Arguments (missing ones come from the batches passed to ``observe_batch``):
        * ``loss_shares``: {"alignment": mean alignment term / mean total loss, ...};
        * ``mastery_corr_reference``: the epoch-level mastery correlation (the global alignment
          pass if on, else the per-epoch semantic sample), or None when unknown;
        * ``mean_mastery_variance``: mean over the epoch's batches of the mastery variance.

        Rules, in order:
        1. share-cap decay (alignment on): if |alignment share| > alignment_share_cap and the
           reference improved by < 0.005 over the previous epoch (or either value is unknown), the
           alignment base weight becomes max(0.05, w x alignment_share_decay_factor) (never raised);
        2. retention: retention_loss_value = retention_weight x relu(peak - delta - reference) when
           retention is on and e1 > warmup_constraint_epochs; then peak = max(peak, reference);
        3. the reference becomes the adaptive-boost reference of the next epoch;
        4. consistency rebalance (alignment on, e1 >= consistency_rebalance_epoch, reference <
           consistency_rebalance_threshold, weight > new weight): consistency weight := new weight;
        5. variance floor: count consecutive epochs with mean mastery variance < variance_floor; when
           the count reaches variance_floor_patience, sparsity weight x= reduce factor once (unless
           freeze_sparsity) and the count restarts.
        """
        loss_shares, ref, variance = self._epoch_inputs(loss_shares, mastery_corr_reference, mean_mastery_variance)
        w = self._weights if self._weights is not None and self._weights.epoch == epoch else None
        if w is None:
            w = self.begin_epoch(epoch)
        e1 = epoch + 1
        effective_alignment = self._effective_alignment(w)
        alignment_decayed = self._share_cap_decay(loss_shares, ref)  # rule 1
        retention_value = self._retention_peak(e1, ref)  # rule 2
        self.boost_reference = ref  # rule 3
        rebalanced_now = self._consistency_rebalance(e1, ref)  # rule 4
        sparsity_reduced = self._variance_floor(variance)  # rule 5
        self.reference_history.append(ref)
        return {
            "epoch": epoch,
            "warmup_scale": w.warmup_scale,
            "alignment_warmup_scale": w.alignment_warmup_scale,
            "effective_alignment_weight": effective_alignment,
            "alignment_boost": w.alignment_boost,
            "alignment_weight_current": self.alignment_weight_current,
            "alignment_decayed": alignment_decayed,
            "mastery_corr_reference": ref,
            "peak_mastery_corr": self.peak_mastery_corr,
            "retention_active": w.retention_active,
            "retention_loss_value": retention_value,
            "lag_active": w.lag_active,
            "consistency_loss_weight_current": self.consistency_weight_current,
            "consistency_rebalanced": rebalanced_now,
            "sparsity_loss_weight_current": self.sparsity_weight_current,
            "sparsity_reduced": sparsity_reduced,
            "variance_floor_epochs": self.variance_low_epochs,
            "mean_mastery_variance": variance,
            "loss_shares": dict(loss_shares or {}),
        }

    def _epoch_inputs(self, loss_shares: Mapping[str, float] | None, reference: float | None,
                      variance: float | None) -> tuple[Mapping[str, float] | None, float | None, float | None]:
        """Missing values come from the observed batches; a NaN reference counts as unknown."""
        if loss_shares is None:
            loss_shares = self.observed_loss_shares()
        if variance is None:
            variance = self._acc.mean("mastery_variance")
        ref = None if reference is None else float(reference)
        return loss_shares, (None if ref is not None and math.isnan(ref) else ref), variance

    def _effective_alignment(self, w: EpochWeights) -> float:
        """The alignment weight the epoch that just ended really used."""
        if w.alignment_boost_from_batch:
            observed = self._acc.mean("alignment_weight_effective")
            return observed if observed is not None else w.alignment
        return w.alignment

    def _share_cap_decay(self, loss_shares: Mapping[str, float] | None, ref: float | None) -> bool:
        """Rule 1: over the share cap without a 0.005 improvement, the alignment weight decays."""
        s = self.settings
        share = loss_shares.get("alignment") if loss_shares else None
        if not s.enable_alignment_loss or share is None or abs(share) <= s.alignment_share_cap:
            return False
        previous = self.reference_history[-1] if self.reference_history else None
        improvement = None if ref is None or previous is None else ref - previous
        if improvement is not None and improvement >= _PLATEAU_IMPROVEMENT:
            return False
        current = self.alignment_weight_current
        decayed = max(min(_ALIGNMENT_WEIGHT_FLOOR, current), current * s.alignment_share_decay_factor)
        self.alignment_weight_current = decayed
        return decayed < current

    def _retention_peak(self, e1: int, ref: float | None) -> float:
        """Rule 2: the retention value against the peak so far; then the peak is updated."""
        if ref is None:
            return 0.0
        s = self.settings
        value = 0.0
        if s.enable_retention_loss and e1 > s.warmup_constraint_epochs and self.peak_mastery_corr is not None:
            value = s.retention_weight * max(0.0, self.peak_mastery_corr - s.retention_delta - ref)
        self.peak_mastery_corr = ref if self.peak_mastery_corr is None else max(self.peak_mastery_corr, ref)
        return value

    def _consistency_rebalance(self, e1: int, ref: float | None) -> bool:
        """Rule 4: a low reference from the rebalance epoch on lowers the consistency weight once."""
        s = self.settings
        if (
            s.enable_alignment_loss
            and e1 >= s.consistency_rebalance_epoch
            and ref is not None
            and ref < s.consistency_rebalance_threshold
            and self.consistency_weight_current > s.consistency_rebalance_new_weight
        ):
            self.consistency_weight_current = float(s.consistency_rebalance_new_weight)
            self.consistency_rebalanced = True
            return True
        return False

    def _variance_floor(self, variance: float | None) -> bool:
        """Rule 5: patience epochs under the variance floor reduce the sparsity weight (unless frozen).

        With ``variance_floor_per_batch`` the rule ran per batch (``observe_batch``); this reports
        whether it reduced the weight during the epoch.
        """
        s = self.settings
        if s.variance_floor_per_batch:
            return self.sparsity_weight_current < self._sparsity_at_begin
        if variance is None or math.isnan(variance):
            return False
        self.variance_low_epochs = self.variance_low_epochs + 1 if variance < s.variance_floor else 0
        if self.variance_low_epochs < s.variance_floor_patience:
            return False
        self.variance_low_epochs = 0
        if s.freeze_sparsity:
            return False
        self.sparsity_weight_current *= s.variance_floor_reduce_factor
        self.sparsity_reductions += 1
        return True

    # -- checkpointing ---------------------------------------------------------------------------

    _STATE_KEYS = (
        "alignment_weight_current",
        "consistency_weight_current",
        "sparsity_weight_current",
        "peak_mastery_corr",
        "boost_reference",
        "reference_history",
        "variance_low_epochs",
        "sparsity_reductions",
        "consistency_rebalanced",
    )

    def state_dict(self) -> dict[str, Any]:
        """The adaptive state between epochs (JSON-ready); restore with ``load_state_dict``."""
        state = {key: getattr(self, key) for key in self._STATE_KEYS}
        state["reference_history"] = list(self.reference_history)
        state["version"] = 1
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by ``state_dict`` (call ``begin_epoch`` afterwards)."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported LossSchedule state version {state.get('version')!r}")
        missing = [key for key in self._STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"LossSchedule state lacks {', '.join(missing)}")
        for key in self._STATE_KEYS:
            value = state[key]
            setattr(self, key, list(value) if key == "reference_history" else value)
        self._weights = None
        self._acc = _Accumulator()


def first_active_epochs(s: LossSettings) -> dict[str, int]:
    """1-based first epoch at which each requested scheduled term can be non-zero (as begin_epoch).

    lag: ``e1 >= warmup_constraint_epochs + 2``; retention: ``e1 > warmup_constraint_epochs`` and a
    peak correlation recorded at the end of an earlier epoch, so ``max(2, warmup_constraint_epochs + 1)``;
    alignment: epoch 1 (scaled by ``min(1, e1 / alignment_warmup_epochs)``).
    """
    out: dict[str, int] = {}
    if s.enable_alignment_loss and s.alignment_weight > 0:
        out["alignment"] = 1
    if s.enable_lag_gain_loss and s.lag_max_lag > 0 and s.lag_gain_weight > 0:
        out["lag"] = max(1, s.warmup_constraint_epochs + 2)
    if s.enable_retention_loss and s.retention_weight > 0:
        out["retention"] = max(2, s.warmup_constraint_epochs + 1)
    return out


def schedule_warnings(s: LossSettings, num_epochs: int) -> list[str]:
    """One line per requested term that stays off, or below full weight, for all ``num_epochs``."""
    lines = []
    for term, first in first_active_epochs(s).items():
        if first > num_epochs:
            lines.append(f"{term} loss is requested but inactive in all {num_epochs} epochs: it starts at epoch "
                         f"{first} (warmup_constraint_epochs={s.warmup_constraint_epochs}); raise --epochs to "
                         f"at least {first} or lower --warmup_constraint_epochs")
    return lines + partial_weight_warnings(s, num_epochs)


def partial_weight_warnings(s: LossSettings, num_epochs: int) -> list[str]:
    """One line per requested term whose warm-up outlasts ``num_epochs``: it never reaches full weight."""
    lines = []
    if "alignment" in first_active_epochs(s) and 0 < num_epochs < s.alignment_warmup_epochs:
        lines.append(f"alignment loss reaches only {num_epochs}/{s.alignment_warmup_epochs} of its weight "
                     f"(alignment_warmup_epochs={s.alignment_warmup_epochs} > --epochs {num_epochs})")
    if (s.enhanced_constraints and not s.enable_cosine_perf_schedule
            and 0 < num_epochs < s.warmup_constraint_epochs):
        lines.append(f"mastery/gain performance losses reach only {num_epochs}/{s.warmup_constraint_epochs} of "
                     f"their weight (warmup_constraint_epochs={s.warmup_constraint_epochs} > --epochs {num_epochs})")
    return lines
