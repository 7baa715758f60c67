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
