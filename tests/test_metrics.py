"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gainakt.metrics import (
    CorrelationSummary,
    auc_accuracy,
    fisher_ci,
    head_statistics,
    per_student_correlation,
    stratified_sample,
    true_mastery_correlation,
    violation_rates,
)


def test_auc_accuracy_hand_values() -> None:
    # Pairs (pos, neg): (0.8, 0.3) ok, (0.8, 0.6) ok, (0.4, 0.3) ok, (0.4, 0.6) wrong -> AUC 3/4.
    auc, acc = auc_accuracy([1, 1, 0, 0], [0.8, 0.4, 0.3, 0.6])
    assert auc == pytest.approx(0.75)
    assert acc == pytest.approx(0.5)  # 0.8 right, 0.4 wrong, 0.3 right, 0.6 wrong


def test_accuracy_threshold_is_inclusive() -> None:
    assert auc_accuracy([1, 0], [0.5, 0.49])[1] == 1.0


def test_auc_nan_with_one_class_and_empty_input() -> None:
    auc, acc = auc_accuracy([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(auc) and acc == pytest.approx(2 / 3)
    assert all(math.isnan(v) for v in auc_accuracy([], []))


def test_per_student_correlation_skips_constant_and_short_series() -> None:
    xs = [
        np.array([1.0, 2.0, 3.0]),  # r = +1 with y
        np.array([1.0, 2.0, 3.0, 4.0]),  # r = -0.707 with y = [4, 1, 3, 0], computed below
        np.array([1.0, 2.0, 3.0]),  # y constant: skipped
        np.array([1.0, 2.0]),  # 2 points: skipped
    ]
    ys = [
        np.array([2.0, 4.0, 6.0]),
        np.array([4.0, 1.0, 3.0, 0.0]),
        np.array([1.0, 1.0, 1.0]),
        np.array([0.0, 1.0]),
    ]
    # Second student: dx = [-1.5,-.5,.5,1.5], dy = [2,-1,1,-2]; sum dx*dy = -3 + .5 + .5 - 3 = -5;
    # sum dx^2 = 5, sum dy^2 = 10 -> r = -5 / sqrt(50) = -0.7071068.
    r2 = -5 / math.sqrt(50)
    out = per_student_correlation(xs, ys)
    assert out.n == 2
    assert out.mean == pytest.approx((1.0 + r2) / 2)
    assert math.isnan(out.ci_low) and math.isnan(out.ci_high)  # n < 3: no interval


def test_fisher_ci_hand_value_is_for_one_pooled_r() -> None:
    # One correlation r = 0.8 from n = 5 pairs: CI = tanh(atanh(0.8) -/+ 1.96/sqrt(5 - 3)).
    z, half = math.atanh(0.8), 1.959963984540054 / math.sqrt(2)
    low, high = fisher_ci(0.8, 5)
    assert low == pytest.approx(math.tanh(z - half)) and high == pytest.approx(math.tanh(z + half))
    assert low == pytest.approx(-0.2796, abs=1e-4) and high == pytest.approx(0.9862, abs=1e-4)


def test_mean_of_equal_correlations_has_a_zero_width_interval() -> None:
    # Five students, each r = 0.8: the mean over students is known exactly from these students.
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 2.0, 1.0, 3.0])  # dx=[-1.5,-.5,.5,1.5], dy=[-1.5,.5,-.5,1.5] -> r = 4/5 = 0.8
    out = per_student_correlation([x] * 5, [y] * 5)
    assert (out.mean, out.n, out.ci_low, out.ci_high) == (pytest.approx(0.8), 5, pytest.approx(0.8),
                                                          pytest.approx(0.8))
    assert out.interval == "degenerate"


def test_correlation_never_nan_with_constant_students() -> None:
    out = per_student_correlation([np.ones(5), np.arange(5.0)], [np.arange(5.0), np.arange(5.0) ** 2])
    assert out.n == 1 and math.isfinite(out.mean)
    empty = per_student_correlation([np.ones(5)], [np.arange(5.0)])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_true_mastery_correlation_is_per_student_correlation() -> None:
    xs = [np.arange(6.0), np.array([3.0, 1.0, 2.0, 5.0])]
    ys = [np.arange(6.0) ** 0.5, np.array([1.0, 0.0, 2.0, 2.0])]
    assert true_mastery_correlation(xs, ys) == per_student_correlation(xs, ys)
    assert isinstance(true_mastery_correlation(xs, ys), CorrelationSummary)


def test_violation_rates_count_each_student_once() -> None:
    good = np.array([[0.1, 0.2], [0.2, 0.2], [0.3, 0.4]])
    drops = np.array([[0.5, 0.5], [0.4, 0.5], [0.1, 0.1]])  # mean falls twice: still one student
    out_of_bounds = np.array([[0.0, 0.5], [0.2, 1.2]])
    tiny_noise = np.array([[0.5, 0.5], [0.5, 0.5 - 1e-7], [1.0 + 1e-7, 1.0]])  # within tolerance
    mastery = [good, drops, out_of_bounds, tiny_noise]
    gains = [
        np.zeros((3, 2)),
        np.array([[0.1, -0.2], [-0.1, 0.0], [0.0, 0.0]]),
        np.zeros((2, 2)),
        np.full((3, 2), -1e-7),
    ]
    out = violation_rates(mastery, gains)
    assert out["monotonicity_violation_rate"] == pytest.approx(1 / 4)
    assert out["negative_gain_rate"] == pytest.approx(1 / 4)
    assert out["bounds_violation_rate"] == pytest.approx(1 / 4)
    assert out["students"] == 4
    assert math.isnan(violation_rates(mastery, None)["negative_gain_rate"])
    assert math.isnan(violation_rates([], [])["monotonicity_violation_rate"])


def test_stratified_sample_is_deterministic_and_spread() -> None:
    lengths = np.concatenate([np.full(90, 10), np.arange(100, 110)])  # 90 short, 10 long
    a, b = stratified_sample(lengths, 20, seed=3), stratified_sample(lengths, 20, seed=3)
    assert np.array_equal(a, b)
    assert len(a) == 20 and len(np.unique(a)) == 20 and np.all(np.diff(a) > 0)
    # Equal shares per non-empty length bin, so the 10 long students are over-represented.
    assert (a >= 90).sum() >= 5
    assert not np.array_equal(a, stratified_sample(lengths, 20, seed=4))


def test_stratified_sample_edges() -> None:
    assert stratified_sample(np.arange(5), 5, seed=0).tolist() == [0, 1, 2, 3, 4]
    assert stratified_sample(np.arange(5), 9, seed=0).tolist() == [0, 1, 2, 3, 4]
    assert stratified_sample(np.arange(5), 0, seed=0).tolist() == []
    big = stratified_sample(np.arange(1000) % 37, 123, seed=1)
    assert len(big) == 123 and len(np.unique(big)) == 123


def test_head_statistics_hand_values() -> None:
    stats = head_statistics(np.array([0.0, 0.0, 0.0, 4.0]))
    # mean 1; deviations -1,-1,-1,3; variance (1+1+1+9)/4 = 3; third moment (-3+27)/4 = 6.
    assert stats["mean"] == pytest.approx(1.0)
    assert stats["variance"] == pytest.approx(3.0)
    assert stats["skewness"] == pytest.approx(6 / 3**1.5)
    assert stats["count"] == 4
    assert head_statistics(np.ones(3))["skewness"] == 0.0
    assert math.isnan(head_statistics(np.array([]))["mean"])
