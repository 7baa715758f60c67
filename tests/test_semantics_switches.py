"""The reference-semantics switches (issue 14 item 6, docs/losses.md "Reference semantics").

Each switch restores one fixed defect of the reference implementation. Tested on tiny tensors: the
switch changes the loss (or gradient) exactly as the docs say, and the default is our fixed code.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gainakt import losses as L
from gainakt.config import REFERENCE_SEMANTICS, ConfigValueError, TrainConfig, TrainingConfig
from gainakt.losses import EpochWeights, LossSchedule, LossSettings, compute_losses
from gainakt.train import amp_settings, clip_gradients, clip_order_note
from harness.cli.main import main
from harness.config.build import config_md5, hashed_view
from harness.config.launch import LaunchOptions
from harness.run.launcher import resolve_run

C = 5
ALL_ON = EpochWeights(
    monotonicity=0.1, non_negative=0.1, mastery_performance=0.8, gain_performance=0.8, sparsity=0.2,
    consistency=0.3, alignment=0.3, lag=0.05, lag_weights=(0.5, 0.3, 0.2), retention=0.12,
    retention_peak=0.9, variance_floor=0.0, gain_scale=0.1,
)
SWITCHES = ("constraints_over_padding", "constraints_current_step", "pooled_correlations", "retention_detached",
            "lag_detached")


def _batch(b: int = 5, t: int = 20, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i in range(b):
        mask[i, : t - 3 * i] = True
    batch = {"q": torch.randint(0, C, (b, t), generator=g), "r": torch.randint(0, 2, (b, t), generator=g),
             "qry": torch.randint(0, C, (b, t), generator=g),
             "target": torch.randint(0, 2, (b, t), generator=g).float(), "mask": mask}
    for key in ("q", "r", "qry", "target"):  # padding is zero, as in SequenceSet
        batch[key] = batch[key] * mask
    return batch


def _out(batch: dict, seed: int = 1) -> dict:
    b, t = batch["q"].shape
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, generator=g, requires_grad=True)
    m_raw = torch.randn(b, t, C, generator=g, requires_grad=True)
    gains = torch.randn(b, t, C, generator=g).abs().requires_grad_(True)
    return {"logits": logits, "mastery": torch.sigmoid(m_raw), "gains": gains, "_leaves": (logits, m_raw, gains)}


def _grads(res: dict, out: dict, term: str) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(x)
            for g, x in zip(torch.autograd.grad(res[term], out["_leaves"], allow_unused=True, retain_graph=True),
                            out["_leaves"], strict=True)]


def _pooled_corr(x: np.ndarray, y: np.ndarray) -> float:
    """The reference's corr: mean((x - x̄)(y - ȳ)) / (std_pop(x) std_pop(y) + 1e-6)."""
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).mean() / (x.std() * y.std() + 1e-6))


# --- defaults: our fixed code ---------------------------------------------------------------------

def test_defaults_are_off_and_equal_the_fixed_formulas_bit_for_bit():
    s = LossSettings()
    assert not any(getattr(s, name) for name in (*SWITCHES, "variance_floor_per_batch"))
    assert s.alignment_max_students is None and TrainingConfig().clip_before_unscale is False
    w = LossSchedule(s, 12).begin_epoch(0)
    assert not any(getattr(w, name) for name in SWITCHES) and w.alignment_max_students is None
    batch = _batch()
    out = _out(batch)
    res = compute_losses(out, batch, ALL_ON)
    m, g, mask = out["mastery"], out["gains"], batch["mask"]
    assert torch.equal(res["mastery_performance"], L.mastery_performance_loss(m, batch["qry"], batch["target"], mask))
    assert torch.equal(res["gain_performance"], L.gain_performance_loss(g, batch["qry"], batch["target"], mask))
    assert torch.equal(res["sparsity"], L.sparsity_loss(g, batch["q"], mask))
    assert torch.equal(res["consistency"], L.consistency_loss(m, g, mask, 0.1))
    align, _, _ = L.alignment_loss(m, g, batch["target"], mask)
    assert torch.equal(res["alignment"], 0.3 * align)
    lag, _ = L.lag_gain_loss(g, batch["target"], mask, (0.5, 0.3, 0.2))
    assert torch.equal(res["lag"], 0.05 * lag)
    penalty, _ = L.retention_loss(m, batch["target"], mask, peak=0.9, delta=0.005)
    assert torch.equal(res["retention"], 0.12 * penalty)
    # every switch explicitly off is the same computation, gradients included
    off = compute_losses(out, batch, replace(ALL_ON, **dict.fromkeys(SWITCHES, False), alignment_max_students=None))
    for key in res:
        assert torch.equal(res[key], off[key]) or (res[key].isnan() and off[key].isnan()), key
    for a, b in zip(_grads(res, out, "total"), _grads(off, out, "total"), strict=True):
        assert torch.equal(a, b)


# --- constraint losses ----------------------------------------------------------------------------

def test_constraints_over_padding_count_padding_as_incorrect_answers_on_concept_0():
    batch = _batch()
    out = _out(batch)
    w = replace(ALL_ON, constraints_over_padding=True)
    res = compute_losses(out, batch, w)
    m, g, pad = out["mastery"].detach().numpy(), out["gains"].detach().numpy(), ~batch["mask"].numpy()
    assert pad.any()
    qry, target = batch["qry"].numpy(), batch["target"].numpy()
    m_rel = np.take_along_axis(m, qry[..., None], -1)[..., 0]  # padding: concept 0
    expected = (1 - m_rel[target == 1]).mean() + m_rel[target == 0].mean()  # padding: target 0 = incorrect
    assert res["mastery_performance"].item() == pytest.approx(expected, rel=1e-6)
    q = batch["q"].numpy()
    off_concept = np.abs(g).sum(-1) - np.take_along_axis(np.abs(g), q[..., None], -1)[..., 0]
    assert res["sparsity"].item() == pytest.approx(off_concept.sum() / (q.size * (C - 1)), rel=1e-6)
    # the default ignores anything written into padded positions; the switch does not
    garbage = {**out, "gains": out["gains"] + 5.0 * torch.from_numpy(pad)[..., None]}
    assert torch.equal(compute_losses(garbage, batch, ALL_ON)["sparsity"], compute_losses(out, batch, ALL_ON)["sparsity"])
    assert compute_losses(garbage, batch, w)["sparsity"] > res["sparsity"]
    # correlation terms and BCE keep their mask
    for key in ("bce", "alignment", "lag", "retention"):
        assert torch.equal(res[key], compute_losses(out, batch, ALL_ON)[key])


def test_constraints_current_step_judge_the_practised_concept_against_its_own_response():
    batch = _batch()
    out = _out(batch)
    res = compute_losses(out, batch, replace(ALL_ON, constraints_current_step=True))
    m, g = out["mastery"].detach().numpy(), out["gains"].detach().numpy()
    q, r, valid = batch["q"].numpy(), batch["r"].numpy(), batch["mask"].numpy()
    m_rel = np.take_along_axis(m, q[..., None], -1)[..., 0]
    g_rel = np.take_along_axis(g, q[..., None], -1)[..., 0]
    right, wrong = valid & (r == 1), valid & (r == 0)
    assert res["mastery_performance"].item() == pytest.approx((1 - m_rel[right]).mean() + m_rel[wrong].mean(),
                                                               rel=1e-6)
    hinge = max(0.0, g_rel[wrong].mean() - g_rel[right].mean() + 0.1)
    assert res["gain_performance"].item() == pytest.approx(hinge, rel=1e-5, abs=1e-7)
    default = compute_losses(out, batch, ALL_ON)
    assert res["mastery_performance"] != default["mastery_performance"]
    for key in ("sparsity", "consistency", "monotonicity", "alignment"):  # q-based or concept-free: unchanged
        assert torch.equal(res[key], default[key]), key


# --- correlations ---------------------------------------------------------------------------------

def test_pooled_correlations_pool_every_students_positions_as_the_reference_did():
    batch = _batch()
    out = _out(batch)
    res = compute_losses(out, batch, replace(ALL_ON, pooled_correlations=True))
    valid = batch["mask"].numpy()
    m_mean = out["mastery"].detach().mean(-1).numpy()
    g_mean = out["gains"].detach().mean(-1).numpy()
    target = batch["target"].numpy()
    corr_m, corr_g = _pooled_corr(m_mean[valid], target[valid]), _pooled_corr(g_mean[valid], target[valid])
    assert res["alignment_corr_mastery"].item() == pytest.approx(corr_m, abs=1e-6)
    assert res["alignment"].item() == pytest.approx(-0.3 * (corr_m + corr_g), abs=1e-6)
    assert res["retention_corr"].item() == pytest.approx(corr_m, abs=1e-6)
    pairs = [(valid[:, :-k] & valid[:, k:], k) for k in (1, 2, 3)]
    lagged = [_pooled_corr(g_mean[:, :-k][p], target[:, k:][p]) for p, k in pairs]
    assert res["lag_corr"].item() == pytest.approx(np.dot(lagged, (0.5, 0.3, 0.2)) / 1.0, abs=1e-6)
    default = compute_losses(out, batch, ALL_ON)
    assert abs(res["alignment_corr_mastery"].item() - default["alignment_corr_mastery"].item()) > 1e-3
    assert all(torch.isfinite(x).all() for x in _grads(res, out, "total"))


def test_pooled_correlation_of_a_constant_series_is_zero_with_a_finite_gradient():
    x = torch.full((2, 4), 0.5, requires_grad=True)
    corr, usable = L.pooled_pearson(x, torch.tensor([[0.0, 1, 0, 1], [1, 0, 1, 0]]), torch.ones(2, 4, dtype=torch.bool))
    assert corr.item() == 0.0 and bool(usable)
    corr.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not bool(L.pooled_pearson(x, x, torch.eye(2, 4, dtype=torch.bool))[1])  # 2 < 3 positions


def test_alignment_max_students_uses_the_first_rows_for_alignment_and_lag_only():
    batch = _batch()
    out = _out(batch)
    res = compute_losses(out, batch, replace(ALL_ON, alignment_max_students=2))
    first = {k: v[:2] for k, v in batch.items()}
    align, _, _ = L.alignment_loss(out["mastery"][:2], out["gains"][:2], first["target"], first["mask"])
    lag, _ = L.lag_gain_loss(out["gains"][:2], first["target"], first["mask"], (0.5, 0.3, 0.2))
    assert torch.equal(res["alignment"], 0.3 * align) and torch.equal(res["lag"], 0.05 * lag)
    assert torch.equal(res["retention"], compute_losses(out, batch, ALL_ON)["retention"])
    assert not torch.equal(res["alignment"], compute_losses(out, batch, ALL_ON)["alignment"])


@pytest.mark.parametrize("switch, term", [("retention_detached", "retention"), ("lag_detached", "lag")])
def test_detached_terms_keep_their_value_and_lose_their_gradient(switch, term):
    batch = _batch()
    out = _out(batch)
    default = compute_losses(out, batch, ALL_ON)
    res = compute_losses(out, batch, replace(ALL_ON, **{switch: True}))
    assert res[term].item() != 0.0 and torch.equal(res[term], default[term])
    assert not res[term].requires_grad and default[term].requires_grad
    assert any(x.abs().sum() > 0 for x in _grads(default, out, term))
    # total's gradient is the default's minus that term's
    expected = [a - b for a, b in zip(_grads(default, out, "total"), _grads(default, out, term), strict=True)]
    for got, want in zip(_grads(res, out, "total"), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


# --- variance floor -------------------------------------------------------------------------------

def _low(value: float = 1e-6) -> dict:
    return {"mastery_variance": torch.tensor(value)}


def test_variance_floor_per_batch_counts_batches_and_compounds():
    s = LossSettings(variance_floor_per_batch=True, variance_floor_patience=3)
    sched = LossSchedule(s, 12)
    w = sched.begin_epoch(0)
    seen = []
    for value in (1e-6, 1e-6, 1e-6, 1e-6, 1.0, 1e-6):
        sched.observe_batch(_low(value))
        seen.append(w.sparsity)  # the weights object the training loop holds: next batch's weight
    assert seen == pytest.approx([0.2, 0.2, 0.1, 0.05, 0.05, 0.05])
    log = sched.end_epoch(0, mastery_corr_reference=0.1, mean_mastery_variance=1e-6)
    assert log["sparsity_reduced"] is True and sched.sparsity_weight_current == pytest.approx(0.05)
    assert sched.sparsity_reductions == 2  # the epoch-level rule did not reduce it again
    # the reference's rule ran only with alignment on; freeze_sparsity still means what it says
    for settings in (replace(s, enable_alignment_loss=False), replace(s, freeze_sparsity=True)):
        other = LossSchedule(settings, 12)
        w = other.begin_epoch(0)
        for _ in range(5):
            other.observe_batch(_low())
        assert w.sparsity == pytest.approx(0.2)


def test_variance_floor_default_counts_epochs_not_batches():
    sched = LossSchedule(LossSettings(variance_floor_patience=3), 12)
    w = sched.begin_epoch(0)
    for _ in range(5):
        sched.observe_batch(_low())
    assert w.sparsity == pytest.approx(0.2) and sched.variance_low_epochs == 0
    assert sched.end_epoch(0)["sparsity_reduced"] is False and sched.variance_low_epochs == 1


# --- gradient clipping order ----------------------------------------------------------------------

def _clipped_step(before_unscale: bool, scaled: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=scaled)
    loss = (model(torch.ones(3, 4)) * 10).sum()
    scaler.scale(loss).backward()
    clip_gradients(model, opt, scaler, 1.0, before_unscale)
    scaler.step(opt)
    scaler.update()
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - start


def test_clip_before_unscale_clips_the_scaled_gradients_under_a_grad_scaler():
    # ours: the true gradient is clipped to norm 1, so the SGD (lr 1) update has norm 1
    torch.testing.assert_close(_clipped_step(False, True).norm(), torch.tensor(1.0))
    # reference: the scaled gradient is clipped to norm 1, then unscaled by 1024 -> norm 1 / 1024
    torch.testing.assert_close(_clipped_step(True, True).norm(), torch.tensor(1.0 / 1024))
    # without an enabled scaler (bf16 AMP, fp32) both orders are the same computation
    assert torch.equal(_clipped_step(False, False), _clipped_step(True, False))


def test_clip_before_unscale_says_where_it_cannot_act():
    on = TrainConfig(training=TrainingConfig(clip_before_unscale=True, amp_dtype="fp16"))
    cpu = amp_settings(on, torch.device("cpu"))
    note = clip_order_note(on, cpu)
    assert note is not None and "has no effect in this run" in note and "fp32" in note
    assert clip_order_note(on, {"enabled": True, "dtype": "fp16", "grad_scaler": True}) is None
    assert "AMP bf16" in str(clip_order_note(on, {"enabled": True, "dtype": "bf16", "grad_scaler": False}))
    assert clip_order_note(TrainConfig(), cpu) is None  # off: nothing to say


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"clip_before_unscale": True, "amp_dtype": "bf16"}, "no effect with amp_dtype bf16"),
    ({"clip_before_unscale": True, "gradient_clip": 0.0}, "no effect with gradient_clip 0"),
])
def test_clip_before_unscale_is_refused_where_it_can_never_act(kwargs, message):
    with pytest.raises(ConfigValueError, match=message):
        TrainingConfig(**kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--constraints_over_padding"], "--constraints_over_padding: needs --no-pack_windows"),
    (["--clip_before_unscale", "--amp_dtype", "bf16"], "no effect with amp_dtype bf16"),
])
def test_refused_switch_combinations_are_one_line_before_any_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main(["run", "t", "--output_base", str(out), "--devices", "cpu", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_a_bad_switch_value_is_a_usage_error_before_any_folder(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["run", "t", "--output_base", str(out), "--devices", "cpu", "--alignment_max_students", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "must be a positive integer" in err[-1]
    assert not out.exists()


def _config(**explicit) -> dict:
    opts = LaunchOptions(explicit={"epochs": 1, "model_preset": "small", **explicit})
    return resolve_run(opts, "sem").config


def test_switches_are_flags_that_enter_config_md5_only_when_on():
    base = _config()
    names = [name for fields in REFERENCE_SEMANTICS.values() for name in fields]
    for section, fields in REFERENCE_SEMANTICS.items():
        for name in fields:
            assert name in base[section]
            assert name not in hashed_view(base)[section], name  # default: md5 as before the switch existed
    flags = {"constraints_over_padding": True, "pack_windows": False, "constraints_current_step": True,
             "pooled_correlations": True, "alignment_max_students": 32, "retention_detached": True,
             "lag_detached": True, "variance_floor_per_batch": True, "clip_before_unscale": True,
             "amp_dtype": "fp16", "train_shuffle": False}
    assert set(names) <= set(flags)
    on = _config(**flags)
    for section, fields in REFERENCE_SEMANTICS.items():
        for name, value in fields.items():
            assert on[section][name] == value and hashed_view(on)[section][name] == value
    unpacked = _config(pack_windows=False, amp_dtype="fp16")
    for name in names:
        single = _config(pack_windows=False, amp_dtype="fp16", **{name: flags[name]})
        assert config_md5(single) != config_md5(unpacked), name


# --- end to end: a tiny training run with every switch on -----------------------------------------

def test_a_run_with_every_switch_trains_records_them_and_warns_about_the_inert_clip_order():
    from gainakt import train_seed
    from gainakt.simulate import simulate
    from gainakt.train import MemorySink
    from harness.cli.main import build_parser

    tiny = ["run", "t", "--devices", "cpu", "--model_preset", "small", "--d_model", "16", "--n_heads", "2",
            "--n_blocks", "1", "--d_ff", "16", "--batch_size", "16", "--max_semantic_students", "10",
            "--alignment_global_students", "20", "--warmup_constraint_epochs", "0", "--alignment_warmup_epochs", "1",
            "--epochs", "1"]
    switches = ["--no-pack_windows", "--amp_dtype", "fp16", "--constraints_over_padding", "--constraints_current_step",
                "--pooled_correlations", "--alignment_max_students", "4", "--retention_detached", "--lag_detached",
                "--variance_floor_per_batch", "--clip_before_unscale"]
    data = simulate(num_students=40, num_skills=6, min_len=8, max_len=20, seed=3)
    results = {}
    for name, argv in (("ours", ["--no-pack_windows", "--amp_dtype", "fp16"]), ("reference", switches)):
        cfg = resolve_run(build_parser().parse_args([*tiny, *argv]), "t").config
        sink = MemorySink()
        results[name] = (train_seed(cfg, data, "cpu", sink, seed=5), sink)
    ref, ref_sink = results["reference"]
    ours, ours_sink = results["ours"]
    assert ref.status == ours.status == "completed"
    assert "has no effect in this run" in ref.amp["clip_before_unscale"]
    assert any("warning: training.clip_before_unscale has no effect" in m for m in ref_sink.messages)
    assert "clip_before_unscale" not in ours.amp and not any("clip_before_unscale" in m for m in ours_sink.messages)
    assert ref.history[-1]["train_loss"] != ours.history[-1]["train_loss"]
