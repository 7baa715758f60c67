#!/usr/bin/env python
"""Which of our fixed loss semantics costs AUC? A resumable `harness sweep` of the reference-semantics switches.

Issue 14 item 6. Runs (or resumes) the sweep `semantics_ablation`: the paper configuration, ASSISTments
2015 pyKT fold 0, 12 epochs, AMP, seeds 21 42 63 84 105, with one point per reference-semantics switch
(docs/losses.md, "Reference semantics"), the control points those switches need, and `reference_all`
(every loss switch at once). Then writes benchmarks/results/semantics_ablation.md: per point the mean ±
sample standard deviation of best val AUC and test AUC over its finished seeds, and the paired difference
to its baseline point over the seeds finished in both (mean, std, paired t-test p, n).

    python benchmarks/semantics_ablation.py --data_dir ../shared/datasets/assist2015_pykt --devices 0 --jobs_per_device 5
    python benchmarks/semantics_ablation.py --points constraints_current_step,pooled_correlations   # a subset
    python benchmarks/semantics_ablation.py --cpu-small    # smoke run: small preset, synthetic data, CPU
    python benchmarks/semantics_ablation.py --table_only SWEEP_DIR   # rebuild the table from a sweep folder

Running the same command again resumes the unfinished sweep of the same title under --output_base
(finished seeds are kept), or only rebuilds the table when every job has finished. A subset always
includes the baselines its points are compared with. Extra arguments after `--` go to `harness sweep`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from gainakt.config import REFERENCE_SEMANTICS, REFERENCE_SEMANTICS_NEEDS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sweep_tables import run_or_resume, sweep_folder, write_table  # noqa: E402  (a sibling module of these scripts)

OUT_MD = ROOT / "benchmarks" / "results" / "semantics_ablation.md"
SEEDS = (21, 42, 63, 84, 105)
FINISHED = ("completed", "early_stopped")
METRICS = (("best_val_auc", "best val AUC"), ("test_auc", "test AUC"))


@dataclass(frozen=True)
class AblationPoint:
    flags: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None  # the point it is compared with (None: it is a baseline itself)
    description: str = ""


# What each switch restores (table column); the switches themselves come from gainakt.config.
_WHAT = {
    "constraints_over_padding": "defect 3: constraint losses count padding",
    "constraints_current_step": "defect 4: performance constraints on (q_t, r_t)",
    "pooled_correlations": "defect 10: batch-pooled alignment/retention/lag correlations",
    "alignment_max_students": "alignment and lag on the first 32 rows of a batch",
    "retention_detached": "defect 7: retention without gradient",
    "lag_detached": "defect 6 (Era A): lag without gradient",
    "variance_floor_per_batch": "defect 11: variance floor counted in batches, compounding",
    "clip_before_unscale": "defect 12: clip the scaled gradients (acts only under fp16 AMP)",
}
# The control point of a switch that needs other settings: it has those settings and not the switch.
_CONTROLS = {
    "constraints_over_padding": ("ours_unpacked", "control: padded batches instead of packed rows (same batches)"),
    "clip_before_unscale": ("ours_fp16", "control: fp16 AMP with a GradScaler"),
}


def _points() -> dict[str, AblationPoint]:
    """ours; per switch of REFERENCE_SEMANTICS its control (if it needs one) and its point; reference_all.

    Every switch point differs from its baseline by that switch only. reference_all has every loss
    switch (not the training section's clip order: the reference's reported runs were fp32).
    """
    points = {"ours": AblationPoint({}, None, "our fixed semantics (the guide's defaults)")}
    every: dict[str, Any] = {}
    for section, switches in REFERENCE_SEMANTICS.items():
        for name, value in switches.items():
            needs = REFERENCE_SEMANTICS_NEEDS.get(name, {})
            baseline = "ours"
            if needs:
                baseline, what = _CONTROLS.get(name, (f"ours_for_{name}", f"control for {name}"))
                points[baseline] = AblationPoint(dict(needs), "ours", what)
            points[name] = AblationPoint({name: value, **needs}, baseline, _WHAT.get(name, name))
            if section != "training":
                every.update({name: value, **needs})
    points["reference_all"] = AblationPoint(every, "ours", "every loss switch at once (no clip-order switch: "
                                            "the reference's reported runs were fp32)")
    return points


POINTS: dict[str, AblationPoint] = _points()


def select_points(names: list[str] | None) -> list[str]:
    """The points to run, in table order: the named ones plus the baselines they are compared with."""
    if not names:
        return list(POINTS)
    unknown = [n for n in names if n not in POINTS]
    if unknown:
        raise SystemExit(f"unknown point {unknown[0]!r}; points: {', '.join(POINTS)}")
    wanted = set(names)
    for name in names:
        base = POINTS[name].baseline
        while base is not None:
            wanted.add(base)
            base = POINTS[base].baseline
    return [n for n in POINTS if n in wanted]


def spec(ns: argparse.Namespace) -> dict[str, Any]:
    """The sweep spec: the paper configuration (or the smoke one) with the selected points."""
    flags: dict[str, Any] = {"epochs": ns.epochs, "model_preset": ns.preset, "mixed_precision": True}
    if ns.dataset != "synthetic":
        flags.update(dataset=ns.dataset, fold=0)
    if ns.cpu_small:
        flags["warmup_constraint_epochs"] = 0  # so that retention and lag act within the smoke epochs
    points = {}
    for name in select_points(ns.points):
        p = POINTS[name]
        points[name] = {"flags": dict(p.flags), "description": p.description} if p.flags else {
            "description": p.description}
    return {
        "description": "semantics ablation (issue 14 item 6): our fixed loss semantics switched back towards "
                       "the reference's, one switch per point",
        "base": {"flags": flags},
        "points": points,
        "base_point": "ours",
        "seeds": list(ns.seeds),
    }


# --- the table ------------------------------------------------------------------------------------

def seed_metrics(exp_dir: Path) -> dict[int, dict[str, float]]:
    """{seed: {metric: value}} of the finished seeds of one experiment folder (results.json)."""
    path = exp_dir / "results.json"
    if not path.is_file():
        return {}
    results = json.loads(path.read_text())
    out: dict[int, dict[str, float]] = {}
    for r in results.get("per_seed", {}).values():
        if r.get("status") in FINISHED:
            out[int(r["seed"])] = {k: float(r[k]) for k, _ in METRICS if r.get(k) is not None}
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def paired(point: dict[int, dict[str, float]], base: dict[int, dict[str, float]], key: str) -> dict[str, float]:
    """Paired difference point - base over the seeds both finished: mean, std, ttest_rel p, n."""
    seeds = sorted(s for s in point if s in base and key in point[s] and key in base[s])
    a = [point[s][key] for s in seeds]
    b = [base[s][key] for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, std = mean_std(diffs)
    p = math.nan
    if len(seeds) > 1 and std > 0:
        p = float(stats.ttest_rel(a, b).pvalue)
    elif len(seeds) > 1:
        p = 1.0 if mean == 0 else 0.0  # every seed moved by the same amount (or not at all)
    return {"mean": mean, "std": std, "p": p, "n": float(len(seeds))}


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}")


def _diff(d: dict[str, float]) -> str:
    if math.isnan(d["mean"]):
        return "—"
    std = "" if math.isnan(d["std"]) else f" ± {d['std']:.4f}"
    p = "—" if math.isnan(d["p"]) else f"{d['p']:.3g}"
    return f"{d['mean']:+.4f}{std} (p {p}, n {int(d['n'])})"


def build_table(folders: dict[str, Path], title: str) -> str:
    """Markdown table of the points (name -> experiment folder), each against its baseline point."""
    values = {name: seed_metrics(path) for name, path in folders.items()}
    head = ["point", "what it restores", "seeds"]
    for _, label in METRICS:
        head += [label, f"{label}: paired diff to baseline"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in folders:
        point = POINTS.get(name, AblationPoint(description="(not a known point)"))
        base = point.baseline if point.baseline in values else None
        cells = [f"`{name}`" + (f" vs `{base}`" if base else ""), point.description,
                 ", ".join(str(s) for s in sorted(values[name])) or "none finished"]
        for key, _ in METRICS:
            cells.append(_pm(*mean_std([v[key] for v in values[name].values() if key in v])))
            cells.append(_diff(paired(values[name], values[base], key)) if base else "(baseline)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Population: each point's finished seeds. Best val AUC is the highest fold-0 validation AUC "
              "over the epochs (every valid interaction of the validation students); test AUC is the non-window "
              "test AUC (every interaction of the test students) of that best epoch's model. Values are mean ± "
              "sample standard deviation over seeds. A paired difference is point minus baseline over the seeds "
              "finished in both (mean ± sample std of the per-seed differences; p from scipy.stats.ttest_rel; "
              "n seeds). A negative difference means the reference's behaviour costs AUC; with few seeds only "
              "a difference large against its std says anything.",
              "", "Folders: " + ", ".join(f"{n} `{p.name}`" for n, p in folders.items()) + "."]
    return "\n".join(lines) + "\n"


def point_folders(sweep_dir: Path) -> dict[str, Path]:
    state = json.loads((sweep_dir / "sweep.json").read_text())
    return {p["name"]: sweep_dir / p["experiment_id"] for p in state["points"]}


def describe(sweep_dir: Path, folders: dict[str, Path]) -> str:
    """The table's title, from the first point's config.json that exists."""
    for path in folders.values():
        if (path / "config.json").is_file():
            cfg = json.loads((path / "config.json").read_text())
            data = cfg["data"]
            amp = "AMP" if cfg["training"].get("mixed_precision") else "fp32 (AMP off or not on CUDA)"
            return (f"Semantics ablation ({sweep_dir.name}): {cfg['model']['model_preset']} preset, "
                    f"{cfg['training']['epochs']} epochs, {amp}, dataset {data['dataset']} fold {data['fold']}, "
                    f"seeds {cfg['seeds']['all']}")
    return f"Semantics ablation ({sweep_dir.name})"


# --- running --------------------------------------------------------------------------------------

def run_sweep(ns: argparse.Namespace, extra: list[str]) -> Path:
    return run_or_resume(title=ns.title, spec=spec(ns), output_base=ns.output_base, data_dir=ns.data_dir,
                         devices=ns.devices, jobs_per_device=ns.jobs_per_device, extra=extra)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--dataset", default="assist2015", help="harness --dataset (synthetic: the built-in simulator)")
    p.add_argument("--output_base", default="/tmp/semantics_ablation")
    p.add_argument("--devices", default="0", help="harness --devices (cpu, 0, 0,1, ...)")
    p.add_argument("--jobs_per_device", type=int, default=None, help="seeds sharing one device")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=list(SEEDS))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--preset", default="paper", choices=("paper", "small"))
    p.add_argument("--points", type=lambda s: [x for x in s.split(",") if x], default=None,
                   help="comma-separated subset of: " + ", ".join(POINTS) + " (default: all; baselines added)")
    p.add_argument("--title", default="semantics_ablation")
    p.add_argument("--out", default=str(OUT_MD), help="where the markdown table goes")
    p.add_argument("--cpu-small", "--cpu_small", dest="cpu_small", action="store_true",
                   help="smoke run: small preset, 2 epochs, seeds 21,42, CPU, synthetic data, constraint warm-up 0, "
                   "title semantics_ablation_small")
    p.add_argument("--table_only", type=sweep_folder, default=None, help="a finished (or partial) sweep folder: only build the table")
    p.add_argument("harness_args", nargs="*", metavar="-- ARG",
                   help="arguments after -- go to `harness sweep` unchanged")
    ns = p.parse_args(argv)
    if ns.cpu_small:
        ns.preset, ns.devices, ns.title = "small", "cpu", "semantics_ablation_small"
        ns.epochs = ns.epochs if "--epochs" in argv else 2
        ns.seeds = ns.seeds if "--seeds" in argv else [21, 42]
        if "--dataset" not in argv:
            ns.dataset = "synthetic"
        if ns.out == str(OUT_MD):
            ns.out = str(OUT_MD.with_name("semantics_ablation_small.md"))
    if ns.dataset == "synthetic" and "--data_dir" not in argv:
        ns.data_dir = None
    return ns


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse(argv)
    extra: list[str] = ns.harness_args
    sweep_dir = Path(ns.table_only) if ns.table_only else run_sweep(ns, extra)
    folders = point_folders(sweep_dir)
    text = build_table(folders, title=describe(sweep_dir, folders))
    write_table(ns.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
