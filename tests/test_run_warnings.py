"""Warnings stay with the run: results.json `warnings`, the README (its ablation line too) and SEED_INFO.md
are pure functions of the config, the results and the seeds' epoch histories."""

from __future__ import annotations

import copy
import json

import pytest

from harness.cli.main import build_parser
from harness.folder import artifacts
from harness.folder.experiment import dumps_json
from harness.run.launcher import resolve_run


def config(*flags: str) -> dict:
    ns = build_parser().parse_args(["run", "t", "--devices", "cpu", *flags])
    cfg = dict(resolve_run(ns, "t").config, config_md5="0" * 32)
    cfg["data_checksum"] = {"sha256": "ab" * 32}
    cfg["experiment"]["id"] = "20260101_000000_gainakt2exp_t"
    return cfg


def row(seed: int, epoch: int, *, alignment=0.0, lag=0.0, retention=0.0, acc=0.7, auc=0.72) -> dict:
    return {"seed": seed, "epoch": epoch, "train_alignment_term": alignment, "train_lag_term": lag,
            "train_retention_term": retention, "train_constraint_term": 0.1, "val_accuracy": acc, "val_auc": auc}


def outcome(seed: int, rows: list[dict], **final) -> dict:
    final = {"val_auc": 0.7, "val_accuracy": 0.7, "val_majority_rate": 0.65, "test_auc": 0.7,
             "test_accuracy": 0.7, **final}
    return {"result": {"seed": seed, "status": "completed", "reason": None, "epochs_run": len(rows),
                       "best_epoch": 1, "best_val_auc": 0.7, "best": rows[0], "final": final, "history": rows}}


def test_quick_run_warnings_say_what_the_history_shows():
    """The guide's 3-epoch sanity run: lag and retention never acted, alignment did from epoch 1."""
    cfg = config("--epochs", "3", "--seeds", "21")
    hist = {21: [row(21, e, alignment=0.01) for e in (1, 2, 3)]}
    results = artifacts.build_results(cfg, {21: outcome(21, hist[21])}, hist)
    warnings = results["warnings"]
    assert any(w.startswith("lag loss was requested but inactive in all 3 epochs run (seed 21): its schedule "
                            "starts it at epoch 10") for w in warnings), warnings
    assert any(w.startswith("retention loss was requested but inactive in all 3 epochs run (seed 21)")
               for w in warnings)
    assert "alignment loss reaches only 3/8 of its weight (alignment_warmup_epochs=8 > --epochs 3)" in warnings
    assert not any(w.startswith("alignment loss was requested") for w in warnings)
    line = artifacts.ablation_line(cfg, hist)
    assert line == ("both_lag (requested: alignment, lag, retention; active: alignment from "
                    "epoch 1; inactive in all 3 epochs run: lag, retention)")
    readme = artifacts.readme_md(cfg, results, [], "harness run t", hist)
    assert f"- Ablation mode: {line}" in readme and "## Warnings" in readme
    assert all(f"- {w}" in readme for w in warnings)
    info = artifacts.seed_info_md(cfg, results, {21: "cpu"}, {}, hist)
    assert "lag, retention losses requested but inactive in all 3 epochs" in info
    assert "## Warnings" in info and all(f"- {w}" in info for w in warnings)


def test_terms_that_acted_are_named_with_their_first_epoch_per_seed():
    cfg = config("--epochs", "4", "--seeds", "1", "2", "--warmup_constraint_epochs", "1",
                 "--alignment_warmup_epochs", "1")
    hist = {1: [row(1, 1, alignment=0.1), row(1, 2, alignment=0.1, retention=0.02),
                row(1, 3, alignment=0.1, lag=-0.01), row(1, 4, alignment=0.1, lag=-0.01)],
            2: [row(2, 1, alignment=0.1), row(2, 2, alignment=0.1), row(2, 3, alignment=0.1, retention=0.01,
                                                                         lag=-0.02)]}
    line = artifacts.ablation_line(cfg, hist)
    assert line == ("both_lag (requested: alignment, lag, retention; active: alignment from "
                    "epoch 1; lag from epoch 3; retention from epoch 2 (seed 1), epoch 3 (seed 2))")
    outcomes = {s: outcome(s, rows) for s, rows in hist.items()}
    assert artifacts.build_results(cfg, outcomes, hist)["warnings"] == []
    assert set(artifacts.seed_notes(cfg, artifacts.build_results(cfg, outcomes, hist), hist).values()) == {""}


def test_a_term_allowed_by_its_schedule_but_always_zero_is_named_as_such():
    cfg = config("--epochs", "3", "--seeds", "1", "--warmup_constraint_epochs", "1", "--alignment_warmup_epochs", "1")
    hist = {1: [row(1, e, alignment=0.1, lag=-0.01) for e in (1, 2, 3)]}
    (line,) = artifacts.inactive_term_warnings(cfg, hist)
    assert line == ("retention loss was requested but inactive in all 3 epochs run (seed 1): its schedule "
                    "could start it from epoch 2, but its conditions were never met")


def test_activity_follows_the_schedule_recorded_in_the_trajectory():
    """Retention is a hinge: switched on, its term can still be 0. The trajectory's flags decide."""
    cfg = config("--epochs", "3", "--seeds", "1", "--warmup_constraint_epochs", "1", "--alignment_warmup_epochs", "1")
    rows = {1: {e: row(1, e, alignment=0.1, lag=-0.01 if e == 3 else 0.0) for e in (1, 2, 3)}}
    traj = {1: [{"epoch": e, "effective_alignment_weight": 0.3, "lag_active": e >= 3, "retention_active": e >= 2,
                 "val_auc": "not taken: the row wins"} for e in (1, 2, 3)]}
    hist = artifacts.histories_of([1, 2], rows, traj)
    assert list(hist) == [1] and hist[1][1]["retention_active"] is True and hist[1][1]["val_auc"] == 0.72
    assert artifacts.inactive_term_warnings(cfg, hist) == []
    assert artifacts.ablation_line(cfg, hist) == ("both_lag (requested: alignment, lag, retention; active: "
                                                 "alignment from epoch 1; lag from epoch 3; retention "
                                                 "from epoch 2)")
    off = artifacts.histories_of([1], rows, {1: [dict(e, effective_alignment_weight=0.0) for e in traj[1]]})
    assert "inactive in all 3 epochs run: alignment" in artifacts.ablation_line(cfg, off)


def test_modes_without_scheduled_terms_say_so():
    cfg = config("--epochs", "2", "--ablation_mode", "none")
    assert artifacts.ablation_line(cfg, {42: [row(42, 1)]}) == "none (no alignment, lag or retention term requested)"
    assert artifacts.inactive_term_warnings(cfg, {42: [row(42, 1)]}) == []


def test_collapsed_epochs_are_a_warning_and_the_seed_reason():
    cfg = config("--epochs", "3", "--seeds", "7", "--ablation_mode", "none")
    hist = {7: [row(7, 1, acc=0.6505, auc=0.55), row(7, 2, acc=0.6509, auc=0.58), row(7, 3, acc=0.70, auc=0.70)]}
    results = artifacts.build_results(cfg, {7: outcome(7, hist[7], val_predictions_collapsed=True,
                                                      val_accuracy=0.65, val_auc=0.55)}, hist)
    assert artifacts.collapsed_epochs(results, hist) == {7: [1, 2]}
    warnings = results["warnings"]
    assert ("seed 7: validation predictions collapsed in epochs 1-2 of 3: accuracy within 0.001 of the "
            "majority-class rate 0.6500 and AUC < 0.6") in warnings
    assert any(w.startswith("seed 7: predictions collapsed on val") for w in warnings)  # the final model's
    reason = artifacts.seed_notes(cfg, results, hist)[7]
    assert "final predictions collapsed on val" in reason and "validation predictions collapsed in epochs 1-2" in reason
    assert reason in artifacts.seed_info_md(cfg, results, {7: "cpu"}, {}, hist)


def test_a_failed_seed_keeps_its_reason_and_is_not_judged_without_a_final_evaluation():
    cfg = config("--epochs", "3", "--seeds", "3", "--ablation_mode", "none", "--warmup_constraint_epochs", "1")
    hist = {3: [row(3, 1, acc=0.65, auc=0.5)]}
    outcomes = {3: {"status": "failed", "reason": "non-finite loss (nan) at epoch 2, batch 4"}}
    results = artifacts.build_results(cfg, outcomes, hist)
    assert artifacts.seed_notes(cfg, results, hist) == {3: "non-finite loss (nan) at epoch 2, batch 4"}
    assert results["warnings"] == []


def test_the_derived_texts_are_pure_functions_of_their_inputs():
    cfg = config("--epochs", "3", "--seeds", "21", "42")
    hist = {21: [row(21, e, alignment=0.01) for e in (1, 2, 3)], 42: [row(42, 1, alignment=0.02)]}
    outcomes = {s: outcome(s, rows) for s, rows in hist.items()}
    frozen = copy.deepcopy((cfg, outcomes, hist))
    first = dumps_json(artifacts.build_results(cfg, outcomes, hist))
    assert dumps_json(artifacts.build_results(*copy.deepcopy(frozen))) == first
    results = json.loads(first)
    assert (cfg, outcomes, hist) == frozen  # inputs untouched
    # seeds that ran different numbers of epochs are grouped by it
    assert any("inactive in all 1 epoch run (seed 42)" in w for w in results["warnings"])
    assert any("inactive in all 3 epochs run (seed 21)" in w for w in results["warnings"])
    assert artifacts.readme_md(cfg, results, [], "c", hist) == artifacts.readme_md(cfg, results, [], "c", hist)


@pytest.mark.parametrize(("acc", "rate", "auc", "flagged"), [
    (0.7005, 0.7, 0.55, True), (0.7, 0.7, 0.59, True), (0.702, 0.7, 0.55, False), (0.7, 0.7, 0.61, False),
    (0.7, None, 0.5, False), (float("nan"), 0.7, 0.5, False),
])
def test_the_epoch_line_flags_a_collapsed_model(acc, rate, auc, flagged):
    from gainakt.train import collapse_flag

    flag = collapse_flag(acc, rate, auc)
    assert bool(flag) is flagged
    if flagged:
        assert flag.startswith(" COLLAPSED: val_acc within 0.001 of the majority-class rate 0.7000")


def test_trajectories_counted_from_0_are_matched_to_their_epochs():
    """Trajectory entries written before the 1-based fix carried the schedule's 0-based epoch."""
    rows = {1: {e: row(1, e) for e in (1, 2, 3)}}
    old = [{"epoch": e, "lag_active": e == 2} for e in (0, 1, 2)]
    hist = artifacts.histories_of([1], rows, {1: old})
    assert [e["lag_active"] for e in hist[1]] == [False, False, True] and [e["epoch"] for e in hist[1]] == [1, 2, 3]
    new = [{"epoch": e, "lag_active": e == 3} for e in (2, 3)]  # fewer entries than rows: matched by epoch
    assert [e.get("lag_active") for e in artifacts.histories_of([1], rows, {1: new})[1]] == [None, False, True]


def test_a_trained_epoch_entry_is_numbered_like_its_row():
    from gainakt import train_seed
    from gainakt.simulate import simulate
    from gainakt.train import MemorySink

    cfg = config("--epochs", "2", "--seeds", "3", "--model_preset", "small", "--d_model", "16", "--n_heads", "2",
                 "--n_blocks", "1", "--d_ff", "16", "--batch_size", "16", "--max_semantic_students", "5", "--no_amp")
    sink = MemorySink()
    train_seed(cfg, simulate(num_students=30, num_skills=4, min_len=10, max_len=20, seed=1), "cpu", sink, seed=3)
    assert [e["epoch"] for e in sink.entries] == [r["epoch"] for r in sink.rows] == [1, 2]
    assert all(0.5 <= e["val_majority_rate"] <= 1 for e in sink.entries)
