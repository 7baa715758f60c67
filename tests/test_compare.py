"""`harness compare` / compare_experiments: hashes, metric tolerances, seeds, environment, verdict."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.compare import (
    compare_environment,
    compare_experiments,
    reproduction_manifest,
    tolerances,
    write_report,
)
from harness.cli.main import main
from harness.folder.experiment import read_manifest, sha256_file, write_manifest

runs = audit_runs
GUIDE_KEYS = ("config_md5_match", "results_md5_match", "best_auc_abs_diff", "mastery_corr_abs_diff",
              "gain_corr_abs_diff", "within_tolerance")


@pytest.fixture
def ref_pair(tmp_path):
    """Two copies of the hand-built schema-2 reference folder."""
    a = runs.reference_copy(tmp_path)
    b = runs.copy_experiment(a, tmp_path, "20251029_093312_gainakt2exp_repro_reproduce")
    return a, b


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def test_identical_folders_pass_with_every_guide_key(ref_pair):
    report = compare_experiments(*ref_pair)
    for key in GUIDE_KEYS:
        assert key in report
    assert report["verdict"] == "pass", report["reasons"]
    assert report["config_md5_match"] and report["results_md5_match"] and report["within_tolerance"]
    assert report["best_auc_abs_diff"] == report["mastery_corr_abs_diff"] == report["gain_corr_abs_diff"] == 0.0
    assert report["seeds_match"] and report["source_seeds"] == [21]
    assert report["schema_match"] and report["source_schema_version"] == 2
    assert report["environment"]["match"] and not report["environment"]["different"]
    assert report["reasons"] == []
    assert report["source"] == ref_pair[0].name and report["target"] == ref_pair[1].name


def test_auc_drift_beyond_tolerance_fails_and_names_the_metric(ref_pair):
    src, tgt = ref_pair
    edit_json(tgt / "results.json", best_epoch_auc=0.7243983 + 0.003)
    report = compare_experiments(src, tgt)
    assert report["tolerance"]["auc"] == 0.002  # the fixture ran with AMP
    assert not report["within_tolerance"] and report["verdict"] == "fail"
    assert report["best_auc_abs_diff"] == pytest.approx(0.003)
    assert any("best_val_auc differs by" in r for r in report["reasons"]), report["reasons"]
    assert not report["results_md5_match"]


def test_drift_within_amp_tolerance_passes_unless_the_flag_tightens_it(ref_pair):
    src, tgt = ref_pair
    edit_json(tgt / "results.json", best_gain_corr=0.064288 + 0.004)
    report = compare_experiments(src, tgt)
    assert report["within_tolerance"] and report["verdict"] != "fail", report["reasons"]
    assert report["gain_corr_abs_diff"] == pytest.approx(0.004)
    tight = compare_experiments(src, tgt, corr_tolerance=0.001)
    assert tight["tolerance"]["corr"] == 0.001 and tight["tolerance"]["corr_overridden"]
    assert not tight["within_tolerance"] and tight["verdict"] == "fail"
    assert any("gain_correlation" in r for r in tight["reasons"])


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_normalized_hash_is_the_guides_jq_recipe(base_run, ref_pair):
    ours = base_run
    report = compare_experiments(ref_pair[0], ours)
    for folder, key in ((ref_pair[0], "source_normalized_config_hash"), (ours, "target_normalized_config_hash")):
        recipe = "jq 'del(.runtime.timestamp, .config_md5)' config.json | jq -S '.' | md5sum"
        out = subprocess.run(["bash", "-c", recipe], cwd=folder, capture_output=True, text=True, check=True).stdout
        assert out.split()[0] == report[key]


def test_tolerances_follow_amp_and_flags():
    assert tolerances(False, False, None, None)["auc"] == 0.0002
    assert tolerances(False, False, None, None)["corr"] == 0.0005
    assert tolerances(True, False, None, None)["auc"] == 0.002
    assert tolerances(False, True, None, None)["corr"] == 0.01
    t = tolerances(False, False, 0.05, None)
    assert t["auc"] == 0.05 and t["corr"] == 0.0005 and "overridden" in t["basis"]


def test_metric_missing_on_one_side_is_not_within_tolerance(ref_pair):
    src, tgt = ref_pair
    edit_json(tgt / "results.json", best_gain_corr=None, final_consistency={})
    edit_json(tgt / "results_multi_seed.json", per_seed=[])
    report = compare_experiments(src, tgt)
    assert not report["within_tolerance"] and report["verdict"] == "fail"
    assert any("gain_correlation is missing in the target" in r for r in report["reasons"]), report["reasons"]


def test_different_seed_lists_fail(ref_pair):
    src, tgt = ref_pair
    cfg = json.loads((tgt / "config.json").read_text())
    cfg["seeds"] = {"all": [21, 42], "primary": 21}
    (tgt / "config.json").write_text(json.dumps(cfg))
    report = compare_experiments(src, tgt)
    assert not report["seeds_match"] and not report["within_tolerance"]
    assert any("seed lists differ" in r for r in report["reasons"])


def test_environment_fields_are_identical_compatible_different_or_missing():
    src = {"python": "3.11.4 (main) [GCC]", "torch_version": "2.13.0+cpu", "numpy_version": "2.1.0",
           "git_commit": "abc", "git_dirty": "false", "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
           "cpu": "Xeon", "only_here": "x"}
    tgt = {"python": "3.11.9 (main) [GCC]", "torch_version": "2.13.1+cpu", "numpy_version": "1.26.4",
           "git_commit": "abc", "git_dirty": "true", "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
           "cpu": "EPYC"}
    env = compare_environment(src, tgt)
    status = {k: v["status"] for k, v in env["fields"].items()}
    assert status == {"python": "compatible", "torch_version": "compatible", "numpy_version": "different",
                      "git_commit": "identical", "git_dirty": "compatible", "platform": "compatible",
                      "cpu": "different", "only_here": "missing"}
    assert not env["match"]
    tgt["git_commit"] = "def"
    assert compare_environment(src, tgt)["fields"]["git_dirty"]["status"] == "different"
    assert compare_environment(None, tgt)["available"] is False


def test_environment_difference_gives_pass_with_notes(ref_pair):
    src, tgt = ref_pair
    env = (tgt / "environment.txt").read_text().replace("torch_version: 2.2.2+cu121", "torch_version: 2.4.0+cu121")
    (tgt / "environment.txt").write_text(env)
    report = compare_experiments(src, tgt)
    assert report["within_tolerance"] and report["verdict"] == "pass_with_notes"
    assert report["environment"]["fields"]["torch_version"]["status"] == "different"
    assert any("torch_version" in r for r in report["reasons"])


def test_write_report_records_the_report_in_the_manifest(ref_pair, tmp_path):
    src, tgt = ref_pair
    report = compare_experiments(src, tgt)
    path = write_report(tgt, report)  # no manifest: only the report
    assert json.loads(path.read_text())["verdict"] == "pass" and not (tgt / "MANIFEST.sha256").exists()
    write_manifest(src)
    write_report(src, compare_experiments(tgt, src))
    entries = read_manifest(src)
    assert entries["reproduction_report.json"] == sha256_file(src / "reproduction_report.json")


def test_manifest_fields_for_a_plain_run_and_a_reproduction(ref_pair):
    src, tgt = ref_pair
    plain = reproduction_manifest(src, None)
    for key in ("experiment_id", "schema_version", "config_md5", "seeds", "reproduction_mode", "override_count",
                "results_md5"):
        assert key in plain
    assert plain["reproduction_mode"] is False and plain["seeds"] == [21] and plain["override_count"] == 0
    repro = reproduction_manifest(tgt, {"source_experiment": src.name, "source_path": str(src),
                                        "source_config_md5": "x"})
    for key in ("source_experiment", "reproduction_experiment", "config_md5_source", "config_md5_repro",
                "normalized_config_hash_source", "normalized_config_hash_repro", "environment_match", "auc_diff",
                "mastery_corr_diff", "gain_corr_diff", "within_tolerance", "amp_used", "notes"):
        assert key in repro, key
    assert repro["reproduction_mode"] is True and repro["within_tolerance"] is True and repro["auc_diff"] == 0.0


def test_reference_folder_against_our_run_reports_the_schema_difference(base_run, tmp_path):
    ours = base_run
    ref = runs.reference_copy(tmp_path)
    report = compare_experiments(ref, ours)
    assert report["source_schema_version"] == 2 and report["target_schema_version"] == 3
    assert not report["schema_match"] and not report["config_md5_match"]
    assert report["config_md5_note"] and "schema-2" in report["config_md5_note"]
    assert report["source_config_md5_own_rule"] == report["source_config_md5"]  # the reference rule recomputes
    assert report["target_config_md5_recomputed"] == report["target_config_md5"]
    assert report["parameter_differences"]["changed"]["training.learning_rate"] == [0.00021, 0.00016]
    assert report["parameter_differences"]["changed"]["training.batch_size"] == [64, 16]
    assert "model.d_model" in report["parameter_differences"]["only_in_target"]
    assert any("schema_version differs" in r for r in report["reasons"])
    assert report["verdict"] == "fail"  # the hand-made metrics are not this run's


def test_compare_cli_on_two_different_experiments_fails_with_reasons(base_run, changed_reproduction, tmp_path, capsys):
    base = base_run
    _, changed = changed_reproduction
    target = runs.copy_experiment(changed, tmp_path)  # keep the shared folder's own report
    code = main(["compare", str(base), str(target)])
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: fail" in out and "config_md5 differs" in out and "training.learning_rate" in out
    report = json.loads((target / "reproduction_report.json").read_text())
    assert report["verdict"] == "fail" and not report["config_md5_match"]
    assert read_manifest(target)["reproduction_report.json"] == sha256_file(target / "reproduction_report.json")


def test_compare_cli_json_and_ids_under_the_output_base(base_run, tmp_path, capsys):
    base = base_run
    target = runs.copy_experiment(base, tmp_path, "copy_of_base")
    runs.copy_experiment(base, tmp_path)
    code = main(["compare", base.name, "copy_of_base", "--output_base", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["verdict"] == "pass", report["reasons"]
    assert report["config_md5_match"] and report["results_md5_match"] and report["tolerance"]["auc"] == 0.0002
    assert (target / "reproduction_report.json").is_file()


def test_compare_only_flag_needs_both_experiments(base_run, capsys):
    base = base_run
    code = main(["run", "x", "--compare_only", "--source_exp", str(base)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--source_exp and --target_exp" in err
