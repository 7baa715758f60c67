"""Do the interpretability metrics measure mastery? Summarise one finished run folder.

    python benchmarks/metric_validity.py <experiment folder> [--reevaluate] [--data_dir DIR]
        [--out benchmarks/results/<name>.json]

--reevaluate loads the primary seed's best checkpoint and recomputes the final metrics with the
code checked out now (instead of reading results.json `final`); it skips the pyKT window-protocol
test pass (not an interpretability metric) and also works on a folder whose run has not finished
(no results.json yet: the best checkpoint so far).

Prints (and writes as JSON):
* the best model's guide and concept-level metrics over all validation and test students, with
  their 95% bootstrap intervals and n (results.json `final`);
* on the synthetic dataset, how each mastery series tracks the simulator's true mastery of the
  asked concept (`true_mean_mastery_correlation`: the guide's mean-over-concepts series;
  `true_mastery_correlation`: the asked concept's mastery), and the "oracle" values: each metric
  computed with the simulator's true mastery in place of the model's, i.e. what a perfect
  mastery model would score on it (validation students of the run's fold);
* across the run's epochs, the Pearson correlation of each per-epoch metric (validation sample)
  with the per-epoch `true_mastery_correlation` (synthetic only).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gainakt.data import build_windows, split_students
from gainakt.metrics import pearson_or_none, per_student_auc, per_student_correlation
from gainakt.simulate import simulate
from gainakt.train import build_model, final_metrics
from harness.folder.checkpoints import checkpoint_name, load_checkpoint
from harness.run.datasets import load_for_config

METRICS = ("auc", "accuracy", "majority_rate", "mastery_correlation", "gain_correlation", "qmastery_correlation", "qmastery_partial_correlation",
           "qmastery_auc_student", "qmastery_auc_pooled", "qgain_correlation", "qgain_partial_correlation",
           "true_mastery_correlation", "true_mean_mastery_correlation", "monotonicity_violation_rate",
           "monotonicity_violation_rate_whole_student", "boundary_drop_mean", "boundary_drop_rate", "boundaries",
           "multiwindow_students")
STEMS = {"mastery_correlation": "mastery", "gain_correlation": "gain", "qmastery_correlation": "qmastery",
         "qmastery_partial_correlation": "qmastery_partial", "qmastery_auc_student": "qmastery_auc_student",
         "qgain_correlation": "qgain", "qgain_partial_correlation": "qgain_partial",
         "true_mastery_correlation": "true_mastery", "true_mean_mastery_correlation": "true_mean_mastery"}


def final_table(final: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for split in ("val", "test"):
        for m in METRICS:
            v = final.get(f"{split}_{m}")
            if v is None:
                continue
            stem = STEMS.get(m)
            row = {"value": v}
            if stem:
                row.update(ci_low=final.get(f"{split}_{stem}_ci_low"), ci_high=final.get(f"{split}_{stem}_ci_high"),
                           n=final.get(f"{split}_{stem}_n"))
            out.setdefault(m, {})[split] = row
    return out


def oracle(cfg: dict[str, Any]) -> dict[str, Any]:
    """The metrics with the simulator's true mastery as the model's (validation students)."""
    d = cfg["data"]
    ds = simulate(num_students=d["synthetic_students"], num_skills=d["synthetic_skills"],
                  min_len=d["synthetic_min_len"], max_len=d["synthetic_max_len"], seed=d["synthetic_seed"],
                  forgetting=d["synthetic_forgetting"])
    assert ds.true_mastery is not None
    _, valid, _ = split_students(ds, d["fold"])
    mean_m, q_m, ys, steps = [], [], [], []
    for i in valid:
        tm, c, r = ds.true_mastery[i], ds.concepts[i], ds.responses[i]
        t = np.arange(len(c) - 1)
        mean_m.append(tm[t].mean(-1))
        q_m.append(tm[t, c[t + 1]])
        ys.append(r[t + 1].astype(np.float64))
        steps.append(t.astype(np.float64))
    return {
        "students": len(valid),
        "mastery_correlation": per_student_correlation(mean_m, ys).to_dict(),
        "qmastery_correlation": per_student_correlation(q_m, ys).to_dict(),
        "qmastery_partial_correlation": per_student_correlation(q_m, ys, steps).to_dict(),
        "qmastery_auc_student": per_student_auc(ys, q_m).to_dict(),
    }


def across_epochs(rows: list[dict[str, str]]) -> dict[str, float | None]:
    def col(k: str) -> np.ndarray:
        return np.array([float(r[k]) if r.get(k) not in (None, "", "nan") else math.nan for r in rows])

    truth = col("true_mastery_correlation")
    return {m: pearson_or_none(col(m), truth) for m in ("mastery_correlation", "qmastery_correlation",
                                                         "qmastery_partial_correlation", "qmastery_auc_student")}


def reevaluate(folder: Path, cfg: dict[str, Any], seed: int, multi: bool, data_dir: str | None) -> dict[str, Any]:
    """The best checkpoint's final metrics (all validation / test students) under the current code."""
    ds = load_for_config(cfg, data_dir)
    max_len = cfg["data"]["seq_len"]
    _, valid, test = split_students(ds, cfg["data"]["fold"])
    model = build_model(cfg, ds.num_c)
    model.load_state_dict(load_checkpoint(folder / checkpoint_name("best", seed, multi))["model"])
    test_set = build_windows(ds, test, max_len) if len(test) else None
    final, _ = final_metrics(model, build_windows(ds, valid, max_len), test_set, None,
                             cfg["training"]["batch_size"], torch.device("cpu"), lambda: contextlib.nullcontext())
    return final


def seed_block(folder: Path, cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results.json, the primary seed's block); for an unfinished run, what the best checkpoint says."""
    path = folder / "results.json"
    if path.is_file():
        results = json.loads(path.read_text())
        return results, results["per_seed"][str(results["primary_seed"])]
    seeds = cfg["seeds"]["all"]
    ckpt = load_checkpoint(folder / checkpoint_name("best", seeds[0], len(seeds) > 1))
    results = {"primary_seed": seeds[0], "multi_seed": len(seeds) > 1, "warnings": [], "unfinished": True}
    return results, {"best_epoch": ckpt["epoch"] + 1, "best_val_auc": ckpt["best_val_auc"], "final": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reevaluate", action="store_true", help="recompute `final` from the best checkpoint")
    ap.add_argument("--data_dir", default=None, help="dataset folder for real data (default: as recorded)")
    a = ap.parse_args()
    cfg = json.loads((a.folder / "config.json").read_text())
    results, block = seed_block(a.folder, cfg)
    seed = results["primary_seed"]
    with open(a.folder / "metrics_epoch.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["seed"]) == seed and int(r["epoch"]) <= block["best_epoch"]]
    report: dict[str, Any] = {
        "folder": a.folder.name, "dataset": cfg["data"]["dataset"], "seed": seed,
        "best_epoch": block["best_epoch"], "best_val_auc": block["best_val_auc"],
        "test_auc": block.get("test_auc"), "epochs": len(rows),
        "warnings": results.get("warnings", []), "reevaluated": a.reevaluate,
        "run_unfinished": results.get("unfinished", False),
    }
    final = (reevaluate(a.folder, cfg, seed, results["multi_seed"], a.data_dir) if a.reevaluate
             else block["final"])
    report["final"] = final_table(final)
    if cfg["data"]["dataset"] == "synthetic":
        report["oracle_val"] = oracle(cfg)
        report["epochs_vs_true_mastery_correlation"] = across_epochs(rows)
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
