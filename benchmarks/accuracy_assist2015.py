#!/usr/bin/env python
"""Accuracy on ASSISTments 2015 (pyKT split, fold 0 validation) through the real launcher.

Trains with `harness run` (so the result is an audit-grade experiment folder) and reports the
validation AUC, window and non-window test AUC, accuracy, mastery and gain correlation, time per
epoch and the device. Extra arguments after `--` go to `harness run` unchanged.

    python benchmarks/accuracy_assist2015.py --data_dir ../shared/datasets/assist2015_pykt \
        --epochs 3 -- --model_preset small --no_amp --devices cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.cli.main import main as harness_main


def summarise(exp: Path) -> dict:
    res = json.loads((exp / "results.json").read_text())
    cfg = json.loads((exp / "config.json").read_text())
    seed = res["per_seed"][str(res["primary_seed"])]
    env = dict(line.split(": ", 1) for line in (exp / "environment.txt").read_text().splitlines() if ": " in line)
    rows = [line.split(",") for line in (exp / "metrics_epoch.csv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    secs = [float(r[header.index("epoch_seconds")]) for r in body]
    return {
        "experiment": exp.name,
        "model": cfg["model"],
        "amp": seed.get("amp"),
        "device": env.get("gpu0", "cpu: " + env.get("cpu", "?")).split(" | ")[0],
        "epochs_run": seed["epochs_run"],
        "best_epoch": seed["best_epoch"],
        "best_val_auc": seed["best_val_auc"],
        "val_accuracy": seed.get("val_accuracy"),
        "test_auc_nonwindow": seed.get("test_auc"),
        "test_auc_window": seed.get("test_window_auc"),
        "test_accuracy": seed.get("test_accuracy"),
        "test_mastery_correlation": seed.get("test_mastery_correlation"),
        "test_gain_correlation": seed.get("test_gain_correlation"),
        "val_mastery_correlation": seed.get("mastery_correlation_val_all", seed.get("mastery_correlation")),
        "val_gain_correlation": seed.get("gain_correlation_val_all", seed.get("gain_correlation")),
        "seconds_per_epoch_mean": sum(secs) / len(secs) if secs else None,
        "seconds_per_epoch_first": secs[0] if secs else None,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output_base", default="/tmp/gainakt_bench")
    p.add_argument("--json_out", default=None, help="also write the summary here")
    p.add_argument("harness_args", nargs="*", metavar="-- ARG",
                   help="arguments after -- go to `harness run` unchanged")
    ns = p.parse_args(argv)
    extra: list[str] = ns.harness_args
    if not Path(ns.data_dir).exists():
        print(f"dataset not found: {ns.data_dir}", file=sys.stderr)
        return 2
    base = Path(ns.output_base)
    base.mkdir(parents=True, exist_ok=True)
    before = set(base.iterdir())
    t0 = time.perf_counter()
    code = harness_main(["run", "accuracy_assist2015", "--dataset", "assist2015", "--data_dir", ns.data_dir,
                         "--fold", "0", "--epochs", str(ns.epochs), "--seeds", str(ns.seed),
                         "--output_base", str(base), *extra])
    wall = time.perf_counter() - t0
    (exp,) = [p for p in base.iterdir() if p not in before and p.is_dir()]
    summary = summarise(exp)
    summary["wall_seconds"] = wall
    summary["harness_exit_code"] = code
    print(json.dumps(summary, indent=2))
    if ns.json_out:
        Path(ns.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
