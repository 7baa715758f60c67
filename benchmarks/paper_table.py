#!/usr/bin/env python
"""The paper's table in one command: a resumable `harness sweep` of the paper configuration, then the table.

Runs (or resumes) the sweep `paper_table` (points `amp` and `fp32`, seeds 21 42 63 84 105, 12 epochs,
ASSISTments 2015 pyKT fold 0, paper configuration) and writes benchmarks/results/paper_table.md:
mean ± sample standard deviation over the finished seeds of every point, next to the reference's
published 5-seed numbers and pyKT's window-protocol AUCs, with whether each of our means lies within
the guide's tolerance of the reference's (AMP: AUC 0.002, correlations 0.01; AMP off: AUC 0.0002,
correlations 0.0005; accuracy and best epoch have no tolerance in the guide).

    python benchmarks/paper_table.py --data_dir ../shared/datasets/assist2015_pykt --devices 0 --jobs_per_device 5
    python benchmarks/paper_table.py --cpu-small     # smoke run: small preset, 1 epoch, 2 seeds, CPU
    python benchmarks/paper_table.py --table_only SWEEP_DIR   # rebuild the table from a finished sweep

Running the same command again resumes the unfinished sweep of the same title under --output_base
(finished seeds are kept), or only rebuilds the table when every job has finished. Extra arguments
after `--` go to `harness sweep` unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sweep_tables import (  # noqa: E402  (a sibling module of these scripts)
    epoch_rows,
    flat_config,
    paired,
    run_or_resume,
    seed_outcomes,
    sweep_folder,
    verify_folder,
    write_table,
)

OUT_MD = ROOT / "benchmarks" / "results" / "paper_table.md"
SEEDS = (21, 42, 63, 84, 105)
POINTS = ("amp", "fp32")
FINISHED = ("completed", "early_stopped")

# The reference's published 5-seed figures (fp32, 12 epochs, 8x V100): mean, std.
REFERENCE: dict[str, tuple[float, float]] = {
    "best_val_auc": (0.7255, 0.0002),
    "best_epoch": (3.0, math.nan),
    "test_auc": (0.7196, 0.0005),
    "test_accuracy": (0.7474, 0.0002),
    "test_mastery_correlation": (0.095, 0.018),
    "test_gain_correlation": (0.028, 0.004),
}
# The reference's five seeds behind those means (eval_results.json of its Nov-9 Era-B runs, seeds 42, 7,
# 123, 2025, 31415; ../shared/research/reference_gainakt2exp.md section 11): for intervals of the difference.
REFERENCE_SEEDS: dict[str, tuple[float, ...]] = {
    "best_val_auc": (0.72555, 0.72537, 0.72558, 0.72515, 0.72581),
    "test_auc": (0.71915, 0.71957, 0.71999, 0.71908, 0.72011),
}
PYKT_WINDOW_AUC = {"AKT": 0.7281, "DKT": 0.7271, "simpleKT": 0.7248, "DKVMN": 0.7227, "SAKT": 0.7114}
# The guide's tolerances (section G / 15.9) by kind of metric.
TOLERANCE = {"amp": {"auc": 0.002, "corr": 0.01}, "fp32": {"auc": 0.0002, "corr": 0.0005}}
# (key, label, kind of tolerance or None)
ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("best_val_auc", "best val AUC (fold 0)", "auc"),
    ("best_epoch", "best epoch", None),
    ("test_auc", "test AUC, non-window (every interaction)", "auc"),
    ("test_window_auc", "test AUC, window (pyKT protocol)", None),
    ("test_accuracy", "test accuracy", None),
    ("test_mastery_correlation", "test mastery correlation", "corr"),
    ("test_gain_correlation", "test gain correlation", "corr"),
    ("epoch_seconds", "seconds per epoch (mean over epochs)", None),
)


def seed_values(exp_dir: Path) -> dict[str, list[float]]:
    """Per-metric values of the finished seeds of one experiment folder (results.json, or a finished
    seed's last checkpoint while the point still trains; epoch times from metrics_epoch.csv)."""
    outcomes = seed_outcomes(exp_dir)
    seeds = list(outcomes.values())
    out: dict[str, list[float]] = {key: [] for key, _, _ in ROWS}
    for r in seeds:
        for key, _, _ in ROWS:
            if key != "epoch_seconds" and r.get(key) is not None:
                out[key].append(float(r[key]))
    finished = set(outcomes)
    per_seed: dict[int, list[float]] = {}
    metrics = exp_dir / "metrics_epoch.csv"
    if metrics.is_file():
        with metrics.open() as f:
            for row in csv.DictReader(f):
                if int(row["seed"]) in finished and row.get("epoch_seconds"):
                    per_seed.setdefault(int(row["seed"]), []).append(float(row["epoch_seconds"]))
    out["epoch_seconds"] = [statistics.fmean(v) for _, v in sorted(per_seed.items())]
    out["_seeds"] = [float(s) for s in sorted(finished)]
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan


def _fmt(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def verdict(key: str, kind: str | None, mean: float, precision: str) -> str:
    """Within the guide's tolerance of the reference's mean, and at or above it."""
    if kind is None or key not in REFERENCE or math.isnan(mean):
        return "—"
    # The mean of the reference's five seeds where we have them (as in versus_reference), so that both
    # tables state the same difference; else its published (rounded) mean.
    ref = statistics.fmean(REFERENCE_SEEDS[key]) if key in REFERENCE_SEEDS else REFERENCE[key][0]
    tol = TOLERANCE[precision][kind]
    diff = mean - ref
    inside = "within" if abs(diff) <= tol else "outside"
    return f"{diff:+.4f}: {inside} ±{tol:g}" + (", at or above" if diff >= 0 else "")


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The two-sided t-interval of the mean of `values` (NaNs with fewer than two values)."""
    if len(values) < 2:
        return math.nan, math.nan
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return mean - half, mean + half


def versus_reference(values: list[float], key: str) -> dict[str, float]:
    """Our seeds against the reference's five: mean difference, Welch's 95% interval of it and p."""
    ref = REFERENCE_SEEDS[key]
    diff = statistics.fmean(values) - statistics.fmean(ref) if values else math.nan
    low = high = p = math.nan
    if len(values) >= 2:
        res = stats.ttest_ind(values, ref, equal_var=False)
        ci = res.confidence_interval(0.95)
        low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    return {"diff": diff, "low": low, "high": high, "p": p}


def _cell(x: Any, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _shortcut(patience: int, epochs: int) -> str:
    if patience <= 0 or patience >= epochs:
        return (f"no shortcut: every seed trains all {epochs} epochs (training.patience "
                f"{patience}{' (off)' if patience <= 0 else ''}).")
    return (f"**Shortcut (training.patience {patience})**: a seed stops once its val AUC has not improved for "
            f"{patience} consecutive epochs, instead of running all {epochs} epochs as the reference did (its "
            "patience 20 never fired). A stopped seed's best epoch is the best of the epochs it ran; had it "
            "continued, a later epoch could have beaten it (the reference's validation AUC fell steadily after "
            "its peak at epoch 3, so a fall of two epochs in a row is taken as the peak). Test AUCs are those of "
            "the best epoch's model.")


def seed_section(name: str, exp_dir: Path, report: dict[str, Any]) -> list[str]:
    """Per-seed rows of one point, its mean, 95% interval and difference to the reference, and the
    folder's `harness verify` verdict (`report`)."""
    cfg = json.loads((exp_dir / "config.json").read_text())
    epochs, patience = int(cfg["training"]["epochs"]), int(cfg["training"]["patience"])
    outcomes = seed_outcomes(exp_dir)
    rows = epoch_rows(exp_dir)
    verdict = str(report.get("verdict"))
    lines = [f"## {name}: per seed ({exp_dir.name})", "",
             f"`harness verify {exp_dir.name}`: **{verdict}**"
             + (f"; failed checks: {', '.join(report['failed'])}" if report.get("failed") else "")
             + (f" ({report['detail']})" if report.get("detail") else ""), "",
             "| seed | status | best epoch | best val AUC | test AUC, non-window | test AUC, window (pyKT) | epochs run "
             "| stopped by the shortcut | folder's verify verdict |", "|" + "---|" * 9]
    for seed in (int(x) for x in cfg["seeds"]["all"]):
        o = outcomes.get(seed)
        if o is not None:
            stopped = o["status"] == "early_stopped"
            cells = [str(seed), o["status"], str(o.get("best_epoch")), _cell(o.get("best_val_auc")),
                     _cell(o.get("test_auc")), _cell(o.get("test_window_auc")), f"{o.get('epochs_run')} of {epochs}",
                     f"yes, after epoch {o.get('epochs_run')}" if stopped else "no"]
        elif rows.get(seed):
            r = rows[seed]
            best = max(r, key=lambda v: (v["val_auc"], -v["epoch"]))
            cells = [str(seed), "training (not finished)", f"{int(best['epoch'])} so far", _cell(best["val_auc"]),
                     "—", "—", f"{len(r)} so far", "—"]
        else:
            cells = [str(seed), "no epoch finished", "—", "—", "—", "—", "0", "—"]
        lines.append("| " + " | ".join([*cells, verdict]) + " |")
    keys = (("best_val_auc", "best val AUC"), ("test_auc", "test AUC, non-window"),
            ("test_window_auc", "test AUC, window (pyKT)"))
    values = {k: [float(o[k]) for o in outcomes.values() if o.get(k) is not None] for k, _ in keys}
    lines += ["", f"Over the finished seeds ({', '.join(str(s) for s in outcomes) or 'none'}):", "",
              "| | " + " | ".join(label for _, label in keys) + " |", "|---|---|---|---|"]
    lines.append("| mean ± sample std (n) | " + " | ".join(
        f"{_fmt(*mean_std(values[k]), 4)} (n={len(values[k])})" for k, _ in keys) + " |")
    lines.append("| 95% t-interval of the mean | " + " | ".join(
        "—" if math.isnan(t_interval(values[k])[0]) else "[{:.4f}, {:.4f}]".format(*t_interval(values[k]))
        for k, _ in keys) + " |")
    lines += ["", "Against the reference (fp32, 12 epochs, 5 seeds: val 0.7255 ± 0.0002, test 0.7196 ± 0.0005):", "",
              "| metric | ours − reference (means) | within the guide's fp32 tolerance ±0.0002 | within its AMP "
              "tolerance ±0.002 | 95% interval of the difference (Welch) | Welch p |", "|---|---|---|---|---|---|"]
    for key, label in keys[:2]:
        v = versus_reference(values[key], key)
        if math.isnan(v["diff"]):
            lines.append(f"| {label} | — | — | — | — | — |")
            continue
        inside = ["yes" if abs(v["diff"]) <= tol else "no" for tol in (0.0002, 0.002)]
        interval = "—" if math.isnan(v["low"]) else f"[{v['low']:+.4f}, {v['high']:+.4f}]"
        p = "—" if math.isnan(v["p"]) else f"{v['p']:.3g}"
        lines.append(f"| {label} | {v['diff']:+.4f} | {inside[0]} | {inside[1]} | {interval} | {p} |")
    lines += ["", _shortcut(patience, epochs)]
    return lines


# What a paired comparison with another sweep's point reports, per seed: (results key, label, digits).
PAIRED_ROWS: tuple[tuple[str, str, int], ...] = (
    ("best_val_auc", "best val AUC (fold 0)", 4),
    ("best_epoch", "best epoch", 1),
    ("test_auc", "test AUC, non-window (every interaction)", 4),
    ("test_mastery_correlation", "test mastery correlation", 3),
    ("test_gain_correlation", "test gain correlation", 3),
)


def _finished_values(exp_dir: Path) -> dict[int, dict[str, float]]:
    return {seed: {k: float(o[k]) for k, _, _ in PAIRED_ROWS if o.get(k) is not None}
            for seed, o in seed_outcomes(exp_dir).items()}


def paired_section(name: str, exp_dir: Path, base_dir: Path) -> list[str]:
    """This point against `base_dir` (the same point of another paper-table sweep) over the seeds both
    finished: per-seed values, paired differences (scipy.stats.ttest_rel) and every configuration field
    in which the two differ, so that a reader sees what the comparison changes."""
    ours, base = _finished_values(exp_dir), _finished_values(base_dir)
    shared = sorted(set(ours) & set(base))
    a, b = flat_config(base_dir), flat_config(exp_dir)
    diffs = [f"{k} {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    lines = [f"## {name} paired with `{base_dir.name}`", "",
             f"Configuration differences ({base_dir.name} → {exp_dir.name}): "
             + ("; ".join(diffs) if diffs else "none") + ".", "",
             f"Seeds finished in both: {', '.join(map(str, shared)) or 'none'}"
             + (f" (only here: {', '.join(map(str, sorted(set(ours) - set(base))))})" if set(ours) - set(base) else "")
             + (f" (only there: {', '.join(map(str, sorted(set(base) - set(ours))))})" if set(base) - set(ours) else "")
             + ".", "",
             "| metric | " + " | ".join(f"seed {s}: here / there" for s in shared)
             + " | paired difference here − there: mean ± std (ttest_rel p, n) |",
             "|" + "---|" * (len(shared) + 2)]
    for key, label, digits in PAIRED_ROWS:
        per_seed = 0 if key == "best_epoch" else digits  # an epoch number is a whole number
        cells = [f"{_cell(ours[s].get(key), per_seed)} / {_cell(base[s].get(key), per_seed)}" for s in shared]
        d = paired(ours, base, key)
        if math.isnan(d["mean"]):
            diff = "—"
        else:
            std = "" if math.isnan(d["std"]) else f" ± {d['std']:.{digits}f}"
            p = "—" if math.isnan(d["p"]) else f"{d['p']:.3g}"
            diff = f"{d['mean']:+.{digits}f}{std} (p {p}, n {int(d['n'])})"
        lines.append("| " + " | ".join([label, *cells, diff]) + " |")
    lines += ["", "Each seed's values are its results.json per-seed block (best val AUC over the epochs it ran, "
              "and the test metrics of that best epoch's model, every test student). With a handful of seeds "
              "only a difference large against its std says anything."]
    return lines


def build_table(points: dict[str, tuple[Path, str]], title: str = "Paper table", *,
                verify: Callable[[Path], dict[str, Any]] | None = verify_folder,
                commands: list[str] | None = None, paired_with: dict[str, Path] | None = None) -> str:
    """Markdown table of `points` (label -> (experiment folder, 'amp' or 'fp32')) against the reference,
    then per point its seeds (with the folder's `harness verify` verdict, run now by `verify`; None
    leaves the per-seed sections out), each point paired with the same point of another sweep
    (`paired_with`: point name -> experiment folder) and the commands that made it."""
    values = {label: seed_values(path) for label, (path, _) in points.items()}
    head = ["metric"]
    for label, (_, precision) in points.items():
        n = len(values[label]["_seeds"])
        head += [f"{label} ({precision}, n={n})", f"{label} vs reference"]
    head.append("reference (fp32, 5 seeds)")
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, kind in ROWS:
        digits = 1 if key in ("best_epoch", "epoch_seconds") else 4
        cells = [label]
        for name, (_, precision) in points.items():
            mean, std = mean_std(values[name][key])
            cells += [_fmt(mean, std, digits), verdict(key, kind, mean, precision)]
        ref = REFERENCE.get(key)
        cells.append(_fmt(ref[0], ref[1], 1 if key == "best_epoch" else 4) if ref else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "pyKT window-protocol test AUCs on the same split (published): "
              + ", ".join(f"{k} {v:.4f}" for k, v in PYKT_WINDOW_AUC.items()) + "."]
    for name in points:
        mean, _ = mean_std(values[name]["test_window_auc"])
        if not math.isnan(mean):
            above = [k for k, v in PYKT_WINDOW_AUC.items() if mean >= v]
            lines.append(f"- {name}: window AUC {mean:.4f}, at or above " + (", ".join(above) or "none of them") + ".")
    seed_lists = "; ".join(f"{n}: {[int(s) for s in values[n]['_seeds']]}" for n in points)
    lines += ["", f"Mean ± sample standard deviation over each point's finished seeds ({seed_lists}). "
              "Tolerances are the guide's (AMP: AUC 0.002, correlations 0.01; AMP off: AUC 0.0002, "
              "correlations 0.0005); the reference's correlations come from its pooled, padding-inclusive "
              "losses, ours from per-student next-step semantics (docs/losses.md), so those rows are not "
              "expected to agree. Folders: " + ", ".join(f"{n} `{p.name}`" for n, (p, _) in points.items()) + "."]
    if verify is not None:
        for name, (path, _) in points.items():
            lines += ["", *seed_section(name, path, verify(path))]
    for name, base in (paired_with or {}).items():
        if name in points:
            lines += ["", *paired_section(name, points[name][0], base)]
    if commands:
        lines += ["", "## Commands", "", *[f"    {c}" for c in commands]]
    return "\n".join(lines) + "\n"


def spec(ns: argparse.Namespace) -> dict[str, Any]:
    """The sweep spec: the paper configuration with AMP and/or in fp32 (the reference's precision)."""
    flags: dict[str, Any] = {"dataset": "assist2015", "fold": 0, "epochs": ns.epochs, "model_preset": ns.preset}
    if ns.stop_after_falls:  # the shortcut: early stopping once val AUC has not improved for that many epochs
        flags["patience"] = ns.stop_after_falls
    points = {name: {"flags": {"mixed_precision": name == "amp"}} for name in ns.points}
    return {
        "description": f"paper table: paper configuration, ASSISTments 2015 pyKT fold 0, {' and '.join(ns.points)}",
        "base": {"flags": flags},
        "points": points,
        "base_point": ns.points[0],
        "seeds": list(ns.seeds),
    }


def point_folders(sweep_dir: Path) -> dict[str, tuple[Path, str]]:
    state = json.loads((sweep_dir / "sweep.json").read_text())
    return {p["name"]: (sweep_dir / p["experiment_id"], "amp" if p["name"] == "amp" else "fp32")
            for p in state["points"]}


def describe(exp_dir: Path, sweep_dir: Path) -> str:
    """The table's title, from a point's config.json (preset, epochs, seeds, dataset)."""
    cfg = json.loads((exp_dir / "config.json").read_text())
    m = cfg["model"]
    dims = "/".join(str(m.get(k)) for k in ("d_model", "n_heads", "num_encoder_blocks", "d_ff"))
    return (f"Paper table ({sweep_dir.name}): {m.get('model_preset')} preset (D/H/N/F {dims}), "
            f"{cfg['training']['epochs']} epochs, seeds {cfg['seeds']['all']}, dataset {cfg['data']['dataset']} "
            f"fold {cfg['data']['fold']}")


def run_sweep(ns: argparse.Namespace, extra: list[str], launch_extra: list[str] | None = None) -> Path:
    return run_or_resume(title=ns.title, spec=spec(ns), output_base=ns.output_base, data_dir=ns.data_dir,
                         devices=ns.devices, jobs_per_device=ns.jobs_per_device, extra=extra,
                         launch_extra=launch_extra)


def _points(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names or len(set(names)) != len(names) or not set(names) <= set(POINTS):
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(POINTS)} without repeats, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--output_base", default="/tmp/paper_table")
    p.add_argument("--devices", default="0", help="harness --devices (cpu, 0, 0,1, ...)")
    p.add_argument("--jobs_per_device", type=int, default=None, help="seeds sharing one device")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=list(SEEDS))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--preset", default="paper", choices=("paper", "small"))
    p.add_argument("--points", type=_points, default=list(POINTS),
                   help="which precisions, in order of running: amp, fp32 or amp,fp32 (a GPU loan too short for "
                        "both runs one per title)")
    p.add_argument("--title", default="paper_table")
    p.add_argument("--out", default=str(OUT_MD), help="where the markdown table goes")
    p.add_argument("--cpu-small", "--cpu_small", dest="cpu_small", action="store_true",
                   help="smoke run: small preset, 1 epoch, seeds 21,42, CPU, title paper_table_small")
    p.add_argument("--cpu", action="store_true",
                   help="the reference's protocol on this machine's CPU: paper preset, fp32, 12 epochs, one seed at a "
                        "time with --threads 2, title paper_table_cpu, table benchmarks/results/paper_table_cpu.md")
    p.add_argument("--stop_after_falls", type=int, default=None, metavar="N",
                   help="shortcut: stop a seed once its val AUC has not improved for N epochs (training.patience N; "
                        "the epochs that ran are those of the full run). Default with --cpu: 2; else off")
    p.add_argument("--table_only", type=sweep_folder, default=None, help="a finished (or partial) sweep folder: only build the table")
    p.add_argument("--paired_with", type=sweep_folder, default=None, metavar="SWEEP_DIR",
                   help="another paper-table sweep (e.g. the defaults' table): each point of this table that it has "
                        "too is paired with it seed by seed, with every configuration difference listed")
    p.add_argument("harness_args", nargs="*", metavar="-- ARG",
                   help="arguments after -- go to `harness sweep` unchanged")
    ns = p.parse_args(argv)
    extra: list[str] = ns.harness_args
    launch_extra: list[str] = []
    if ns.cpu:
        ns.devices, ns.points = "cpu", ["fp32"]
        ns.title = ns.title if "--title" in argv else "paper_table_cpu"
        ns.stop_after_falls = 2 if ns.stop_after_falls is None else ns.stop_after_falls
        if ns.out == str(OUT_MD):
            ns.out = str(OUT_MD.with_name("paper_table_cpu.md"))
        if not any(a.startswith("--threads") for a in extra):
            launch_extra = ["--threads", "2"]  # the measured split; a resumed sweep keeps its own
    if ns.cpu_small:
        ns.preset, ns.epochs, ns.devices, ns.title = "small", 1, "cpu", "paper_table_small"
        ns.seeds = ns.seeds if "--seeds" in argv else [21, 42]
        if ns.out == str(OUT_MD):
            ns.out = str(OUT_MD.with_name("paper_table_small.md"))
    sweep_dir = Path(ns.table_only) if ns.table_only else run_sweep(ns, extra, launch_extra)
    points = point_folders(sweep_dir)
    paired_with = None
    if ns.paired_with:
        paired_with = {name: path for name, (path, _) in point_folders(Path(ns.paired_with)).items() if name in points}
        if not paired_with:
            p.error(f"--paired_with {ns.paired_with}: none of its points ({', '.join(point_folders(Path(ns.paired_with)))}) "
                    f"is in this table ({', '.join(points)})")
    text = build_table(points, title=describe(next(iter(points.values()))[0], sweep_dir),
                       commands=table_commands(sweep_dir, argv, ns.out, ns.paired_with), paired_with=paired_with)
    write_table(ns.out, text)
    return 0


def table_commands(sweep_dir: Path, argv: list[str], out: str, paired_with: str | Path | None = None) -> list[str]:
    """The commands behind the table: the sweep's own (as sweep.json records it), this script's, and
    the one that rebuilds the table from the folders."""
    state = json.loads((sweep_dir / "sweep.json").read_text())
    sweep_cmd = str(state.get("command", "")).split(" ", 1)
    lines = [f"harness {sweep_cmd[1]}" if len(sweep_cmd) == 2 else "(sweep.json records no command)",
             "python benchmarks/paper_table.py " + shlex.join(argv)]
    rebuild = ["--table_only", str(sweep_dir), "--out", out, *(["--paired_with", str(paired_with)] if paired_with else [])]
    if argv[:1] != ["--table_only"]:
        lines.append("python benchmarks/paper_table.py " + shlex.join(rebuild))
    return ["# the sweep (from sweep.json):", lines[0], "# this table:", *lines[1:2],
            *(["# rebuild it from the folders (also while the sweep runs):", lines[2]] if len(lines) > 2 else [])]


if __name__ == "__main__":
    raise SystemExit(main())
