"""Evidence you can rebuild (issue 19, DESIGN §8b): derived files are pure functions of the primary evidence,
finalisation heals after a crash at any point, resume never carries a derived file forward, verify
re-derives and compares, and every read and write goes through the folder I/O layer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.verify import verify_experiment
from harness.cli.main import main
from harness.folder import derive
from harness.folder.experiment import MANIFEST, FolderLock, read_manifest


def failed(report: dict) -> dict[str, str]:
    return {c["name"]: c["reason"] for c in report["checks"] if not c["passed"] and c["name"] not in report["skipped"]}


@pytest.fixture
def finished(base_run, tmp_path) -> Path:
    """A copy of the shared finished base run (3 epochs, seed 21, tiny model), free to modify."""
    return audit_runs.copy_experiment(base_run, tmp_path / "copies")


def derived_bytes(folder: Path) -> dict[str, bytes]:
    return derive.derive_folder(folder).files


# ---------------------------------------------------------------------------------------------
# Derivation


def test_every_derived_file_of_a_finished_run_equals_its_rederivation(finished):
    files = derived_bytes(finished)
    assert {"results.json", "metrics_epoch.csv", "SEED_INFO.md", "README.md", "run_status.json",
            "artifacts/learning_curves.png", "artifacts/rng_seed21.json", "artifacts/timings_seed21.json",
            "artifacts/semantic_trajectory_seed21.json"} <= set(files)
    for name, data in files.items():
        assert (finished / name).read_bytes() == data, name
    report = verify_experiment(finished)
    assert report["verdict"] == "pass", failed(report)
    assert "byte-identical" in next(c["reason"] for c in report["checks"]
                                    if c["name"] == "derived files equal their re-derivation")


def test_derivation_reads_no_derived_file(finished):
    """Deleting every derived file changes nothing in what derive_folder returns."""
    before = derived_bytes(finished)
    for name in before:
        (finished / name).unlink()
    (finished / MANIFEST).unlink()
    assert derived_bytes(finished) == before


# ---------------------------------------------------------------------------------------------
# Item 1: laundering with a trusted signature


def test_laundering_an_edit_through_resume_and_a_signature_ends_with_the_true_numbers(finished, tmp_path):
    true_results = (finished / "results.json").read_bytes()
    res = json.loads(true_results)
    res["per_seed"]["21"]["test_auc"] = 0.99
    res["per_seed"]["21"]["final"]["test_auc"] = 0.99
    res["test_auc"] = 0.99
    (finished / "results.json").write_text(json.dumps(res))
    (finished / MANIFEST).unlink()
    (finished / "run_status.json").write_text('{"status": "running"}')
    report = verify_experiment(finished)  # named as what it is before anything heals it
    assert report["verdict"] == "incomplete"
    assert "results.json" in failed(report)["folder finalised"]

    key = tmp_path / "k"
    assert main(["keys", "generate", str(key)]) == 0
    assert main(["resume", str(finished), "--sign_key", str(key)]) == 0
    assert (finished / "results.json").read_bytes() == true_results  # the edit did not survive
    report = verify_experiment(finished, trusted_key=tmp_path / "k.pub")
    assert report["verdict"] == "pass", failed(report)


def _forge_checkpoint_result(folder: Path, test_auc: float) -> None:
    """Edit primary evidence: the finished seed's result record in its last checkpoint."""
    import torch

    path = folder / "model_last.pth"
    state = torch.load(path, weights_only=True)
    state["result"]["final"]["test_auc"] = test_auc
    torch.save(state, path)


@pytest.mark.parametrize("manifest", ["rewritten", "deleted"])
def test_a_signed_folder_with_edited_evidence_is_never_signed_again(finished, tmp_path, capsys, manifest):
    """Item 1 through the primary evidence: after signing, a checkpoint's result record is forged and the
    manifest rewritten or deleted. The attestation still names what it signed, so verify (even without a
    key) fails, and resume or `keys sign` with the operator's key refuse before anything is changed."""
    from harness.folder.experiment import ATTESTATION, write_manifest

    key = tmp_path / "k"
    assert main(["keys", "generate", str(key)]) == 0
    assert main(["keys", "sign", str(finished), "--sign_key", str(key)]) == 0
    assert verify_experiment(finished)["verdict"] == "pass"
    _forge_checkpoint_result(finished, 0.95)
    if manifest == "rewritten":
        write_manifest(finished)
    else:
        (finished / MANIFEST).unlink()
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    capsys.readouterr()

    report = verify_experiment(finished)  # no key: what was signed is still checked
    assert report["verdict"] != "pass"
    if manifest == "rewritten":
        assert "MANIFEST.sha256 changed after it was signed" in failed(report)["attestation covers the current files"]
    assert main(["resume", str(finished), "--sign_key", str(key)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("changed after it was signed" in err[0] or "missing or not a regular file" in err[0])
    assert main(["keys", "sign", str(finished), "--sign_key", str(key)]) != 0
    capsys.readouterr()
    after = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file() and p.name != "stdout.log"}
    assert after == {n: b for n, b in before.items() if n != "stdout.log"} and (finished / ATTESTATION).is_file()
    # Accepting the change is possible, recorded, and never signed without --sign_accepted.
    assert main(["resume", str(finished), "--accept_modified", "--sign_key", str(key)]) == 1
    assert "--sign_accepted" in capsys.readouterr().err
    assert "changed after it was signed" in (finished / "modifications_accepted.txt").read_text() \
        or "missing or not a regular file" in (finished / "modifications_accepted.txt").read_text()
    assert verify_experiment(finished)["verdict"] == "pass_with_notes"


def test_an_edited_derived_file_under_a_rewritten_manifest_fails_verify(finished):
    res = json.loads((finished / "results.json").read_text())
    res["per_seed"]["21"]["final"]["test_auc"] = 0.99  # per-seed block and top level now disagree
    (finished / "results.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    from harness.folder.experiment import write_manifest

    write_manifest(finished)  # the attacker also recomputes the manifest
    why = failed(verify_experiment(finished))["derived files equal their re-derivation"]
    assert "results.json differs at per_seed.21.final.test_auc" in why


# ---------------------------------------------------------------------------------------------
# Item 2: a crash during finalisation heals with resume


class Crash(Exception):
    pass


def crash_after(name: str):
    def hook(written: str) -> None:
        if written == name:
            raise Crash(written)

    return hook


def test_a_crash_after_each_derived_file_heals_with_resume(finished, tmp_path):
    true_results = (finished / "results.json").read_bytes()
    names = [*derive.derive_folder(finished).files, MANIFEST]
    for name in names:
        folder = audit_runs.copy_experiment(finished, tmp_path / "crash", name.replace("/", "_"))
        (folder / "results.json").write_text("{}")  # stale derived files before the crash
        with FolderLock(folder), pytest.raises(Crash):
            derive.finalise(folder, after_write=crash_after(name))
        if name != MANIFEST:
            report = verify_experiment(folder)
            assert report["verdict"] == "incomplete", (name, failed(report))
            assert set(failed(report)) <= {"folder finalised", "run completed"}, (name, failed(report))
        assert main(["resume", str(folder)]) == 0, name
        assert (folder / "results.json").read_bytes() == true_results, name
        report = verify_experiment(folder)
        assert report["verdict"] == "pass", (name, failed(report))


def test_finalise_twice_writes_the_same_bytes(finished):
    before = {n: (finished / n).read_bytes() for n in read_manifest(finished)}
    with FolderLock(finished):
        derive.finalise(finished)
    after = {n: (finished / n).read_bytes() for n in read_manifest(finished)}
    assert before == after


# ---------------------------------------------------------------------------------------------
# Items 5 and 7: symlinks and hard links


def test_verify_never_reads_through_a_symlink_or_shows_what_it_points_to(finished, tmp_path):
    secret = tmp_path / "victim.txt"
    secret.write_text("VICTIM-SECRET-12345\n")
    (finished / "metrics_epoch.csv").unlink()
    (finished / "metrics_epoch.csv").symlink_to(secret)
    report_file = tmp_path / "report.json"
    code = main(["verify", str(finished), "--report_file", str(report_file), "--json"])
    assert code == 1
    assert "VICTIM-SECRET" not in report_file.read_text()
    report = json.loads(report_file.read_text())
    assert "metrics_epoch.csv" in failed(report)["no symlinks"]


def test_a_symlinked_config_json_still_gets_the_symlink_check(finished, tmp_path):
    outside = tmp_path / "config.json"
    shutil.copy(finished / "config.json", outside)
    (finished / "config.json").unlink()
    (finished / "config.json").symlink_to(outside)
    report = verify_experiment(finished)
    assert "symlink" in failed(report)["artifact config.json"]
    assert "config.json" in failed(report)["no symlinks"]


def test_resuming_a_hard_linked_copy_is_refused_and_leaves_the_original_alone(finished, tmp_path, capsys):
    copy = tmp_path / "linked"
    copy.mkdir()
    for p in finished.rglob("*"):
        target = copy / p.relative_to(finished)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, target)  # what `cp -al` does
    log_before = (finished / "stdout.log").read_bytes()
    assert main(["resume", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "hard-linked" in err and len(err.strip().splitlines()) == 1
    assert (finished / "stdout.log").read_bytes() == log_before
    assert "no hard links" in failed(verify_experiment(copy))


def test_a_hard_linked_lock_file_is_refused_and_not_rewritten(finished, tmp_path):
    from harness.folder.experiment import ExperimentError

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    os.link(victim, finished.parent / f".{finished.name}.lock")
    with pytest.raises(ExperimentError, match="hard-linked"), FolderLock(finished):
        pass
    assert victim.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# Item 6: accepted modifications stay visible


def test_accepted_modifications_are_rederived_recorded_and_never_a_plain_pass(finished, tmp_path, capsys):
    true_results = (finished / "results.json").read_bytes()
    res = json.loads(true_results)
    res["per_seed"]["21"]["final"]["test_auc"] = 0.99
    (finished / "results.json").write_text(json.dumps(res))
    with (finished / "metrics_epoch.csv").open("a") as fh:
        fh.write("x,y\n")
    assert main(["resume", str(finished), "--accept_modified"]) == 0
    assert (finished / "results.json").read_bytes() == true_results  # re-derived, not the edited copy
    assert "modifications_accepted.txt" in read_manifest(finished)
    report = verify_experiment(finished)
    assert report["verdict"] == "pass_with_notes" and not report["passed"]
    note = next(c for c in report["checks"] if c["name"] == "modifications accepted")
    assert note["status"] == "note" and "results.json does not match" in note["reason"]
    capsys.readouterr()
    assert main(["verify", str(finished)]) == 1
    assert "PASSED WITH NOTES" in capsys.readouterr().out

    key = tmp_path / "k"
    assert main(["keys", "generate", str(key)]) == 0
    assert main(["keys", "sign", str(finished), "--sign_key", str(key)]) == 1
    assert "--sign_accepted" in capsys.readouterr().err
    assert main(["keys", "sign", str(finished), "--sign_key", str(key), "--sign_accepted"]) == 0
    envelope = json.loads((finished / "ATTESTATION.intoto.json").read_text())
    import base64

    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["modifications_accepted"]


# ---------------------------------------------------------------------------------------------
# The stdout.log outcome records


def test_log_outcomes_of_the_last_session_supersede_earlier_ones():
    stamp = "2026-12-05 10:00:00,000 - INFO - "
    log = "\n".join(stamp + m for m in [
        "session: run", derive.outcome_line(1, "failed", "NaN loss"), derive.run_interrupted_line("SIGTERM"),
        "session: resume", derive.outcome_line(2, "interrupted", "SIGINT after epoch 2"),
    ])
    logged = derive.read_log_outcomes(log)
    assert logged.seeds == {2: ("interrupted", "SIGINT after epoch 2")} and logged.signal is None
    assert logged.sessions == 2 and not logged.ended  # no `session ended`: that launcher was killed
    assert derive.read_log_outcomes(log + "\n" + stamp + derive.SESSION_END).ended


# ---------------------------------------------------------------------------------------------
# Folders whose derived files another version of the harness wrote


def test_derived_files_of_another_harness_version_are_a_note_until_resume_rederives_them(finished):
    status = json.loads((finished / "run_status.json").read_text())
    assert status["derived_by"] == derive.derivation_digest()
    status["derived_by"] = "sha256:0000000000000000"  # what an older harness's finalisation recorded
    (finished / "run_status.json").write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    readme = finished / "README.md"
    readme.write_text(readme.read_text().replace("## Run summary", "## Summary of the run"))  # its wording
    from harness.folder.experiment import write_manifest

    write_manifest(finished)
    report = verify_experiment(finished)
    assert report["verdict"] == "pass_with_notes", failed(report)
    note = next(c for c in report["checks"] if c["name"] == "derived files equal their re-derivation")
    assert note["status"] == "note" and "another version" in note["reason"] and "README.md" in note["reason"]
    assert main(["resume", str(finished)]) == 0
    assert verify_experiment(finished)["verdict"] == "pass"


def test_a_history_without_a_newer_column_keeps_the_header_it_was_written_with(finished):
    ev = derive.read_evidence(finished)
    for seed in ev.seeds.values():
        for row in seed.history:
            row.pop("student_view_qmastery_correlation", None)
    header = derive.metrics_csv(ev).decode().splitlines()[0].split(",")
    assert "student_view_qmastery_correlation" not in header and "val_auc" in header


def test_an_unfinalised_finished_folder_says_so_once(finished, capsys):
    (finished / MANIFEST).unlink()
    assert main(["verify", str(finished)]) != 0
    out = " ".join(capsys.readouterr().out.split())
    assert "INCOMPLETE: the run did not finish (status not finalised);" in out
    assert "not finalised; not finalised" not in out
