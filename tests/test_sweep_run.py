"""A small local sweep end to end: folder layout, sweep.json, summary statistics, verify, resume."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from scipy import stats

from harness.cli.main import main
from harness.folder import derive
from harness.folder.experiment import FolderLock, read_json, write_manifest

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--torch_deterministic", "--synthetic_students", "80",
        "--synthetic_max_len", "25", "--synthetic_min_len", "8", "--batch_size", "16",
        "--max_semantic_students", "10", "--alignment_global_students", "20", "--epochs", "1"]
SPEC = """
base:
  flags: {gain_scale: 0.2}
points:
  ref: {}
  sparse: {flags: {sparsity_loss_weight: 0.35}, set: ["training.batch_size=8"]}
base_point: ref
seeds: [5, 6, 7]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    (base / "spec.yaml").write_text(SPEC)
    code = main(["sweep", "small", "--spec", str(base / "spec.yaml"), "--output_base", str(base / "out"), *TINY,
                 "--seeds", "5", "6", "--threads", "2", "--jobs_per_device", "2"])
    assert code == 0
    (folder,) = (base / "out").glob("*_sweep_small")
    return folder


def test_sweep_folder_holds_points_and_records(swept):
    state = read_json(swept / "sweep.json")
    assert state["seeds"] == [5, 6]  # --seeds replaced the spec's
    assert [p["name"] for p in state["points"]] == ["ref", "sparse"] and state["base_point"] == "ref"
    assert state["status"] == "completed" and state["failed_jobs"] == []
    assert {(j["point"], j["seed"], j["status"]) for j in state["jobs"]} == {
        (p, s, "completed") for p in ("ref", "sparse") for s in (5, 6)}
    assert state["launch"] == {"backend": "local", "ray_address": None, "max_retries": 2, "devices": ["cpu"],
                               "jobs_per_device": 2, "threads": 2}
    assert state["spec"]["points"]["sparse"]["set"] == ["training.batch_size=8"] and len(state["spec_md5"]) == 32
    for p in state["points"]:
        cfg = read_json(swept / p["experiment_id"] / "config.json")
        assert cfg["config_md5"] == p["config_md5"] and cfg["model"]["gain_scale"] == 0.2
        assert p["experiment_id"].endswith(f"_gainakt2exp_{p['name']}")
    sparse = read_json(swept / state["points"][1]["experiment_id"] / "config.json")
    assert sparse["interpretability"]["sparsity_loss_weight"] == 0.35 and sparse["training"]["batch_size"] == 8
    for name in ("SWEEP.md", "sweep_summary.csv", "MANIFEST.sha256", "plots/frontier.png",
                 "plots/learning_curves.png"):
        assert (swept / name).stat().st_size > 0, name
    env = (swept / state["points"][0]["experiment_id"] / "environment.txt").read_text()
    placed = json.loads(next(x for x in env.splitlines() if x.startswith("seed5_placement: ")).split(": ", 1)[1])
    assert placed["device"] == "cpu" and placed["slot"] in (0, 1) and placed["threads"] == 1


def test_summary_statistics_are_those_of_the_points_results(swept):
    state = read_json(swept / "sweep.json")
    per = {p["name"]: read_json(swept / p["experiment_id"] / "results.json")["per_seed"] for p in state["points"]}
    rows = {(r["point"], r["metric"]): r for r in csv.DictReader((swept / "sweep_summary.csv").open())}
    ref = [per["ref"][s]["test_auc"] for s in ("5", "6")]
    sparse = [per["sparse"][s]["test_auc"] for s in ("5", "6")]
    row = rows[("sparse", "test_auc")]
    mean, sd = sum(sparse) / 2, stats.tstd(sparse)
    half = stats.t.ppf(0.975, 1) * sd / math.sqrt(2)
    assert float(row["mean"]) == pytest.approx(mean, rel=1e-12) and float(row["std"]) == pytest.approx(sd, rel=1e-9)
    assert float(row["ci95_low"]) == pytest.approx(mean - half, rel=1e-9)
    assert float(row["diff_vs_base"]) == pytest.approx(mean - sum(ref) / 2, abs=1e-12)
    assert int(row["paired_n"]) == 2
    assert float(row["paired_p"]) == pytest.approx(stats.ttest_rel(sparse, ref).pvalue, rel=1e-9)
    assert rows[("ref", "test_auc")]["diff_vs_base"] == "0.0" and rows[("ref", "test_auc")]["paired_p"] == ""
    md = (swept / "SWEEP.md").read_text()
    assert f"{mean:.4f} ± {sd:.4f} [{mean - half:.4f}, {mean + half:.4f}]" in md
    assert "![val AUC against mastery correlation](plots/frontier.png)" in md
    # The interpretability rows are filled from the points' population-named results keys.
    for metric in ("mastery_correlation_val_all", "gain_correlation_val_all", "qmastery_correlation_val_all",
                   "true_mastery_correlation_val_all"):
        values = [per["sparse"][s][metric] for s in ("5", "6")]
        assert int(rows[("sparse", metric)]["n"]) == 2, metric
        assert float(rows[("sparse", metric)]["mean"]) == pytest.approx(sum(values) / 2, rel=1e-12), metric


def test_verify_passes_and_catches_an_edited_summary(swept, tmp_path, capsys):
    assert main(["verify", str(swept)]) == 0
    copy = tmp_path / swept.name
    shutil.copytree(swept, copy)
    path = copy / "sweep_summary.csv"
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = repr(float(cells[5]) + 0.01)
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    capsys.readouterr()
    assert main(["verify", str(copy), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report["failed"]) == {"sweep_summary.csv equals the points' results", "sweep manifest"}


def test_resume_trains_only_the_unfinished_job(swept, tmp_path):
    copy = tmp_path / swept.name
    shutil.copytree(swept, copy)
    state = read_json(copy / "sweep.json")
    ref, sparse = (copy / p["experiment_id"] for p in state["points"])
    original = (sparse / "results.json").read_bytes()
    results = read_json(sparse / "results.json")  # seed 6 of `sparse` did not finish
    results["per_seed"]["6"] = {"seed": 6, "status": "failed", "reason": "worker died"}
    (sparse / "results.json").write_text(json.dumps(results))
    (sparse / "model_last_seed6.pth").unlink()
    write_manifest(sparse)  # the folder as a run whose seed 6 failed leaves it
    untouched = (ref / "results.json").stat().st_mtime_ns
    assert main(["sweep", "--resume", str(copy)]) == 0
    after = read_json(copy / "sweep.json")
    job = next(j for j in after["jobs"] if j["point"] == "sparse" and j["seed"] == 6)
    assert job["status"] == "completed" and job["attempts"] == 2
    assert [j["attempts"] for j in after["jobs"] if (j["point"], j["seed"]) != ("sparse", 6)] == [1, 1, 1]
    assert (ref / "results.json").stat().st_mtime_ns == untouched
    assert (sparse / "results.json").read_bytes() == original
    assert main(["verify", str(copy)]) == 0


def test_resume_of_something_else_is_one_line(tmp_path, capsys):
    assert main(["sweep", "--resume", str(tmp_path)]) == 1
    assert "not a sweep folder" in capsys.readouterr().err


def test_resume_refuses_flags_that_would_change_the_points(swept, capsys):
    assert main(["sweep", "--resume", str(swept), "--epochs", "3"]) == 2  # flags that do not go together
    assert "--epochs cannot change them" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(swept), "--set", "training.epochs=3"]) == 2
    assert "--set cannot change them" in capsys.readouterr().err


def _unfinish(folder: Path) -> None:
    """What a sweep killed while `sparse` seed 6 trained leaves: sweep.json running, that job pending, the
    point's folder interrupted (its own manifest written), no sweep summary or manifest yet."""
    state = read_json(folder / "sweep.json")
    state["status"] = "running"
    next(j for j in state["jobs"] if (j["point"], j["seed"]) == ("sparse", 6))["status"] = "pending"
    (folder / "sweep.json").write_text(json.dumps(state))
    sparse = folder / next(p["experiment_id"] for p in state["points"] if p["name"] == "sparse")
    last = torch.load(sparse / "model_last_seed6.pth", weights_only=True)
    del last["result"]  # the seed's outcome was never recorded: it did not finish
    torch.save(last, sparse / "model_last_seed6.pth")
    (sparse / "model_best_seed6.pth").unlink()
    with (sparse / "stdout.log").open("a") as fh:  # what the launcher records of an interrupted seed
        fh.write(f"2026-12-05 10:00:00,000 - INFO - {derive.outcome_line(6, 'interrupted', 'SIGTERM after epoch 0')}\n")
    with FolderLock(sparse):
        derive.finalise(sparse)
    for name in ("sweep_summary.csv", "SWEEP.md", "MANIFEST.sha256"):
        (folder / name).unlink()


def test_an_unfinished_sweep_is_incomplete_and_a_tampered_one_fails(swept, tmp_path, capsys):
    copy = tmp_path / swept.name
    shutil.copytree(swept, copy)
    _unfinish(copy)
    capsys.readouterr()
    assert main(["verify", str(copy), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "incomplete" and report["failed"] == ["sweep completed"], report["failed"]
    assert report["unfinished"]["jobs"] == ["sparse/seed 6"]
    assert report["unfinished"]["resume"] == f"harness sweep --resume {copy}"
    assert {"point sparse", "sweep manifest", "sweep_summary.csv equals the points' results"} <= set(report["skipped"])
    assert main(["verify", str(copy)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "INCOMPLETE: the run did not finish (status running; 1 jobs left)" in out
    assert f"finish it with: harness sweep --resume {copy}" in out
    ref = copy / next(p["experiment_id"] for p in read_json(copy / "sweep.json")["points"] if p["name"] == "ref")
    (ref / "README.md").write_text("edited\n")
    assert main(["verify", str(copy), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "fail" and "point ref" in report["failed"]


def test_a_finished_sweep_reports_verdict_pass(swept, capsys):
    assert main(["verify", str(swept), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "pass" and report["skipped"] == [] and report["unfinished"] is None
