"""Concept-level metrics, honest intervals and whole-student violations (issue 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gainakt.data import KTDataset, build_windows
from gainakt.evaluate import SEMANTIC_COLUMNS, evaluate
from gainakt.losses import LossSchedule, LossSettings, first_active_epochs, schedule_warnings
from gainakt.metrics import (
    fisher_ci,
    loss_abs_shares,
    partial_correlation_or_none,
    per_student_correlation,
    summarize_mean,
)
from gainakt.model import GainAKT2Exp


def dataset(concepts: list[np.ndarray], responses: list[np.ndarray], num_c: int) -> KTDataset:
    n = len(concepts)
    return KTDataset(name="t", fmt="synthetic", num_c=num_c, concepts=concepts, responses=responses,
                     folds=np.zeros(n, dtype=np.int64), uids=[str(i) for i in range(n)], sha256="0",
                     source_files=())


class FakeModel(nn.Module):
    """Returns mastery/gains computed by `fn(q, r, qry) -> (mastery [B,T,C], gains [B,T,C])`."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, q, r, qry, pack=None):  # evaluation passes its packing plan (None: unpacked)
        assert pack is None
        mastery, gains = self.fn(q, r, qry)
        logits = torch.zeros(q.shape, dtype=torch.float32)
        return {"logits": logits, "predictions": torch.sigmoid(logits), "mastery": mastery, "gains": gains}


def semantics(model: nn.Module, ds: KTDataset, max_len: int = 200) -> dict:
    seqs = build_windows(ds, np.arange(len(ds.concepts)), max_len)
    sem = evaluate(model, seqs, batch_size=16, device=torch.device("cpu"), semantics=True).semantics()
    assert sem is not None
    return sem.flat()


def ramp(num_c: int, slope: float = 0.004):
    def fn(q, r, qry):
        t = torch.arange(q.shape[1], dtype=torch.float32)
        m = (0.05 + slope * t).clamp(max=1.0)[None, :, None].expand(q.shape[0], -1, num_c)
        g = torch.full_like(m, slope / 0.1)
        return m.contiguous(), g.contiguous()
    return fn


# Time-ramp trap -------------------------------------------------------------------------------


@pytest.mark.parametrize("slope", [0.004, 0.01, 0.03])  # 0.01, 0.03: mastery saturates at 1 mid-window
def test_time_ramp_scores_high_on_the_guide_metric_and_zero_once_time_is_removed(slope: float) -> None:
    # Correctness rises with the step index and has nothing to do with the concept; the "model"'s
    # mastery is the same pure ramp for every concept, so it knows nothing but the clock.
    rng = np.random.default_rng(0)
    num_c, length = 6, 150
    concepts = [rng.integers(0, num_c, length) for _ in range(80)]
    responses = [(rng.random(length) < 1 / (1 + np.exp(-(-2.0 + 0.03 * np.arange(length))))).astype(np.int64)
                 for _ in range(80)]
    out = semantics(FakeModel(ramp(num_c, slope)), dataset(concepts, responses, num_c))
    assert out["mastery_correlation"] > 0.3  # the guide metric rewards the clock
    assert abs(out["qmastery_partial_correlation"]) < 0.03  # time-controlled: nothing left
    assert out["qmastery_partial_ci_low"] < 0 < out["qmastery_partial_ci_high"]
    # A ramp's gains are constant: no per-student gain statistic is defined, so none is reported.
    assert out["qgain_correlation"] is None and out["qgain_n"] == 0
    assert out["qgain_partial_correlation"] is None


def test_ramp_scores_zero_on_the_concept_level_metric_when_correctness_is_about_concepts() -> None:
    # No learning over time; concept c is answered correctly with probability p_c. A ramp gets ~0
    # at the concept level, a model whose mastery ranks the concepts like p_c scores clearly.
    rng = np.random.default_rng(1)
    num_c, length = 6, 150
    p = np.linspace(0.1, 0.9, num_c)
    concepts = [rng.integers(0, num_c, length) for _ in range(80)]
    responses = [(rng.random(length) < p[c]).astype(np.int64) for c in concepts]
    ds = dataset(concepts, responses, num_c)
    ramped = semantics(FakeModel(ramp(num_c)), ds)
    assert abs(ramped["qmastery_correlation"]) < 0.03 and abs(ramped["qmastery_partial_correlation"]) < 0.03
    assert abs(ramped["qmastery_auc_pooled"] - 0.5) < 0.03

    def knows(q, r, qry):
        m = torch.tensor(p, dtype=torch.float32)[None, None, :].expand(q.shape[0], q.shape[1], -1)
        return m.contiguous(), torch.zeros_like(m)

    informed = semantics(FakeModel(knows), ds)
    assert informed["qmastery_correlation"] > 0.3 and informed["qmastery_partial_correlation"] > 0.3
    assert informed["qmastery_auc_pooled"] > 0.7 and informed["qmastery_auc_student"] > 0.7
    assert informed["mastery_correlation"] is None  # its concept mean is constant: the guide sees nothing


def test_gain_is_judged_against_the_next_answer_on_the_practised_concept() -> None:
    # Concepts a b a c b a with responses; the gain of q_t is coded as t so we can read which
    # positions were paired with which next response.
    concepts = [np.array([0, 1, 0, 2, 1, 0, 3, 3])]
    responses = [np.array([1, 0, 1, 1, 0, 0, 1, 1])]

    def coded(q, r, qry):
        t = torch.arange(q.shape[1], dtype=torch.float32)[None, :, None].expand(q.shape[0], -1, 4)
        return torch.zeros_like(t).contiguous(), t.contiguous()

    seqs = build_windows(dataset(concepts, responses, 4), np.arange(1), 200)
    res = evaluate(FakeModel(coded), seqs, batch_size=4, device=torch.device("cpu"), semantics=True)
    series = res.students[0]
    # t=0 (a) -> next a at 2 (r=1); t=1 (b) -> 4 (r=0); t=2 (a) -> 5 (r=0); t=3 (c) none;
    # t=4 (b) none; t=5 (a) none; t=6 (d) -> 7 (r=1).
    assert series.joined("qgain").tolist() == [0, 1, 2, 6]
    assert series.joined("qgain_target").tolist() == [1, 0, 0, 1]
    assert series.joined("qgain_step").tolist() == [0, 1, 2, 6]


# Honest intervals -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["BCa", "t"])
def test_interval_of_a_mean_covers_the_true_mean_at_about_the_nominal_rate(method: str) -> None:
    # Per-student correlations from a skewed distribution with a known mean: 2 * Beta(2, 5) - 1.
    rng = np.random.default_rng(12)
    true_mean = 2 * 2 / 7 - 1
    draws, hits = 300, 0
    for _ in range(draws):
        s = summarize_mean(2 * rng.beta(2, 5, size=40) - 1, method=method)
        hits += s.ci_low <= true_mean <= s.ci_high
    assert 0.90 <= hits / draws <= 0.98  # nominal 0.95; a binomial 300-draw sd is 0.013


def test_the_old_fisher_interval_of_a_mean_was_not_an_interval_of_that_mean() -> None:
    # Its width depends on n only: for 40 students it is ~0.6 wide whatever the spread of the r's,
    # so it covers the mean of 40 tightly clustered r's always, including when that mean is 0.2 off.
    rng = np.random.default_rng(3)
    values = 0.2 + 0.01 * rng.standard_normal(40)
    low, high = fisher_ci(float(values.mean()), 40)
    assert low < 0.0 < high  # "no effect" by Fisher-z
    honest = summarize_mean(values)
    assert honest.ci_low > 0.19 and honest.ci_high < 0.21 and honest.n == 40
    assert honest.interval.startswith("bootstrap-bca") and "seed=0" in honest.interval


def test_bootstrap_interval_is_reproducible_and_recorded() -> None:
    values = np.random.default_rng(5).normal(0.1, 0.2, 60)
    a, b = summarize_mean(values), summarize_mean(values)
    assert a == b and a.interval == "bootstrap-bca(resamples=2000,seed=0)"
    assert summarize_mean(values, seed=1).ci_low != a.ci_low


def test_partial_correlation_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(50.0)
    x = 0.02 * t + rng.standard_normal(50)
    y = 0.03 * t + 0.5 * x + rng.standard_normal(50)
    r = np.corrcoef([x, y, t])
    expected = (r[0, 1] - r[0, 2] * r[1, 2]) / math.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert partial_correlation_or_none(x, y, t, degree=1) == pytest.approx(expected)
    assert partial_correlation_or_none(2 * t + 1, y, t) is None  # x is the control: undefined
    assert partial_correlation_or_none(np.minimum(1.0, 0.05 + 0.03 * t), y, t) is not None
    out = per_student_correlation([x, x], [y, y], [t, t])
    assert out.mean == pytest.approx(partial_correlation_or_none(x, y, t)) and out.n == 2


# Whole-student trajectories -------------------------------------------------------------------


def test_a_drop_at_a_window_boundary_is_a_violation() -> None:
    # A real model whose gains are large: mastery climbs to 1 in every window and restarts near 0
    # at each window start. Inside a window nothing is violated; across the boundaries it is.
    torch.manual_seed(0)
    model = GainAKT2Exp(num_c=4, d_model=8, n_heads=2, n_blocks=1, d_ff=8, dropout=0.0, max_len=20)
    with torch.no_grad():
        model.mastery_head.weight.zero_()
        model.mastery_head.bias.fill_(-6.0)  # m_0 ~ 0.0025
        model.gain_head.weight.zero_()
        model.gain_head.bias.fill_(2.0)  # +0.2 per step
    rng = np.random.default_rng(0)
    ds = dataset([rng.integers(0, 4, 45), rng.integers(0, 4, 15)], [rng.integers(0, 2, 45), rng.integers(0, 2, 15)], 4)
    out = semantics(model, ds, max_len=20)  # student 0: windows of 20, 20 and 5; student 1: one window
    assert out["monotonicity_violation_rate"] == 0.0  # within windows (the guide's definition)
    assert out["monotonicity_violation_rate_whole_student"] == 0.5  # student 0 of 2
    assert out["boundaries"] == 2 and out["multiwindow_students"] == 1
    assert out["boundary_drop_rate"] == 1.0
    assert out["boundary_drop_mean"] == pytest.approx(1.0 - 1 / (1 + math.exp(6.0)), abs=1e-4)


def test_within_window_violation_rates_can_fail() -> None:
    def decreasing(q, r, qry):
        t = torch.arange(q.shape[1], dtype=torch.float32)[None, :, None].expand(q.shape[0], -1, 3)
        m = 1.2 - 0.01 * t  # above 1 at the start, then falling
        return m.contiguous(), (-0.1 * torch.ones_like(m)).contiguous()

    ds = dataset([np.array([0, 1, 2, 0, 1])] * 3, [np.array([1, 0, 1, 1, 0])] * 3, 3)
    out = semantics(FakeModel(decreasing), ds)
    assert out["monotonicity_violation_rate"] == 1.0
    assert out["negative_gain_rate"] == 1.0
    assert out["bounds_violation_rate"] == 1.0
    assert out["monotonicity_violation_rate_whole_student"] == 1.0
    assert out["boundaries"] == 0 and out["boundary_drop_rate"] is None


def test_semantic_columns_are_unique_and_all_reported() -> None:
    assert len(set(SEMANTIC_COLUMNS)) == len(SEMANTIC_COLUMNS)
    ds = dataset([np.array([0, 1, 2, 0, 1, 2])] * 4, [np.array([1, 0, 1, 1, 0, 1])] * 4, 3)
    assert set(semantics(FakeModel(ramp(3)), ds)) == set(SEMANTIC_COLUMNS)


# Loss reporting ---------------------------------------------------------------------------------


def test_absolute_loss_shares_are_non_negative_and_sum_to_one() -> None:
    shares = loss_abs_shares({"bce": 0.6, "constraint": 0.2, "alignment": -0.15, "lag": -0.05, "retention": None})
    assert all(v >= 0 for v in shares.values())
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["alignment_abs_share"] == pytest.approx(0.15)
    assert all(math.isnan(v) for v in loss_abs_shares({}).values())


def test_launch_warns_when_a_requested_term_cannot_become_active() -> None:
    lines = schedule_warnings(LossSettings(), 3)  # both_lag defaults, the guide's 3-epoch sanity run
    assert any(line.startswith("lag loss is requested but inactive in all 3 epochs") for line in lines)
    assert any(line.startswith("retention loss is requested but inactive") for line in lines)
    assert schedule_warnings(LossSettings(), 12) == []
    assert schedule_warnings(LossSettings(enable_lag_gain_loss=False, enable_retention_loss=False,
                                         warmup_constraint_epochs=1, alignment_warmup_epochs=1), 3) == []


@pytest.mark.parametrize("warmup", [0, 1, 3, 8])
def test_first_active_epochs_match_the_schedule(warmup: int) -> None:
    settings = LossSettings(warmup_constraint_epochs=warmup)
    schedule = LossSchedule(settings, 14)
    first: dict[str, int] = {}
    for epoch in range(14):
        w = schedule.begin_epoch(epoch)
        for term in ("alignment", "lag", "retention"):
            if getattr(w, term) > 0:
                first.setdefault(term, epoch + 1)
        schedule.end_epoch(epoch, mastery_corr_reference=0.3, loss_shares={"alignment": 0.01})
    assert first == first_active_epochs(settings)


def test_constant_predictions_are_reported_as_collapsed() -> None:
    rng = np.random.default_rng(6)
    concepts = [rng.integers(0, 3, 30) for _ in range(10)]
    responses = [(rng.random(30) < 0.8).astype(np.int64) for _ in range(10)]
    seqs = build_windows(dataset(concepts, responses, 3), np.arange(10), 200)
    res = evaluate(FakeModel(ramp(3)), seqs, batch_size=4, device=torch.device("cpu"))  # logits 0: p = 0.5
    assert res.accuracy == pytest.approx(res.majority_rate) and res.collapsed()

    class Oracle(FakeModel):
        def forward(self, q, r, qry, pack=None):
            out = super().forward(q, r, qry)
            target = torch.zeros_like(out["logits"])
            target[:, :-1] = r[:, 1:].float()  # the answer at t+1 (the last column is padding-safe)
            out["logits"] = 4 * target - 2
            return out

    assert not evaluate(Oracle(ramp(3)), seqs, batch_size=4, device=torch.device("cpu")).collapsed()


def test_per_student_auc_equals_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from gainakt.metrics import auc_or_none

    rng = np.random.default_rng(9)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        p = np.round(rng.random(40), 1)  # many ties
        if 0 < y.sum() < 40:
            assert auc_or_none(y, p) == pytest.approx(roc_auc_score(y, p))
    assert auc_or_none(np.ones(5), np.arange(5.0)) is None


def test_trajectory_examples_prefer_students_with_several_windows() -> None:
    from gainakt.train import trajectory_examples

    rng = np.random.default_rng(2)
    lengths = [10, 12, 45, 11, 30]
    ds = dataset([rng.integers(0, 3, n) for n in lengths], [rng.integers(0, 2, n) for n in lengths], 3)
    seqs = build_windows(ds, np.arange(5), 20)
    res = evaluate(FakeModel(ramp(3)), seqs, batch_size=4, device=torch.device("cpu"), semantics=True)
    examples = trajectory_examples(res, np.arange(5), k=2)
    assert [e["student"] for e in examples] == [2, 4]  # 3 and 2 windows
    assert examples[0]["window_starts"] == [0, 19, 38] and len(examples[0]["mastery"]) == 19 + 19 + 4
