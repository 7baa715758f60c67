"""Issue 21: saturation of mastery, the whole-student view, and the non-saturating head switch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gainakt.config import ModelConfig, TrainConfig
from gainakt.data import build_windows
from gainakt.evaluate import SEMANTIC_COLUMNS, StudentSeries, evaluate, semantics_of
from gainakt.metrics import SATURATION_LEVEL, saturation
from gainakt.model import GainAKT2Exp, accumulate_mastery
from gainakt.simulate import simulate
from gainakt.train import EPOCH_COLUMNS, build_model
from gainakt.views import StudentView
from harness.config.build import config_md5, hashed_view
from harness.config.launch import LaunchOptions
from harness.run.launcher import resolve_run

# ---------------------------------------------------------------------------------------------
# Saturation on hand-built trajectories


def test_saturation_counts_values_segments_and_first_steps():
    windows = [np.array([0.2, 0.5, 1.0, 1.0]), np.array([0.9, 1.0]), np.array([0.1, 0.2]), np.zeros(0)]
    got = saturation(windows)
    assert got["saturated_share"] == pytest.approx(3 / 8)  # 3 of the 8 values sit at the clamp
    assert got["reached_share"] == pytest.approx(2 / 3)  # 2 of the 3 non-empty windows reach it
    assert got["steps_median"] == pytest.approx(1.5)  # first at step 2 and step 1
    assert got["segments"] == 3
    # steps given explicitly (e.g. counted from a student's first interaction)
    assert saturation(windows[:2], [np.array([10, 11, 12, 13]), np.array([5, 7])])["steps_median"] == 9.5
    # the level is 1 - 1e-6: float32 round-off under 1 counts, a value clearly below does not
    assert saturation([np.array([np.float32(1) - np.float32(6e-8), 0.999])])["saturated_share"] == 0.5
    assert SATURATION_LEVEL == 1 - 1e-6
    empty = saturation([])
    assert math.isnan(empty["saturated_share"]) and math.isnan(empty["steps_median"]) and empty["segments"] == 0


def _series(windows: list[list[float]], truth: list[list[float]] | None = None,
            carried: list[list[float]] | None = None, width: int = 200) -> StudentSeries:
    """A student whose asked-concept mastery per window is given (one concept, so mean = asked)."""
    rec = StudentSeries()
    before = 0
    for k, w in enumerate(windows):
        a = np.array(w, dtype=np.float64)
        rec.mastery.append(a)
        rec.pred_mastery.append(a)
        rec.gain.append(np.zeros_like(a))
        rec.target.append(np.arange(a.size) % 2.0)
        rec.step.append(np.arange(a.size, dtype=np.float64))
        rec.student_step.append(np.arange(a.size, dtype=np.float64) + before)
        before += width
        sv = np.array(carried[k] if carried is not None else w, dtype=np.float64)
        rec.sv_mastery.append(sv)
        rec.sv_pred_mastery.append(sv)
        if truth is not None:
            rec.true_mastery.append(np.array(truth[k], dtype=np.float64))
    return rec


def test_saturation_columns_of_a_hand_built_population():
    # student 0: two windows; the window view resets at the boundary, the student view carries 1.0 over
    s0 = _series([[0.3, 0.8, 1.0, 1.0], [0.4, 0.6, 1.0]], truth=[[0.1, 0.2, 0.3, 0.4], [0.5, 0.9, 1.0]],
                 carried=[[0.3, 0.8, 1.0, 1.0], [1.0, 1.0, 1.0]], width=5)
    s1 = _series([[0.1, 0.2, 0.3]], truth=[[0.1, 0.1, 0.1]], width=5)
    flat = semantics_of([s0, s1]).flat()
    assert flat["mastery_saturated_share"] == pytest.approx(3 / 10)
    assert flat["saturation_windows"] == 3
    assert flat["saturation_reached_share"] == pytest.approx(2 / 3)
    assert flat["saturation_steps_median"] == pytest.approx(2.0)  # step 2 in both saturated windows
    assert flat["true_mastery_saturated_share"] == pytest.approx(1 / 10)
    assert flat["true_saturation_reached_share"] == pytest.approx(1 / 3)
    assert flat["true_saturation_steps_median"] == pytest.approx(2.0)
    assert flat["student_view_mastery_saturated_share"] == pytest.approx(5 / 10)
    assert flat["student_view_saturation_reached_share"] == pytest.approx(1 / 2)
    assert flat["student_view_saturation_steps_median"] == pytest.approx(2.0)
    assert flat["student_view_true_saturation_reached_share"] == pytest.approx(1 / 2)
    assert flat["student_view_true_saturation_steps_median"] == pytest.approx(7.0)  # 2nd window starts at 5
    # boundary: the window view drops (1.0 -> 0.4), the carried view does not
    assert flat["boundary_drop_rate"] == 1.0 and flat["boundary_drop_mean"] == pytest.approx(0.6)
    assert flat["monotonicity_violation_rate_whole_student"] == 0.5
    assert flat["student_view_boundary_drop_rate"] == 0.0 and flat["student_view_boundary_drop_mean"] == 0.0
    assert flat["student_view_monotonicity_violation_rate_whole_student"] == 0.0
    assert set(flat) == set(SEMANTIC_COLUMNS)


def test_without_a_truth_the_truth_columns_are_undefined():
    flat = semantics_of([_series([[0.2, 1.0, 1.0]])]).flat()
    for name in ("true_mastery_saturated_share", "true_saturation_steps_median", "student_view_true_mastery_correlation",
                 "student_view_true_saturation_reached_share"):
        assert flat[name] is None, name
    assert flat["mastery_saturated_share"] == pytest.approx(2 / 3)


def test_new_columns_follow_the_older_ones_in_metrics_epoch_csv():
    older_last = EPOCH_COLUMNS.index("semantic_students")
    for name in ("mastery_saturated_share", "student_view_qmastery_correlation", "student_view_boundary_drop_rate",
                 "student_view_saturation_steps_median"):
        assert EPOCH_COLUMNS.index(name) > older_last
    assert EPOCH_COLUMNS[-2:] == ("learning_rate", "epoch_seconds")


# ---------------------------------------------------------------------------------------------
# The whole-student view against a step-by-step reference recursion


def _reference_student_view(model: GainAKT2Exp, ds, student: int, max_len: int) -> list[np.ndarray]:
    """Per window of `student`, the asked-concept mastery of the student view, one step at a time:
    window 0 starts at the head's m_0, window k+1 at the last mastery of window k, and each later step
    applies the head's own update to the full concept vector."""
    windows = build_windows(ds, np.array([student]), max_len)
    out, carried = [], None
    s = model.gain_scale
    for k in range(len(windows)):
        w = windows.select(torch.tensor([k]))
        with torch.no_grad():
            res = model(w.q, w.r, w.qry)
        gains = res["gains"][0].double()
        m = res["mastery"][0, 0].double() if carried is None else carried.clone()
        valid = int(w.mask[0].sum())
        asked = [float(m[int(w.qry[0, 0])])]
        for t in range(1, valid):
            if model.mastery_accumulation == "clamp":
                m = torch.clamp(m + s * gains[t], max=1.0)
            else:
                m = 1.0 - (1.0 - m) * torch.exp(-s * gains[t])
            asked.append(float(m[int(w.qry[0, t])]))
        carried = m
        out.append(np.array(asked))
    return out


@pytest.mark.parametrize("form", ["clamp", "headroom"])
@pytest.mark.parametrize("batch_size,pack", [(2, False), (3, True), (64, False)])
def test_student_view_equals_the_step_by_step_recursion_over_windows(form, batch_size, pack):
    torch.manual_seed(0)
    ds = simulate(num_students=6, num_skills=5, min_len=40, max_len=75, seed=3)
    max_len = 12  # 3 to 6 windows per student; small batches split a student's windows across batches
    model = GainAKT2Exp(num_c=ds.num_c, d_model=16, n_heads=2, n_blocks=1, d_ff=16, dropout=0.0, max_len=max_len,
                        gain_scale=0.3, mastery_accumulation=form).eval()
    students = np.arange(len(ds))
    result = evaluate(model, build_windows(ds, students, max_len), batch_size=batch_size,
                      device=torch.device("cpu"), semantics=True, pack=pack)
    saturated = 0
    for s in students:
        rec = result.students[int(s)]
        ref = _reference_student_view(model, ds, int(s), max_len)
        assert len(rec.sv_pred_mastery) == len(ref) >= 3
        for got, want in zip(rec.sv_pred_mastery, ref, strict=True):
            np.testing.assert_allclose(got, want, atol=2e-6)
        saturated += int(np.concatenate(ref).max() >= SATURATION_LEVEL)
        # the window view of window 0 is the student view; later windows restart at their own m_0
        np.testing.assert_allclose(rec.pred_mastery[0], ref[0], atol=2e-6)
        # steps in the whole student: window k starts at interaction k * max_len
        assert [int(x[0]) for x in rec.student_step] == [k * max_len for k in range(len(ref))]
    if form == "clamp":
        assert saturated  # the clamp is reached, so the reference exercises it


def test_student_view_leaves_the_predictions_alone():
    torch.manual_seed(1)
    ds = simulate(num_students=4, num_skills=4, min_len=30, max_len=40, seed=1)
    model = GainAKT2Exp(num_c=ds.num_c, d_model=16, n_heads=2, n_blocks=1, d_ff=16, dropout=0.0, max_len=10).eval()
    seqs = build_windows(ds, np.arange(len(ds)), 10)
    with_view = evaluate(model, seqs, batch_size=4, device=torch.device("cpu"), semantics=True)
    without = evaluate(model, seqs, batch_size=4, device=torch.device("cpu"), semantics=False)
    assert with_view.auc == without.auc and with_view.loss == without.loss


def test_student_view_refuses_windows_out_of_order():
    view = StudentView(lambda initial, gains: accumulate_mastery(initial, gains, 0.1))
    m, g, mask = torch.full((2, 3, 2), 0.5), torch.ones(2, 3, 2), torch.ones(2, 3, dtype=torch.bool)
    view(m, g, mask, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="not consecutive"):
        view(m, g, mask, torch.tensor([0, 2]))


def test_student_view_carries_across_batches_under_the_clamp():
    view = StudentView(lambda initial, gains: accumulate_mastery(initial, gains, 0.5))
    mask = torch.tensor([[True, True, True, False]])
    gains = torch.ones(1, 4, 1)
    window0 = accumulate_mastery(torch.tensor([[0.2]]), gains, 0.5)
    first = view(window0, gains, mask, torch.tensor([7]))  # a student's first window is its window view
    assert first[0, :3, 0].tolist() == pytest.approx([0.2, 0.7, 1.0])
    window1 = accumulate_mastery(torch.tensor([[0.1]]), gains * 0, 0.5)  # same student, next batch: restarts
    second = view(window1, gains * 0, mask, torch.tensor([7]))
    assert second[0, :3, 0].tolist() == pytest.approx([1.0, 1.0, 1.0])  # carried at the clamp, not reset to 0.1
    other = view(window1, gains, mask, torch.tensor([8]))  # another student starts at its own m_0
    assert other[0, :3, 0].tolist() == pytest.approx([0.1, 0.1, 0.1])


# ---------------------------------------------------------------------------------------------
# The non-saturating head: a hashed, opt-in switch


def test_headroom_head_is_bounded_monotone_and_equals_its_recursion():
    initial = torch.tensor([[0.2, 0.9]])
    gains = torch.tensor([[[5.0, 5.0], [3.0, 0.0], [40.0, 2.0], [0.0, 1.0]]])
    m = accumulate_mastery(initial, gains, 0.1, "headroom")
    step = initial[0].clone()
    for t in range(1, 4):
        step = 1 - (1 - step) * torch.exp(-0.1 * gains[0, t])
        assert torch.allclose(m[0, t], step)
    assert (m[0, 1:] >= m[0, :-1]).all() and (m < 1).all()
    clamp = accumulate_mastery(initial, gains, 0.1, "clamp")
    assert clamp[0, 2, 0] == 1.0 and m[0, 2, 0] < SATURATION_LEVEL  # 0.2 + 0.1 * 43: the clamp saturates
    with pytest.raises(ValueError, match="unknown mastery accumulation"):
        accumulate_mastery(initial, gains, 0.1, "sigmoid")


def _config(**explicit) -> dict:
    return resolve_run(LaunchOptions(explicit={"epochs": 1, "model_preset": "small", **explicit}), "mv").config


def test_mastery_accumulation_is_off_by_default_and_hashed_only_when_on():
    assert ModelConfig().mastery_accumulation == "clamp"
    base = _config()
    assert base["model"]["mastery_accumulation"] == "clamp"
    assert "mastery_accumulation" not in hashed_view(base)["model"]  # config_md5 as before the switch existed
    older = {**base, "model": {k: v for k, v in base["model"].items() if k != "mastery_accumulation"}}
    assert config_md5(older) == config_md5(base)
    assert TrainConfig.from_dict(older).model.mastery_accumulation == "clamp"  # an old config runs the paper head
    on = _config(mastery_accumulation="headroom")
    assert hashed_view(on)["model"]["mastery_accumulation"] == "headroom"
    assert config_md5(on) != config_md5(base)
    model = build_model(on, num_c=5)
    assert model.mastery_accumulation == "headroom"
    assert build_model(base, num_c=5).mastery_accumulation == "clamp"


def test_a_headroom_run_trains_and_its_checkpoint_rebuilds_the_headroom_head(tmp_path):
    from gainakt import train_seed
    from gainakt.checkpoint import load_model
    from gainakt.train import MemorySink

    cfg = _config(mastery_accumulation="headroom", d_model=16, n_heads=2, num_encoder_blocks=1, d_ff=16,
                  batch_size=16, max_semantic_students=5, synthetic_students=40, synthetic_min_len=30,
                  synthetic_max_len=45, seq_len=20, alignment_global_students=10)
    data = simulate(num_students=40, num_skills=20, min_len=30, max_len=45, seed=2025)
    sink = MemorySink()
    result = train_seed(cfg, data, "cpu", sink, seed=3)
    assert result.status == "completed"
    final = result.final
    assert final["val_bounds_violation_rate"] == 0 and final["val_student_view_boundary_drop_rate"] == 0
    assert final["val_saturation_windows"] > final["val_semantic_students"]  # several windows per student
    state = sink.checkpoints["best"]
    assert state["model_args"]["mastery_accumulation"] == "headroom"
    path = tmp_path / "best.pth"
    torch.save(state, path)
    assert load_model(path).mastery_accumulation == "headroom"


def test_more_than_half_saturated_is_a_warning_kept_with_the_run():
    from harness.folder.artifacts import model_warnings

    final = {"val_mastery_saturated_share": 0.62, "val_student_view_mastery_saturated_share": 0.8,
             "val_saturation_steps_median": 4.0, "test_mastery_saturated_share": 0.5}
    lines = model_warnings(7, final)
    assert len(lines) == 1  # exactly half on test is not more than half
    assert lines[0].startswith("seed 7: mastery saturated on validation: 62.0%")
    assert "80.0% in the student view" in lines[0] and "median 4 steps" in lines[0]
    assert model_warnings(7, {"val_mastery_saturated_share": None, "test_mastery_saturated_share": 0.1}) == []


# ---------------------------------------------------------------------------------------------
# benchmarks/mastery_views.py: the table it builds from finished folders


def _benchmark_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mastery_views.py"
    spec = importlib.util.spec_from_file_location("mastery_views_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_table_pairs_seeds_and_shows_both_views(tmp_path):
    import json

    mv = _benchmark_script()
    values = {"clamp": (0.70, 0.30, 0.40), "headroom": (0.71, 0.0, 0.45)}  # test AUC, saturated, student-view truth
    for dataset in ("sim", "assist"):
        for head, (auc, sat, truth) in values.items():
            folder = tmp_path / f"{dataset}_{head}" / f"20260101_000000_gainakt2exp_{dataset}_{head}"
            folder.mkdir(parents=True)
            per_seed = {str(s): {"status": "completed", "best_val_auc": auc + (0.0 if head == "clamp" else 0.001 * i),
                                 "final": {
                "test_auc": auc + (0.001 if head == "clamp" else 0.0015) * i, "test_mastery_saturated_share": sat,
                "test_student_view_true_mastery_correlation": truth if dataset == "sim" else None}}
                for i, s in enumerate((21, 42, 63))}
            (folder / "results.json").write_text(json.dumps({"status": "completed", "per_seed": per_seed}))
    table, record = mv.tabulate(tmp_path, "unused")
    assert record["sim"]["seeds"] == [21, 42, 63]
    assert "| test AUC | 0.7010 ± 0.0010 | 0.7115 ± 0.0015 | 0.01050 ± 0.00050; p = 0.00 |" in table
    assert "| mastery_saturated_share | 0.3000 ± 0.0000 | — | 0.0000 ± 0.0000 | — |" in table
    assert "| true_mastery_correlation (simulator) | — | 0.4000 ± 0.0000 | — | 0.4500 ± 0.0000 |" in table
    # a point that has not finished is named, not tabulated
    (tmp_path / "assist_headroom" / "20260101_000000_gainakt2exp_assist_headroom" / "results.json").unlink()
    assert "not finished: assist_headroom" in mv.tabulate(tmp_path, "unused")[0]
