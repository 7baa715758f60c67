"""`harness verify` on a run that did not finish: interrupted, a failed seed, killed before it wrote
results.json. Every integrity check still runs; the checks that need finished results are skipped
(not applicable, with the reason); the verdict is `incomplete` (exit 1, never `pass`), and a
tampered unfinished folder still fails.

The fast folders come from a real `harness run` whose seed runner is replaced: it raises
KeyboardInterrupt (what Ctrl-C/SIGTERM do), reports a failed seed, or copies the folder as a
SIGKILL would leave it. The slow test SIGTERMs a real training run mid-epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

import harness.run.launcher as launcher
from harness.audit.verify import verify_experiment
from harness.cli.main import main

REPO = Path(__file__).resolve().parent.parent
RUN = ("run", "unfinished", *audit_runs.QUICK, "--epochs", "2", "--seeds", "5", "6", "--runtime", "local")
# Checks that never depend on finished results: they must run (and pass) on every honest folder.
INTEGRITY = ("schema_version", "missing_params", "config_md5", "no symlinks", "artifact config.json",
             "artifact environment.txt", "artifact stdout.log", "dataset checksum", "seeds agree")
KEYS = {"experiment", "path", "passed", "failed", "checks"}  # the report's keys before `incomplete`


def launch(base: Path, monkeypatch: pytest.MonkeyPatch, runner: Any) -> tuple[int, Path]:
    monkeypatch.setattr(launcher, "run_workers", runner)
    base.mkdir(parents=True)
    return audit_runs.harness(base, *RUN, expect=None)


def interrupted_runner(*_: Any) -> dict:
    raise KeyboardInterrupt


def failed_runner(plans: list, *_: Any) -> dict:
    return {s: {"status": "failed", "reason": "non-finite loss (nan) at epoch 1, batch 1"}
            for p in plans for s in p.seeds}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """{"interrupted", "failed", "killed"}: one folder of each kind (read-only for the tests: copy to change)."""
    base = tmp_path_factory.mktemp("unfinished")
    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        code, out["interrupted"] = launch(base / "interrupted", mp, interrupted_runner)
        assert code == 130
        code, out["failed"] = launch(base / "failed", mp, failed_runner)
        assert code == 1
        killed = base / "killed"

        def killed_runner(plans: list, exp_dir: Path, *_: Any) -> dict:
            shutil.copytree(exp_dir, killed / exp_dir.name)  # what SIGKILL leaves while seeds train
            raise KeyboardInterrupt

        launch(base / "killing", mp, killed_runner)
        out["killed"] = next(killed.iterdir())
    return out


def copy(folder: Path, tmp_path: Path) -> Path:
    return audit_runs.copy_experiment(folder, tmp_path)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.mark.parametrize("kind, status, seeds", [
    ("interrupted", "interrupted", {"5": "not_run", "6": "not_run"}),
    ("failed", "failed", {"5": "failed", "6": "failed"}),
    ("killed", "interrupted", {"5": "not_run", "6": "not_run"}),  # its launcher never logged `session ended`
])
def test_an_unfinished_run_is_incomplete_with_its_integrity_checked(folders, kind, status, seeds):
    report = verify_experiment(folders[kind])
    checks = by_name(report)
    assert report["verdict"] == "incomplete" and report["passed"] is False
    assert report["failed"] == ["run completed"], report["failed"]
    assert report["unfinished"]["status"] == status and report["unfinished"]["seeds"] == seeds
    assert report["unfinished"]["resume"] == f"harness resume {folders[kind]}"
    assert all(checks[name]["passed"] for name in INTEGRITY), {n: checks[n] for n in INTEGRITY}
    if kind != "killed":  # these have their manifest and results.json: checked, not skipped
        assert checks["manifest"]["passed"] and checks["results config_md5"]["passed"]
    assert report["skipped"], "nothing was skipped"
    for name in report["skipped"]:
        assert not checks[name]["passed"] and "not applicable until the run finishes" in checks[name]["reason"]
    # Said once: the seeds and what to do next are in `run completed` only.
    advice = "harness resume" if kind != "failed" else "a resume repeats that unless the cause changes"
    assert [c["name"] for c in report["checks"] if advice in c["reason"]] == ["run completed"]


def test_the_report_keeps_its_schema_and_adds_verdict_skipped_unfinished(folders):
    report = verify_experiment(folders["interrupted"])
    assert KEYS | {"verdict", "skipped", "unfinished", "notes"} == set(report)
    assert all(set(c) == {"name", "passed", "status", "reason"} for c in report["checks"])  # status: additive
    assert not set(report["skipped"]) & set(report["failed"])


def test_a_killed_run_without_manifest_says_tampering_cannot_be_detected(folders):
    report = verify_experiment(folders["killed"])
    manifest = by_name(report)["manifest"]
    assert "manifest" in report["skipped"] and "tampering cannot be detected" in manifest["reason"]


@pytest.mark.parametrize("tamper, check", [
    ("results", "manifest"),
    ("config", "config_md5"),
    ("run_status", "manifest"),
])
def test_a_tampered_unfinished_folder_still_fails(folders, tmp_path, tamper, check):
    exp = copy(folders["interrupted"], tmp_path)
    if tamper == "results":
        data = json.loads((exp / "results.json").read_text())
        data["per_seed"]["5"]["reason"] = "edited"
        (exp / "results.json").write_text(json.dumps(data))
    elif tamper == "config":
        data = json.loads((exp / "config.json").read_text())
        data["training"]["learning_rate"] = 0.5
        (exp / "config.json").write_text(json.dumps(data))
    else:  # claim a killed writer to get the manifest skipped: the manifest is there, so it is checked
        (exp / "run_status.json").write_text(json.dumps({"status": "running"}))
    report = verify_experiment(exp)
    assert report["verdict"] == "fail" and check in report["failed"], report["failed"]


def test_the_cli_exits_1_and_says_incomplete_with_the_resume_command(folders, capsys):
    exp = folders["interrupted"]
    assert main(["verify", str(exp)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "INCOMPLETE: the run did not finish (status interrupted; unfinished seeds 5, 6)" in out
    assert f"finish it with: harness resume {exp}" in out
    assert "FAILED" not in out and "n/a" in out


def test_failed_seeds_are_not_sent_to_resume_which_would_repeat_the_failure(folders, capsys):
    assert main(["verify", str(folders["failed"])]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "INCOMPLETE: the run did not finish (status failed; unfinished seeds 5, 6)" in out
    assert "seed 5: non-finite loss (nan) at epoch 1, batch 1" in out
    assert "a resume repeats that unless the cause changes" in out and "finish it with" not in out


def test_against_an_unfinished_run_is_skipped_not_compared(folders):
    report = verify_experiment(folders["failed"], against=folders["interrupted"])
    assert report["verdict"] == "incomplete" and "against: comparison" in report["skipped"]


@pytest.mark.slow
def test_a_run_sigtermed_mid_epoch_is_incomplete_and_its_checkpoints_are_checked(tmp_path):
    base = tmp_path / "runs"
    argv = ["run", "sigterm", *audit_runs.QUICK, "--epochs", "30", "--seeds", "1", "2", "--runtime", "local",
            "--output_base", str(base)]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    try:
        while not list(base.glob("*/model_last_seed1.pth")):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    exp = next(base.iterdir())
    report = verify_experiment(exp)
    checks = by_name(report)
    assert report["verdict"] == "incomplete", report["failed"]
    assert report["unfinished"]["seeds"]["1"] == "interrupted"
    for name in ("checkpoint model_best_seed1.pth", "checkpoint model_last_seed1.pth"):
        assert checks[name]["passed"] and "did not finish" in checks[name]["reason"]
    # A checkpoint of the unfinished seed that is not what the run wrote is still found.
    with (exp / "model_last_seed1.pth").open("ab") as fh:
        fh.write(b"\0")
    assert "manifest" in verify_experiment(exp)["failed"]


def test_run_status_that_contradicts_a_finished_run_fails(base_run, tmp_path):
    exp = copy(base_run, tmp_path)
    (exp / "run_status.json").write_text(json.dumps({"status": "interrupted"}))
    report = verify_experiment(exp)
    assert report["verdict"] == "fail" and {"manifest", "run completed"} <= set(report["failed"])
    assert "run_status.json says interrupted" in by_name(report)["run completed"]["reason"]
