"""Tests of the loss terms, the ablation table and the loss schedule."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from gainakt import losses as L
from gainakt.losses import (
    ABLATION_MODES,
    EpochWeights,
    LossSchedule,
    LossSettings,
    compute_losses,
    resolve_ablation,
)
from gainakt.model import GainAKT2Exp

C = 6
ALL_ON = EpochWeights(
    monotonicity=0.1, non_negative=0.1, mastery_performance=0.8, gain_performance=0.8, sparsity=0.2,
    consistency=0.3, alignment=0.3, lag=0.05, lag_weights=(0.5, 0.3, 0.2), retention=0.12,
    retention_peak=0.9, variance_floor=0.0, gain_scale=0.1,
)
TERM_FIELDS = {  # output key -> EpochWeights field
    "monotonicity": "monotonicity", "non_negative": "non_negative",
    "mastery_performance": "mastery_performance", "gain_performance": "gain_performance",
    "sparsity": "sparsity", "consistency": "consistency", "alignment": "alignment", "lag": "lag",
    "retention": "retention",
}
TERM_FUNCTIONS = {  # EpochWeights field -> function that must not run when the weight is 0
    "monotonicity": "monotonicity_loss", "non_negative": "non_negative_loss",
    "mastery_performance": "mastery_performance_loss", "gain_performance": "gain_performance_loss",
    "sparsity": "sparsity_loss", "consistency": "consistency_loss", "alignment": "alignment_loss",
    "lag": "lag_gain_loss", "retention": "retention_loss",
}


def _batch(b: int = 6, t: int = 24, seed: int = 0, lengths=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [t - 3 * i for i in range(b)]
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    batch = {
        "q": torch.randint(0, C, (b, t), generator=g),
        "r": torch.randint(0, 2, (b, t), generator=g),
        "qry": torch.randint(0, C, (b, t), generator=g),
        "target": torch.randint(0, 2, (b, t), generator=g).float(),
        "mask": mask,
    }
    for key in ("q", "r", "qry", "target"):  # padding is zero, as in SequenceSet
        batch[key] = batch[key] * mask
    return batch


def _random_out(batch: dict, seed: int = 1, requires_grad: bool = True) -> dict:
    """Free (non-model) outputs: mastery not monotone, gains with negatives, to reach every term."""
    b, t = batch["q"].shape
    g = torch.Generator().manual_seed(seed)
    leaves = {
        "logits": torch.randn(b, t, generator=g),
        "m_raw": torch.randn(b, t, C, generator=g),
        "gains": torch.randn(b, t, C, generator=g),
    }
    for v in leaves.values():
        v.requires_grad_(requires_grad)
    return {
        "logits": leaves["logits"], "mastery": torch.sigmoid(leaves["m_raw"]), "gains": leaves["gains"],
        "_leaves": leaves,
    }


def _small_model(**kw) -> GainAKT2Exp:
    torch.manual_seed(0)
    return GainAKT2Exp(num_c=C, d_model=16, n_heads=2, n_blocks=1, d_ff=16, max_len=60, **kw)


def _corr(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


# ----------------------------------------------------------------------------- padding


def test_appended_padding_changes_no_loss():
    model = _small_model().eval()
    batch = _batch()
    padded = {k: torch.cat([v, torch.zeros_like(v[:, :9])], dim=1) for k, v in batch.items()}
    g = torch.Generator().manual_seed(5)
    padded["q"][:, -9:] = torch.randint(0, C, (6, 9), generator=g)  # garbage after the end
    padded["r"][:, -9:] = torch.randint(0, 2, (6, 9), generator=g)
    padded["target"][:, -9:] = torch.randint(0, 2, (6, 9), generator=g).float()
    w = replace(ALL_ON, retention_peak=0.5, use_residual_alignment=True)
    a = compute_losses(model(batch["q"], batch["r"], batch["qry"]), batch, w)
    b = compute_losses(model(padded["q"], padded["r"], padded["qry"]), padded, w)
    for key, value in a.items():
        assert torch.allclose(value, b[key], atol=1e-5, equal_nan=True), key


def test_garbage_in_padded_positions_changes_no_loss():
    batch = _batch()
    out = _random_out(batch, requires_grad=False)
    pad = ~batch["mask"]
    g = torch.Generator().manual_seed(9)
    dirty_batch = {k: v.clone() for k, v in batch.items()}
    dirty_batch["q"][pad] = torch.randint(0, C, (int(pad.sum()),), generator=g)
    dirty_batch["qry"][pad] = torch.randint(0, C, (int(pad.sum()),), generator=g)
    dirty_batch["target"][pad] = 1.0
    dirty_out = {k: v.clone() for k, v in out.items() if k != "_leaves"}
    dirty_out["logits"][pad] = 50.0
    dirty_out["mastery"][pad] = 0.123
    dirty_out["gains"][pad] = -7.0
    w = replace(ALL_ON, use_residual_alignment=True)
    a = compute_losses(out, batch, w)
    b = compute_losses(dirty_out, dirty_batch, w)
    for key, value in a.items():
        assert torch.allclose(value, b[key], atol=1e-6, equal_nan=True), key


# ----------------------------------------------------------------------------- gradients and weight 0


@pytest.mark.parametrize("term", list(TERM_FIELDS))
def test_each_weighted_term_gives_gradient(term):
    batch = _batch()
    out = _random_out(batch)
    only = {f: 0.0 for f in TERM_FUNCTIONS}
    only[TERM_FIELDS[term]] = getattr(ALL_ON, TERM_FIELDS[term])
    w = replace(ALL_ON, **only)
    res = compute_losses(out, batch, w)
    value = res[term]
    assert value.requires_grad, term
    grads = torch.autograd.grad(value, list(out["_leaves"].values()), allow_unused=True)
    total = sum(float(g.abs().sum()) for g in grads if g is not None)
    assert total > 0, term
    # the weighted term is part of the total
    if term in L.CONSTRAINT_TERMS:
        assert torch.allclose(res["constraint"], only[term] * value)


@pytest.mark.parametrize("field_name,function", list(TERM_FUNCTIONS.items()))
def test_weight_zero_term_is_not_computed(monkeypatch, field_name, function):
    def boom(*args, **kwargs):
        raise AssertionError(f"{function} called with weight 0")

    monkeypatch.setattr(L, function, boom)
    batch = _batch()
    res = compute_losses(_random_out(batch), batch, replace(ALL_ON, **{field_name: 0.0}))
    assert torch.isfinite(res["total"])
    with pytest.raises(AssertionError, match="weight 0"):
        compute_losses(_random_out(batch), batch, ALL_ON)


def test_every_term_on_model_outputs_backpropagates_to_heads():
    model = _small_model().train()
    batch = _batch()
    res = compute_losses(model(batch["q"], batch["r"], batch["qry"]), batch, ALL_ON)
    res["total"].backward()
    assert model.gain_head.weight.grad.abs().sum() > 0
    assert model.mastery_head.weight.grad.abs().sum() > 0
    for key in ("alignment", "lag", "retention", "mastery_performance", "gain_performance", "sparsity"):
        assert res[key].requires_grad, key


def test_heads_off_make_head_terms_zero():
    model = _small_model(use_gain_head=False)
    batch = _batch()
    res = compute_losses(model(batch["q"], batch["r"], batch["qry"]), batch, ALL_ON)
    for key in (*L.CONSTRAINT_TERMS, "constraint", "alignment", "lag", "retention"):
        assert float(res[key]) == 0.0, key
    assert torch.allclose(res["total"], res["bce"])
    assert math.isnan(float(res["alignment_corr_mastery"]))


def test_model_mastery_is_monotone_so_guard_terms_are_zero():
    model = _small_model().train()
    batch = _batch()
    res = compute_losses(model(batch["q"], batch["r"], batch["qry"]), batch, ALL_ON)
    assert res["monotonicity"].item() == 0.0 and res["non_negative"].item() == 0.0


def test_low_variance_batch_skips_alignment_and_lag():
    batch = _batch()
    out = _random_out(batch)
    out["mastery"] = torch.full_like(out["mastery"], 0.5) + 1e-4 * out["mastery"]
    res = compute_losses(out, batch, replace(ALL_ON, variance_floor=1e-4))
    assert float(res["alignment"]) == 0.0 and float(res["lag"]) == 0.0
    assert float(res["mastery_variance"]) < 1e-4
    assert res["retention"].item() > 0  # retention is not gated by the floor


# ----------------------------------------------------------------------------- term definitions


def test_bce_is_mean_over_valid_positions():
    batch = _batch()
    out = _random_out(batch, requires_grad=False)
    m = batch["mask"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"][m], batch["target"][m])
    assert torch.allclose(L.bce_loss(out["logits"], batch["target"], m), expected)


def test_mastery_performance_uses_next_concept_and_target_and_survives_empty_groups():
    mastery = torch.tensor([[[0.2, 0.9], [0.4, 0.7]]])
    qry = torch.tensor([[1, 0]])
    mask = torch.tensor([[True, True]])
    target = torch.tensor([[1.0, 0.0]])
    # correct on concept 1 (m=0.9) -> 0.1; wrong on concept 0 (m=0.4) -> 0.4
    assert math.isclose(float(L.mastery_performance_loss(mastery, qry, target, mask)), 0.5, rel_tol=1e-6)
    all_correct = torch.ones(1, 2)
    value = L.mastery_performance_loss(mastery, qry, all_correct, mask)
    assert math.isfinite(float(value)) and math.isclose(float(value), (0.1 + 0.6) / 2, rel_tol=1e-6)


def test_gain_performance_hinge_needs_both_groups():
    gains = torch.tensor([[[0.0, 0.5], [0.3, 0.0]]])
    qry = torch.tensor([[1, 0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # g_rel = [0.5 (correct), 0.3 (wrong)] -> relu(0.3 - 0.5 + 0.1) = 0
    assert float(L.gain_performance_loss(gains, qry, torch.tensor([[1.0, 0.0]]), mask)) == 0.0
    # swapped labels: relu(0.5 - 0.3 + 0.1) = 0.3
    value = L.gain_performance_loss(gains, qry, torch.tensor([[0.0, 1.0]]), mask)
    assert math.isclose(float(value), 0.3, rel_tol=1e-6)
    assert float(L.gain_performance_loss(gains, qry, torch.ones(1, 2), mask)) == 0.0


def test_sparsity_ignores_the_practised_concept():
    batch = _batch()
    gains = torch.zeros(6, 24, C)
    gains.scatter_(-1, batch["q"].unsqueeze(-1), 3.0)
    assert float(L.sparsity_loss(gains, batch["q"], batch["mask"])) == 0.0
    gains += 1.0
    assert math.isclose(float(L.sparsity_loss(gains, batch["q"], batch["mask"])), 1.0, rel_tol=1e-6)


def test_consistency_is_zero_for_unsaturated_recursion():
    initial = torch.full((2, C), 0.1)
    gains = torch.rand(2, 5, C) * 0.1
    mastery = L_accumulate(initial, gains)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert float(L.consistency_loss(mastery, gains, mask, 0.1)) < 1e-7
    assert float(L.consistency_loss(mastery, gains, mask, 0.2)) > 0


def L_accumulate(initial, gains):
    from gainakt.model import accumulate_mastery

    return accumulate_mastery(initial, gains, 0.1)


def test_rowwise_pearson_matches_numpy():
    batch = _batch()
    x = torch.randn(6, 24)
    corr, usable = L.rowwise_pearson(x, batch["target"], batch["mask"])
    for i in range(6):
        m = batch["mask"][i]
        expected = _corr(x[i][m], batch["target"][i][m])
        assert usable[i]
        assert math.isclose(float(corr[i]), expected, abs_tol=1e-5)
    constant = torch.ones(6, 24)
    assert not L.rowwise_pearson(x, constant, batch["mask"])[1].any()


def test_alignment_is_mean_of_per_student_correlations_not_pooled():
    # two students whose levels differ: pooled correlation is high, within-student it is negative
    mastery = torch.zeros(2, 6, 1)
    mastery[0, :, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    mastery[1, :, 0] = torch.tensor([0.9, 0.91, 0.92, 0.93, 0.94, 0.95])
    target = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 1]], dtype=torch.float)
    mask = torch.ones(2, 6, dtype=torch.bool)
    gains = torch.rand(2, 6, 1)
    loss, corr_m, _ = L.alignment_loss(mastery, gains, target, mask)
    per_row = [_corr(mastery[i, :, 0], target[i]) for i in range(2)]
    assert math.isclose(float(corr_m), float(np.mean(per_row)), abs_tol=1e-5)
    pooled = _corr(mastery[:, :, 0].flatten(), target.flatten())
    assert pooled > 0 > float(corr_m)


def _residual_numpy(y: np.ndarray, window: int) -> np.ndarray:
    half = window // 2
    padded = np.pad(y, half, mode="reflect")
    moving = np.convolve(padded, np.ones(window) / window, mode="valid")[: len(y)]
    return y - moving


@pytest.mark.parametrize("window", [3, 4, 5])
def test_residualisation_is_per_row_with_reflect_padding(window):
    batch = _batch(lengths=[24, 17, 9, 6, 4, 12])
    res = L.residualise_rows(batch["target"], batch["mask"], window)
    for i in range(6):
        m = batch["mask"][i]
        y = batch["target"][i][m].numpy()
        expected = _residual_numpy(y, window) if len(y) >= window + 2 else y
        assert np.allclose(res[i][m].numpy(), expected, atol=1e-6), i
    # another student's data never enters a row's residual
    other = {k: v.clone() for k, v in batch.items()}
    other["target"][1] = 1 - other["target"][1]
    res2 = L.residualise_rows(other["target"] * other["mask"], other["mask"], window)
    assert torch.allclose(res[0], res2[0]) and torch.allclose(res[2:], res2[2:])


def test_lag_loss_matches_per_row_definition():
    batch = _batch()
    gains = torch.rand(6, 24, C)
    weights = (0.5, 0.3, 0.2)
    loss, mean_corr = L.lag_gain_loss(gains, batch["target"], batch["mask"], weights)
    g = gains.mean(-1)
    rows = []
    for i in range(6):
        num = den = 0.0
        for lag, w in enumerate(weights, start=1):
            v = (batch["mask"][i, :-lag] & batch["mask"][i, lag:]).numpy()
            x, y = g[i, :-lag].numpy()[v], batch["target"][i, lag:].numpy()[v]
            if len(x) >= 3 and y.std() > 0:
                num += w * _corr(x, y)
                den += w
        if den > 0:
            rows.append(num / den)
    assert math.isclose(float(mean_corr), float(np.mean(rows)), abs_tol=1e-5)
    assert math.isclose(float(loss), -float(np.mean(rows)), abs_tol=1e-5)


def test_retention_penalty_is_gap_below_peak():
    batch = _batch()
    mastery = torch.rand(6, 24, C)
    penalty, corr = L.retention_loss(mastery, batch["target"], batch["mask"], peak=0.5, delta=0.005)
    assert math.isclose(float(penalty), max(0.0, 0.5 - 0.005 - float(corr)), abs_tol=1e-6)
    penalty, _ = L.retention_loss(mastery, batch["target"], batch["mask"], peak=-2.0, delta=0.005)
    assert float(penalty) == 0.0


def test_adaptive_boost_from_batch_scales_alignment():
    batch = _batch()
    out = _random_out(batch, requires_grad=False)
    plain = compute_losses(out, batch, ALL_ON)
    boosted = compute_losses(out, batch, replace(ALL_ON, alignment_boost_from_batch=True))
    ref = float(plain["alignment_corr_mastery"])
    boost = min(3.0, max(1.0, 1 + 4 * (0.05 - ref)))
    assert math.isclose(float(boosted["alignment"]), boost * float(plain["alignment"]), rel_tol=1e-5)


# ----------------------------------------------------------------------------- ablation and settings


def test_ablation_table():
    assert resolve_ablation("none") == resolve_ablation("baseline") == dict.fromkeys(L.ABLATION_FLAGS, False)
    assert resolve_ablation("align") == resolve_ablation("alignment_only")
    assert resolve_ablation("align") == {
        "enable_alignment_loss": True, "enable_global_alignment_pass": True,
        "enable_retention_loss": False, "enable_lag_gain_loss": False,
    }
    assert resolve_ablation("retention") == {
        "enable_alignment_loss": False, "enable_global_alignment_pass": False,
        "enable_retention_loss": True, "enable_lag_gain_loss": False,
    }
    assert resolve_ablation("both")["enable_lag_gain_loss"] is False
    assert all(resolve_ablation("both_lag").values())
    assert set(ABLATION_MODES) == {"none", "baseline", "alignment_only", "align", "retention", "both", "both_lag"}


def test_ablation_overrides_win_in_both_directions():
    off = resolve_ablation("both_lag", {"enable_lag_gain_loss": False, "enable_retention_loss": None})
    assert off["enable_lag_gain_loss"] is False and off["enable_retention_loss"] is True
    on = resolve_ablation("none", {"enable_alignment_loss": True})
    assert on["enable_alignment_loss"] is True and on["enable_global_alignment_pass"] is False


def test_unknown_ablation_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="both_lag"):
        resolve_ablation("everything")
    with pytest.raises(ValueError, match="unknown ablation flag"):
        resolve_ablation("none", {"enable_magic": True})


def test_settings_defaults_from_flat_and_validation():
    s = LossSettings()
    assert (s.alignment_weight, s.retention_weight, s.lag_gain_weight) == (0.30, 0.12, 0.05)
    flat = LossSettings.from_flat({"alignment_weight": 0.2, "learning_rate": 1.0, "sparsity_loss_weight": None,
                                   "ablation_mode": "align", "enable_retention_loss": True})
    assert flat.alignment_weight == 0.2 and flat.sparsity_loss_weight == 0.2
    assert flat.enable_alignment_loss and flat.enable_retention_loss and not flat.enable_lag_gain_loss
    with pytest.raises(ValueError, match="lag_max_lag"):
        LossSettings(lag_max_lag=4)
    assert LossSettings(lag_max_lag=2).lag_weights() == (0.5, 0.3)


# ----------------------------------------------------------------------------- schedule


def test_warmup_values_and_activation_epochs():
    sched = LossSchedule(LossSettings(), num_epochs=40)
    w0 = sched.begin_epoch(0)
    assert math.isclose(w0.mastery_performance, 0.8 / 8) and math.isclose(w0.gain_performance, 0.1)
    assert math.isclose(w0.alignment, 0.30 / 8)
    assert (w0.monotonicity, w0.sparsity, w0.consistency) == (0.1, 0.2, 0.3)  # not warmed up
    assert w0.lag == 0 and not w0.retention_active and not w0.alignment_boost_from_batch
    assert sched.begin_epoch(7).mastery_performance == 0.8
    assert sched.begin_epoch(7).alignment_boost_from_batch  # warm-up done, no reference yet
    assert sched.begin_epoch(8).lag == 0.0  # e1 = 9 < 8 + 2
    assert sched.begin_epoch(9).lag == 0.05 and sched.begin_epoch(9).lag_weights == (0.5, 0.3, 0.2)
    assert not sched.begin_epoch(9).retention_active  # no peak yet
    sched.end_epoch(9, mastery_corr_reference=0.1)
    w = sched.begin_epoch(10)
    assert w.retention_active and w.retention_peak == 0.1 and w.retention == 0.12


def test_cosine_schedule_and_disabled_constraints():
    s = LossSettings(enable_cosine_perf_schedule=True)
    w = LossSchedule(s, num_epochs=10).begin_epoch(4)
    assert math.isclose(w.mastery_performance, 0.8 * 0.5 * (1 - math.cos(math.pi * 5 / 10)))
    w = LossSchedule(LossSettings(enhanced_constraints=False), 10).begin_epoch(9)
    assert all(getattr(w, t) == 0 for t in L.CONSTRAINT_TERMS) and w.alignment > 0
    w = LossSchedule(LossSettings(enable_alignment_loss=False, enable_lag_gain_loss=False), 10).begin_epoch(9)
    assert w.alignment == 0 and w.lag == 0


def test_adaptive_boost_uses_previous_reference():
    sched = LossSchedule(LossSettings(), 20)
    for e in range(8):
        sched.begin_epoch(e)
        sched.end_epoch(e, mastery_corr_reference=0.0, loss_shares={"alignment": 0.0})
    w = sched.begin_epoch(8)
    assert math.isclose(w.alignment_boost, 1.2) and math.isclose(w.alignment, 0.30 * 1.2)
    sched.end_epoch(8, mastery_corr_reference=0.2, loss_shares={"alignment": 0.0})
    assert sched.begin_epoch(9).alignment_boost == 1.0


def test_share_cap_decay():
    sched = LossSchedule(LossSettings(), 20)
    sched.begin_epoch(0)
    log = sched.end_epoch(0, loss_shares={"alignment": -0.2}, mastery_corr_reference=None)
    assert log["alignment_decayed"] and math.isclose(sched.alignment_weight_current, 0.225)
    sched.begin_epoch(1)
    sched.end_epoch(1, loss_shares={"alignment": -0.2}, mastery_corr_reference=0.10)  # previous unknown
    assert math.isclose(sched.alignment_weight_current, 0.225 * 0.75)
    sched.begin_epoch(2)
    log = sched.end_epoch(2, loss_shares={"alignment": -0.2}, mastery_corr_reference=0.12)  # improved
    assert not log["alignment_decayed"] and math.isclose(sched.alignment_weight_current, 0.225 * 0.75)
    sched.begin_epoch(3)
    sched.end_epoch(3, loss_shares={"alignment": 0.05}, mastery_corr_reference=0.12)  # under the cap
    assert math.isclose(sched.alignment_weight_current, 0.225 * 0.75)
    for e in range(4, 12):
        sched.begin_epoch(e)
        sched.end_epoch(e, loss_shares={"alignment": 0.5}, mastery_corr_reference=0.12)
    assert sched.alignment_weight_current == 0.05  # floor
    off = LossSchedule(LossSettings(enable_alignment_loss=False), 20)
    off.begin_epoch(0)
    off.end_epoch(0, loss_shares={"alignment": 0.5})
    assert off.alignment_weight_current == 0.30


def test_consistency_rebalance():
    sched = LossSchedule(LossSettings(), 20)
    sched.begin_epoch(6)
    assert not sched.end_epoch(6, mastery_corr_reference=0.01)["consistency_rebalanced"]  # e1 = 7 < 8
    sched.begin_epoch(7)
    log = sched.end_epoch(7, mastery_corr_reference=0.05)
    assert log["consistency_rebalanced"] and log["consistency_loss_weight_current"] == 0.2
    assert sched.begin_epoch(8).consistency == 0.2
    high = LossSchedule(LossSettings(), 20)
    high.begin_epoch(9)
    assert high.end_epoch(9, mastery_corr_reference=0.2)["consistency_loss_weight_current"] == 0.3
    no_align = LossSchedule(LossSettings(enable_alignment_loss=False), 20)
    no_align.begin_epoch(9)
    assert no_align.end_epoch(9, mastery_corr_reference=0.0)["consistency_loss_weight_current"] == 0.3


@pytest.mark.parametrize("freeze", [False, True])
def test_variance_floor_counts_epochs(freeze):
    sched = LossSchedule(LossSettings(freeze_sparsity=freeze), 20)
    variances = [1e-5, 1e-5, 1e-3, 1e-5, 1e-5, 1e-5, 1e-5]
    reduced = []
    for e, v in enumerate(variances):
        sched.begin_epoch(e)
        log = sched.end_epoch(e, mean_mastery_variance=v)
        reduced.append(log["sparsity_reduced"])
    if freeze:
        assert not any(reduced) and sched.sparsity_weight_current == 0.2
    else:
        assert reduced == [False, False, False, False, False, True, False]  # once, at the 3rd low epoch
        assert math.isclose(sched.sparsity_weight_current, 0.1)
        assert sched.begin_epoch(7).sparsity == 0.1


def test_retention_peak_and_value():
    sched = LossSchedule(LossSettings(), 20)
    values, peaks = [], []
    for e, ref in enumerate([0.05, 0.12, 0.08, 0.10, 0.09, 0.11, 0.07, 0.06, 0.10, 0.13, None]):
        sched.begin_epoch(e)
        log = sched.end_epoch(e, mastery_corr_reference=ref)
        values.append(log["retention_loss_value"])
        peaks.append(log["peak_mastery_corr"])
    assert peaks[:3] == [0.05, 0.12, 0.12] and peaks[-2:] == [0.13, 0.13]  # running max; None keeps it
    assert values[:8] == [0.0] * 8  # inactive while e1 <= warmup_constraint_epochs
    # epoch 8 (e1 = 9 > 8): peak 0.12, reference 0.10 -> 0.12 * (0.12 - 0.005 - 0.10)
    assert math.isclose(values[8], 0.12 * (0.12 - 0.005 - 0.10))
    assert values[9] == 0.0  # a new peak


def test_observe_batch_gives_shares_and_variance():
    sched = LossSchedule(LossSettings(), 20)
    w = sched.begin_epoch(9)
    w = replace(w, retention=0.0)
    batch = _batch()
    for seed in range(3):
        sched.observe_batch(compute_losses(_random_out(batch, seed=seed), batch, w))
    log = sched.end_epoch(9, mastery_corr_reference=0.1)
    shares = log["loss_shares"]
    assert set(shares) == {"main", "constraint", "alignment", "lag", "retention"}
    assert math.isclose(shares["main"] + shares["constraint"] + shares["retention"], 1.0, rel_tol=1e-5)
    assert log["mean_mastery_variance"] > 0


def test_state_dict_round_trip_resumes_identically():
    def run(sched, epochs):
        logs = []
        for e in epochs:
            w = sched.begin_epoch(e)
            log = sched.end_epoch(e, loss_shares={"alignment": -0.15}, mastery_corr_reference=0.02 * (e % 4),
                                  mean_mastery_variance=1e-5 if e % 5 else 1.0)
            logs.append((w.as_dict(), log))
        return logs

    full = LossSchedule(LossSettings(), 16)
    expected = run(full, range(16))
    first = LossSchedule(LossSettings(), 16)
    run(first, range(9))
    state = json.loads(json.dumps(first.state_dict()))
    resumed = LossSchedule(LossSettings(), 16)
    resumed.load_state_dict(state)
    assert run(resumed, range(9, 16)) == expected[9:]
    with pytest.raises(ValueError):
        resumed.load_state_dict({"version": 99})
