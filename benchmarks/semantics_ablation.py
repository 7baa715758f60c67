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

from gainakt.config import REFERENCE_SEMANTICS, REFERENCE_SEMANTICS_NEEDS, REFERENCE_VALUES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sweep_tables import (  # noqa: E402  (a sibling module of these scripts)
    epoch_rows,
    flat_config,
    paired,
    run_or_resume,
    seed_outcomes,
    sweep_folder,
    write_table,
)

OUT_MD = ROOT / "benchmarks" / "results" / "semantics_ablation.md"
SEEDS = (21, 42, 63, 84, 105)
CPU_SEEDS = (21, 42, 63)
CPU_EPOCHS = 3
METRICS = (("best_val_auc", "best val AUC"), ("test_auc", "test AUC"))
# metrics_epoch.csv columns taken at each seed's best epoch: the interpretability correlations on the
# per-epoch validation sample (docs/metrics.md), known for every seed of a reused `ours` too.
BEST_EPOCH_COLUMNS = (("mastery_correlation", "val mastery corr"), ("gain_correlation", "val gain corr"))
# Where a reused `ours` may differ from a point besides the point's own flags: the run length, the
# early-stopping shortcut (both cannot change the first epochs), and the precision as recorded.
REUSE_MAY_DIFFER = ("training.epochs", "training.patience", "training.mixed_precision")

# The reported runs' values (Era B) where they differ from the guide's: gainakt.config.REFERENCE_VALUES
# (`harness run --reference_values`).
ERA_B_VALUES: dict[str, Any] = dict(REFERENCE_VALUES)


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
    "train_shuffle": "defect 17: training windows in data order, the same batches every epoch",
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
    points["reference_all"] = AblationPoint(every, "ours", "every switch at once, the training order included (no "
                                            "clip-order switch: the reference's reported runs were fp32)")
    # constraints_over_padding needs padded batches, which cost about 5x per epoch on the CPU at paper size
    # (issue 22: 6.4 s against 1.2 s per batch): every other switch, packed, ranks them at the packed cost.
    packed = {k: v for k, v in every.items() if k != "constraints_over_padding"
              and k not in REFERENCE_SEMANTICS_NEEDS["constraints_over_padding"]}
    points["reference_all_packed"] = AblationPoint(packed, "ours", "every switch of reference_all but constraints "
                                                   "over padding (which needs unpacked batches), packed")
    points["era_b_values"] = AblationPoint(dict(ERA_B_VALUES), "ours", "the reported runs' values (Era B): lr 1.74e-4, "
                                           "alignment 0.25, retention 0.14, lag 0.06 (lags 1-2), share cap 0.08, "
                                           "decay 0.7, residual alignment, plateau LR")
    points["reference_era_b"] = AblationPoint({**every, **ERA_B_VALUES}, "ours", "everything of the reported runs "
                                              "that we can switch: reference_all and era_b_values")
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
    """The sweep spec: the paper configuration (or the smoke one) with the selected points.

    With --cpu the precision is fp32 (AMP does not run on a CPU; the paper table's CPU point is
    fp32 too), and with --ours_from `ours` is not trained: its seeds come from that run.
    """
    flags: dict[str, Any] = {"epochs": ns.epochs, "model_preset": ns.preset,
                             "mixed_precision": not getattr(ns, "cpu", False)}
    if ns.dataset != "synthetic":
        flags.update(dataset=ns.dataset, fold=0)
    if ns.cpu_small:
        flags["warmup_constraint_epochs"] = 0  # so that retention and lag act within the smoke epochs
    points = {}
    for name in select_points(ns.points):
        if name == "ours" and getattr(ns, "ours_from", None):
            continue
        p = POINTS[name]
        points[name] = {"flags": dict(p.flags), "description": p.description} if p.flags else {
            "description": p.description}
    return {
        "description": "semantics ablation (issues 14 and 22): our fixed semantics switched back towards "
                       "the reference's, one switch per point",
        "base": {"flags": flags},
        "points": points,
        "base_point": "ours" if "ours" in points else next(iter(points)),
        "seeds": list(ns.seeds),
    }


# --- the table ------------------------------------------------------------------------------------

def seed_metrics(exp_dir: Path) -> dict[int, dict[str, float]]:
    """{seed: {metric: value}} of the finished seeds of one experiment folder (results.json, or a
    finished seed's last checkpoint while the point still trains)."""
    return {seed: {k: float(r[k]) for k, _ in METRICS if r.get(k) is not None}
            for seed, r in seed_outcomes(exp_dir).items()}


def reused_metrics(exp_dir: Path, epochs: int) -> dict[int, dict[str, float]]:
    """`ours` at `epochs` epochs, read from a longer run of the same configuration (the paper table's).

    The schedule does not depend on --epochs (tests/test_reference_training.py), so an `epochs`-epoch
    run is that run's first epochs: best val AUC is the best of its first `epochs` rows of
    metrics_epoch.csv (ties: the earlier epoch, as training picks), for every seed that ran them. Its
    test AUC is known only where the longer run's best epoch lies within them (then both runs' best
    model is the same); elsewhere the test AUC of the shorter run was never measured.
    """
    outcomes = seed_outcomes(exp_dir)
    out: dict[int, dict[str, float]] = {}
    for seed, rows in epoch_rows(exp_dir).items():
        first = [r for r in rows if r["epoch"] <= epochs]
        if len(first) < epochs:
            continue
        best = max(first, key=lambda r: (r["val_auc"], -r["epoch"]))
        values = {"best_val_auc": best["val_auc"]}
        done = outcomes.get(seed)
        if done and done.get("best_epoch") is not None and int(done["best_epoch"]) <= epochs \
                and done.get("test_auc") is not None:
            values["test_auc"] = float(done["test_auc"])
        out[seed] = values
    return out


def best_epoch_columns(exp_dir: Path, epochs: int | None = None) -> dict[int, dict[str, float]]:
    """{seed: BEST_EPOCH_COLUMNS of its best epoch's metrics_epoch.csv row}: the highest val AUC over its epochs
    (or its first `epochs`; ties: the earlier epoch, as training picks)."""
    out: dict[int, dict[str, float]] = {}
    for seed, rows in epoch_rows(exp_dir).items():
        first = [r for r in rows if epochs is None or r["epoch"] <= epochs]
        if first:
            best = max(first, key=lambda r: (r["val_auc"], -r["epoch"]))
            out[seed] = {k: best[k] for k, _ in BEST_EPOCH_COLUMNS if k in best and best[k] == best[k]}
    return out


def epoch_seconds(exp_dir: Path, epochs: int | None = None) -> float:
    """Mean training+validation seconds per epoch over the seeds (each seed's mean over its epochs, or
    its first `epochs`), from metrics_epoch.csv; NaN without rows."""
    per_seed = [[r["epoch_seconds"] for r in rows if "epoch_seconds" in r and (epochs is None or r["epoch"] <= epochs)]
                for rows in epoch_rows(exp_dir).values()]
    means = [statistics.fmean(v) for v in per_seed if v]
    return statistics.fmean(means) if means else math.nan


def reuse_differences(ours: Path, point: Path, name: str) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """(every difference of `point`'s configuration from the reused `ours`, the ones that are neither
    the run length nor the point's own flags: each of those makes the pairing invalid)."""
    a, b = flat_config(ours), flat_config(point)
    diffs = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    own = set(POINTS[name].flags) if name in POINTS else set()
    bad = [k for k in diffs if k not in REUSE_MAY_DIFFER and k.split(".", 1)[1] not in own]
    return diffs, bad


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


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


def build_table(folders: dict[str, Path], title: str, *, ours_from: Path | None = None,
                epochs: int | None = None) -> str:
    """Markdown table of the points (name -> experiment folder), each against its baseline point.

    With `ours_from` (an experiment folder of a longer run of `ours`), `ours` is that run's first
    `epochs` epochs (`reused_metrics`), after checking that it differs from every point only in the
    run length and the point's own flags (SystemExit naming the field otherwise).
    """
    values = {name: seed_metrics(path) for name, path in folders.items()}
    seconds = {name: epoch_seconds(path) for name, path in folders.items()}
    notes: list[str] = []
    if ours_from is not None:
        if epochs is None:
            raise ValueError("ours_from needs the epochs of the points")
        # ours on the seeds of the points only (the longer run may have more), so that its mean and
        # the points' are over the same seeds
        seeds: set[int] = set()
        for name, path in folders.items():
            seeds |= set(values[name])
            if (path / "config.json").is_file():
                seeds |= {int(s) for s in json.loads((path / "config.json").read_text())["seeds"]["all"]}
        folders = {"ours": ours_from, **{k: v for k, v in folders.items() if k != "ours"}}
        values = {"ours": {s: v for s, v in reused_metrics(ours_from, epochs).items() if s in seeds}, **values}
        seconds = {"ours": epoch_seconds(ours_from, epochs), **seconds}
        checked = []
        for name, path in folders.items():
            if name == "ours" or not (path / "config.json").is_file():
                continue
            diffs, bad = reuse_differences(ours_from, path, name)
            if bad:
                raise SystemExit(f"cannot pair `{name}` with the reused ours of {ours_from}: they also differ in "
                                 f"{bad[0]} ({diffs[bad[0]][0]!r} against {diffs[bad[0]][1]!r}); train `ours` "
                                 "instead (leave out --ours_from)")
            checked.append(f"`{name}`: " + ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in diffs.items()))
        test_known = sorted(s for s, v in values["ours"].items() if "test_auc" in v)
        notes = ["", f"**`ours` is not trained here.** Its seeds are the first {epochs} epochs of `{ours_from.name}` "
                 f"(the paper table's run of the same configuration, read from its metrics_epoch.csv): the loss "
                 "schedule does not depend on --epochs, so a shorter run is exactly the first epochs of a longer "
                 "one (checked in tests/test_reference_training.py), on the same machine type and thread count. "
                 f"Its test AUC is known only for seeds whose best epoch in that run is at most {epochs} "
                 f"({', '.join(map(str, test_known)) or 'none'}); the others' test AUC after {epochs} epochs "
                 "was never measured, so the test-AUC pairing covers those seeds only.",
                 "", "Configuration differences from the reused `ours` (checked: nothing else differs): "
                 + "; ".join(checked) + "."]
    for name, path in folders.items():  # a reused ours: its first `epochs` epochs
        columns = best_epoch_columns(path, epochs if name == "ours" and ours_from is not None else None)
        for seed, v in values[name].items():
            v.update(columns.get(seed, {}))
    head = ["point", "what it restores", "seeds"]
    for _, label in METRICS + BEST_EPOCH_COLUMNS:
        head += [label, f"{label}: paired diff to baseline"]
    head.append("s/epoch")
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in folders:
        point = POINTS.get(name, AblationPoint(description="(not a known point)"))
        base = point.baseline if point.baseline in values else None
        cells = [f"`{name}`" + (f" vs `{base}`" if base else ""), point.description,
                 ", ".join(str(s) for s in sorted(values[name])) or "none finished"]
        for key, _ in METRICS + BEST_EPOCH_COLUMNS:
            cells.append(_pm(*mean_std([v[key] for v in values[name].values() if key in v])))
            cells.append(_diff(paired(values[name], values[base], key)) if base else "(baseline)")
        cells.append("—" if math.isnan(seconds[name]) else f"{seconds[name]:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Population: each point's finished seeds. Best val AUC is the highest fold-0 validation AUC "
              "over the epochs (every valid interaction of the validation students); test AUC is the non-window "
              "test AUC (every interaction of the test students) of that best epoch's model. Val mastery (gain) "
              "corr: metrics_epoch.csv's mastery_correlation (gain_correlation) of the best epoch, on the "
              "per-epoch validation sample of --max_semantic_students students (docs/metrics.md). Values are mean ± "
              "sample standard deviation over seeds. A paired difference is point minus baseline over the seeds "
              "finished in both (mean ± sample std of the per-seed differences; p from scipy.stats.ttest_rel; "
              "n seeds). A negative difference means the reference's behaviour costs AUC; with few seeds only "
              "a difference large against its std says anything. s/epoch: mean seconds of one epoch's "
              "training and validation over the point's seeds (metrics_epoch.csv), on the machine it ran on.",
              *notes, "", "Folders: " + ", ".join(f"{n} `{p.name}`" for n, p in folders.items()) + "."]
    return "\n".join(lines) + "\n"


def point_folders(*sweep_dirs: Path) -> dict[str, Path]:
    """{point: experiment folder} of one or more sweeps (a point name may appear in one sweep only)."""
    out: dict[str, Path] = {}
    for sweep_dir in sweep_dirs:
        state = json.loads((sweep_dir / "sweep.json").read_text())
        for p in state["points"]:
            if p["name"] in out:
                raise SystemExit(f"point {p['name']!r} is in two sweeps: {out[p['name']].parent} and {sweep_dir}")
            out[p["name"]] = sweep_dir / p["experiment_id"]
    return out


def ours_folder(text: str) -> Path:
    """argparse type of --ours_from: an experiment folder, or a sweep folder with one point."""
    path = Path(text)
    if (path / "sweep.json").is_file():
        points = point_folders(path)
        if len(points) != 1:
            raise argparse.ArgumentTypeError(f"{text} has {len(points)} points; give the point's experiment folder")
        path = next(iter(points.values()))
    if not (path / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{text} is neither an experiment folder (no config.json) nor a one-point "
                                         "sweep folder")
    return path


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
    p.add_argument("--cpu", action="store_true",
                   help="paper size on this machine's CPU (issue 22): paper preset, fp32, 3 epochs, seeds 21,42,63, "
                   "--threads 2, title semantics_ablation_cpu, points reference_all unless --points; table "
                   "benchmarks/results/semantics_ablation_cpu.md")
    p.add_argument("--ours_from", type=ours_folder, default=None, metavar="FOLDER",
                   help="do not train `ours`: take it from the first --epochs epochs of this longer run of the same "
                   "configuration (the CPU paper table's sweep folder or its point's experiment folder)")
    p.add_argument("--table_only", type=sweep_folder, nargs="+", default=None, metavar="SWEEP",
                   help="finished (or partial) sweep folders: only build the table (their points together)")
    p.add_argument("harness_args", nargs="*", metavar="-- ARG",
                   help="arguments after -- go to `harness sweep` unchanged")
    ns = p.parse_args(argv)
    if ns.cpu and ns.cpu_small:
        p.error("--cpu and --cpu-small exclude each other")
    if ns.cpu:
        ns.preset, ns.devices = "paper", "cpu"
        ns.title = ns.title if "--title" in argv else "semantics_ablation_cpu"
        ns.epochs = ns.epochs if "--epochs" in argv else CPU_EPOCHS
        ns.seeds = ns.seeds if "--seeds" in argv else list(CPU_SEEDS)
        ns.points = ns.points or ["reference_all"]
        if not any(a.startswith("--threads") for a in ns.harness_args):
            ns.harness_args = [*ns.harness_args, "--threads", "2"]
        if ns.out == str(OUT_MD):
            ns.out = str(OUT_MD.with_name("semantics_ablation_cpu.md"))
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
    if ns.ours_from is not None and not ns.table_only:
        check_reusable(ns.ours_from, ns)  # before hours of training: the thorough check runs at table time
    sweeps = [Path(x) for x in ns.table_only] if ns.table_only else [run_sweep(ns, extra)]
    folders = point_folders(*sweeps)
    epochs = None
    if ns.ours_from is not None:
        epochs = ns.epochs if not ns.table_only or "--epochs" in argv else _epochs_of(folders)
    text = build_table(folders, title=describe(sweeps[0], folders), ours_from=ns.ours_from, epochs=epochs)
    write_table(ns.out, text)
    return 0


def check_reusable(ours: Path, ns: argparse.Namespace) -> None:
    """Refuse (one line, exit 2) an --ours_from run that cannot hold this sweep's `ours`: another preset,
    dataset or fold, or fewer epochs than --epochs."""
    cfg = json.loads((ours / "config.json").read_text())
    have = {"model_preset": cfg["model"]["model_preset"], "dataset": cfg["data"]["dataset"],
            "fold": cfg["data"]["fold"]}
    want = {"model_preset": ns.preset, "dataset": ns.dataset, "fold": 0}
    for key, value in want.items():
        if have[key] != value:
            print(f"error: --ours_from {ours}: its {key} is {have[key]!r}, this ablation's is {value!r}", file=sys.stderr)
            raise SystemExit(2)
    if int(cfg["training"]["epochs"]) < ns.epochs:
        print(f"error: --ours_from {ours}: it runs {cfg['training']['epochs']} epochs, fewer than --epochs {ns.epochs}",
              file=sys.stderr)
        raise SystemExit(2)


def _epochs_of(folders: dict[str, Path]) -> int:
    """The --epochs the points ran (they must agree), from their config.json."""
    found = {json.loads((p / "config.json").read_text())["training"]["epochs"] for p in folders.values()
             if (p / "config.json").is_file()}
    if len(found) != 1:
        raise SystemExit(f"the points ran {sorted(found) or 'no'} epochs; pass --epochs N to pair them with --ours_from")
    return int(found.pop())


if __name__ == "__main__":
    raise SystemExit(main())
