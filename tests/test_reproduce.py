"""`harness reproduce` / --reproduce_from: same config_md5, same results, a report, schema-2 sources,
and one clear line for bad input."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.verify import verify_experiment
from harness.cli.main import main
from harness.folder.experiment import read_manifest, sha256_file

runs = audit_runs
REPO = Path(__file__).resolve().parent.parent


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pair(base_run, reproduction) -> tuple[Path, Path]:
    return base_run, reproduction


def test_reproduction_has_the_same_config_md5_and_zero_differences(pair):
    source, repro = pair
    src_cfg, cfg = runs.read(source / "config.json"), runs.read(repro / "config.json")
    assert repro.name.endswith("_gainakt2exp_audit_reproduce")
    assert cfg["config_md5"] == src_cfg["config_md5"]
    report = runs.read(repro / "reproduction_report.json")
    assert report["config_md5_match"] and report["within_tolerance"]
    assert report["best_auc_abs_diff"] == report["mastery_corr_abs_diff"] == report["gain_corr_abs_diff"] == 0.0
    assert report["test_auc_abs_diff"] == 0.0
    for metrics in report["per_seed"]["21"].values():
        assert metrics["abs_diff"] == 0.0
    assert report["mode"] == "reproduce" and report["source_experiment"] == source.name
    assert report["tolerance"]["auc"] == 0.0002 and report["tolerance"]["corr"] == 0.0005  # AMP off


def test_reproduction_has_identical_results_bytes_and_verdict_pass(pair):
    source, repro = pair
    assert md5(repro / "results.json") == md5(source / "results.json")
    report = runs.read(repro / "reproduction_report.json")
    assert report["results_md5_match"]
    assert report["verdict"] == "pass", report["reasons"]


def test_reproduction_records_its_source_and_still_verifies(pair):
    source, repro = pair
    cfg = runs.read(repro / "config.json")
    block = cfg["reproduction"]
    assert block["source_experiment"] == source.name
    assert block["source_config_md5"] == runs.read(source / "config.json")["config_md5"]
    assert block["applied_overrides"] == [] and block["override_count"] == 0
    assert "## Reproduction Metadata" in (repro / "README.md").read_text()
    entries = read_manifest(repro)
    for name in ("reproduction_report.json", "reproduction_manifest.json"):
        assert entries[name] == sha256_file(repro / name)
    report = verify_experiment(repro, against=source)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]


def test_manifest_flag_writes_the_guide_fields(pair):
    source, repro = pair
    manifest = runs.read(repro / "reproduction_manifest.json")
    assert manifest["experiment_id"] == repro.name and manifest["reproduction_mode"] is True
    assert manifest["seeds"] == [21] and manifest["override_count"] == 0 and manifest["schema_version"] == 3
    assert manifest["results_md5"] == md5(repro / "results.json")
    assert manifest["config_md5_source"] == manifest["config_md5_repro"] == manifest["config_md5"]
    assert manifest["source_experiment"] == source.name and manifest["reproduction_experiment"] == repro.name
    assert manifest["within_tolerance"] is True and manifest["amp_used"] is False
    assert manifest["auc_diff"] == manifest["mastery_corr_diff"] == manifest["gain_corr_diff"] == 0.0
    assert manifest["environment_match"] is True and manifest["notes"]


def test_a_changed_parameter_changes_the_hash_and_is_reported(base_run, changed_reproduction):
    source = base_run
    code, changed = changed_reproduction
    assert code == 1  # not a reproduction of the source
    cfg = runs.read(changed / "config.json")
    assert cfg["config_md5"] != runs.read(source / "config.json")["config_md5"]
    assert cfg["training"]["learning_rate"] == 0.001
    assert cfg["reproduction"]["override_count"] == 1
    assert "override: training.learning_rate:0.00016->0.001" in (changed / "overrides_applied.txt").read_text()
    report = runs.read(changed / "reproduction_report.json")
    assert not report["config_md5_match"] and report["verdict"] == "fail"
    assert report["parameter_differences"]["changed"] == {"training.learning_rate": [0.00016, 0.001]}
    assert any("config_md5 differs" in r and "training.learning_rate" in r for r in report["reasons"])


def test_a_reference_schema2_folder_is_reproduced(tmp_path, capsys):
    ref = runs.reference_copy(tmp_path)
    code, folder = runs.harness(tmp_path, "reproduce", ref.name, *runs.QUICK, "--epochs", "1", expect=None)
    assert folder is not None and folder.name.endswith("_gainakt2exp_repro_reproduce")
    assert "schema_version 2 differs" in capsys.readouterr().err
    cfg = runs.read(folder / "config.json")
    assert cfg["schema_version"] == 3 and cfg["seeds"]["all"] == [21]
    assert cfg["reproduction"]["source_schema_version"] == 2 and cfg["reproduction"]["schema_match"] is False
    # Parameters the flags did not change come from the source config.
    assert cfg["training"]["learning_rate"] == 0.00021 and cfg["training"]["patience"] == 7
    assert cfg["interpretability"]["alignment_weight"] == 0.28
    assert cfg["experiment"]["ablation_mode"] == "both_lag" and cfg["data"]["dataset"] == "synthetic"
    report = runs.read(folder / "reproduction_report.json")
    assert report["source_schema_version"] == 2 and report["target_schema_version"] == 3
    assert report["config_md5_note"] and not report["schema_match"]
    assert any("schema_version differs" in r for r in report["reasons"])
    assert code == (0 if report["within_tolerance"] else 1)
    assert verify_experiment(folder)["passed"]


def test_strict_schema_refuses_a_schema2_source(tmp_path, capsys):
    ref = runs.reference_copy(tmp_path)
    code = main(["reproduce", ref.name, "--output_base", str(tmp_path), "--strict_schema", *runs.QUICK])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "--strict_schema" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [ref.name]


# Bad input: one line on stderr, non-zero exit, nothing written.


def _corrupt(base: Path) -> str:
    folder = base / "20250101_000000_gainakt2exp_corrupt"
    folder.mkdir()
    (folder / "config.json").write_text('{"schema_version": 3, "training": {')
    return folder.name


def _no_config(base: Path) -> str:
    (base / "20250101_000000_gainakt2exp_empty").mkdir()
    return "20250101_000000_gainakt2exp_empty"


def _outside(base: Path) -> str:
    outside = base.parent / f"{base.name}_elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    os.symlink(outside, base / "escape")
    return "escape"


BAD_REFERENCES = [
    (lambda base: "20990101_000000_gainakt2exp_nothing", "unknown experiment"),
    (_no_config, "no config.json"),
    (_corrupt, "corrupt JSON"),
    (_outside, "outside the output base"),
]


# verify reports a corrupt config.json as a failed check instead (see test_verify).
@pytest.mark.parametrize("command, make, message", [
    (command, make, message) for command in ("reproduce", "verify", "resume", "compare")
    for make, message in BAD_REFERENCES if not (command == "verify" and make is _corrupt)
])
def test_bad_experiment_reference_is_one_line(tmp_path, capsys, command, make, message):
    base = tmp_path / "base"
    base.mkdir()
    ref = make(base)
    other = ref  # compare's target: a second folder like the first (one folder with itself is refused as such)
    if command == "compare" and (base / ref).is_dir() and not (base / ref).is_symlink():
        other = runs.copy_experiment(base / ref, base, f"{ref}_copy").name
    before = sorted(p.name for p in base.iterdir())
    argv = {"reproduce": ["reproduce", ref, *runs.QUICK], "verify": ["verify", ref], "resume": ["resume", ref],
            "compare": ["compare", ref, other]}[command]
    code = main([*argv, "--output_base", str(base)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in base.iterdir()) == before


def test_compare_without_both_experiments_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "only_one", "--output_base",
                           str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "target" in proc.stderr
