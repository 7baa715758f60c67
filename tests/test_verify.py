"""`harness verify`: every check by name, tampering detection, read-only behaviour, schema-2 folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.verify import print_report, verify_experiment
from harness.cli.main import main

runs = audit_runs

EXPECTED_CHECKS = {
    "schema_version", "missing_params", "config_md5", "manifest", "artifact config.json",
    "artifact environment.txt", "artifact stdout.log", "artifact metrics_epoch.csv", "artifact results.json",
    "artifact SEED_INFO.md", "artifact README.md", "artifact overrides_applied.txt",
    "artifact artifacts/rng_seed21.json", "artifact artifacts/semantic_trajectory_seed21.json",
    "artifact artifacts/learning_curves.png", "artifact artifacts/interpretability.png",
    "artifact artifacts/mastery_trajectories.png", "results config_md5", "run completed",
    "metrics_epoch.csv vs results.json", "results.json top level", "checkpoint model_best.pth", "checkpoint model_last.pth", "seeds agree",
    "dataset checksum", "derived files equal their re-derivation", "plots draw the evidence", "no hard links",
}


@pytest.fixture(scope="module")
def base(base_run) -> Path:
    return base_run


def failing(report: dict) -> dict[str, str]:
    return {c["name"]: c["reason"] for c in report["checks"] if not c["passed"]}


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_a_fresh_run_passes_every_check(base):
    report = verify_experiment(base)
    assert report["passed"], failing(report)
    names = {c["name"] for c in report["checks"]}
    assert EXPECTED_CHECKS <= names, EXPECTED_CHECKS - names
    assert all(set(c) == {"name", "passed", "status", "reason"} and c["reason"] for c in report["checks"])


def test_verify_writes_nothing(base):
    before, siblings = snapshot(base), sorted(p.name for p in base.parent.iterdir())
    assert main(["verify", str(base), "--json"]) == 0
    assert snapshot(base) == before
    assert sorted(p.name for p in base.parent.iterdir()) == siblings


def test_json_output_is_one_object_with_passed_and_checks(base, capsys):
    code = main(["verify", base.name, "--output_base", str(base.parent), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] is True
    assert isinstance(report["checks"], list) and {"name", "passed", "reason"} <= set(report["checks"][0])


def _flip_digit_in_results(folder: Path) -> str:
    path = folder / "results.json"
    text = path.read_text()
    key = '"best_val_auc": 0.'  # first occurrence: the per-seed value
    i = text.index(key) + len(key) + 2
    digit = text[i]
    path.write_text(text[:i] + ("1" if digit != "1" else "2") + text[i + 1:])
    return "results.json"


def _drop_csv_row(folder: Path) -> str:
    path = folder / "metrics_epoch.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    return "metrics_epoch.csv"


def _flip_checkpoint_byte(folder: Path) -> str:
    path = folder / "model_best.pth"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return "model_best.pth"


def _add_file(folder: Path) -> str:
    (folder / "artifacts" / "notes.txt").write_text("added later\n")
    return "artifacts/notes.txt"


def _edit_config(folder: Path) -> str:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg["training"]["learning_rate"] = 0.5
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return "config.json"


def _drop_png(folder: Path) -> str:
    (folder / "artifacts" / "learning_curves.png").unlink()
    return "learning_curves.png"


@pytest.mark.parametrize("tamper", [_flip_digit_in_results, _drop_csv_row, _flip_checkpoint_byte, _add_file,
                                    _edit_config, _drop_png])
def test_tampering_with_one_artifact_fails_naming_the_file(base, tmp_path, tamper):
    folder = runs.copy_experiment(base, tmp_path)
    assert verify_experiment(folder)["passed"]
    name = tamper(folder)
    report = verify_experiment(folder)
    fails = failing(report)
    assert not report["passed"]
    assert any(name in reason for reason in fails.values()), fails
    assert "manifest" in fails


def test_tampered_results_also_disagree_with_csv_and_checkpoint(base, tmp_path):
    folder = runs.copy_experiment(base, tmp_path)
    _flip_digit_in_results(folder)
    fails = failing(verify_experiment(folder))
    assert {"manifest", "metrics_epoch.csv vs results.json", "checkpoint model_best.pth",
            "checkpoint model_last.pth", "results.json top level"} <= set(fails), fails


def test_changed_config_fails_the_hash_check_and_the_cli_exits_1(base, tmp_path, capsys):
    folder = runs.copy_experiment(base, tmp_path)
    _edit_config(folder)
    fails = failing(verify_experiment(folder))
    assert "config_md5" in fails and "changed after the run" in fails["config_md5"]
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "config_md5" in out


def test_a_reference_schema2_folder_is_checked_without_crashing(tmp_path, capsys):
    ref = runs.reference_copy(tmp_path)
    report = verify_experiment(ref)
    result = {c["name"]: c["passed"] for c in report["checks"]}
    assert not report["passed"]
    assert result["schema_version"] and result["missing_params"] and result["config_md5"]
    assert result["metrics_epoch.csv vs results.json"] and result["artifact metrics_epoch.csv"]
    assert not result["manifest"] and not result["artifact SEED_INFO.md"]
    assert not result["checkpoint model_best_seed21.pth"]
    assert main(["verify", str(ref), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False


def test_corrupt_config_is_a_failed_check_not_a_crash(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"schema_version": 3,')
    report = verify_experiment(folder)
    assert not report["passed"] and "corrupt JSON" in failing(report)["artifact config.json"]
    assert main(["verify", str(folder), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False


def test_against_a_reproduction_adds_compare_checks(base_run, reproduction):
    source = base_run
    repro = reproduction
    report = verify_experiment(repro, against=source)
    assert report["passed"], failing(report)
    names = {c["name"] for c in report["checks"]}
    assert {"against: config_md5", "against: results_md5", "against: metrics", "against: seeds",
            "against: environment", "against: within_tolerance", "against: verdict"} <= names


def test_against_a_different_experiment_fails(base_run, changed_reproduction):
    source = base_run
    _, changed = changed_reproduction
    fails = failing(verify_experiment(changed, against=source))
    assert "against: config_md5" in fails and "training.learning_rate" in fails["against: config_md5"]
    assert "against: verdict" in fails
    assert main(["verify", str(changed), "--against", str(source)]) == 1


def test_print_report_is_a_readable_table(base, capsys):
    print_report(verify_experiment(base))
    out = capsys.readouterr().out
    assert "checkpoint model_best.pth" in out and "PASSED" in out


def test_a_bare_folder_name_in_the_current_directory_is_found(base_run, tmp_path, monkeypatch, capsys):
    copy = runs.copy_experiment(base_run, tmp_path / "here")
    monkeypatch.chdir(copy.parent)
    assert main(["verify", copy.name]) == 0
    # An explicit --output_base bounds where verify looks (issue 19): the folder here is outside it.
    assert main(["verify", copy.name, "--output_base", str(tmp_path / "elsewhere")]) == 1
    assert "outside --output_base" in capsys.readouterr().err


def test_an_unreadable_trusted_key_is_one_line(base_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["verify", str(base_run), "--trusted_key", str(tmp_path / "missing.pub")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read the key" in err[0]
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key\n")
    assert main(["verify", str(base_run), "--trusted_key", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a PEM public key" in err[0]


def test_reasons_from_a_folder_are_shown_as_text_never_as_markup_or_terminal_controls(capsys):
    """A reason carries what a folder's files say (e.g. an outcome line of stdout.log): rich markup stays
    literal and control sequences (ESC, OSC, BEL, newline) are shown escaped, in the table and in errors."""
    import io as stdio

    from rich.console import Console

    from harness.audit.verify import print_report
    from harness.cli.main import run_with_errors
    from harness.errors import HarnessError

    evil = "seed 2 failed: [bold green]ALL GOOD[/] [link=http://evil.example]x[/link] \x1b]0;pwned\x07\x1b[31mRED\nPASSED"
    report = {"experiment": "e", "passed": False, "verdict": "fail", "skipped": [], "notes": [],
              "checks": [{"name": "run completed", "passed": False, "status": "failed", "reason": evil}]}
    buf = stdio.StringIO()
    print_report(report, Console(file=buf, force_terminal=True, width=400))
    out = buf.getvalue()
    assert "[bold green]ALL GOOD[/]" in out and "[link=http://evil.example]" in out
    assert "\x1b]0;" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07" in out
    assert "\\x0aPASSED" in out

    def fails() -> int:
        raise HarnessError(evil)

    assert run_with_errors(fails) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err and "\\x1b[31mRED" in err
