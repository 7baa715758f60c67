"""`harness run`: artifacts, hashing across runs, folder rules, errors and seed workers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from processes import kill_workers  # tests/fixtures, on sys.path via conftest.py

from harness.cli.main import main
from harness.folder.experiment import read_manifest, sha256_file

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--synthetic_students", "80", "--synthetic_max_len", "25",
        "--synthetic_min_len", "8", "--batch_size", "16", "--max_semantic_students", "10",
        "--alignment_global_students", "20", "--threads", "1"]
REPO = Path(__file__).resolve().parent.parent


def run(tmp: Path, title: str, *extra: str) -> Path:
    before = set(tmp.iterdir()) if tmp.exists() else set()
    code = main(["run", title, "--output_base", str(tmp), *TINY, *extra])
    assert code == 0
    (new,) = [p for p in tmp.iterdir() if p not in before and p.is_dir()]
    return new


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("exp")
    a = run(base, "alpha", "--seeds", "21", "--epochs", "2", "--torch_deterministic")
    b = run(base, "beta", "--seeds", "21", "--epochs", "2", "--torch_deterministic")
    return a, b


def test_every_artifact_is_written_with_content(two_runs):
    exp, _ = two_runs
    cfg = json.loads((exp / "config.json").read_text())
    assert cfg["missing_params"] == []
    assert cfg["schema_version"] == 3
    assert cfg["experiment"]["id"] == exp.name and exp.name.endswith("_gainakt2exp_alpha")
    assert len(cfg["config_md5"]) == 32
    env = (exp / "environment.txt").read_text()
    for key in ("python:", "torch_version:", "cuda_version:", "git_commit:", "git_branch:", "platform:",
                "cpu:", "dataset_sha256: " + cfg["data_checksum"]["sha256"], "runtime: local"):
        assert key in env
    assert "gpus: " in env or "gpu0: " in env
    log_lines = (exp / "stdout.log").read_text().splitlines()
    assert log_lines and all(line[:4].isdigit() and " - " in line for line in log_lines)
    assert any("[alpha_s21] seed 21 epoch 2/2" in line for line in log_lines)  # worker lines, tagged <suffix>_s<seed>
    rows = list(csv.DictReader((exp / "metrics_epoch.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        assert all(v not in ("", None) for v in row.values()), row
    results = json.loads((exp / "results.json").read_text())
    assert results["config_md5"] == cfg["config_md5"]
    seed = results["per_seed"]["21"]
    assert seed["status"] == "completed"
    assert results["best_epoch_auc"] == seed["best_val_auc"] == max(float(r["val_auc"]) for r in rows)
    assert 0 <= seed["test_auc"] <= 1 and 0 <= seed["test_window_auc"] <= 1
    assert not (exp / "results_multi_seed.json").exists()
    assert "Primary seed: 21" in (exp / "SEED_INFO.md").read_text()
    readme = (exp / "README.md").read_text()
    assert "Reproducibility Checklist" in readme and "Parameter Scenario Quick Reference" in readme
    assert "❌ | seed 21" not in readme
    for name in ("model_best.pth", "model_last.pth"):
        state = torch.load(exp / name, map_location="cpu", weights_only=True)
        assert state["seed"] == 21 and {"model", "optimizer", "scaler", "rng", "epoch"} <= set(state)
    art = exp / "artifacts"
    for name in ("rng_seed21.json", "semantic_trajectory_seed21.json", "learning_curves.png",
                 "interpretability.png", "mastery_trajectories.png"):
        assert (art / name).stat().st_size > 0, name
    assert "override_count: 0" in (exp / "overrides_applied.txt").read_text()
    manifest = read_manifest(exp)
    assert set(manifest) == {p.relative_to(exp).as_posix() for p in exp.rglob("*")
                             if p.is_file() and p.name != "MANIFEST.sha256"}
    assert all(sha256_file(exp / n) == d for n, d in manifest.items())


def test_identical_runs_have_equal_md5_and_identical_results(two_runs):
    a, b = two_runs
    ca, cb = (json.loads((p / "config.json").read_text()) for p in two_runs)
    assert ca["config_md5"] == cb["config_md5"]
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()


def test_two_seeds_give_multi_seed_files(tmp_path):
    exp = run(tmp_path, "multi", "--seeds", "3", "4", "--epochs", "1")
    multi = json.loads((exp / "results_multi_seed.json").read_text())
    assert multi["seeds"] == [3, 4] and multi["stats"]["best_val_auc"]["n"] == 2
    assert (exp / "model_best_seed3.pth").is_file() and (exp / "model_last_seed4.pth").is_file()
    assert not (exp / "model_best.pth").exists()
    assert "| 4 | cpu |" in (exp / "SEED_INFO.md").read_text()


def test_existing_folder_is_refused_without_force(tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    code = main(["run", "x", "--output_base", str(tmp_path), "--experiment_dir", str(target), *TINY,
                 "--epochs", "1"])
    assert code == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (target / "keep.txt").read_text() == "precious" and not (target / "config.json").exists()
    assert main(["run", "x", "--output_base", str(tmp_path), "--experiment_dir", str(target), "--force",
                 *TINY, "--epochs", "1"]) == 0
    assert (target / "results.json").is_file()


def test_concurrent_launch_into_one_folder_is_refused(tmp_path, capsys):
    from harness.folder.experiment import FolderLock

    target = tmp_path / "locked"
    target.mkdir()
    with FolderLock(target):
        code = main(["run", "x", "--experiment_dir", str(target), "--force", *TINY, "--epochs", "1"])
    assert code == 1
    assert "another run is writing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "assist2015", "--data_dir", "/nonexistent"], "dataset folder not found"),
        (["--dataset", "assist2015"], "needs --data_dir"),
        (["--devices", "0"], "no GPU is present"),
        (["--set", "training.epoch=2"], "did you mean training.epochs"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    if argv == ["--devices", "0"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = main(["run", "x", "--output_base", str(tmp_path), *TINY, *argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["--unknown_flag"], ["--epochs", "-3"], ["--seeds"], ["--epochs", "two"]])
def test_usage_errors_exit_non_zero_with_one_line(tmp_path, argv):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "x", "--output_base", str(tmp_path), *argv],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []


def start_until_first_checkpoint(tmp_path: Path, title: str, seed: int) -> tuple[subprocess.Popen, Path]:
    """A long `harness run` in its own session, returned once its first checkpoint exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", title, "--output_base", str(tmp_path), *TINY,
         "--epochs", "30", "--seeds", str(seed)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # A shell without job control starts background commands with SIGINT ignored, and Python keeps an
        # ignored SIGINT: the run must get Ctrl-C's default whatever launched the tests.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:
        found = [p for p in tmp_path.iterdir() if p.is_dir()]
        if found and (found[0] / "model_last.pth").exists():
            return proc, found[0]
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("no checkpoint within 120 s")


def test_killed_worker_keeps_other_seeds_and_marks_failure(tmp_path):
    """Two seeds on two CPU 'devices' would need GPUs; instead kill the single worker mid-run and
    check that the folder records the failure and keeps what was written."""
    proc, exp = start_until_first_checkpoint(tmp_path, "killme", 5)
    # Kill only the worker (a child of the launcher): the launcher must survive and record it.
    assert kill_workers(proc.pid)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    results = json.loads((exp / "results.json").read_text())
    assert results["status"] == "failed"
    assert "died" in results["per_seed"]["5"]["reason"]
    assert (exp / "model_last.pth").is_file() and (exp / "metrics_epoch.csv").is_file()
    assert json.loads((exp / "run_status.json").read_text())["status"] == "failed"


def test_experiment_suffix_tags_the_seed_log_lines_and_purpose_reaches_the_readme(tmp_path):
    exp = run(tmp_path, "tagged", "--epochs", "1", "--experiment_suffix", "ablA", "--purpose", "suffix check")
    assert "[ablA_s42] seed 42 epoch 1/1" in (exp / "stdout.log").read_text()
    assert "- Purpose: suffix check" in (exp / "README.md").read_text()


def test_ctrl_c_stops_the_workers_and_marks_the_folder_interrupted(tmp_path):
    proc, exp = start_until_first_checkpoint(tmp_path, "ctrlc", 6)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert json.loads((exp / "run_status.json").read_text())["status"] == "interrupted"
    assert json.loads((exp / "results.json").read_text())["status"] == "interrupted"
    assert (exp / "model_last.pth").is_file() and (exp / "MANIFEST.sha256").is_file()
    # No worker outlives the launcher (multiprocessing's resource tracker may take a moment to exit).
    for _ in range(40):
        leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not leftover:
            break
        time.sleep(0.25)
    assert leftover == []
