"""Integrity under attack and accident (issue 10): signals, locks, check-before-write, symlinks,
leftovers, truthful seed statuses and signed attestations."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest
from processes import kill_workers  # tests/fixtures

from harness.audit.verify import verify_experiment
from harness.cli.main import main
from harness.folder.experiment import (
    MANIFEST,
    ExperimentError,
    FolderLock,
    check_before_write,
    read_manifest,
    sha256_file,
)

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--synthetic_students", "80", "--synthetic_max_len", "25",
        "--synthetic_min_len", "8", "--batch_size", "16", "--max_semantic_students", "10",
        "--alignment_global_students", "20", "--threads", "1"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry of the folder (links included, not followed) with its bytes and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(folder).as_posix()] = (os.readlink(p).encode(), p.lstat().st_mtime_ns)
        elif p.is_file():
            out[p.relative_to(folder).as_posix()] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def failed(report: dict) -> dict[str, str]:
    return {c["name"]: c["reason"] for c in report["checks"] if not c["passed"]}


@pytest.fixture
def finished(base_run, tmp_path) -> Path:
    """A copy of the shared finished base run (3 epochs, seed 21), free to modify."""
    return audit_runs.copy_experiment(base_run, tmp_path / "copies")


def launch(tmp_path: Path, title: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", title, "--output_base", str(tmp_path),
                             *TINY, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for(path_of, what: str, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = path_of()
        if found is not None:
            return found
        assert proc.poll() is None, f"the run ended before {what}: {proc.stdout.read() if proc.stdout else ''}"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no {what} within {timeout} s")


def first_epoch_done(tmp_path: Path, proc: subprocess.Popen, multi: bool) -> Path:
    name = "model_last_seed6.pth" if multi else "model_last.pth"

    def exp() -> Path | None:
        found = [p for p in tmp_path.iterdir() if p.is_dir()]
        return found[0] if found and (found[0] / name).exists() else None

    return wait_for(exp, "the first checkpoint", proc)


def group_alive(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


def wait_group_gone(pgid: int, seconds: float = 15) -> list[str]:
    deadline = time.time() + seconds
    while (left := group_alive(pgid)) and time.time() < deadline:
        time.sleep(0.2)
    return left


# 1. Signals and ownership ----------------------------------------------------------------------


def test_sigterm_of_the_launcher_is_an_interruption_with_truthful_seed_statuses(tmp_path):
    proc = launch(tmp_path, "term", "--epochs", "30", "--seeds", "6", "7")
    exp = first_epoch_done(tmp_path, proc, multi=True)
    os.kill(proc.pid, signal.SIGTERM)  # the launcher only: what timeout, systemd or CI cancellation send
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    status = json.loads((exp / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    results = json.loads((exp / "results.json").read_text())
    assert results["status"] == "interrupted"
    # Seed 6 had finished an epoch: interrupted (resumable), not "not_run"; seed 7 never started.
    assert results["per_seed"]["6"]["status"] == "interrupted", results["per_seed"]["6"]
    assert re.search(r"\(SIGTERM\) after epoch [1-9][0-9]*; resume continues it", results["per_seed"]["6"]["reason"])
    assert results["per_seed"]["7"]["status"] == "not_run"
    assert results["failed_seeds"] == [] and results["unfinished_seeds"] == [6, 7]  # interrupted is not failed
    assert status["failed_seeds"] == [] and status["unfinished_seeds"] == [6, 7]
    assert (exp / MANIFEST).is_file() and "interrupted (SIGTERM)" in (exp / "stdout.log").read_text()
    assert wait_group_gone(proc.pid) == []


def test_sigkill_of_the_launcher_takes_the_workers_down_and_resume_is_admitted(tmp_path):
    proc = launch(tmp_path, "kill9", "--epochs", "30", "--seeds", "8")
    exp = first_epoch_done(tmp_path, proc, multi=False)
    os.kill(proc.pid, signal.SIGKILL)  # the launcher only; its worker must not train on as an orphan
    proc.wait(timeout=30)
    assert wait_group_gone(proc.pid) == [], "a worker outlived the SIGKILLed launcher"
    last = exp / "model_last.pth"
    written = last.stat().st_mtime_ns
    time.sleep(1.5)
    assert last.stat().st_mtime_ns == written, "a checkpoint was written after the launcher died"
    assert json.loads((exp / "run_status.json").read_text())["status"] == "running"
    # The writer is gone and left no manifest: a resume is admitted (only while nobody holds the lock).
    with FolderLock(exp):
        assert check_before_write(exp, "resume it") == []
        assert main(["resume", str(exp)]) == 1  # a second writer is refused


def test_a_killed_worker_reports_a_seed_that_never_started_as_not_run(tmp_path):
    proc = launch(tmp_path, "wkill", "--epochs", "30", "--seeds", "6", "7")
    exp = first_epoch_done(tmp_path, proc, multi=True)
    assert kill_workers(proc.pid)
    out, _ = proc.communicate(timeout=120)
    results = json.loads((exp / "results.json").read_text())
    assert results["per_seed"]["6"]["status"] == "failed" and "killed by signal 9" in results["per_seed"]["6"]["reason"]
    assert results["per_seed"]["7"]["status"] == "not_run", results["per_seed"]["7"]
    assert "before this seed started" in results["per_seed"]["7"]["reason"]


# 2. Check before write -------------------------------------------------------------------------


def test_resume_refuses_to_launder_an_edited_folder_and_leaves_it_unchanged(finished, capsys):
    res = json.loads((finished / "results.json").read_text())
    res["test_auc"] = 0.95
    (finished / "results.json").write_text(json.dumps(res))
    ckpt = bytearray((finished / "model_best.pth").read_bytes())
    ckpt[-10] ^= 0xFF
    (finished / "model_best.pth").write_bytes(bytes(ckpt))
    before = snapshot(finished)
    assert main(["resume", str(finished)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to resume" in err
    assert "results.json does not match" in err and "model_best.pth does not match" in err
    assert snapshot(finished) == before
    assert not verify_experiment(finished)["passed"]


def test_accept_modified_is_recorded_and_resume_keeps_the_original_environment(finished):
    env_before = (finished / "environment.txt").read_text()
    (finished / "README.md").write_text("# Experiment edited by hand\n")
    assert main(["resume", str(finished), "--accept_modified"]) == 0
    accepted = (finished / "modifications_accepted.txt").read_text()
    assert "resume it: accepted README.md does not match its sha256" in accepted
    env_after = (finished / "environment.txt").read_text()
    assert env_after.startswith(env_before) and "# resume 1 at " in env_after
    assert "modifications_accepted.txt" in read_manifest(finished)


def test_resume_rebuilds_a_malformed_derived_file_from_the_evidence_when_accepted(finished, capsys):
    csv_path = finished / "metrics_epoch.csv"
    true_csv = csv_path.read_bytes()
    csv_path.write_text(csv_path.read_text() + "x,y\n")
    assert main(["resume", str(finished)]) == 1  # a difference from the manifest is refused ...
    assert "metrics_epoch.csv does not match" in capsys.readouterr().err
    assert main(["resume", str(finished), "--accept_modified"]) == 0  # ... or accepted and rebuilt
    assert csv_path.read_bytes() == true_csv
    assert json.loads((finished / "run_status.json").read_text())["status"] == "completed"
    assert (finished / MANIFEST).is_file()


def test_a_folder_where_a_record_belongs_is_refused_before_anything_is_written(finished, capsys):
    """--accept_modified cannot accept what no write can heal: run_status.json replaced by a folder. Refused
    in one line before the acceptance is recorded (it used to record it, then fail writing the status)."""
    (finished / "run_status.json").unlink()
    (finished / "run_status.json").mkdir()
    before = snapshot(finished)
    assert main(["resume", str(finished), "--accept_modified"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run_status.json" in err and "is a folder" in err, err
    assert snapshot(finished) == before and not (finished / "modifications_accepted.txt").exists()


def test_force_never_writes_config_json_while_another_run_holds_the_folder(finished, capsys):
    config = (finished / "config.json").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from harness.folder.experiment import FolderLock\n"
         "with FolderLock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n", str(finished)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = main(["run", "x", "--experiment_dir", str(finished), "--force", *TINY, "--epochs", "1"])
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and "another run is writing" in capsys.readouterr().err
    assert (finished / "config.json").read_bytes() == config


def test_force_into_a_finished_folder_removes_the_old_runs_files(tmp_path):
    target = tmp_path / "reused"
    assert main(["run", "a", "--experiment_dir", str(target), *TINY, "--epochs", "1", "--seeds", "3", "4"]) == 0
    copy = audit_runs.copy_experiment(target, tmp_path / "copies")
    assert main(["compare", str(copy), str(target)]) == 0  # a report listed in the old manifest
    assert (target / "reproduction_report.json").is_file()
    assert main(["run", "b", "--experiment_dir", str(target), "--force", *TINY, "--epochs", "1",
                 "--seeds", "5"]) == 0
    names = set(read_manifest(target))
    assert not any("seed3" in n or "seed4" in n for n in names), names
    assert "reproduction_report.json" not in names and not (target / "reproduction_report.json").exists()
    assert "[b_s5]" in (target / "stdout.log").read_text() and "[a_s3]" not in (target / "stdout.log").read_text()
    assert verify_experiment(target)["passed"]


# 3. No symlink followed ------------------------------------------------------------------------


def test_symlinked_stdout_log_and_png_are_not_followed_and_are_reported(finished, tmp_path, capsys):
    victim_log, victim_png = tmp_path / "bashrc", tmp_path / "unrelated.bin"
    victim_log.write_text("SECRET-FIRST-LINE\n")
    victim_png.write_bytes(b"precious")
    (finished / "stdout.log").unlink()
    (finished / "stdout.log").symlink_to(victim_log)
    (finished / "artifacts" / "learning_curves.png").unlink()
    (finished / "artifacts" / "learning_curves.png").symlink_to(victim_png)
    report = verify_experiment(finished)
    fails = failed(report)
    assert "artifacts/learning_curves.png" in fails["no symlinks"] and "stdout.log" in fails["no symlinks"]
    assert "symlink" in fails["artifact stdout.log"]
    assert "SECRET" not in json.dumps(report)
    assert main(["resume", str(finished), "--accept_modified"]) == 1
    assert "symlinks inside the folder" in capsys.readouterr().err
    assert victim_log.read_text() == "SECRET-FIRST-LINE\n" and victim_png.read_bytes() == b"precious"


def test_log_and_plot_writes_never_go_through_a_symlink(tmp_path):
    from harness.folder.plots import render_plots
    from harness.run.runlog import RunLog

    victim = tmp_path / "victim"
    victim.write_text("keep")
    folder = tmp_path / "exp"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "stdout.log").symlink_to(victim)
    with pytest.raises(ExperimentError, match="symlink"):
        RunLog(folder / "stdout.log", quiet=True)
    png = folder / "artifacts" / "learning_curves.png"
    png.symlink_to(victim)
    row = {"epoch": 1, "train_auc": 0.5, "val_auc": 0.5, "train_loss": 1.0, "val_loss": 1.0,
           "mastery_correlation": 0.1, "mastery_ci_low": 0.0, "mastery_ci_high": 0.2, "gain_correlation": 0.1,
           **{f"{k}_loss_share": 0.2 for k in ("main", "constraint", "alignment", "lag", "retention")}}
    from harness.folder import io

    for name, data in render_plots({1: [row]}, {}).items():
        io.write_bytes(folder / name, data, root=folder)
    assert victim.read_text() == "keep"
    assert not png.is_symlink() and png.read_bytes().startswith(b"\x89PNG")
    lock_victim = tmp_path / "lock_victim"
    lock_victim.write_text("keep")
    (tmp_path / ".exp.lock").symlink_to(lock_victim)
    with pytest.raises(ExperimentError, match="symlink"), FolderLock(folder):
        pass
    assert lock_victim.read_text() == "keep"


def test_a_manifest_entry_outside_the_folder_fails_verify(finished):
    outside = finished.parent / "outside.txt"
    outside.write_text("not part of the experiment\n")
    with (finished / MANIFEST).open("a") as fh:
        fh.write(f"{sha256_file(outside)}  ../outside.txt\n")
    fails = failed(verify_experiment(finished))
    assert "leaves the folder" in fails["manifest paths inside the folder"]
    assert "../outside.txt" in fails["manifest"]


# 5. Leftovers and partial failures -------------------------------------------------------------


def test_a_partial_tmp_file_is_cleaned_and_never_listed(finished):
    tmp = finished / ".model_best.pth.x1y2z3.tmp"
    tmp.write_bytes(b"\0" * 1000)
    assert "is not listed" in failed(verify_experiment(finished))["manifest"]
    assert main(["resume", str(finished)]) == 0
    assert not tmp.exists() and not any(n.endswith(".tmp") for n in read_manifest(finished))
    assert verify_experiment(finished)["passed"]


def test_a_corrupt_last_checkpoint_fails_only_its_seed_with_the_reason(tmp_path):
    exp = tmp_path / "two"
    assert main(["run", "two", "--experiment_dir", str(exp), *TINY, "--epochs", "1", "--seeds", "3", "4"]) == 0
    # The state a killed launcher leaves: no results yet, status running, no manifest.
    for name in ("results.json", "results_multi_seed.json", MANIFEST):
        (exp / name).unlink(missing_ok=True)
    (exp / "run_status.json").write_text('{"status": "running"}')
    (exp / "model_last_seed3.pth").write_bytes(b"not a checkpoint")
    assert main(["resume", str(exp)]) == 1
    per_seed = json.loads((exp / "results.json").read_text())["per_seed"]
    assert per_seed["3"]["status"] == "failed" and "model_last_seed3.pth does not load" in per_seed["3"]["reason"]
    assert per_seed["4"]["status"] in ("completed", "early_stopped")


# 6. Signed attestations ------------------------------------------------------------------------


def test_pae_follows_the_dsse_spec():
    from harness.audit.attest import pae

    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_a_signed_folder_edited_and_re_manifested_fails_verify_with_the_trusted_key(finished, tmp_path):
    from harness.audit.attest import sign_folder
    from harness.folder.experiment import write_manifest

    key = tmp_path / "keys" / "signer"
    assert main(["keys", "generate", str(key)]) == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    pub = key.with_name("signer.pub")
    assert "signed attestation" in failed(verify_experiment(finished, trusted_key=pub))  # not signed yet
    sign_folder(finished, str(key))
    report = verify_experiment(finished, trusted_key=pub)
    assert report["passed"], failed(report)
    statement = json.loads(__import__("base64").b64decode(
        json.loads((finished / "ATTESTATION.intoto.json").read_text())["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"] for s in statement["subject"]} == {MANIFEST, "results.json"}
    assert statement["predicate"]["seeds"] == [21] and statement["predicate"]["verdicts"]["status"] == "completed"
    # Someone with write access edits the results and regenerates the manifest:
    res = json.loads((finished / "results.json").read_text())
    res["test_auc"] = res["per_seed"]["21"]["test_auc"] = 0.95
    (finished / "results.json").write_text(json.dumps(res))
    write_manifest(finished)
    # The manifest agrees with the forgery, but the evidence does not: results.json is re-derived.
    assert "results.json differs at" in failed(verify_experiment(finished))["derived files equal their re-derivation"]
    fails = failed(verify_experiment(finished, trusted_key=pub))
    assert "does not cover the current files" in fails["signed attestation"]
    other = tmp_path / "keys" / "other"
    assert main(["keys", "generate", str(other)]) == 0
    sign_folder(finished, str(other))  # re-signed with a key the verifier does not trust
    assert "no signature verifies" in failed(verify_experiment(finished, trusted_key=pub))["signed attestation"]


def test_a_run_signs_itself_when_the_key_is_in_the_environment(tmp_path, monkeypatch):
    key = tmp_path / "k"
    assert main(["keys", "generate", str(key)]) == 0
    monkeypatch.setenv("HARNESS_SIGN_KEY", key.read_text())  # PEM text, as a CI secret provides it
    exp = tmp_path / "signed"
    assert main(["run", "s", "--experiment_dir", str(exp), *TINY, "--epochs", "1"]) == 0
    assert main(["verify", str(exp), "--trusted_key", str(key.with_name("k.pub"))]) == 0


def test_a_bad_signing_key_is_said_before_anything_trains_or_changes(finished, tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    base = tmp_path / "runs"
    assert main(["run", "s", "--output_base", str(base), *TINY, "--epochs", "1", "--sign_key", str(garbage)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "signing key: not an unencrypted PEM private key" in err[0]
    assert not base.exists() or list(base.iterdir()) == []  # no folder, nothing trained
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    assert main(["resume", str(finished), "--sign_key", str(tmp_path / "missing")]) == 1
    assert "cannot read the key" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before


def test_keys_sign_refuses_a_folder_that_differs_from_its_manifest(finished, tmp_path, capsys):
    key = tmp_path / "k"
    assert main(["keys", "generate", str(key)]) == 0
    (finished / "results.json").write_text("{}")
    assert main(["keys", "sign", str(finished), "--sign_key", str(key)]) == 1
    err = capsys.readouterr().err
    assert "refusing to sign it" in err  # and the way out is one keys sign takes
    assert "`harness resume --accept_modified`" in err and "pass --accept_modified" not in err
    assert not (finished / "ATTESTATION.intoto.json").exists()
