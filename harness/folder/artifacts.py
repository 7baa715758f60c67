"""The files of an experiment folder, built from the seeds' results.

results.json holds no timestamps, timings or devices, so identical runs give identical bytes.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from gainakt.train import EPOCH_COLUMNS
from harness.folder.experiment import atomic_write_json, atomic_write_text, dumps_json

# Aggregated across seeds in results_multi_seed.json and SEED_INFO.md / README.md.
SUMMARY_METRICS = (
    "best_val_auc", "best_epoch", "val_accuracy", "mastery_correlation", "gain_correlation",
    "test_auc", "test_accuracy", "test_window_auc", "test_mastery_correlation", "test_gain_correlation",
    "true_mastery_correlation",
)

REQUIRED_FILES = ("config.json", "environment.txt", "stdout.log", "metrics_epoch.csv", "results.json",
                  "SEED_INFO.md", "README.md", "overrides_applied.txt")


def render_metrics_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPOCH_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in EPOCH_COLUMNS})
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return repr(v) if isinstance(v, float) else v


def seed_summary(result: dict) -> dict[str, Any]:
    """The per-seed block of results.json: best-epoch validation and final best-model metrics."""
    final = result.get("final", {})
    best = result.get("best", {})
    return {
        "seed": result["seed"],
        "status": result["status"],
        "reason": result.get("reason"),
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "best_val_auc": result["best_val_auc"],
        "best_epoch_metrics": {k: best.get(k) for k in EPOCH_COLUMNS if k not in ("seed", "epoch_seconds")},
        "val_accuracy": final.get("val_accuracy"),
        "mastery_correlation": final.get("val_mastery_correlation"),
        "gain_correlation": final.get("val_gain_correlation"),
        "test_auc": final.get("test_auc"),
        "test_accuracy": final.get("test_accuracy"),
        "test_window_auc": final.get("test_window_auc"),
        "test_mastery_correlation": final.get("test_mastery_correlation"),
        "test_gain_correlation": final.get("test_gain_correlation"),
        "true_mastery_correlation": final.get("val_true_mastery_correlation"),
        "final": final,
        "amp": result.get("amp"),
    }


def build_results(cfg: dict, outcomes: dict[int, dict]) -> dict[str, Any]:
    """results.json: per-seed best metrics, the primary seed's at the top level (guide keys)."""
    seeds = cfg["seeds"]["all"]
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
            per_seed[str(seed)] = {"seed": seed, "status": "failed", "reason": out.get("reason")}
    primary = per_seed[str(seeds[0])]
    failed = [s for s in seeds if per_seed[str(s)]["status"] in ("failed", "not_run")]
    return {
        "schema_version": cfg["schema_version"],
        "config_md5": cfg["config_md5"],
        "seeds": seeds,
        "primary_seed": seeds[0],
        "multi_seed": len(seeds) > 1,
        "status": "completed" if not failed else ("failed" if len(failed) == len(seeds) else "partial"),
        "failed_seeds": failed,
        # The guide's top-level keys, from the primary seed. best_mastery_corr/best_gain_corr are
        # the best model's correlations over all validation students (the reference stored final
        # values under these names; ours are measured on the best checkpoint).
        "best_epoch": primary.get("best_epoch"),
        "best_epoch_auc": primary.get("best_val_auc"),
        "best_mastery_corr": primary.get("mastery_correlation"),
        "best_gain_corr": primary.get("gain_correlation"),
        "test_auc": primary.get("test_auc"),
        "test_window_auc": primary.get("test_window_auc"),
        "per_seed": per_seed,
    }


def stats(values: list[float]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def build_multi_seed(results: dict) -> dict[str, Any]:
    """results_multi_seed.json: mean/std(population)/min/max per metric and per-seed rows."""
    rows = [r for r in results["per_seed"].values() if r["status"] not in ("failed", "not_run")]
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
            lines.append(f"| {metric} | {_fmt(s['mean'])} | {_fmt(s['std'])} | {_fmt(s['min'])} | "
                         f"{_fmt(s['max'])} | {s['n']} |")
    return "\n".join(lines)


def seed_info_md(cfg: dict, results: dict, seed_devices: dict[int, str], gpu_names: dict[str, str]) -> str:
    multi = build_multi_seed(results)
    lines = [f"# Seeds of {cfg['experiment']['id']}", "", f"Primary seed: {results['primary_seed']}",
             f"All seeds: {results['seeds']}", "", "## Seed to device", "",
             "| Seed | Device | GPU | Status | Best epoch | Best val AUC | Test AUC | Reason |",
             "|---|---|---|---|---|---|---|---|"]
    for seed in results["seeds"]:
        r = results["per_seed"][str(seed)]
        dev = seed_devices.get(seed, "?")
        lines.append(f"| {seed} | {dev} | {gpu_names.get(dev.split()[0], '-')} | {r['status']} | {_fmt(r.get('best_epoch'))} "
                     f"| {_fmt(r.get('best_val_auc'))} | {_fmt(r.get('test_auc'))} | {r.get('reason') or ''} |")
    lines += ["", "## Aggregates across completed seeds", "", aggregate_table(multi), ""]
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


def readme_md(cfg: dict, results: dict, checklist: list[tuple[str, bool, str]], command: str) -> str:
    exp = cfg["experiment"]
    multi = build_multi_seed(results)
    lines = [
        f"# Experiment {exp['id']}", "",
        f"- Model: {exp['model']}",
        f"- Short title: {exp['short_title']}",
        f"- Purpose: {exp.get('purpose')}",
        f"- Log tag (experiment_suffix): `{exp.get('experiment_suffix')}_s<seed>`",
        f"- Ablation mode: {exp['ablation_mode']}",
        f"- Schema version: {cfg['schema_version']}",
        f"- config_md5: `{cfg['config_md5']}`",
        f"- Dataset: {cfg['data']['dataset']} (sha256 `{cfg['data_checksum']['sha256']}`)",
        f"- Status: {results['status']}", "",
        "## Run summary", "",
        aggregate_table(multi), "",
        "## Reproducibility Checklist", "",
        "Computed from the folder when the run finished (`harness verify` re-checks it).", "",
        "| Check | Result | Detail |", "|---|---|---|",
    ]
    for name, ok, detail in checklist:
        lines.append(f"| {name} | {'✅' if ok else '❌'} | {detail} |")
    lines += ["", "## Reproduce", "", "Re-run with the same parameters (same config_md5):", "",
              f"    harness reproduce {exp['id']} --output_base <folder holding this experiment>", "",
              "Original command:", "", f"    {command}", ""]
    repro = cfg.get("reproduction")
    if repro:
        lines += ["## Reproduction Metadata", "", "| Field | Value |", "|---|---|"]
        for k in ("source_experiment", "source_config_md5", "source_schema_version", "override_count"):
            lines.append(f"| {k} | {repro.get(k)} |")
        lines.append(f"| new_config_md5 | {cfg['config_md5']} |")
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


def write_results(exp_dir: Path, results: dict) -> None:
    atomic_write_json(exp_dir / "results.json", results)
    if results["multi_seed"]:
        atomic_write_json(exp_dir / "results_multi_seed.json", build_multi_seed(results))


def write_text(exp_dir: Path, name: str, text: str) -> None:
    atomic_write_text(exp_dir / name, text)


__all__ = ["dumps_json"]
