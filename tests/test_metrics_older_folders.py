"""compare / verify on folders written before issue 12 (no concept-level fields, older names)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import torch

from harness.audit.compare import compare_experiments
from harness.audit.verify import SCHEMA3_CSV_HEADER_BEFORE_ISSUE12, verify_experiment
from harness.folder.experiment import write_manifest

runs = audit_runs


def as_before_issue12(folder: Path) -> None:
    """Rewrite a fresh folder the way the trainer wrote it before issue 12."""
    path = folder / "metrics_epoch.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SCHEMA3_CSV_HEADER_BEFORE_ISSUE12, lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    results = json.loads((folder / "results.json").read_text())
    results.pop("warnings")
    for block in results["per_seed"].values():
        block["mastery_correlation"] = block.pop("mastery_correlation_val_all")
        block["gain_correlation"] = block.pop("gain_correlation_val_all")
        for key in [k for k in block if k.startswith(("qmastery", "qgain", "test_q")) or k.endswith("_val_all")]:
            del block[key]
        block.pop("warnings")
    (folder / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    as_before_the_evidence_model(folder)
    write_manifest(folder)


def as_before_the_evidence_model(folder: Path) -> None:
    """What every folder written before issue 19 lacks: its launcher wrote no session or outcome lines,
    and its checkpoints carried no result record (such a folder is verified with the older checks)."""
    log = folder / "stdout.log"
    log.write_text("".join(ln for ln in log.read_text().splitlines(keepends=True)
                           if " - session: " not in ln and " - outcome: " not in ln))
    for ckpt in folder.glob("model_*.pth"):
        state = torch.load(ckpt, weights_only=True)
        state.pop("result", None)
        torch.save(state, ckpt)


def test_an_older_folder_still_verifies_and_compares(base_run, tmp_path):
    new = base_run
    old = runs.copy_experiment(new, tmp_path)
    as_before_issue12(old)
    report = verify_experiment(old)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    legacy = next(c for c in report["checks"] if c["name"] == "derived files equal their re-derivation")
    assert legacy["name"] in report["skipped"] and "older harness" in legacy["reason"]

    cmp = compare_experiments(old, new)
    assert cmp["verdict"] != "fail", cmp["reasons"]
    assert cmp["mastery_corr_abs_diff"] == 0.0 and cmp["gain_corr_abs_diff"] == 0.0
    seed_row = cmp["per_seed"]["21"]
    assert seed_row["mastery_correlation"]["abs_diff"] == 0.0  # old plain key against new *_val_all
    assert seed_row["qmastery_correlation"]["note"] == "only the target has it: not compared"
    assert seed_row["qmastery_partial_correlation"]["within"] is None


def test_two_new_folders_compare_the_concept_level_metrics(base_run, tmp_path):
    new = base_run
    copy = runs.copy_experiment(new, tmp_path)
    cmp = compare_experiments(new, copy)
    assert cmp["per_seed"]["21"]["qmastery_correlation"]["abs_diff"] == 0.0
    assert cmp["per_seed"]["21"]["qmastery_correlation"]["within"] is True


def test_stdout_log_warns_about_loss_terms_that_stay_off(base_run):
    log = (base_run / "stdout.log").read_text()  # 3 epochs, default warm-ups
    assert " - WARNING - lag loss is requested but inactive in all 3 epochs: it starts at epoch 10" in log
    assert " - WARNING - retention loss is requested but inactive in all 3 epochs: it starts at epoch 9" in log


def test_a_folder_written_before_issue21_still_verifies(base_run, tmp_path):
    """Its metrics_epoch.csv has no saturation or student-view columns (EPOCH_COLUMNS of that time)."""
    from harness.audit.verify import csv_header_before_issue21

    old = runs.copy_experiment(base_run, tmp_path)
    path = old / "metrics_epoch.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    header = csv_header_before_issue21()
    assert "mastery_saturated_share" not in header and header[-1] == "epoch_seconds"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    as_before_the_evidence_model(old)  # issue 21 landed with the evidence model (issue 19): such folders predate both
    write_manifest(old)
    report = verify_experiment(old)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
