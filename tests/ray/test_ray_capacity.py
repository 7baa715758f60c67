"""Ray with too few CPUs per node (issue 19, item 11): a job no alive node can hold stops the sweep
in one line before anything is created; jobs that wait for resources are reported while they wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.folder.experiment import read_json

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--synthetic_students", "80", "--synthetic_max_len", "25",
        "--synthetic_min_len", "8", "--batch_size", "16", "--max_semantic_students", "10",
        "--alignment_global_students", "20"]


def test_a_job_no_node_can_hold_stops_the_sweep_in_one_line_with_nothing_left(tmp_path, ray_cluster):
    """The cluster's nodes have 1 CPU each; --threads 2 makes every job ask for 2. In a subprocess
    with a deadline, so that waiting forever (the behaviour this replaces) fails the test."""
    base = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "sweep", "big", "--matrix", "guide", "--seeds", "1",
                           "--output_base", str(base), *TINY, "--epochs", "1", "--threads", "2",
                           "--backend", "ray", "--ray_address", ray_cluster.address],
                          cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "each job asks for 2 CPUs" in err[0] and "the largest" in err[0] and "has 1 CPU" in err[0]
    assert "--threads" in err[0]
    assert not base.exists() or not any(base.iterdir())
    assert time.monotonic() - started < 120


def test_jobs_waiting_for_resources_are_reported_while_they_wait(tmp_path, ray_cluster, capsys, monkeypatch):
    """Three 1-CPU jobs on two 1-CPU nodes: one waits. With the notice period shortened to 1 s, a line
    names it while it waits; the sweep then finishes normally."""
    import harness.sweep.ray_backend as ray_backend

    monkeypatch.setattr(ray_backend, "WAIT_NOTICE_S", 1.0)
    spec = tmp_path / "spec.yaml"
    spec.write_text("points:\n  base: {}\nseeds: [3, 4, 5]\n")
    base = tmp_path / "out"
    code = main(["sweep", "wait", "--spec", str(spec), "--output_base", str(base), *TINY, "--epochs", "3",
                 "--threads", "1", "--backend", "ray", "--ray_address", ray_cluster.address])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if "waiting for resources" in line]
    assert lines, out
    assert "each asks for 1 CPU" in lines[0] and "seed" in lines[0] and "free now:" in lines[0]
    (folder,) = base.glob("*_sweep_wait")
    assert read_json(folder / "sweep.json")["status"] == "completed"
