"""`harness resume`: a run killed mid-epoch continues from its last checkpoint, completes, verifies,
and on CPU ends bit for bit where the uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest
import torch

from harness.audit.verify import verify_experiment
from harness.cli.main import main

runs = audit_runs
REPO = Path(__file__).resolve().parent.parent


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight_and_resumed(base_run, tmp_path_factory) -> tuple[Path, Path, int]:
    """(uninterrupted run, killed-then-resumed run, epoch saved when it was killed).

    The uninterrupted run is the shared base run (3 epochs). The same `harness run` is started in
    a subprocess under the same folder name in another output base (the experiment id is part of
    results.json, so a byte comparison needs the same one), and its whole process group is
    SIGKILLed as soon as epoch 1's checkpoint appears, i.e. during epoch 2.
    """
    straight = base_run
    killed_base = tmp_path_factory.mktemp("killed")
    exp = killed_base / straight.name
    argv = [*runs.BASE_ARGS, "--output_base", str(killed_base), "--experiment_dir", straight.name]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    try:
        while not (exp / "model_last.pth").exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint after 180 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    epoch_at_kill = load(exp / "model_last.pth")["epoch"] + 1
    assert not (exp / "results.json").exists(), "killed too late: the run had already finished"
    assert main(["resume", straight.name, "--output_base", str(killed_base)]) == 0
    return straight, exp, epoch_at_kill


def test_resumed_run_completes_and_verifies(straight_and_resumed):
    _, resumed, epoch_at_kill = straight_and_resumed
    assert epoch_at_kill < 3
    results = runs.read(resumed / "results.json")
    assert results["status"] == "completed" and results["per_seed"]["21"]["epochs_run"] == 3
    report = verify_experiment(resumed)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    log = (resumed / "stdout.log").read_text()
    assert "resuming" in log and f"seed 21: resuming after epoch {epoch_at_kill}" in log


def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(straight_and_resumed):
    straight, resumed, _ = straight_and_resumed
    assert (resumed / "results.json").read_bytes() == (straight / "results.json").read_bytes()
    for name in ("model_last.pth", "model_best.pth"):
        a, b = load(straight / name), load(resumed / name)
        assert a["epoch"] == b["epoch"] and a["best_val_auc"] == b["best_val_auc"]
        assert same_tensors(a["model"], b["model"]), name
    opt_a, opt_b = load(straight / "model_last.pth")["optimizer"], load(resumed / "model_last.pth")["optimizer"]
    for key, state in opt_a["state"].items():
        assert same_tensors(state, opt_b["state"][key])

    def rows(folder: Path) -> list[list[str]]:  # every column except the wall-clock one
        lines = (folder / "metrics_epoch.csv").read_text().splitlines()
        header = lines[0].split(",")
        keep = [i for i, c in enumerate(header) if c != "epoch_seconds"]
        return [[line.split(",")[i] for i in keep] for line in lines]

    assert rows(resumed) == rows(straight)


def test_resume_of_a_finished_experiment_keeps_it_valid(straight_and_resumed, tmp_path):
    straight, _, _ = straight_and_resumed
    folder = runs.copy_experiment(straight, tmp_path)
    before = (folder / "results.json").read_bytes()
    assert main(["run", "ignored", "--resume", str(folder)]) == 0
    assert (folder / "results.json").read_bytes() == before
    assert verify_experiment(folder)["passed"]
