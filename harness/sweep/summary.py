"""What a sweep folder says about its points: sweep_summary.csv, SWEEP.md, plots and MANIFEST.sha256.

Everything is computed from the points' own folders (results.json per seed, metrics_epoch.csv for
learning curves and wall time), so `harness verify <sweep>` can recompute it and compare.
Statistics are over the seeds that finished (completed or early-stopped) in each point:
mean, sample standard deviation, and a 95% t-interval of the mean; each point is compared with the
base point by a paired t-test over the seeds both finished.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from harness.folder.experiment import read_json, sha256_file, write_manifest

# (key, label): per-seed values from results.json, except wall_seconds (sum of epoch_seconds).
METRICS = (
    ("best_val_auc", "best val AUC"),
    ("test_auc", "test AUC (every interaction)"),
    ("test_window_auc", "test AUC (windows)"),
    ("test_accuracy", "test accuracy"),
    ("val_accuracy", "val accuracy (best model)"),
    # Best model over every validation student (results.json's population-named keys, docs/metrics.md).
    ("mastery_correlation_val_all", "val mastery correlation (guide: mean mastery over concepts)"),
    ("gain_correlation_val_all", "val gain correlation (guide)"),
    ("qmastery_correlation_val_all", "val mastery of the asked concept vs correctness"),
    ("true_mastery_correlation_val_all", "val true-mastery correlation (synthetic)"),
    ("epochs_run", "epochs run"),
    ("wall_seconds", "training wall time per seed (s)"),
)
CSV_COLUMNS = ("point", "experiment_id", "config_md5", "metric", "n", "mean", "std", "ci95_low", "ci95_high",
               "diff_vs_base", "paired_n", "paired_p")
FINISHED = ("completed", "early_stopped")
PLOTS = ("plots/frontier.png", "plots/learning_curves.png")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def epoch_rows(exp: Path) -> dict[int, list[dict[str, str]]]:
    from harness.folder import io as fio

    path = exp / "metrics_epoch.csv"
    rows: dict[int, list[dict[str, str]]] = {}
    if fio.is_regular(path):
        for row in csv.DictReader(io.StringIO(fio.read_text(path, errors="replace"))):
            rows.setdefault(int(row["seed"]), []).append(row)
    return rows


def point_values(exp: Path) -> dict[str, dict[int, float]]:
    """{metric: {seed: value}} over the point's finished seeds."""
    results = read_json(exp / "results.json") if (exp / "results.json").is_file() else {"per_seed": {}}
    rows = epoch_rows(exp)
    values: dict[str, dict[int, float]] = {key: {} for key, _ in METRICS}
    for key_seed, r in results["per_seed"].items():
        if r.get("status") not in FINISHED:
            continue
        seed = int(key_seed)
        for key, _ in METRICS:
            if key == "wall_seconds":
                v = _finite(sum(float(x["epoch_seconds"]) for x in rows.get(seed, []))) if rows.get(seed) else None
            else:
                v = _finite(r.get(key))
            if v is not None:
                values[key][seed] = v
    return values


def describe(values: list[float]) -> dict[str, float | None]:
    from scipy import stats as st

    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95_low": None, "ci95_high": None}
    mean = statistics.fmean(values)
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95_low": None, "ci95_high": None}
    std = statistics.stdev(values)
    half = float(st.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def paired(point: dict[int, float], base: dict[int, float]) -> dict[str, float | None]:
    """Mean difference point - base over shared seeds and the paired t-test's two-sided p."""
    from scipy import stats as st

    shared = sorted(set(point) & set(base))
    if not shared:
        return {"diff_vs_base": None, "paired_n": 0, "paired_p": None}
    a, b = [point[s] for s in shared], [base[s] for s in shared]
    diff = statistics.fmean(x - y for x, y in zip(a, b, strict=True))
    p = None
    if len(shared) >= 2 and len({round(x - y, 15) for x, y in zip(a, b, strict=True)}) > 1:
        p = _finite(st.ttest_rel(a, b).pvalue)
    return {"diff_vs_base": diff, "paired_n": len(shared), "paired_p": p}


def summary_rows(folder: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    values = {p["name"]: point_values(folder / p["experiment_id"]) for p in state["points"]}
    base = values[state["base_point"]]
    rows = []
    for p in state["points"]:
        for key, _ in METRICS:
            row = {"point": p["name"], "experiment_id": p["experiment_id"], "config_md5": p["config_md5"],
                   "metric": key, **describe([values[p["name"]][key][s] for s in sorted(values[p["name"]][key])])}
            row.update(paired(values[p["name"]][key], base[key]))
            rows.append(row)
    return rows


def render_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buf.getvalue()


def _f(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _cell(row: dict[str, Any]) -> str:
    if not row["n"]:
        return "n/a"
    text = _f(row["mean"]) + (f" ± {_f(row['std'])}" if row["std"] is not None else "")
    if row["ci95_low"] is not None:
        text += f" [{_f(row['ci95_low'])}, {_f(row['ci95_high'])}]"
    return text


def _p(v: float | None) -> str:
    return "n/a" if v is None else (f"{v:.3g}" if v >= 0.001 else "<0.001")


def identical_points(state: dict[str, Any], by: dict[tuple[str, str], dict[str, Any]]) -> list[list[str]]:
    """Groups of points whose summary rows agree on every metric except wall time."""
    groups: dict[tuple, list[str]] = {}
    for p in state["points"]:
        key = tuple((by[(p["name"], k)]["n"], by[(p["name"], k)]["mean"], by[(p["name"], k)]["std"])
                    for k, _ in METRICS if k != "wall_seconds")
        groups.setdefault(key, []).append(p["name"])
    return [g for g in groups.values() if len(g) > 1 and any(by[(g[0], k)]["n"] for k, _ in METRICS)]


def _diff(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.2e}" if v != 0 and abs(v) < 5e-5 else f"{v:+.4f}"


def sweep_md(state: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    by = {(r["point"], r["metric"]): r for r in rows}
    points = [p["name"] for p in state["points"]]
    seeds = state["seeds"]
    lines = [f"# Sweep {state['sweep_id']}", "",
             f"- From: {state['source']} (spec md5 `{state['spec_md5']}`)",
             f"- Points: {len(points)}; seeds: {seeds}; base point: **{state['base_point']}**",
             f"- Backend: {state['launch']['backend']}; devices {state['launch']['devices']}, "
             f"{state['launch']['jobs_per_device']} job(s) per device",
             f"- Status: {state.get('status')}"]
    failed = state.get("failed_jobs") or []
    lines.append(f"- Failed jobs: {', '.join(failed)}" if failed else "- Failed jobs: none")
    lines += ["", "Each cell: mean ± sample std [95% t-interval of the mean] over the seeds of the point that "
              "finished (n per point in the last table). Validation metrics are the best checkpoint's.", ""]
    for group in (METRICS[:5], METRICS[5:]):
        lines += ["| Point | " + " | ".join(label for _, label in group) + " |",
                  "|---|" + "---|" * len(group)]
        for name in points:
            lines.append(f"| {name} | " + " | ".join(_cell(by[(name, key)]) for key, _ in group) + " |")
        lines.append("")
    same = identical_points(state, by)
    if same:
        lines += ["Same results (n, mean and std of every metric but wall time): " + "; ".join(
            " = ".join(group) for group in same) + ". The flags in which they differ did not change training "
            "here (e.g. a loss still in its warm-up epochs, AMP on a CPU).", ""]
    lines += [f"## Difference to the base point ({state['base_point']})", "",
              "Mean of (point - base) over the seeds both finished, and the two-sided p of a paired t-test "
              "(n/a with fewer than two shared seeds or identical differences).", "",
              "| Point | shared seeds | " + " | ".join(label for _, label in METRICS[:7]) + " |",
              "|---|---|" + "---|" * 7]
    for name in points:
        cells = [f"{_diff(by[(name, k)]['diff_vs_base'])} (p {_p(by[(name, k)]['paired_p'])})" for k, _ in METRICS[:7]]
        lines.append(f"| {name} | {by[(name, 'best_val_auc')]['paired_n']} | " + " | ".join(cells) + " |")
    lines += ["", "## Points", "", "| Point | Experiment folder | config_md5 | Finished seeds | Overrides |",
              "|---|---|---|---|---|"]
    for p in state["points"]:
        n = sum(1 for j in state["jobs"] if j["point"] == p["name"] and j["status"] in FINISHED)
        # Canonical order (sorted flags, then --set in order given): sweep.json stores flags with sorted keys.
        over = " ".join([f"{k}={v}" for k, v in sorted(p["flags"].items())] + list(p["set"])) or "(base)"
        lines.append(f"| {p['name']} | `{p['experiment_id']}` | `{p['config_md5']}` | {n}/{len(seeds)} | {over} |")
    for d in state.get("dropped_points") or []:  # a matrix point equal to another (sweep.json)
        lines.append(f"| {d['name']} | dropped: same configuration as {d['same_as']} | `{d['config_md5']}` | - | - |")
    lines += ["", "## Plots", "", "![val AUC against mastery correlation](plots/frontier.png)", "",
              "![mean learning curves](plots/learning_curves.png)", "", FILES_TEXT]
    return "\n".join(lines)


FILES_TEXT = """## Files

- `sweep.json`: the spec, its md5, each point's experiment id and config_md5, where and how each job ran.
- `sweep_summary.csv`: one row per point and metric (n, mean, std, 95% CI, difference to the base point, paired p).
- `SWEEP.md`: this page. `plots/`: frontier and learning curves.
- `<YYYYMMDD_HHMMSS>_gainakt2exp_<point>/`: an ordinary experiment folder per point (`harness verify` works on it).
- `MANIFEST.sha256`: sha256 of the files above and of every point's own MANIFEST.sha256.

`harness verify <this folder>` re-checks every point and that this summary equals what the points' results give.
"""


def render_plots(folder: Path, state: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """{sweep-relative name: PNG bytes} of the frontier and the mean learning curves."""
    from matplotlib.ticker import MaxNLocator

    from harness.folder.plots import figure_bytes, plt

    out: dict[str, bytes] = {}
    by = {(r["point"], r["metric"]): r for r in rows}
    frontier: list[list[Any]] = []  # what each plot draws, hashed into its PNG (harness:data-sha256)
    curves: dict[str, list[list[float]]] = {}
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, p in enumerate(state["points"]):
        x, y = by[(p["name"], "mastery_correlation_val_all")], by[(p["name"], "best_val_auc")]
        if x["mean"] is None or y["mean"] is None:
            continue
        frontier.append([p["name"], x["mean"], x["std"], y["mean"], y["std"]])
        ax.errorbar(x["mean"], y["mean"], xerr=x["std"] or 0, yerr=y["std"] or 0, fmt=_MARKERS[i % len(_MARKERS)],
                    capsize=4, markersize=7, alpha=0.8, label=p["name"])
    ax.set(title="accuracy vs interpretability (mean ± std over seeds)", xlabel="val mastery correlation",
           ylabel="best val AUC")
    ax.legend(fontsize=7)
    out[PLOTS[0]] = figure_bytes(fig, {"frontier": frontier})
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, p in enumerate(state["points"]):
        per_epoch: dict[int, list[float]] = {}
        for seed_rows in epoch_rows(folder / p["experiment_id"]).values():
            for r in seed_rows:
                per_epoch.setdefault(int(r["epoch"]), []).append(float(r["val_auc"]))
        if not per_epoch:
            continue
        ep = sorted(per_epoch)
        mean = [statistics.fmean(per_epoch[e]) for e in ep]
        std = [statistics.pstdev(per_epoch[e]) for e in ep]
        curves[p["name"]] = [[float(e), m, sd] for e, m, sd in zip(ep, mean, std, strict=True)]
        line = ax.plot(ep, mean, "-" + _MARKERS[i % len(_MARKERS)], markersize=4, label=p["name"])[0]
        ax.fill_between(ep, [m - s for m, s in zip(mean, std, strict=True)],
                        [m + s for m, s in zip(mean, std, strict=True)], color=line.get_color(), alpha=0.06,
                        linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="val AUC per epoch (mean, band ± std over seeds)", xlabel="epoch", ylabel="val AUC")
    ax.legend(fontsize=7)
    out[PLOTS[1]] = figure_bytes(fig, {"curves": curves})
    return out


def manifest_entries(folder: Path, state: dict[str, Any]) -> dict[str, str]:
    names = ["sweep.json", "sweep_summary.csv", "SWEEP.md", *PLOTS]
    names += [f"{p['experiment_id']}/MANIFEST.sha256" for p in state["points"]
              if (folder / p["experiment_id"] / "MANIFEST.sha256").is_file()]
    return {n: sha256_file(folder / n) for n in names}


def derive_summary(folder: Path, state: dict[str, Any]) -> dict[str, bytes]:
    """{sweep-relative name: bytes} of sweep_summary.csv, SWEEP.md and the plots: a pure function of
    `state` (sweep.json as stored) and the points' folders."""
    rows = summary_rows(folder, state)
    return {"sweep_summary.csv": render_csv(rows).encode(), "SWEEP.md": sweep_md(state, rows).encode(),
            **render_plots(folder, state, rows)}


def write_summary(folder: Path, state: dict[str, Any] | None = None) -> None:
    """Write the derived files of a sweep from sweep.json as stored (never from the caller's copy, whose
    key order may differ) and the points' folders, then its manifest."""
    from harness.folder import io as fio

    stored = fio.read_json(folder / "sweep.json")
    for name, data in derive_summary(folder, stored).items():
        fio.write_bytes(folder / name, data, root=folder)
    write_manifest(folder, manifest_entries(folder, stored))
