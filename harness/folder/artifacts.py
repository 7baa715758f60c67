"""The files of an experiment folder, built from the seeds' results.

results.json holds no timestamps, timings or devices, so identical runs give identical bytes.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gainakt.losses import first_active_epochs, partial_weight_warnings, schedule_warnings
from gainakt.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, TIME_CONTROL_DEGREE
from gainakt.train import EPOCH_COLUMNS, loss_settings
from harness.config.schema import RunConfig
from harness.folder.experiment import atomic_write_json, atomic_write_text, dumps_json

# Aggregated across seeds in results_multi_seed.json and SEED_INFO.md / README.md.
# Population in the name: *_val_all = every validation student, *_test_all / test_* = every test
# student, both under the best model (docs/metrics.md).
SUMMARY_METRICS = (
    "best_val_auc", "best_epoch", "val_accuracy", "mastery_correlation_val_all", "gain_correlation_val_all",
    "qmastery_correlation_val_all", "qmastery_partial_correlation_val_all", "qmastery_auc_pooled_val_all",
    "qgain_correlation_val_all", "test_auc", "test_accuracy", "test_window_auc", "test_mastery_correlation",
    "test_gain_correlation", "test_qmastery_correlation", "test_qmastery_partial_correlation",
    "true_mastery_correlation_val_all", "true_mean_mastery_correlation_val_all",
)
# per_seed key -> the `final` key it copies (the best model's metrics over all students of a split).
FINAL_COPIES = {
    "val_accuracy": "val_accuracy",
    "mastery_correlation_val_all": "val_mastery_correlation",
    "gain_correlation_val_all": "val_gain_correlation",
    "qmastery_correlation_val_all": "val_qmastery_correlation",
    "qmastery_partial_correlation_val_all": "val_qmastery_partial_correlation",
    "qmastery_auc_pooled_val_all": "val_qmastery_auc_pooled",
    "qgain_correlation_val_all": "val_qgain_correlation",
    "test_auc": "test_auc",
    "test_accuracy": "test_accuracy",
    "test_window_auc": "test_window_auc",
    "test_mastery_correlation": "test_mastery_correlation",
    "test_gain_correlation": "test_gain_correlation",
    "test_qmastery_correlation": "test_qmastery_correlation",
    "test_qmastery_partial_correlation": "test_qmastery_partial_correlation",
    "true_mastery_correlation_val_all": "val_true_mastery_correlation",
    "true_mean_mastery_correlation_val_all": "val_true_mean_mastery_correlation",
}

def render_metrics_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """metrics_epoch.csv of `rows` with `columns` (default: every EPOCH_COLUMNS)."""
    columns = list(EPOCH_COLUMNS) if columns is None else columns
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return repr(v) if isinstance(v, float) else v


def seed_summary(result: dict) -> dict[str, Any]:
    """The per-seed block of results.json: best-epoch validation and final best-model metrics.

    ``best_epoch_metrics`` is the best epoch's metrics_epoch.csv row (semantic columns over the
    per-epoch validation sample); the ``*_val_all`` keys and ``final`` are over all students.
    """
    final = result.get("final", {})
    best = result.get("best", {})
    return {
        "seed": result["seed"],
        "status": result["status"],
        "reason": result.get("reason"),
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "best_val_auc": result["best_val_auc"],
        # The columns the row carries (a seed trained before a column existed keeps what it recorded).
        "best_epoch_metrics": {k: best.get(k) for k in EPOCH_COLUMNS
                               if k not in ("seed", "epoch_seconds") and (k in best or not best)},
        **{key: final.get(src) for key, src in FINAL_COPIES.items()},
        "final": final,
        "amp": result.get("amp"),
        "warnings": model_warnings(result["seed"], final),
    }


def model_warnings(seed: int, final: dict) -> list[str]:
    """Warnings about the trained model itself (collapsed predictions, saturated mastery), one line each."""
    out = []
    for split in ("val", "test"):
        if final.get(f"{split}_predictions_collapsed"):
            out.append(f"seed {seed}: predictions collapsed on {split}: accuracy {final[f'{split}_accuracy']:.4f} "
                       f"equals the majority-class rate and AUC {final[f'{split}_auc']:.4f} < 0.6 "
                       f"(the model predicts one class; its interpretability metrics are not meaningful)")
    return out + saturation_warnings(seed, final)


SATURATED_WARNING_SHARE = 0.5  # warn when more than half of the asked-concept mastery values sit at the clamp
_SPLIT_NAMES = {"val": "validation", "test": "test"}


def saturation_warnings(seed: int, final: dict) -> list[str]:
    """One line per split where more than half of the best model's asked-concept mastery values are at the
    clamp (>= 1 - 1e-6) in the window view (the model's own output), with the student view beside it."""
    out = []
    for split, name in _SPLIT_NAMES.items():
        share = final.get(f"{split}_mastery_saturated_share")
        if share is None or not share > SATURATED_WARNING_SHARE:
            continue
        student = final.get(f"{split}_student_view_mastery_saturated_share")
        steps = final.get(f"{split}_saturation_steps_median")
        out.append(f"seed {seed}: mastery saturated on {name}: {share:.1%} of the asked-concept mastery values (all "
                   f"{name} students, best model, window view) are at the clamp (>= 1 - 1e-6)"
                   + (f", {student:.1%} in the student view" if student is not None else "")
                   + (f"; median {steps:g} steps from a window start to the first" if steps is not None else "")
                   + "; a saturated value carries no information (docs/metrics.md, \"Saturation\")")
    return out


def _typed(cfg: RunConfig | Mapping[str, Any]) -> RunConfig:
    """The typed config (a config.json dict is parsed once, here)."""
    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


def launch_warnings(cfg: RunConfig | Mapping[str, Any]) -> list[str]:
    """Lines for stdout.log at launch: requested loss terms that cannot act within --epochs."""
    run = _typed(cfg)
    return schedule_warnings(loss_settings(run.train), run.train.training.epochs)


# ---------------------------------------------------------------------------------------------
# What the run's own history says: which requested loss terms acted, collapsed epochs, warnings.
# Pure functions of (config, results, per-seed histories). A history is the seed's epochs in order,
# each its metrics_epoch.csv row merged with its semantic-trajectory entry (both carried by the
# checkpoints; `histories_of` merges them): the entry says what the loss schedule switched on.

Histories = Mapping[int, list[dict]]
# Epoch-line flag of a collapsed model (gainakt/train.py logs it as the epoch ends): validation accuracy
# within this distance of the majority-class rate, with AUC below COLLAPSE_AUC.
COLLAPSE_ACC_GAP = 0.001
COLLAPSE_AUC = 0.6


def _finite(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# The trajectory entry's record of the schedule switching a term on in an epoch.
_SCHEDULE_FLAGS = {"alignment": "effective_alignment_weight", "lag": "lag_active", "retention": "retention_active"}


def term_active(term: str, epoch: Mapping[str, Any]) -> bool:
    """Whether the loss schedule had `term` on in this epoch: the trajectory's lag_active /
    retention_active / effective alignment weight > 0; for an epoch without them (an older folder),
    whether its weighted term (``train_<term>_term``) was non-zero in the training objective."""
    flag = epoch.get(_SCHEDULE_FLAGS[term])
    if flag is not None:
        return bool(flag) if isinstance(flag, bool) else (_finite(flag) or 0.0) > 0.0
    return (_finite(epoch.get(f"train_{term}_term")) or 0.0) != 0.0


def term_activity(cfg: RunConfig | Mapping[str, Any], histories: Histories) -> dict[str, dict[int, int | None]]:
    """For each requested scheduled term (alignment, lag, retention with weight > 0), per seed with at
    least one epoch: the first epoch it was active (`term_active`), or None when it was inactive in
    every epoch the seed ran."""
    run = _typed(cfg)
    requested = first_active_epochs(loss_settings(run.train))
    out: dict[str, dict[int, int | None]] = {}
    for term in requested:
        out[term] = {seed: next((int(e["epoch"]) for e in rows if term_active(term, e)), None)
                     for seed, rows in histories.items() if rows}
    return out


def _epochs_run(histories: Histories) -> dict[int, int]:
    return {seed: len(rows) for seed, rows in histories.items() if rows}


def _seeds_text(seeds: list[int]) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))


def inactive_term_warnings(cfg: RunConfig | Mapping[str, Any], histories: Histories) -> list[str]:
    """One line per requested term that stayed zero in every epoch a seed ran (seeds grouped by the
    number of epochs they ran), with the epoch its schedule starts it and what to change."""
    run = _typed(cfg)
    settings = loss_settings(run.train)
    scheduled = first_active_epochs(settings)
    ran = _epochs_run(histories)
    lines = []
    for term, per_seed in term_activity(run, histories).items():
        never: dict[int, list[int]] = {}
        for seed, first in per_seed.items():
            if first is None:
                never.setdefault(ran[seed], []).append(seed)
        for n, seeds in sorted(never.items()):
            start = scheduled[term]
            if start > n:
                why = (f"its schedule starts it at epoch {start} (warmup_constraint_epochs="
                       f"{settings.warmup_constraint_epochs}); raise --epochs to at least {start} or lower "
                       "--warmup_constraint_epochs")
            else:  # e.g. retention, which needs a peak correlation recorded in an earlier epoch
                why = f"its schedule could start it from epoch {start}, but its conditions were never met"
            lines.append(f"{term} loss was requested but inactive in all {n} epoch{'s' * (n != 1)} run "
                         f"({_seeds_text(sorted(seeds))}): {why}")
    return lines


def collapsed_epochs(results: dict, histories: Histories) -> dict[int, list[int]]:
    """Per seed, the epochs whose validation predictions collapsed: accuracy within COLLAPSE_ACC_GAP of
    the validation set's majority-class rate (from the final evaluation: the validation students are the
    same every epoch) and AUC below COLLAPSE_AUC. Seeds without a final evaluation are not judged."""
    out: dict[int, list[int]] = {}
    for seed, rows in histories.items():
        final = (results.get("per_seed", {}).get(str(seed)) or {}).get("final") or {}
        majority = _finite(final.get("val_majority_rate"))
        if majority is None:
            continue
        epochs = [int(r["epoch"]) for r in rows
                  if (acc := _finite(r.get("val_accuracy"))) is not None and abs(acc - majority) <= COLLAPSE_ACC_GAP
                  and (auc := _finite(r.get("val_auc"))) is not None and auc < COLLAPSE_AUC]
        if epochs:
            out[seed] = epochs
    return out


def _epoch_list(epochs: list[int]) -> str:
    if len(epochs) > 1 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"epochs {epochs[0]}-{epochs[-1]}"
    return ("epoch " if len(epochs) == 1 else "epochs ") + ", ".join(map(str, epochs))


def run_warnings(cfg: RunConfig | Mapping[str, Any], results: dict, histories: Histories) -> list[str]:
    """results.json `warnings` (also the README's and SEED_INFO.md's Warnings, and stdout at the end):
    requested terms that never reached full weight (config), requested terms that stayed inactive
    (history), epochs with collapsed validation predictions (history + the final majority rate), and
    each seed's final-model warnings (collapsed predictions on the final evaluation)."""
    from harness.run.workers import cpu_split_warning

    run = _typed(cfg)
    lines = partial_weight_warnings(loss_settings(run.train), run.train.training.epochs)
    split = cpu_split_warning(run.devices, run.jobs_per_device, run.threads, run.train.model)
    lines += [split] if split else []  # a launch warning about the run's own settings, kept with the run
    lines += inactive_term_warnings(run, histories)
    for seed, epochs in sorted(collapsed_epochs(results, histories).items()):
        final = results["per_seed"][str(seed)]["final"]
        lines.append(f"seed {seed}: validation predictions collapsed in {_epoch_list(epochs)} of "
                     f"{len(histories[seed])}: accuracy within {COLLAPSE_ACC_GAP} of the majority-class rate "
                     f"{final['val_majority_rate']:.4f} and AUC < {COLLAPSE_AUC}")
    for seed in run.seeds.all:
        lines += (results.get("per_seed", {}).get(str(seed)) or {}).get("warnings") or []
    return lines


def seed_notes(cfg: RunConfig | Mapping[str, Any], results: dict, histories: Histories) -> dict[int, str]:
    """SEED_INFO.md's reason column: why a seed did not finish, else what went wrong while it trained
    (collapsed predictions, requested terms that stayed inactive); empty when nothing did."""
    run = _typed(cfg)
    activity = term_activity(run, histories)
    collapsed = collapsed_epochs(results, histories)
    out: dict[int, str] = {}
    for seed in run.seeds.all:
        row = results.get("per_seed", {}).get(str(seed)) or {}
        parts = [row["reason"]] if row.get("reason") else []
        final = row.get("final") or {}
        splits = [split for split in ("val", "test") if final.get(f"{split}_predictions_collapsed")]
        if splits:
            parts.append(f"final predictions collapsed on {' and '.join(splits)} (accuracy = majority rate, AUC < 0.6)")
        if seed in collapsed:
            parts.append(f"validation predictions collapsed in {_epoch_list(collapsed[seed])}")
        idle = [term for term, per_seed in activity.items() if seed in per_seed and per_seed[seed] is None]
        if idle:
            parts.append(f"{', '.join(idle)} loss{'es' * (len(idle) > 1)} requested but inactive in all "
                         f"{len(histories[seed])} epochs")
        out[seed] = "; ".join(parts)
    return out


def ablation_line(cfg: RunConfig | Mapping[str, Any], histories: Histories) -> str:
    """The README's ablation line: the mode, the terms it requests, and which of them actually acted
    (were non-zero in the training objective) and from which epoch, per the seeds' histories."""
    run = _typed(cfg)
    mode = run.experiment.ablation_mode
    activity = term_activity(run, histories)
    if not activity:
        return f"{mode} (no alignment, lag or retention term requested)"
    head = f"{mode} (requested: {', '.join(activity)}"
    ran = _epochs_run(histories)
    if not ran:
        return head + "; no epoch finished)"
    acted, idle = [], []
    for term, per_seed in activity.items():
        firsts = {f for f in per_seed.values() if f is not None}
        if not firsts:
            idle.append(term)
        elif len(set(per_seed.values())) == 1:
            acted.append(f"{term} from epoch {firsts.pop()}")
        else:
            acted.append(f"{term} from " + ", ".join(
                f"{'never' if f is None else f'epoch {f}'} (seed {s})" for s, f in sorted(per_seed.items())))
    n = sorted(set(ran.values()))
    epochs = f"{n[0]} epoch{'s' * (n[0] != 1)}" if len(n) == 1 else f"{n[0]}-{n[-1]} epochs"
    parts = []
    if acted:
        parts.append("active: " + "; ".join(acted))
    if idle:
        parts.append(f"inactive in all {epochs} run: {', '.join(idle)}")
    return f"{head}; " + "; ".join(parts) + ")"


def histories_of(seeds: list[int], rows: Mapping[int, Mapping[int, dict]],
                 trajectories: Mapping[int, list[dict]] | None = None) -> dict[int, list[dict]]:
    """Per seed, its epochs in order: the metrics_epoch.csv row, with the keys of the same epoch's
    semantic-trajectory entry that the row lacks (the schedule's state). Seeds without rows left out."""
    out: dict[int, list[dict]] = {}
    for s in seeds:
        if not rows.get(s):
            continue
        epochs = sorted(rows[s])
        listed = [e for e in (trajectories or {}).get(s) or [] if isinstance(e.get("epoch"), int)]
        if len(listed) == len(epochs):  # one entry per epoch, in order (how training appends them)
            entries = dict(zip(epochs, listed, strict=True))
        else:  # trajectories written before the entry's epoch was made 1-based count from 0
            shift = 1 if listed and min(e["epoch"] for e in listed) == 0 else 0
            entries = {e["epoch"] + shift: e for e in listed}
        out[s] = [{**entries.get(int(e), {}), **rows[s][e]} for e in epochs]
    return out


def build_results(cfg: RunConfig | Mapping[str, Any], outcomes: dict[int, dict],
                  histories: Histories | None = None) -> dict[str, Any]:
    """results.json: per-seed best metrics, the primary seed's at the top level (guide keys), and the
    run's warnings (`run_warnings` of the seeds' histories; without them, the seeds' model warnings)."""
    run = _typed(cfg)
    seeds = run.seeds.all
    per_seed: dict[str, Any] = {}
    for seed in seeds:
        out = outcomes.get(seed)
        if out is None:
            per_seed[str(seed)] = {"seed": seed, "status": "not_run", "reason": "interrupted before it ran"}
        elif "result" in out:
            per_seed[str(seed)] = seed_summary(out["result"])
        elif "previous" in out:  # finished in an earlier invocation (--resume)
            per_seed[str(seed)] = out["previous"]
        else:
            # failed, not_run (its worker died first) or interrupted (Ctrl-C/SIGTERM mid-training)
            per_seed[str(seed)] = {"seed": seed, "status": out.get("status", "failed"), "reason": out.get("reason")}
    primary = per_seed[str(seeds[0])]
    unfinished = [s for s in seeds if per_seed[str(s)]["status"] in ("failed", "not_run", "interrupted")]
    failed = [s for s in unfinished if per_seed[str(s)]["status"] == "failed"]
    results = {
        "schema_version": run.schema_version,
        "config_md5": run.config_md5,
        "seeds": seeds,
        "primary_seed": seeds[0],
        "multi_seed": len(seeds) > 1,
        "status": "completed" if not unfinished else ("failed" if len(unfinished) == len(seeds) else "partial"),
        "failed_seeds": failed,  # seeds that failed; interrupted and never-run seeds are only unfinished
        "unfinished_seeds": unfinished,
        # The guide's top-level keys, from the primary seed. best_mastery_corr/best_gain_corr are
        # the best model's correlations over all validation students (the reference stored final
        # values under these names; ours are measured on the best checkpoint).
        "best_epoch": primary.get("best_epoch"),
        "best_epoch_auc": primary.get("best_val_auc"),
        "best_mastery_corr": _val_all(primary, "mastery_correlation"),
        "best_gain_corr": _val_all(primary, "gain_correlation"),
        "test_auc": primary.get("test_auc"),
        "test_window_auc": primary.get("test_window_auc"),
        "per_seed": per_seed,
        "warnings": [w for s in seeds for w in per_seed[str(s)].get("warnings") or []],
        "intervals": INTERVALS,
    }
    if histories is not None:
        results["warnings"] = run_warnings(run, results, histories)
    return results


# How every *_ci_low/*_ci_high of a mean over students was computed (docs/metrics.md).
INTERVALS = {
    "method": "bootstrap over students, scipy.stats.bootstrap BCa",
    "confidence": CONFIDENCE,
    "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    "bootstrap_seed": BOOTSTRAP_SEED,
    "time_control": f"polynomial of degree {TIME_CONTROL_DEGREE} in the within-window step index "
                    "(student_view_*: in the step of the whole student)",
}


def _val_all(row: dict, name: str) -> Any:
    """``{name}_val_all``, or ``name`` in a seed block written before the rename (--resume)."""
    return row.get(f"{name}_val_all", row.get(name))


def stats(values: list[float]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def build_multi_seed(results: dict) -> dict[str, Any]:
    """results_multi_seed.json: mean/std(population)/min/max per metric and per-seed rows."""
    rows = [r for r in results["per_seed"].values() if r["status"] not in ("failed", "not_run", "interrupted")]
    return {
        "config_md5": results["config_md5"],
        "seeds": results["seeds"],
        "completed_seeds": [r["seed"] for r in rows],
        "stats": {m: stats([r.get(m) for r in rows]) for m in SUMMARY_METRICS},
        "per_seed": [{"seed": r["seed"], **{m: r.get(m) for m in SUMMARY_METRICS}} for r in rows],
    }


def _fmt(v: Any, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def aggregate_table(multi: dict) -> str:
    lines = ["| Metric | Mean | Std | Min | Max | n |", "|---|---|---|---|---|---|"]
    for metric, s in multi["stats"].items():
        if s["n"]:
            std = _fmt(s["std"]) if s["n"] > 1 else "n/a (n=1)"  # no spread over one value
            lines.append(f"| {metric} | {_fmt(s['mean'])} | {std} | {_fmt(s['min'])} | "
                         f"{_fmt(s['max'])} | {s['n']} |")
    return "\n".join(lines)


def seed_info_md(cfg: RunConfig | Mapping[str, Any], results: dict, seed_devices: dict[int, str],
                 gpu_names: dict[str, str], histories: Histories | None = None) -> str:
    """SEED_INFO.md: seeds, devices, each seed's status and what went wrong (reason column), the run's
    warnings and the aggregates."""
    notes = seed_notes(cfg, results, histories or {})
    multi = build_multi_seed(results)
    lines = [f"# Seeds of {_typed(cfg).experiment.id}", "", f"Primary seed: {results['primary_seed']}",
             f"All seeds: {results['seeds']}", "", "## Seed to device", "",
             "| Seed | Device | GPU | Status | Best epoch | Best val AUC | Test AUC | Reason |",
             "|---|---|---|---|---|---|---|---|"]
    for seed in results["seeds"]:
        r = results["per_seed"][str(seed)]
        dev = seed_devices.get(seed, "?")
        lines.append(f"| {seed} | {dev} | {gpu_names.get(dev.split()[0], '-')} | {r['status']} | {_fmt(r.get('best_epoch'))} "
                     f"| {_fmt(r.get('best_val_auc'))} | {_fmt(r.get('test_auc'))} | {notes.get(seed, '')} |")
    lines += ["", *warnings_md(results), "## Aggregates across completed seeds", "", aggregate_table(multi), ""]
    return "\n".join(lines)


SCENARIOS = """## Parameter Scenario Quick Reference

| Scenario | Goal | Key flags |
|---|---|---|
| Baseline | balanced performance + interpretability | `--ablation_mode both_lag` |
| Performance focus | maximise raw AUC | `--ablation_mode none` |
| Interpretability max | strong semantic signals | raise `--alignment_weight`, `--retention_weight`, `--lag_gain_weight` |
| Deterministic reference | audit-grade reproducibility | `--no_amp --torch_deterministic` |
| Fast sanity | environment check | `--epochs 3 --seeds 21` |
| High sparsity | feature compression | `--sparsity_loss_weight 0.35` |
| Extended warm-up | delay constraint pressure | `--warmup_constraint_epochs 12` |
| Alignment only | interpretability emphasis | `--ablation_mode alignment_only` |

Full parameter tables: `docs/` and the launch guide (§3, §5).
"""


# README rows: (final-key stem, label, guide metric?)
README_METRICS = (
    ("mastery_correlation", "mastery", "corr(mean mastery over all concepts at t, correct at t+1)", True),
    ("gain_correlation", "gain", "corr(mean gain over all concepts at t, correct at t+1)", True),
    ("qmastery_correlation", "qmastery", "corr(mastery of the concept asked at t+1, correct at t+1)", False),
    ("qmastery_partial_correlation", "qmastery_partial", "same, step index in the window partialled out", False),
    ("qmastery_auc_student", "qmastery_auc_student", "AUC of that mastery for correct at t+1, per student", False),
    ("qmastery_auc_pooled", None, "AUC of that mastery for correct at t+1, all positions pooled", False),
    ("qgain_correlation", "qgain", "corr(gain of the practised concept, next correct on it)", False),
    ("qgain_partial_correlation", "qgain_partial", "same, step index in the window partialled out", False),
    ("true_mastery_correlation", "true_mastery", "simulator: corr(mastery of asked concept, its true mastery)",
     False),
    ("true_mean_mastery_correlation", "true_mean_mastery",
     "simulator: corr(mean mastery over concepts, true mastery of asked concept)", False),
    ("monotonicity_violation_rate", None, "students whose mean mastery drops inside a window", True),
    ("monotonicity_violation_rate_whole_student", None, "students whose mean mastery drops anywhere, "
     "window boundaries included", False),
    ("boundary_drop_mean", None, "mean drop of mean mastery across a window boundary", False),
    ("mastery_saturated_share", None, "asked-concept mastery values at the clamp (>= 1 - 1e-6), window view", False),
    ("true_mastery_saturated_share", None, "simulator: true asked-concept mastery values >= 1 - 1e-6", False),
    ("student_view_qmastery_correlation", "student_view_qmastery", "student view (mastery carried across window "
     "boundaries): corr(mastery of the concept asked at t+1, correct at t+1)", False),
    ("student_view_qmastery_partial_correlation", "student_view_qmastery_partial",
     "same, step in the whole student partialled out", False),
    ("student_view_true_mastery_correlation", "student_view_true_mastery",
     "simulator, student view: corr(mastery of asked concept, its true mastery)", False),
    ("student_view_mastery_saturated_share", None, "student view: asked-concept mastery values at the clamp", False),
)


def _with_ci(final: dict, split: str, value: str, stem: str | None) -> str:
    v = final.get(f"{split}_{value}")
    if v is None:
        return "n/a"
    if stem is None:
        return _fmt(v, 4)
    low, high, n = (final.get(f"{split}_{stem}_{k}") for k in ("ci_low", "ci_high", "n"))
    return f"{_fmt(v, 4)} [{_fmt(low, 4)}, {_fmt(high, 4)}] n={n}"


def interpretability_md(results: dict) -> list[str]:
    """The primary seed's interpretability metrics over all validation and test students."""
    primary = results["per_seed"][str(results["primary_seed"])]
    final = primary.get("final") or {}
    if final.get("val_mastery_correlation") is None and final.get("val_qmastery_correlation") is None:
        return []
    lines = ["## Interpretability metrics", "",
             f"Seed {results['primary_seed']}, best model, every validation / test student. Means over students "
             "with a 95% bootstrap interval over students [low, high] and n students; guide = the launch "
             "guide's metric under its guide name. Definitions, populations and intervals: `docs/metrics.md` "
             "in the harness repository.", "",
             "| Metric | Guide | Measures | Validation (all) | Test (all) |", "|---|---|---|---|---|"]
    for value, stem, what, guide in README_METRICS:
        if final.get(f"val_{value}") is None and final.get(f"test_{value}") is None:
            continue
        lines.append(f"| {value} | {'yes' if guide else ''} | {what} | {_with_ci(final, 'val', value, stem)} | "
                     f"{_with_ci(final, 'test', value, stem)} |")
    return [*lines, ""]


def warnings_md(results: dict) -> list[str]:
    if not results.get("warnings"):
        return []
    return ["## Warnings", "", *(f"- {w}" for w in results["warnings"]), ""]


def readme_md(cfg: RunConfig | Mapping[str, Any], results: dict, checklist: list[Any], command: str,
              histories: Histories | None = None) -> str:
    """The run's README; `checklist` holds harness.audit.checks.Check items (name, passed, reason);
    the ablation line says which requested terms acted, per the seeds' `histories`."""
    run = _typed(cfg)
    exp = run.experiment
    multi = build_multi_seed(results)
    lines = [
        f"# Experiment {exp.id}", "",
        f"- Model: {exp.model}",
        f"- Short title: {exp.short_title}",
        f"- Purpose: {exp.purpose}",
        f"- Log tag (experiment_suffix): `{exp.experiment_suffix}_s<seed>`",
        f"- Ablation mode: {ablation_line(run, histories or {})}",
        f"- Schema version: {run.schema_version}",
        f"- config_md5: `{run.config_md5}`",
        f"- Dataset: {run.train.data.dataset} (sha256 `{run.data_checksum['sha256']}`)",
        f"- Status: {results['status']}", "",
        "## Run summary", "",
        aggregate_table(multi), "",
        *warnings_md(results),
        *interpretability_md(results),
        "## Reproducibility Checklist", "",
        "Computed from the folder when the run finished (`harness verify` re-checks it).", "",
        "| Check | Result | Detail |", "|---|---|---|",
    ]
    for check in checklist:
        lines.append(f"| {check.name} | {'✅' if check.passed else '❌'} | {check.reason} |")
    lines += ["", "## Reproduce", "", "Re-run with the same parameters (same config_md5):", "",
              f"    harness reproduce {exp.id} --output_base <folder holding this experiment>", "",
              "Original command:", "", f"    {command}", ""]
    repro = run.reproduction
    if repro:
        lines += ["## Reproduction Metadata", "", "| Field | Value |", "|---|---|"]
        for k in ("source_experiment", "source_config_md5", "source_schema_version", "override_count"):
            lines.append(f"| {k} | {repro.get(k)} |")
        lines.append(f"| new_config_md5 | {run.config_md5} |")
        lines.append("")
    lines.append(SCENARIOS)
    return "\n".join(lines)


def write_trajectory(exp_dir: Path, seed: int, entries: list[dict]) -> None:
    atomic_write_json(exp_dir / "artifacts" / f"semantic_trajectory_seed{seed}.json",
                      {"seed": seed, "trajectory": entries})


def write_head_stats(exp_dir: Path, seed: int, entries: list[dict]) -> None:
    stats_rows = [{"epoch": e["epoch"], **e["head_stats"]} for e in entries if "head_stats" in e]
    if stats_rows:
        atomic_write_json(exp_dir / "artifacts" / f"head_stats_seed{seed}.json", {"seed": seed, "epochs": stats_rows})


def write_rng(exp_dir: Path, seed: int, result: dict | None, determinism: dict) -> None:
    atomic_write_json(exp_dir / "artifacts" / f"rng_seed{seed}.json", {
        "seed": seed,
        "seeded": ["python.random", "numpy.random", "torch (CPU)", "torch.cuda (all devices)",
                   "batch order torch.Generator"],
        "final_state": (result or {}).get("rng_final"),
        "determinism": determinism,
    })


def write_timings(exp_dir: Path, seed: int, result: dict | None) -> None:
    """artifacts/timings_seed<N>.json: wall times of the seed (kept out of results.json, see the module doc)."""
    if not result:
        return
    atomic_write_json(exp_dir / "artifacts" / f"timings_seed{seed}.json", {
        "seed": seed,
        "seconds_per_epoch_mean": result.get("seconds_per_epoch"),
        "epoch_seconds": [row.get("epoch_seconds") for row in result.get("history", [])],
        "final_eval_seconds": result.get("eval_seconds") or {},
        "compile": result.get("compile"),  # training.compile: shapes compiled and their first-call seconds
    })


def write_results(exp_dir: Path, results: dict) -> None:
    atomic_write_json(exp_dir / "results.json", results)
    if results["multi_seed"]:
        atomic_write_json(exp_dir / "results_multi_seed.json", build_multi_seed(results))


def write_text(exp_dir: Path, name: str, text: str) -> None:
    atomic_write_text(exp_dir / name, text)


__all__ = ["dumps_json"]
