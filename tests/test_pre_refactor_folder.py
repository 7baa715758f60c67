"""A folder made before the typed-config refactor still runs, verifies and compares; a worker bug
shows its traceback in stdout.log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.audit.compare import compare_experiments
from harness.audit.verify import verify_experiment
from harness.folder.experiment import write_manifest
from harness.run.launcher import execute_experiment

FIXTURE = Path(__file__).parent / "fixtures" / "pre_refactor" / "config.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pre_folder(tmp_path_factory) -> Path:
    """The pre-refactor config.json (seed 21, 1 epoch, small preset, CPU) executed by today's code."""
    cfg = json.loads(FIXTURE.read_text())
    folder = tmp_path_factory.mktemp("pre") / cfg["experiment"]["id"]
    folder.mkdir()
    cfg["paths"]["output_dir"] = str(folder)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    shutil.copy(FIXTURE.parent / "overrides_applied.txt", folder)
    assert execute_experiment(folder, quiet=True) == 0
    return folder


def test_pre_refactor_folder_runs_verifies_and_compares(pre_folder, tmp_path):
    report = verify_experiment(pre_folder)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    twin = shutil.copytree(pre_folder, tmp_path / pre_folder.name)
    assert compare_experiments(pre_folder, twin)["verdict"] == "pass"


def test_a_worker_bug_shows_its_traceback_in_stdout_log(pre_folder, tmp_path):
    folder = shutil.copytree(pre_folder, tmp_path / pre_folder.name)
    last = torch.load(folder / "model_last.pth", weights_only=True)
    del last["stale_epochs"]  # a checkpoint the resume code cannot read: a KeyError inside the worker
    del last["result"]  # the seed counts as unfinished (its outcome is not recorded)
    torch.save(last, folder / "model_last.pth")
    write_manifest(folder)  # as its writer left it: resume's check-before-write admits it
    assert execute_experiment(folder, resume=True, quiet=True) == 1
    log = (folder / "stdout.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "from_checkpoint" in log and "KeyError: 'stale_epochs'" in log
