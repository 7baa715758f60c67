"""`harness sweep --backend ray` on a real local 2-node cluster: placement, summary, verify, byte
identity with the local backend, and a worker killed mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.folder.experiment import ExperimentError, read_json

pytestmark = pytest.mark.ray

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--torch_deterministic", "--synthetic_students", "80",
        "--synthetic_max_len", "25", "--synthetic_min_len", "8", "--batch_size", "16",
        "--max_semantic_students", "10", "--alignment_global_students", "20", "--threads", "1"]
SPEC = """
points:
  base: {}
  perf: {flags: {ablation_mode: none}}
seeds: [3, 4]
"""


def sweep(base: Path, spec: Path, title: str, *extra: str) -> tuple[int, Path]:
    code = main(["sweep", title, "--spec", str(spec), "--output_base", str(base), *TINY, *extra])
    (folder,) = base.glob(f"*_sweep_{title}")
    return code, folder


def results(folder: Path) -> dict[str, bytes]:
    state = read_json(folder / "sweep.json")
    return {p["name"]: (folder / p["experiment_id"] / "results.json").read_bytes() for p in state["points"]}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, spec) -> Path:
    code, folder = sweep(tmp_path_factory.mktemp("local"), spec, "same", "--epochs", "3")
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory, spec, ray_cluster) -> Path:
    code, folder = sweep(tmp_path_factory.mktemp("ray"), spec, "same", "--epochs", "3", "--backend", "ray",
                         "--ray_address", ray_cluster.address)
    assert code == 0
    return folder


def test_jobs_ran_on_both_nodes_and_placement_is_recorded(ray_sweep, node_names):
    state = read_json(ray_sweep / "sweep.json")
    assert state["status"] == "completed" and len(state["jobs"]) == 4
    nodes = {node_names[j["placement"]["ray_node_id"]] for j in state["jobs"]}
    assert nodes == {"node_head", "node_worker"}
    for p in state["points"]:
        env = (ray_sweep / p["experiment_id"] / "environment.txt").read_text()
        for seed in state["seeds"]:
            line = next(x for x in env.splitlines() if x.startswith(f"seed{seed}_placement: "))
            placed = json.loads(line.split(": ", 1)[1])
            assert placed["ray_node_id"] in node_names and placed["host"] and placed["device"] == "cpu"


def test_ray_sweep_verifies_and_its_summary_is_the_points_results(ray_sweep, capsys):
    assert main(["verify", str(ray_sweep), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and "sweep_summary.csv equals the points' results" in {c["name"] for c in report["checks"]}
    rows = (ray_sweep / "sweep_summary.csv").read_text().splitlines()
    state = read_json(ray_sweep / "sweep.json")
    point = state["points"][1]
    per_seed = read_json(ray_sweep / point["experiment_id"] / "results.json")["per_seed"]
    mean = sum(per_seed[s]["best_val_auc"] for s in ("3", "4")) / 2
    row = next(r.split(",") for r in rows if r.startswith(f"{point['name']},") and ",best_val_auc," in r)
    assert float(row[5]) == pytest.approx(mean, abs=1e-15)


def test_ray_results_are_byte_identical_to_local(ray_sweep, local_sweep):
    assert results(ray_sweep) == results(local_sweep)


def _worker_pid(folder: Path, node_names: dict[str, str], deadline: float) -> tuple[int, str, int]:
    """(pid, point, seed) of a job on the worker node that has saved its first checkpoint."""
    while time.time() < deadline:
        try:
            state = read_json(folder / "sweep.json")
        except ExperimentError:  # not written yet
            state = {"jobs": [], "points": []}
        ids = {p["name"]: p["experiment_id"] for p in state["points"]}
        for j in state["jobs"]:
            placed = j.get("placement") or {}
            if j["status"] == "running" and node_names.get(placed.get("ray_node_id")) == "node_worker":
                last = folder / ids[j["point"]] / f"model_last_seed{j['seed']}.pth"
                if last.is_file():
                    return placed["pid"], j["point"], j["seed"]
        time.sleep(0.05)
    raise AssertionError("no job reached its first checkpoint on the worker node")


def test_killed_worker_is_retried_from_its_checkpoint_and_nothing_is_lost(tmp_path, spec, ray_cluster, node_names,
                                                                          local_sweep):
    base = tmp_path / "kill"
    outcome: dict[str, int] = {}
    args = ["sweep", "kill", "--spec", str(spec), "--output_base", str(base), *TINY, "--epochs", "3",
            "--backend", "ray", "--ray_address", ray_cluster.address, "--max_retries", "2"]
    runner = threading.Thread(target=lambda: outcome.update(code=main(args)))
    runner.start()
    deadline = time.time() + 240
    while not list(base.glob("*_sweep_kill")) and time.time() < deadline:
        time.sleep(0.05)
    (folder,) = base.glob("*_sweep_kill")
    pid, point, seed = _worker_pid(folder, node_names, deadline)
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive()
    state = read_json(folder / "sweep.json")
    job = next(j for j in state["jobs"] if j["point"] == point and j["seed"] == seed)
    assert job["status"] in ("completed", "failed") and job["attempts"] >= 1
    assert state["status"] in ("completed", "partial")
    assert (folder / "SWEEP.md").is_file() and (folder / "sweep_summary.csv").is_file()
    if job["status"] == "completed":  # retried from its last checkpoint: same bytes as never killed
        assert job["attempts"] == 2 and outcome["code"] == 0
        assert results(folder) == results(local_sweep)
        assert main(["verify", str(folder)]) == 0
    else:
        assert job["point"] + f"/seed {seed}" in " ".join(state["failed_jobs"])
    for p in state["points"]:  # every finished job's files survived, every point folder is complete
        exp = folder / p["experiment_id"]
        per_seed = read_json(exp / "results.json")["per_seed"]
        for s in state["seeds"]:
            if per_seed[str(s)]["status"] == "completed":
                assert (exp / f"model_best_seed{s}.pth").is_file() and (exp / f"model_last_seed{s}.pth").is_file()


GUIDE_TINY = [a for a in TINY if a not in ("--no_amp", "--torch_deterministic")]  # no_amp_ref stays its own point


def test_a_guide_matrix_sweep_on_ray_verifies(tmp_path, ray_cluster, capsys):
    """Issue 19 item 3: SWEEP.md lists each point's overrides in the order its recomputation does."""
    code = main(["sweep", "demo", "--matrix", "guide", "--seeds", "21", "--epochs", "1", "--output_base",
                 str(tmp_path), *GUIDE_TINY, "--backend", "ray", "--ray_address", ray_cluster.address])
    assert code == 0
    (folder,) = tmp_path.glob("*_sweep_demo")
    capsys.readouterr()
    assert main(["verify", str(folder), "--json"]) == 0, capsys.readouterr().out
