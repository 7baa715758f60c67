"""Fast paths: window packing, logits-only window-protocol evaluation, deferred non-finite checks.

Each fast path must give the reference-like path's numbers up to float rounding, and each one that
can change numbers is a recorded config field (so it enters config_md5).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import yaml

from gainakt import train_seed
from gainakt.data import build_window_test, build_windows, iterate_batches
from gainakt.data.batching import packing_for, plan_packing
from gainakt.evaluate import _prediction_batches, evaluate, evaluate_predictions
from gainakt.losses import LossSchedule, compute_losses
from gainakt.model import GainAKT2Exp
from gainakt.simulate import simulate
from gainakt.train import MemorySink, StepHealth, loss_settings, make_optimizer
from harness.cli.main import build_parser
from harness.config.build import config_md5
from harness.run.launcher import resolve_run

TINY = ("--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--batch_size", "16", "--max_semantic_students", "10", "--alignment_global_students", "20",
        "--warmup_constraint_epochs", "1", "--alignment_warmup_epochs", "1")


def config(*argv: str) -> dict:
    ns = build_parser().parse_args(["run", "t", "--devices", "cpu", "--no_amp", *argv])
    return resolve_run(ns, "t").config


@pytest.fixture(scope="module")
def data():
    # Lengths 5..90 with max_len 40: full windows, remainders and short students in every batch.
    return simulate(num_students=60, num_skills=12, min_len=5, max_len=90, seed=11)


def model_for(data, **kw) -> GainAKT2Exp:
    torch.manual_seed(0)
    args = dict(num_c=data.num_c, d_model=32, n_heads=4, n_blocks=2, d_ff=48, dropout=0.0, max_len=40)
    args.update(kw)
    return GainAKT2Exp(**args).double()


def test_plan_places_every_valid_position_once_with_windows_whole():
    valid = torch.tensor([7, 3, 10, 1, 4, 10])
    plan = plan_packing(valid, 10)
    assert plan.rows == 4  # first-fit decreasing: [10], [10], [7, 3], [4, 1]
    placed = plan.src[plan.src < 6 * 10]
    assert sorted(placed.tolist()) == sorted(i * 10 + t for i, n in enumerate(valid.tolist()) for t in range(n))
    for i, n in enumerate(valid.tolist()):
        slots = plan.dest.view(6, 10)[i, :n]
        assert torch.equal(slots, slots[0] + torch.arange(n))  # contiguous, in order, in one row
        assert len({int(s) // 10 for s in slots}) == 1
        assert plan.position.flatten()[slots].tolist() == list(range(n))
        assert bool((plan.dest.view(6, 10)[i, n:] == plan.rows * 10).all())
    mask = plan.attention_mask()[:, 0]
    seg = plan.segment
    for r in range(plan.rows):
        for a in range(10):
            for b in range(10):
                assert bool(mask[r, a, b]) == (b <= a and bool(seg[r, a] == seg[r, b]))
    with pytest.raises(ValueError, match="valid positions"):
        plan_packing(torch.tensor([11]), 10)


@pytest.mark.parametrize("head_normalization", [False, True])
def test_packed_forward_equals_unpacked_on_valid_positions(data, head_normalization):
    windows = build_windows(data, np.arange(len(data.concepts)), 40)
    model = model_for(data, head_normalization=head_normalization).eval()
    compared = 0
    for batch in iterate_batches(windows, 16, generator=torch.Generator().manual_seed(1), shuffle=True):
        plan = packing_for(batch)
        assert plan.rows < len(batch)  # the data leaves room to pack
        ref = model(batch.q, batch.r, batch.qry, return_streams=True)
        out = model(batch.q, batch.r, batch.qry, pack=plan, return_streams=True)
        m = batch.mask
        for key in ("logits", "predictions", "mastery", "gains", "context", "value"):
            torch.testing.assert_close(out[key][m], ref[key][m], rtol=1e-9, atol=1e-10)
        assert bool((out["logits"][~m] == 0).all())
        compared += int(m.sum())
    assert compared == int(windows.mask.sum())


def test_packed_losses_and_gradients_equal_unpacked(data):
    cfg = config(*TINY)
    schedule = LossSchedule(loss_settings(cfg), 4, gain_scale=0.1)
    schedule.begin_epoch(1)
    schedule.end_epoch(1, mastery_corr_reference=0.1, loss_shares={"alignment": 0.0})
    weights = schedule.begin_epoch(2)
    windows = build_windows(data, np.arange(len(data.concepts)), 40)
    batch = next(iter(iterate_batches(windows, 24, generator=torch.Generator().manual_seed(2), shuffle=True)))
    grads = []
    for plan in (None, packing_for(batch)):
        model = model_for(data).train()  # dropout 0: the two layouts compute the same function
        terms = compute_losses(model(batch.q, batch.r, batch.qry, pack=plan), batch, weights)
        terms["total"].backward()
        grads.append((terms, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (ref_terms, ref_grads), (terms, g) = grads
    assert ref_terms.keys() == terms.keys() and math.isfinite(float(ref_terms["total"].detach()))
    for k in ref_terms:
        torch.testing.assert_close(terms[k].double(), ref_terms[k].double(), rtol=1e-7, atol=1e-9)
    assert ref_grads.keys() == g.keys()
    for n in ref_grads:
        torch.testing.assert_close(g[n], ref_grads[n], rtol=1e-6, atol=1e-9)


def test_heads_off_gives_the_same_logits_and_no_heads(data):
    windows = build_windows(data, np.arange(20), 40)
    model = model_for(data).eval()
    full = model(windows.q, windows.r, windows.qry)
    lean = model(windows.q, windows.r, windows.qry, heads=False)
    assert lean["mastery"] is None and lean["gains"] is None
    assert torch.equal(lean["logits"], full["logits"])


def test_only_at_gives_the_full_forward_logit_at_that_position(data):
    test = build_window_test(data, np.arange(len(data.concepts)), 40)
    model = model_for(data).eval()
    at = (test.length - 2).clamp(min=0)
    full = model(test.q, test.r, test.qry)["logits"]
    one = model(test.q, test.r, test.qry, only_at=at)
    assert one["logits"].shape == (len(test), 1) and one["mastery"] is None
    torch.testing.assert_close(one["logits"][:, 0], full[torch.arange(len(test)), at], rtol=1e-9, atol=1e-12)
    some = torch.randint(0, test.width, (len(test),), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(test.q, test.r, test.qry, only_at=some)["logits"][:, 0],
                               full[torch.arange(len(test)), some], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="only_at"):
        model(test.q, test.r, test.qry, only_at=at, return_streams=True)


@pytest.mark.parametrize("pack", [False, True])
def test_window_protocol_fast_path_equals_full_path(data, pack):
    test = build_window_test(data, np.arange(len(data.concepts)), 40)
    assert int((test.score_mask.sum(1) == 1).sum()) > 50  # many last-only rows
    model = model_for(data).float().eval()
    kw = dict(batch_size=16, device=torch.device("cpu"))
    old = evaluate(model, test, **kw)  # the semantics-capable pass, data order, full forward
    full = evaluate_predictions(model, test, fast=False, **kw)
    lines: list[str] = []
    fast = evaluate_predictions(model, test, fast=True, pack=pack, progress=lines.append, progress_every=3,
                                label="window", **{**kw, "batch_size": 64})
    assert fast.n_scored == full.n_scored == old.n_scored == test.num_targets
    assert fast.auc == pytest.approx(old.auc, abs=1e-6) and full.auc == pytest.approx(old.auc, abs=1e-6)
    assert fast.accuracy == pytest.approx(old.accuracy, abs=1e-6)
    assert fast.loss == pytest.approx(old.loss, rel=1e-5)
    batches = _prediction_batches(test, 64, True)
    assert sum(len(i) for i, _ in batches) == len(test) and any(last for _, last in batches)
    assert len(lines) == math.ceil(len(batches) / 3)
    assert lines[-1].startswith(f"window: {len(test):,}/{len(test):,} rows (100%)")


def test_step_health_keeps_the_first_non_finite_batch_without_stopping():
    health = StepHealth(torch.device("cpu"))
    for i, loss in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0]):
        health.observe(torch.tensor(loss), i)
        assert health.failed() == (i >= 2)
    assert health.batch() == 2 and health.value() == math.inf


def test_fast_paths_are_recorded_config_fields():
    base = config(*TINY)
    assert base["data"]["pack_windows"] is True and base["training"]["eval_fast_path"] is True
    assert base["training"]["fused_optimizer"] is True and base["training"]["eval_batch_size"] == 256
    for flag in ("--no_pack_windows", "--no_eval_fast_path", "--no_fused_optimizer"):
        assert config_md5(config(*TINY, flag)) != config_md5(base), flag
    assert config_md5(config(*TINY, "--eval_batch_size", "64")) != config_md5(base)
    model = torch.nn.Linear(2, 2)
    assert make_optimizer(base, model).defaults["fused"] is True
    assert not make_optimizer(config(*TINY, "--no_fused_optimizer"), model).defaults["fused"]


def test_training_packed_equals_unpacked_without_dropout():
    data = simulate(num_students=70, num_skills=8, min_len=5, max_len=70, seed=5)
    runs = {}
    for flag in ("--pack_windows", "--no_pack_windows"):
        cfg = config(*TINY, "--dropout", "0", "--epochs", "2", "--max_len", "30", "--no_fused_optimizer", flag)
        sink = MemorySink()
        runs[flag] = (train_seed(cfg, data, "cpu", sink, seed=3), sink)
    (packed, sink), (plain, _) = runs["--pack_windows"], runs["--no_pack_windows"]
    assert packed.status == plain.status == "completed"
    for a, b in zip(packed.history, plain.history, strict=True):
        for key in ("train_loss", "train_auc", "val_loss", "val_auc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    for key in ("val_auc", "test_auc", "test_window_auc"):
        assert packed.final[key] == pytest.approx(plain.final[key], abs=1e-4), key
    assert "eval_seconds" not in packed.final
    assert set(packed.eval_seconds) == {"val", "test", "test_window"}
    assert any("test window-protocol evaluation" in m and "rows (100%)" in m for m in sink.messages)


# --- benchmarks/paper_table.py: the table is built from the points' own folders -------------------

def _paper_table():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_table.py"
    spec = importlib.util.spec_from_file_location("paper_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_point(folder, seeds: dict[int, dict], epochs: dict[int, list[float]], preset: str = "paper",
                results: bool = True, n_epochs: int | None = None, patience: int = 10):
    import json

    folder.mkdir(parents=True)
    per_seed = {str(s): {"seed": s, **v} for s, v in seeds.items()}
    if results:
        (folder / "results.json").write_text(json.dumps({"per_seed": per_seed}))
    lines = ["seed,epoch,val_auc,epoch_seconds"]
    lines += [f"{s},{e + 1},{0.7 + e / 1000},{t}" for s, ts in epochs.items() for e, t in enumerate(ts)]
    (folder / "metrics_epoch.csv").write_text("\n".join(lines) + "\n")
    (folder / "config.json").write_text(json.dumps({
        "model": {"model_preset": preset, "d_model": 512, "n_heads": 8, "num_encoder_blocks": 6, "d_ff": 1024},
        "training": {"epochs": n_epochs or len(next(iter(epochs.values()))), "patience": patience},
        "seeds": {"all": sorted(seeds)}, "data": {"dataset": "assist2015", "fold": 0}}))


def _seed(val: float, test: float, window: float, epoch: int, status: str = "completed") -> dict:
    return {"status": status, "best_val_auc": val, "best_epoch": epoch, "test_auc": test, "test_window_auc": window,
            "test_accuracy": 0.7475, "test_mastery_correlation": 0.2, "test_gain_correlation": 0.3}


def test_paper_table_reads_the_points_and_judges_against_the_reference(tmp_path):
    import json

    pt = _paper_table()
    sweep = tmp_path / "20261130_000000_sweep_paper_table"
    _fake_point(sweep / "p_amp", {21: _seed(0.7254, 0.7190, 0.7185, 3), 42: _seed(0.7258, 0.7200, 0.7195, 4),
                                  63: {"status": "failed", "reason": "boom"}},
                {21: [10.0, 8.0], 42: [9.0, 9.0], 63: [100.0]})
    _fake_point(sweep / "p_fp32", {21: _seed(0.7240, 0.7180, 0.7260, 3)}, {21: [12.0, 12.0]})
    (sweep / "sweep.json").write_text(json.dumps({"status": "completed", "points": [
        {"name": "amp", "experiment_id": "p_amp"}, {"name": "fp32", "experiment_id": "p_fp32"}]}))
    find_sweep = sys.modules["sweep_tables"].find_sweep  # the scripts' shared sibling module
    assert find_sweep(tmp_path, "paper_table") == sweep and find_sweep(tmp_path, "other") is None
    points = pt.point_folders(sweep)
    assert points == {"amp": (sweep / "p_amp", "amp"), "fp32": (sweep / "p_fp32", "fp32")}
    values = pt.seed_values(sweep / "p_amp")
    assert values["_seeds"] == [21.0, 42.0]  # the failed seed is left out, also from the epoch times
    assert values["epoch_seconds"] == [9.0, 9.0]
    text = pt.build_table(points, title=pt.describe(sweep / "p_amp", sweep), verify=None)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # amp: mean 0.7256 ± sample std 0.000283, +0.0001 from 0.7255: within 0.002 and at or above
    assert "0.7256 ± 0.0003 | +0.0001: within ±0.002, at or above" in rows["best val AUC (fold 0)"]
    # fp32 (one seed, no std): 0.7240 is 0.0015 below, outside the strict 0.0002
    assert "0.7240 | -0.0015: outside ±0.0002 |" in rows["best val AUC (fold 0)"]
    assert rows["best val AUC (fold 0)"].endswith("0.7255 ± 0.0002 |")
    assert "0.7195 ± 0.0007 | -0.0001: within ±0.002 |" in rows["test AUC, non-window (every interaction)"]
    assert "amp (amp, n=2)" in text and "fp32 (fp32, n=1)" in text
    assert "- amp: window AUC 0.7190, at or above SAKT." in text
    assert "- fp32: window AUC 0.7260, at or above simpleKT, DKVMN, SAKT." in text
    assert "9.0 ± 0.0" in rows["seconds per epoch (mean over epochs)"]
    assert "seeds [21, 42, 63]" in text and "paper preset (D/H/N/F 512/8/6/1024)" in text
    # The summary row and the per-seed section state the same difference to the reference (the mean of its
    # five seeds, 0.71958, not its rounded 0.7196: they once printed -0.0015 and -0.0014 for one table).
    import statistics

    for key in pt.REFERENCE_SEEDS:
        ours = [statistics.fmean(pt.REFERENCE_SEEDS[key])] * 2
        assert pt.verdict(key, "auc", statistics.fmean(ours), "fp32").split(":")[0] == \
            f"{pt.versus_reference(ours, key)['diff']:+.4f}" == "+0.0000"


def _cpu_sweep(tmp_path):
    """A CPU paper table half way: seeds 21 and 42 finished (42 stopped by the shortcut), 63 still
    training (2 epochs so far, results.json not written yet), 84 not started."""
    import json

    import torch

    sweep = tmp_path / "20261205_000000_sweep_paper_table_cpu"
    _fake_point(sweep / "p_fp32", {21: {}, 42: {}, 63: {}, 84: {}},
                {21: [300.0] * 12, 42: [280.0] * 6, 63: [290.0, 290.0]}, results=False, n_epochs=12, patience=2)
    for seed, status, val, test, window, best, ran in ((21, "completed", 0.7246, 0.7189, 0.7188, 5, 12),
                                                       (42, "early_stopped", 0.7240, 0.7176, 0.7176, 4, 6)):
        result = {"seed": seed, "status": status, "reason": None, "epochs_run": ran, "best_epoch": best,
                  "best_val_auc": val, "best": {}, "final": {"test_auc": test, "test_window_auc": window}, "amp": {}}
        torch.save({"epoch": ran - 1, "result": result}, sweep / "p_fp32" / f"model_last_seed{seed}.pth")
    torch.save({"epoch": 1}, sweep / "p_fp32" / "model_last_seed63.pth")  # still training
    (sweep / "sweep.json").write_text(json.dumps({"status": "running", "command": "/x/harness/cli/__main__.py "
                                                  "sweep paper_table_cpu --devices cpu --threads 2",
                                                  "points": [{"name": "fp32", "experiment_id": "p_fp32"}]}))
    return sweep


def test_cpu_table_has_per_seed_rows_an_interval_both_tolerances_and_the_verdict(tmp_path):
    from scipy import stats

    pt = _paper_table()
    sweep = _cpu_sweep(tmp_path)  # no results.json yet: finished seeds come from their last checkpoints
    seen = []
    text = pt.build_table(pt.point_folders(sweep), title="t",
                          verify=lambda p: seen.append(p) or {"verdict": "incomplete", "failed": []},
                          commands=pt.table_commands(sweep, ["--cpu", "--output_base", "/o"], "/o/t.md"))
    assert seen == [sweep / "p_fp32"]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["21"] == "| 21 | completed | 5 | 0.7246 | 0.7189 | 0.7188 | 12 of 12 | no | incomplete |"
    assert rows["42"] == "| 42 | early_stopped | 4 | 0.7240 | 0.7176 | 0.7176 | 6 of 12 | yes, after epoch 6 | incomplete |"
    assert rows["63"].startswith("| 63 | training (not finished) | 2 so far | 0.7010 | — | — | 2 so far |")
    assert rows["84"].startswith("| 84 | no epoch finished |")
    assert "`harness verify p_fp32`: **incomplete**" in text
    # mean ± sample std and the 95% t-interval of the two finished seeds
    half = stats.t.ppf(0.975, 1) * stats.tstd([0.7246, 0.7240]) / 2 ** 0.5
    assert "0.7243 ± 0.0004 (n=2)" in rows["mean ± sample std (n)"]
    assert f"[{0.7243 - half:.4f}, {0.7243 + half:.4f}]" in rows["95% t-interval of the mean"]
    # against the reference: the difference of means, judged with both tolerances; Welch's interval and p
    val = rows["best val AUC"]
    welch = stats.ttest_ind([0.7246, 0.7240], pt.REFERENCE_SEEDS["best_val_auc"], equal_var=False)
    assert val.startswith(f"| best val AUC | {0.7243 - 0.725492:+.4f} | no | yes | ")
    assert f"| {welch.pvalue:.3g} |" in val
    assert "**Shortcut (training.patience 2)**" in text
    assert "harness sweep paper_table_cpu --devices cpu --threads 2" in text
    assert "python benchmarks/paper_table.py --cpu --output_base /o" in text
    assert f"python benchmarks/paper_table.py --table_only {sweep} --out /o/t.md" in text


def test_paper_table_pairs_its_point_with_another_sweeps_seed_by_seed_and_names_what_differs(tmp_path):
    """`--paired_with`: e.g. `--reference_values` at 12 epochs against the defaults' CPU table, over the
    seeds both finished, with every configuration field the two differ in."""
    import json
    from pathlib import Path

    from scipy import stats

    from harness.config.launch import LaunchOptions
    from harness.run.launcher import resolve_run

    pt = _paper_table()

    def sweep(name: str, per_seed: dict[int, tuple[float, float, int]], **explicit) -> Path:
        folder = tmp_path / name
        exp = folder / f"{name}_fp32"
        exp.mkdir(parents=True)
        cfg = resolve_run(LaunchOptions(explicit={"model_preset": "small", **explicit}), "t").config
        (exp / "config.json").write_text(json.dumps(cfg))
        (exp / "results.json").write_text(json.dumps({"per_seed": {str(s): {
            "seed": s, "status": "completed", "best_val_auc": v, "test_auc": t, "best_epoch": e,
            "test_mastery_correlation": 0.1, "test_gain_correlation": 0.2} for s, (v, t, e) in per_seed.items()}}))
        (folder / "sweep.json").write_text(json.dumps({"points": [{"name": "fp32", "experiment_id": exp.name}]}))
        return folder

    base = sweep("defaults", {21: (0.7246, 0.7189, 5), 42: (0.7240, 0.7176, 4), 84: (0.7241, 0.7180, 3)})
    here = sweep("rv", {21: (0.7256, 0.7199, 4), 42: (0.7251, 0.7190, 5), 63: (0.7250, 0.7190, 4)},
                 learning_rate=0.000174, lr_scheduler="plateau")
    points = pt.point_folders(here)
    text = pt.build_table(points, title="t", verify=None,
                          paired_with={"fp32": pt.point_folders(base)["fp32"][0]})
    section = text.split("## fp32 paired with `defaults_fp32`", 1)[1]
    assert "training.learning_rate 0.00016 → 0.000174" in section  # what the comparison changes, and only that
    assert "training.lr_scheduler 'none' → 'plateau'" in section and "model." not in section.split("Seeds")[0]
    assert "Seeds finished in both: 21, 42 (only here: 63) (only there: 84)." in section
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| ")}
    p = stats.ttest_rel([0.7256, 0.7251], [0.7246, 0.7240]).pvalue
    assert rows["best val AUC (fold 0)"] == (f"| best val AUC (fold 0) | 0.7256 / 0.7246 | 0.7251 / 0.7240 | "
                                             f"+0.0010 ± 0.0001 (p {p:.3g}, n 2) |")
    assert rows["best epoch"] == "| best epoch | 4 / 5 | 5 / 4 | +0.0 ± 1.4 (p 1, n 2) |"
    assert "+0.0000 ± 0.0000 (p 1, n 2)" not in rows["test AUC, non-window (every interaction)"]
    # the script refuses a baseline that shares no point with the table, in one line
    other = tmp_path / "other"
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps({"points": [{"name": "amp", "experiment_id": "x"}]}))
    with pytest.raises(SystemExit) as exc:
        pt.main(["--table_only", str(here), "--paired_with", str(other), "--out", str(tmp_path / "t.md")])
    assert exc.value.code == 2
    assert pt.table_commands(here, ["--table_only", str(here)], "o.md", base) == [
        "# the sweep (from sweep.json):", "(sweep.json records no command)", "# this table:",
        f"python benchmarks/paper_table.py --table_only {here}"]
    assert pt.table_commands(here, ["--cpu"], "o.md", base)[-1].endswith(f"--out o.md --paired_with {base}")


def test_seed_outcomes_read_a_finished_seed_from_its_last_checkpoint_while_the_point_trains(tmp_path):
    import json

    import torch

    st = sys.modules.get("sweep_tables") or (_paper_table() and sys.modules["sweep_tables"])
    exp = tmp_path / "e"
    exp.mkdir()
    (exp / "config.json").write_text(json.dumps({"seeds": {"all": [21, 42, 63]}}))
    result = {"seed": 21, "status": "early_stopped", "reason": "r", "epochs_run": 6, "best_epoch": 4,
              "best_val_auc": 0.72, "best": {}, "final": {"test_auc": 0.71, "test_window_auc": 0.709}, "amp": {}}
    torch.save({"epoch": 5, "result": result}, exp / "model_last_seed21.pth")
    torch.save({"epoch": 1}, exp / "model_last_seed42.pth")  # still training: no outcome yet
    out = st.seed_outcomes(exp)
    assert list(out) == [21]
    assert (out[21]["status"], out[21]["best_epoch"], out[21]["test_auc"], out[21]["test_window_auc"]) == (
        "early_stopped", 4, 0.71, 0.709)
    # once results.json exists its blocks are used (a failed seed is left out)
    (exp / "results.json").write_text(json.dumps({"per_seed": {
        "21": {"seed": 21, "status": "completed", "best_val_auc": 0.73},
        "42": {"seed": 42, "status": "failed"}}}))
    out = st.seed_outcomes(exp)
    assert list(out) == [21] and out[21]["best_val_auc"] == 0.73


def test_paper_table_spec_is_the_paper_configuration_with_both_precisions():
    import argparse

    import yaml

    pt = _paper_table()
    spec = pt.spec(argparse.Namespace(epochs=12, preset="paper", seeds=[21, 42, 63, 84, 105], points=["amp", "fp32"],
                                      stop_after_falls=None))
    doc = yaml.safe_load(yaml.safe_dump(spec))
    assert doc["base"]["flags"] == {"dataset": "assist2015", "fold": 0, "epochs": 12, "model_preset": "paper"}
    assert doc["points"] == {"amp": {"flags": {"mixed_precision": True}},
                             "fp32": {"flags": {"mixed_precision": False}}}
    assert doc["seeds"] == [21, 42, 63, 84, 105]


def test_paper_table_runs_one_precision_per_title_when_asked(tmp_path, monkeypatch):
    pt = _paper_table()
    seen: list[list[str]] = []
    monkeypatch.setattr(sys.modules["sweep_tables"].subprocess, "call", lambda cmd, cwd: seen.append(cmd) or 1)
    with pytest.raises(SystemExit, match="left no sweep folder"):
        pt.main(["--points", "fp32", "--title", "t_fp32", "--output_base", str(tmp_path), "--data_dir", str(tmp_path),
                 "--", "--max_parallel", "2"])
    spec = yaml.safe_load((tmp_path / "t_fp32_spec.yaml").read_text())
    assert spec["points"] == {"fp32": {"flags": {"mixed_precision": False}}} and spec["base_point"] == "fp32"
    assert seen[0][-2:] == ["--max_parallel", "2"] and "t_fp32" in seen[0]
    for bad in ("amp,amp", "bf16", ""):
        with pytest.raises(SystemExit) as exc:
            pt.main(["--points", bad])
        assert exc.value.code == 2


def test_paper_table_cpu_is_the_reference_protocol_with_the_stated_shortcut(tmp_path, monkeypatch):
    pt = _paper_table()
    seen: list[list[str]] = []
    monkeypatch.setattr(sys.modules["sweep_tables"].subprocess, "call", lambda cmd, cwd: seen.append(cmd) or 1)
    with pytest.raises(SystemExit, match="left no sweep folder"):
        pt.main(["--cpu", "--output_base", str(tmp_path), "--data_dir", str(tmp_path)])
    spec = yaml.safe_load((tmp_path / "paper_table_cpu_spec.yaml").read_text())
    assert spec["base"]["flags"] == {"dataset": "assist2015", "fold": 0, "epochs": 12, "model_preset": "paper",
                                     "patience": 2}
    assert spec["points"] == {"fp32": {"flags": {"mixed_precision": False}}}
    assert spec["seeds"] == [21, 42, 63, 84, 105]
    cmd = seen[0]
    assert cmd[cmd.index("--devices") + 1] == "cpu" and cmd[cmd.index("--threads") + 1] == "2"
    assert "paper_table_cpu" in cmd


def test_device_batches_serve_the_same_batches_and_plans_as_the_host_path(data):
    from gainakt.data.batching import device_batches

    windows = build_windows(data, np.arange(len(data.concepts)), 40)
    for pack in (False, True):
        host = list(iterate_batches(windows, 16, generator=torch.Generator().manual_seed(4), shuffle=True))
        served = list(device_batches(windows, "cpu", 16, generator=torch.Generator().manual_seed(4), shuffle=True,
                                     pack=pack))
        assert len(host) == len(served)
        for h, (d, plan) in zip(host, served, strict=True):
            for name in ("q", "r", "qry", "target", "mask", "score_mask", "student", "length", "true_mastery"):
                assert torch.equal(getattr(h, name), getattr(d, name)), name
            if not pack:
                assert plan is None
                continue
            ref = packing_for(h)
            assert (plan.rows, plan.width) == (ref.rows, ref.width)
            for name in ("src", "dest", "starts", "segment", "position"):
                assert torch.equal(getattr(plan, name), getattr(ref, name)), name


def test_paper_table_cpu_sends_its_thread_default_only_when_the_sweep_starts(tmp_path, monkeypatch):
    """`harness sweep --resume` refuses --threads (a resumed sweep keeps its prepared settings), so the
    CPU mode's `--threads 2` goes with the start of the sweep and never with its resumption."""
    import json

    pt = _paper_table()
    tables = sys.modules["sweep_tables"]
    calls: list[list[str]] = []

    def fake_call(cmd, cwd=None):
        calls.append(list(cmd))
        if "--resume" not in cmd:  # the start leaves an unfinished sweep folder behind
            folder = tmp_path / "20261205_000000_sweep_paper_table_cpu"
            folder.mkdir()
            (folder / "sweep.json").write_text(json.dumps({"status": "running"}))
        return 2

    monkeypatch.setattr(tables.subprocess, "call", fake_call)
    ns = pt.argparse.Namespace(title="paper_table_cpu", output_base=str(tmp_path), data_dir=None, devices="cpu",
                               jobs_per_device=None, epochs=12, preset="paper", seeds=[21], points=["fp32"],
                               stop_after_falls=2)
    pt.run_sweep(ns, [], ["--threads", "2"])
    pt.run_sweep(ns, [], ["--threads", "2"])
    start, resume = calls
    assert "--resume" not in start and start[start.index("--threads") + 1] == "2"
    assert "--resume" in resume and "--threads" not in resume
