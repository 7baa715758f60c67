"""`harness verify --write_report` writes into the verified folder only when every check of the
folder itself passes; a folder that fails one (tampered, unfinished, no manifest) is left byte for
byte as it was, with one line and exit 1. `--report_file PATH` stores any verdict outside it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

import harness.run.launcher as launcher
from harness.cli.main import main


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (and folder) under `folder` with its sha256: what a write would change."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def interrupted_runner(*_: Any) -> dict:
    raise KeyboardInterrupt


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """An interrupted run (its seed never started): finalized, with a manifest, verdict incomplete."""
    base = tmp_path_factory.mktemp("write_report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(launcher, "run_workers", interrupted_runner)
        return audit_runs.harness(base, "run", "wr", *audit_runs.QUICK, "--epochs", "1", "--seeds", "3",
                                  "--runtime", "local", expect=130)[1]


def tamper(folder: Path) -> None:
    data = json.loads((folder / "results.json").read_text())
    data["best_epoch_auc"] = 0.99
    (folder / "results.json").write_text(json.dumps(data))


def refused(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("case", ["unfinished", "tampered unfinished", "no manifest"])
def test_a_folder_that_fails_its_own_checks_is_never_written(interrupted, tmp_path, capsys, case):
    exp = audit_runs.copy_experiment(interrupted, tmp_path)
    if case == "tampered unfinished":
        tamper(exp)
    if case == "no manifest":
        (exp / "MANIFEST.sha256").unlink()
    before = snapshot(exp)
    line = refused(capsys, ["verify", str(exp), "--write_report"])
    assert "refusing to write verification_report.json" in line and "--report_file" in line
    if case == "unfinished":  # the one failed check, not every check that is only not applicable yet
        assert "(verdict incomplete: run completed did not pass)" in line
    assert snapshot(exp) == before


def test_report_file_stores_any_verdict_outside_the_folder(interrupted, tmp_path, capsys):
    exp = audit_runs.copy_experiment(interrupted, tmp_path)
    tamper(exp)
    before = snapshot(exp)
    out = tmp_path / "reports" / "verdict.json"
    out.parent.mkdir()
    assert main(["verify", str(exp), "--report_file", str(out), "--json"]) == 1
    stored = json.loads(out.read_text())
    captured = capsys.readouterr()
    assert stored == json.loads(captured.out) and f"report written: {out}" in captured.err
    assert stored["verdict"] == "fail" and "manifest" in stored["failed"]
    assert snapshot(exp) == before


@pytest.mark.parametrize("where", ["inside", "the folder", "missing parent"])
def test_report_file_inside_the_folder_or_nowhere_is_refused_before_verifying(interrupted, tmp_path, capsys, where):
    exp = audit_runs.copy_experiment(interrupted, tmp_path)
    before = snapshot(exp)
    target = {"inside": exp / "report.json", "the folder": exp, "missing parent": tmp_path / "no" / "r.json"}[where]
    line = refused(capsys, ["verify", str(exp), "--report_file", str(target)])
    assert "--report_file" in line
    assert snapshot(exp) == before


def test_a_passing_folder_gets_its_report_recorded_and_a_tampered_one_does_not(base_run, interrupted, tmp_path,
                                                                                capsys):
    good = audit_runs.copy_experiment(base_run, tmp_path, "good")
    assert main(["verify", str(good), "--write_report"]) == 0
    assert json.loads((good / "verification_report.json").read_text())["verdict"] == "pass"
    assert "verification_report.json" in (good / "MANIFEST.sha256").read_text()
    assert main(["verify", str(good), "--write_report"]) == 0  # the folder still verifies with its report
    # Only the comparison fails (the source never finished): the folder is sound, its failing verdict is stored.
    assert main(["verify", str(good), "--against", str(interrupted), "--write_report"]) == 1
    stored = json.loads((good / "verification_report.json").read_text())
    assert stored["verdict"] == "fail" and all(n.startswith("against: ") for n in stored["failed"])
    assert main(["verify", str(good)]) == 0
    bad = audit_runs.copy_experiment(base_run, tmp_path, "bad")
    tamper(bad)
    before = snapshot(bad)
    line = refused(capsys, ["verify", str(bad), "--write_report", "--json"])
    assert "manifest" in line and "results.json top level" in line
    assert snapshot(bad) == before


def test_a_folder_changed_after_it_was_verified_is_refused_with_a_way_out_verify_has(base_run, tmp_path, capsys,
                                                                                    monkeypatch):
    """The folder is checked again under the lock; if it changed since it was verified, the refusal names what
    verify can do (--report_file) or resume, never `--accept_modified`, which verify does not take."""
    import harness.cli.commands as commands

    exp = audit_runs.copy_experiment(base_run, tmp_path, "raced")
    real = commands.check_manifest_readable

    def edited_in_between(folder: Path) -> None:
        tamper(folder)
        real(folder)

    monkeypatch.setattr(commands, "check_manifest_readable", edited_in_between)
    line = refused(capsys, ["verify", str(exp), "--write_report"])
    assert "refusing to write verification_report.json" in line and "results.json does not match" in line
    assert "--report_file" in line and "pass --accept_modified" not in line, line
    assert not (exp / "verification_report.json").exists()


def test_the_compose_verifier_takes_its_lock_where_it_can_write():
    """The Compose `reproduce` verifier mounts the experiments read-only except the reproduction:
    the lock --write_report takes must go to its writable /tmp."""
    import yaml

    service = yaml.safe_load((Path(__file__).resolve().parent.parent / "compose.yaml").read_text())["services"][
        "reproduce"]
    assert "--write_report" in " ".join(service["command"])
    assert service["environment"]["HARNESS_LOCK_DIR"] == "/tmp" and any(t.startswith("/tmp:") for t in service["tmpfs"])
