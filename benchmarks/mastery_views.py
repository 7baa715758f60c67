"""Issue 21: mastery saturation, the window view against the whole-student view, and the paper's clamped
mastery head against the opt-in headroom head, on the simulator with long sequences and on ASSISTments 2015.

    python benchmarks/mastery_views.py --output_base DIR [--data_dir ASSIST2015] [--run]
        [--out benchmarks/results/mastery_views.md] [--json benchmarks/results/mastery_views.json]

Four experiments (small preset, 3 epochs, seeds 21 42 63, CPU fp32, one thread), each in its own
folder under `DIR/<point>/`:

    sim_clamp        --synthetic_students 1000 --synthetic_skills 50 --synthetic_min_len 300 --synthetic_max_len 1200
    sim_headroom     the same, --mastery_accumulation headroom
    assist_clamp     --dataset assist2015 --data_dir ASSIST2015
    assist_headroom  the same, --mastery_accumulation headroom

`--run` trains the points that are missing (and resumes unfinished ones), one after another, with
exactly the `harness run` commands it prints; without it the script only tabulates finished folders.
The table reads each seed's `final` block of results.json (the best checkpoint on every test student;
AUCs also on validation): mean and sample standard deviation over the seeds, both views side by side,
and for the AUCs the paired difference headroom - clamp over the shared seeds (mean, sd, paired t-test).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from scipy import stats

COMMON = ["--model_preset", "small", "--epochs", "3", "--seeds", "21", "42", "63", "--devices", "cpu", "--no_amp",
          "--threads", "1"]
SIM = ["--synthetic_students", "1000", "--synthetic_skills", "50", "--synthetic_min_len", "300",
       "--synthetic_max_len", "1200"]
HEADROOM = ["--mastery_accumulation", "headroom"]
# Rows of the table: (label, key in `final` under the window view, key under the student view or None).
ROWS = (
    ("true_mastery_correlation (simulator)", "test_true_mastery_correlation",
     "test_student_view_true_mastery_correlation"),
    ("qmastery_correlation", "test_qmastery_correlation", "test_student_view_qmastery_correlation"),
    ("qmastery_partial_correlation (time removed)", "test_qmastery_partial_correlation",
     "test_student_view_qmastery_partial_correlation"),
    ("mastery_saturated_share", "test_mastery_saturated_share", "test_student_view_mastery_saturated_share"),
    ("saturation_reached_share (windows / students)", "test_saturation_reached_share",
     "test_student_view_saturation_reached_share"),
    ("saturation_steps_median (from window / student start)", "test_saturation_steps_median",
     "test_student_view_saturation_steps_median"),
    ("boundary_drop_rate", "test_boundary_drop_rate", "test_student_view_boundary_drop_rate"),
    ("boundary_drop_mean", "test_boundary_drop_mean", "test_student_view_boundary_drop_mean"),
    ("monotonicity_violation_rate_whole_student", "test_monotonicity_violation_rate_whole_student",
     "test_student_view_monotonicity_violation_rate_whole_student"),
    ("truth: saturated share (simulator)", "test_true_mastery_saturated_share", "test_true_mastery_saturated_share"),
    ("truth: reached share (windows / students)", "test_true_saturation_reached_share",
     "test_student_view_true_saturation_reached_share"),
    ("truth: steps median (from window / student start)", "test_true_saturation_steps_median",
     "test_student_view_true_saturation_steps_median"),
)
AUCS = (("best val AUC", "best_val_auc"), ("test AUC", "test_auc"), ("test window AUC", "test_window_auc"))


def points(data_dir: str) -> dict[str, list[str]]:
    assist = ["--dataset", "assist2015", "--data_dir", data_dir]
    return {"sim_clamp": SIM, "sim_headroom": [*SIM, *HEADROOM], "assist_clamp": assist,
            "assist_headroom": [*assist, *HEADROOM]}


def folder_of(base: Path, name: str) -> Path | None:
    found = sorted((base / name).glob(f"*_gainakt2exp_{name}"))
    return found[0] if found else None


def finished(folder: Path | None) -> bool:
    if folder is None or not (folder / "results.json").is_file():
        return False
    return json.loads((folder / "results.json").read_text()).get("status") == "completed"


def run_points(base: Path, data_dir: str) -> None:
    for name, flags in points(data_dir).items():
        folder = folder_of(base, name)
        if finished(folder):
            continue
        if folder is None:
            cmd = ["harness", "run", name, *COMMON, *flags, "--output_base", str(base / name)]
        else:
            cmd = ["harness", "resume", str(folder), "--output_base", str(base / name)]
        print("+", shlex.join(cmd), flush=True)
        (base / name).mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "harness.cli", *cmd[1:]], check=True)


def seed_finals(folder: Path) -> dict[int, dict[str, Any]]:
    results = json.loads((folder / "results.json").read_text())
    out = {}
    for seed, block in results["per_seed"].items():
        if block.get("status") in ("completed", "early_stopped"):
            out[int(seed)] = {**block.get("final", {}), "best_val_auc": block.get("best_val_auc")}
    return out


def _mean_sd(values: list[float]) -> tuple[float, float] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan


def _cell(values: list[Any], digits: int = 4) -> str:
    """mean ± sd over the seeds that have the value, and how many do when not all of them."""
    ms = _mean_sd(values)
    if ms is None:
        return "—"
    mean, sd = ms
    have = sum(v is not None and math.isfinite(float(v)) for v in values)
    text = f"{mean:.{digits}f} ± {sd:.{digits}f}" if math.isfinite(sd) else f"{mean:.{digits}f}"
    return text if have == len(values) else f"{text} ({have} of {len(values)} seeds)"


def tabulate(base: Path, data_dir: str) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    record: dict[str, Any] = {}
    for dataset, label in (("sim", "Simulator, 1,000 students, 50 skills, lengths 300-1,200"),
                           ("assist", "ASSISTments 2015 (pyKT-prepared), fold 0")):
        folders = {head: folder_of(base, f"{dataset}_{head}") for head in ("clamp", "headroom")}
        if not all(finished(f) for f in folders.values()):
            lines += [f"### {label}", "", "not finished: " + ", ".join(
                f"{dataset}_{h}" for h, f in folders.items() if not finished(f)), ""]
            continue
        finals = {head: seed_finals(f) for head, f in folders.items() if f is not None}
        seeds = sorted(set(finals["clamp"]) & set(finals["headroom"]))
        record[dataset] = {"folders": {h: str(f) for h, f in folders.items()}, "seeds": seeds,
                           "finals": {h: {str(s): v for s, v in f.items()} for h, f in finals.items()}}
        lines += [f"### {label}", "", f"Seeds {', '.join(map(str, seeds))}; mean ± sample sd over seeds; "
                  "test students unless named.", "",
                  "| | paper head (clamp) | headroom head | headroom − clamp, paired (mean ± sd; t-test p) |",
                  "|---|---|---|---|"]
        for name, key in AUCS:
            clamp = [finals["clamp"][s].get(key) for s in seeds]
            head = [finals["headroom"][s].get(key) for s in seeds]
            pairs = [(h, c) for h, c in zip(head, clamp, strict=True) if h is not None and c is not None]
            diffs = [h - c for h, c in pairs]
            p = stats.ttest_rel([h for h, _ in pairs], [c for _, c in pairs]).pvalue if len(pairs) > 1 else math.nan
            lines.append(f"| {name} | {_cell(clamp)} | {_cell(head)} | {_cell(diffs, 5)}; p = {p:.2f} |")
        lines += ["", "| metric | clamp, window view | clamp, student view | headroom, window view | "
                  "headroom, student view |", "|---|---|---|---|---|"]
        for name, window_key, student_key in ROWS:
            cells = []
            for head in ("clamp", "headroom"):
                for key in (window_key, student_key):
                    digits = 1 if "steps" in name else 4
                    cells.append(_cell([finals[head][s].get(key) for s in seeds], digits))
            if all(c == "—" for c in cells):
                continue
            lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines), record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output_base", required=True, type=Path)
    ap.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    ap.add_argument("--run", action="store_true", help="train the missing points first (hours on a CPU)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="write every seed's final metrics here")
    args = ap.parse_args()
    if args.run:
        run_points(args.output_base, args.data_dir)
    table, record = tabulate(args.output_base, args.data_dir)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
