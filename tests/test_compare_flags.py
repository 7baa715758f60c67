"""`--compare_only` / `harness compare` honour `--manifest` and `--strict_schema` (no flag is ignored)."""

from __future__ import annotations

import json

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.cli.main import main
from harness.folder.experiment import read_manifest, sha256_file, write_manifest


@pytest.fixture
def pair(tmp_path):
    """Two copies of the hand-built schema-2 reference folder; the target has a manifest."""
    src = audit_runs.reference_copy(tmp_path)
    tgt = audit_runs.copy_experiment(src, tmp_path, "20251029_093312_gainakt2exp_repro_reproduce")
    write_manifest(tgt)
    return src, tgt


def _as_schema3(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["schema_version"] = 3
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.mark.parametrize("cli", ["launcher", "compare"])
def test_manifest_with_compare_writes_the_audit_manifest_into_the_target(pair, cli, capsys):
    src, tgt = pair
    argv = (["run", "x", "--compare_only", "--source_exp", str(src), "--target_exp", str(tgt), "--manifest"]
            if cli == "launcher" else ["compare", str(src), str(tgt), "--manifest"])
    assert main(argv) == 0
    manifest = json.loads((tgt / "reproduction_manifest.json").read_text())
    assert manifest["mode"] == "compare" and manifest["reproduction_mode"] is False
    assert manifest["source_experiment"] == src.name and manifest["experiment_id"] == tgt.name
    # guide §6 step 9: config_md5, normalized hash, environment.txt hash, first & last lines of stdout.log
    for key in ("config_md5", "normalized_config_hash", "environment_md5", "stdout_head", "stdout_tail",
                "auc_diff", "within_tolerance"):
        assert key in manifest, key
    assert manifest["stdout_head"] and manifest["within_tolerance"] is True
    entries = read_manifest(tgt)  # recorded, so the folder still verifies
    assert entries["reproduction_manifest.json"] == sha256_file(tgt / "reproduction_manifest.json")
    assert "manifest: " in capsys.readouterr().out


def test_without_manifest_no_audit_manifest_is_written(pair):
    src, tgt = pair
    assert main(["run", "x", "--compare_only", "--source_exp", str(src), "--target_exp", str(tgt)]) == 0
    assert (tgt / "reproduction_report.json").is_file()
    assert not (tgt / "reproduction_manifest.json").exists()


@pytest.mark.parametrize("cli", ["launcher", "compare"])
def test_strict_schema_refuses_another_schema_before_writing(pair, cli, capsys):
    src, tgt = pair  # schema 2: the reference's
    argv = (["run", "x", "--compare_only", "--source_exp", str(src), "--target_exp", str(tgt), "--strict_schema",
             "--manifest"] if cli == "launcher" else ["compare", str(src), str(tgt), "--strict_schema"])
    before = sorted(p.name for p in tgt.iterdir())
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strict_schema" in err and "schema_version 2" in err
    assert sorted(p.name for p in tgt.iterdir()) == before  # nothing written


def test_strict_schema_admits_folders_of_our_schema(pair):
    src, tgt = pair
    _as_schema3(src)
    _as_schema3(tgt)
    write_manifest(tgt)
    main(["compare", str(src), str(tgt), "--strict_schema"])  # the verdict is the report's business
    assert (tgt / "reproduction_report.json").is_file()
