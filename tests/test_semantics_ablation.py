"""benchmarks/semantics_ablation.py: the spec it writes and the table it builds from a sweep's folders."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from harness.sweep.spec import parse_spec


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "semantics_ablation.py"
    spec = importlib.util.spec_from_file_location("semantics_ablation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _point(folder: Path, seeds: dict[int, tuple[float, float] | str]) -> None:
    folder.mkdir(parents=True)
    per_seed = {}
    for seed, v in seeds.items():
        if isinstance(v, str):
            per_seed[str(seed)] = {"seed": seed, "status": v}
        else:
            per_seed[str(seed)] = {"seed": seed, "status": "completed", "best_val_auc": v[0], "test_auc": v[1]}
    (folder / "results.json").write_text(json.dumps({"per_seed": per_seed}))
    (folder / "config.json").write_text(json.dumps({
        "model": {"model_preset": "paper"}, "training": {"epochs": 12, "mixed_precision": True},
        "seeds": {"all": sorted(seeds)}, "data": {"dataset": "assist2015", "fold": 0}}))


def test_table_gives_each_point_its_paired_difference_to_its_baseline(tmp_path):
    sa = _script()
    sweep = tmp_path / "20261130_000000_sweep_semantics_ablation"
    ours = {21: (0.7250, 0.7190), 42: (0.7240, 0.7185), 63: (0.7245, 0.7180)}
    _point(sweep / "e_ours", ours)
    # current-step semantics: -0.0010, -0.0012, -0.0014 best val AUC; seed 63 failed in one point only
    _point(sweep / "e_step", {21: (0.7240, 0.7180), 42: (0.7228, 0.7170), 63: "failed"})
    _point(sweep / "e_unpacked", {21: (0.7251, 0.7191), 42: (0.7239, 0.7186), 63: (0.7245, 0.7180)})
    _point(sweep / "e_pad", {21: (0.7231, 0.7171), 42: (0.7219, 0.7166), 63: (0.7225, 0.7160)})
    (sweep / "sweep.json").write_text(json.dumps({"status": "completed", "points": [
        {"name": "ours", "experiment_id": "e_ours"}, {"name": "ours_unpacked", "experiment_id": "e_unpacked"},
        {"name": "constraints_over_padding", "experiment_id": "e_pad"},
        {"name": "constraints_current_step", "experiment_id": "e_step"}]}))
    assert sys.modules["sweep_tables"].find_sweep(tmp_path, "semantics_ablation") == sweep
    folders = sa.point_folders(sweep)
    text = sa.build_table(folders, sa.describe(sweep, folders))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| `")}
    assert "| (baseline) |" in rows["`ours`"] and "0.7245 ± 0.0005" in rows["`ours`"]
    step = rows["`constraints_current_step` vs `ours`"]
    assert "| 21, 42 |" in step  # the failed seed is left out
    # paired over seeds 21 and 42 only: diffs -0.0010 and -0.0012
    p = stats.ttest_rel([0.7240, 0.7228], [0.7250, 0.7240]).pvalue
    assert f"-0.0011 ± 0.0001 (p {p:.3g}, n 2)" in step
    # the padding point is compared with the unpacked control, not with ours: -0.0020 on every seed
    pad = rows["`constraints_over_padding` vs `ours_unpacked`"]
    assert "-0.0020 ± 0.0000" in pad and ", n 3)" in pad
    assert "Population: each point's finished seeds" in text
    assert "paper preset, 12 epochs, AMP, dataset assist2015 fold 0" in text


def test_paired_difference_of_identical_points_is_zero_with_p_one():
    sa = _script()
    same = {21: {"best_val_auc": 0.7}, 42: {"best_val_auc": 0.71}}
    d = sa.paired(same, same, "best_val_auc")
    assert (d["mean"], d["std"], d["p"], d["n"]) == (0.0, 0.0, 1.0, 2.0)
    one = sa.paired({21: {"best_val_auc": 0.7}}, same, "best_val_auc")
    assert one["n"] == 1.0 and one["p"] != one["p"]  # NaN: no test with one seed


def test_spec_is_the_paper_configuration_with_one_point_per_switch():
    sa = _script()
    ns = sa.parse([])
    doc = yaml.safe_load(yaml.safe_dump(sa.spec(ns), sort_keys=False))
    assert doc["base"]["flags"] == {"epochs": 12, "model_preset": "paper", "mixed_precision": True,
                                    "dataset": "assist2015", "fold": 0}
    assert doc["seeds"] == [21, 42, 63, 84, 105] and doc["base_point"] == "ours"
    assert list(doc["points"]) == list(sa.POINTS)
    from gainakt.config import REFERENCE_SEMANTICS
    for fields in REFERENCE_SEMANTICS.values():
        for name, value in fields.items():  # one point per switch, that switch on
            assert doc["points"][name]["flags"][name] == value
    # the harness accepts it as a sweep spec
    assert [p.name for p in parse_spec(doc).points] == list(sa.POINTS)


def test_a_subset_brings_its_baselines_and_unknown_points_are_refused():
    sa = _script()
    assert sa.select_points(["constraints_over_padding", "clip_before_unscale"]) == [
        "ours", "ours_unpacked", "constraints_over_padding", "ours_fp16", "clip_before_unscale"]
    with pytest.raises(SystemExit, match="unknown point 'nope'"):
        sa.select_points(["nope"])


def test_cpu_small_is_a_smoke_configuration():
    sa = _script()
    ns = sa.parse(["--cpu-small"])
    assert (ns.preset, ns.epochs, ns.devices, ns.seeds, ns.dataset, ns.data_dir) == (
        "small", 2, "cpu", [21, 42], "synthetic", None)
    flags = sa.spec(argparse.Namespace(**{**vars(ns)}))["base"]["flags"]
    assert flags == {"epochs": 2, "model_preset": "small", "mixed_precision": True, "warmup_constraint_epochs": 0}


def test_every_switch_point_differs_from_its_baseline_by_that_switch_only():
    sa = _script()
    from gainakt.config import REFERENCE_SEMANTICS

    switches = {name: value for fields in REFERENCE_SEMANTICS.values() for name, value in fields.items()}
    for name, value in switches.items():
        point = sa.POINTS[name]
        base = sa.POINTS[point.baseline]
        extra = {k: v for k, v in point.flags.items() if base.flags.get(k) != v}
        assert extra == {name: value}, name
        assert set(base.flags) <= set(point.flags)
    everything = sa.POINTS["reference_all"].flags
    assert all(everything[n] == v for n, v in switches.items() if n != "clip_before_unscale")
    assert "clip_before_unscale" not in everything and everything["pack_windows"] is False


# --- issue 22: the CPU mode, and `ours` reused from the paper table's longer run ---------------------

def _resolved(**explicit) -> dict:
    from harness.config.launch import LaunchOptions
    from harness.run.launcher import resolve_run

    return resolve_run(LaunchOptions(explicit={"model_preset": "small", **explicit}), "abl").config


def _folder(path: Path, cfg: dict, rows: dict[int, list[float]], per_seed: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg))
    lines = ["seed,epoch,val_auc,epoch_seconds"] + [f"{s},{e + 1},{v},{100 + e}" for s, vals in rows.items()
                                                    for e, v in enumerate(vals)]
    (path / "metrics_epoch.csv").write_text("\n".join(lines) + "\n")
    if per_seed is not None:
        (path / "results.json").write_text(json.dumps({"per_seed": per_seed}))
    return path


def test_cpu_mode_is_the_paper_size_on_three_seeds_for_three_epochs_without_training_ours(tmp_path):
    sa = _script()
    ours = _folder(tmp_path / "paper", _resolved(epochs=12, patience=2, model_preset="paper", dataset="assist2015"),
                   {21: [0.7]})
    ns = sa.parse(["--cpu", "--ours_from", str(ours)])
    assert (ns.preset, ns.devices, ns.epochs, ns.seeds, ns.title, ns.points) == (
        "paper", "cpu", 3, [21, 42, 63], "semantics_ablation_cpu", ["reference_all"])
    assert ns.harness_args == ["--threads", "2"] and ns.out.endswith("semantics_ablation_cpu.md")
    doc = sa.spec(ns)
    assert doc["base"]["flags"] == {"epochs": 3, "model_preset": "paper", "mixed_precision": False,
                                    "dataset": "assist2015", "fold": 0}
    assert list(doc["points"]) == ["reference_all"] and doc["base_point"] == "reference_all"
    assert [p.name for p in parse_spec(doc).points] == ["reference_all"]
    # without --ours_from, ours is trained as the baseline
    assert list(sa.spec(sa.parse(["--cpu"]))["points"]) == ["ours", "reference_all"]
    # a run that cannot hold ours is refused before anything trains
    short = _folder(tmp_path / "short", _resolved(epochs=2, model_preset="paper", dataset="assist2015"), {21: [0.7]})
    with pytest.raises(SystemExit) as exc:
        sa.check_reusable(short, ns)
    assert exc.value.code == 2


def test_era_b_values_and_the_training_order_are_points():
    sa = _script()
    assert sa.POINTS["train_shuffle"].flags == {"train_shuffle": False}
    assert sa.POINTS["era_b_values"].flags["learning_rate"] == 0.000174
    everything = sa.POINTS["reference_era_b"].flags
    assert everything == {**sa.POINTS["reference_all"].flags, **sa.ERA_B_VALUES}
    assert sa.POINTS["reference_all"].flags["train_shuffle"] is False
    doc = sa.spec(sa.parse(["--points", "era_b_values,reference_era_b"]))
    assert [p.name for p in parse_spec(doc).points] == ["ours", "era_b_values", "reference_era_b"]


def test_reference_all_packed_is_every_switch_but_the_one_that_needs_padding():
    sa = _script()
    every, packed = sa.POINTS["reference_all"].flags, sa.POINTS["reference_all_packed"].flags
    assert set(every) - set(packed) == {"constraints_over_padding", "pack_windows"}
    assert all(every[k] == v for k, v in packed.items()) and packed["train_shuffle"] is False
    assert sa.POINTS["reference_all_packed"].baseline == "ours"
    doc = sa.spec(sa.parse(["--cpu", "--points", "reference_all_packed"]))
    assert "pack_windows" not in doc["points"]["reference_all_packed"]["flags"]


def test_the_table_pairs_the_best_epochs_correlations_too(tmp_path):
    """Mastery and gain correlation of each seed's best epoch (a reused ours: of its first epochs), paired."""
    sa = _script()

    def folder(path: Path, cfg: dict, rows: dict[int, list[tuple[float, float, float]]]) -> Path:
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(cfg))
        lines = ["seed,epoch,val_auc,mastery_correlation,gain_correlation,epoch_seconds"] + [
            f"{s},{e + 1},{a},{m},{g},100" for s, vals in rows.items() for e, (a, m, g) in enumerate(vals)]
        (path / "metrics_epoch.csv").write_text("\n".join(lines) + "\n")
        (path / "results.json").write_text(json.dumps({"per_seed": {
            str(s): {"seed": s, "status": "completed", "best_val_auc": max(a for a, _, _ in vals)}
            for s, vals in rows.items()}}))
        return path

    # ours: its best of the first 3 epochs is epoch 2 for seed 21 (epoch 4 is better but beyond 3), 3 for 42
    ours = folder(tmp_path / "paper", _resolved(epochs=12, patience=2),
                  {21: [(0.70, 0.1, 0.2), (0.72, 0.3, 0.4), (0.71, 0.5, 0.6), (0.73, 0.9, 0.9)],
                   42: [(0.70, 0.1, 0.1), (0.71, 0.2, 0.2), (0.72, 0.25, 0.3)]})
    assert sa.best_epoch_columns(ours, 3) == {21: {"mastery_correlation": 0.3, "gain_correlation": 0.4},
                                              42: {"mastery_correlation": 0.25, "gain_correlation": 0.3}}
    sweep = tmp_path / "20261205_000000_sweep_abl"
    folder(sweep / "e", _resolved(epochs=3, train_shuffle=False),
           {21: [(0.70, 0.0, 0.0), (0.72, 0.01, -0.01), (0.721, 0.02, 0.0)],
            42: [(0.71, 0.0, 0.0), (0.715, 0.05, 0.02), (0.70, 0.3, 0.3)]})
    (sweep / "sweep.json").write_text(json.dumps({"points": [{"name": "train_shuffle", "experiment_id": "e"}]}))
    text = sa.build_table(sa.point_folders(sweep), "t", ours_from=ours, epochs=3)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| `")}
    assert "val mastery corr: paired diff to baseline" in text and "val gain corr" in text
    assert rows["`ours`"][7] == "0.2750 ± 0.0354"  # mastery corr of 0.3 and 0.25
    point = rows["`train_shuffle` vs `ours`"]
    assert point[7] == "0.0350 ± 0.0212"  # its best epochs: 3 (0.02) and 2 (0.05)
    assert point[8].startswith("-0.2400 ± 0.0566 (p ") and point[8].endswith("n 2)")
    assert point[10].startswith("-0.3400 ± 0.0849 (p ")  # gain: 0.0 - 0.4 and 0.02 - 0.3


def test_reused_ours_is_the_first_epochs_and_its_test_auc_only_where_the_best_epoch_is_among_them(tmp_path):
    sa = _script()
    per_seed = {"21": {"seed": 21, "status": "early_stopped", "best_epoch": 2, "best_val_auc": 0.72, "test_auc": 0.715},
                "42": {"seed": 42, "status": "completed", "best_epoch": 5, "best_val_auc": 0.73, "test_auc": 0.72}}
    ours = _folder(tmp_path / "paper", _resolved(epochs=12, patience=2),
                   {21: [0.70, 0.72, 0.72, 0.71], 42: [0.70, 0.71, 0.715, 0.72, 0.73], 63: [0.7, 0.71]}, per_seed)
    got = sa.reused_metrics(ours, 3)
    assert got == {21: {"best_val_auc": 0.72, "test_auc": 0.715}, 42: {"best_val_auc": 0.715}}  # 63: 2 epochs only
    assert sa.epoch_seconds(ours, 3) == pytest.approx((101 + 101 + 100.5) / 3)


def test_table_pairs_points_with_the_reused_ours_after_checking_their_configurations(tmp_path):
    sa = _script()
    ours = _folder(tmp_path / "paper" / "p_fp32", _resolved(epochs=12, patience=2),
                   {21: [0.70, 0.72, 0.721], 42: [0.70, 0.71, 0.715], 84: [0.7, 0.7, 0.7]},  # 84: not in the points
                   {"21": {"seed": 21, "status": "completed", "best_epoch": 7, "test_auc": 0.7}})
    sweep = tmp_path / "20261205_000000_sweep_semantics_ablation_cpu"
    _folder(sweep / "e_shuffle", _resolved(epochs=3, train_shuffle=False), {21: [0.71, 0.722, 0.723],
                                                                           42: [0.70, 0.716, 0.718]},
            {"21": {"seed": 21, "status": "completed", "best_val_auc": 0.723, "test_auc": 0.71},
             "42": {"seed": 42, "status": "completed", "best_val_auc": 0.718, "test_auc": 0.71}})
    (sweep / "sweep.json").write_text(json.dumps({"points": [{"name": "train_shuffle", "experiment_id": "e_shuffle"}]}))
    folders = sa.point_folders(sweep)
    text = sa.build_table(folders, "t", ours_from=ours, epochs=3)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| `")}
    assert "| 21, 42 | 0.7180 ± 0.0042 | (baseline) |" in rows["`ours`"]
    p = stats.ttest_rel([0.723, 0.718], [0.721, 0.715]).pvalue
    assert f"+0.0025 ± 0.0007 (p {p:.3g}, n 2)" in rows["`train_shuffle` vs `ours`"]
    assert "—" in rows["`train_shuffle` vs `ours`"].split(" | ")[6]  # no test AUC of ours after 3 epochs
    assert rows["`ours`"].split(" | ")[7:9] == ["—", "(baseline)"]  # no correlation columns in these CSVs
    assert "**`ours` is not trained here.**" in text
    assert "training.epochs 12 → 3" in text and "data.train_shuffle True → False" in text
    # a point that differs in anything else cannot be paired with it
    other = tmp_path / "20261205_000001_sweep_semantics_ablation_cpu"
    _folder(other / "e_lr", _resolved(epochs=3, train_shuffle=False, learning_rate=0.001), {21: [0.7, 0.7, 0.7]})
    (other / "sweep.json").write_text(json.dumps({"points": [{"name": "train_shuffle", "experiment_id": "e_lr"}]}))
    with pytest.raises(SystemExit, match=r"also differ in training.learning_rate"):
        sa.build_table(sa.point_folders(other), "t", ours_from=ours, epochs=3)
    with pytest.raises(SystemExit, match="in two sweeps"):
        sa.point_folders(sweep, other)
