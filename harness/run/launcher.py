"""The engine behind `harness run` and `examples/train_gainakt2exp_repro.py`.

`prepare_run` resolves parameters into a config and creates the folder; `execute_experiment`
trains every seed of a prepared folder and writes all artifacts (this is also what runs inside the
training container and what `--resume` calls again).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cli.flags import command_line, explicit_params
from harness.config.build import (
    ConfigError,
    apply_overrides,
    build_config,
    config_md5,
    dedupe_seeds,
    default_params,
    load_config_file,
    missing_params,
    ordered,
    params_from_file,
)
from harness.folder import artifacts
from harness.folder.checkpoints import checkpoint_name, load_checkpoint
from harness.folder.experiment import (
    ExperimentError,
    FolderLock,
    atomic_write_json,
    atomic_write_text,
    create_experiment_dir,
    read_json,
    write_manifest,
)
from harness.run.datasets import checksum_section, load_from_params
from harness.run.environment import capture, render
from harness.run.runlog import RunLog
from harness.run.workers import assign_seeds, run_workers, seed_device_map


class LaunchError(RuntimeError):
    """A launch that cannot proceed; one line for the user."""


@dataclass
class ResolvedRun:
    params: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str]
    notes: list[str]


def resolve_run(ns: argparse.Namespace, title: str, *, base_params: dict[str, Any] | None = None) -> ResolvedRun:
    """Parameters from defaults < --from_config < base_params (a reproduced source) < flags < --set."""
    params = default_params()
    params["seeds_list"] = [42]
    notes: list[str] = []
    if getattr(ns, "from_config", None):
        params.update(params_from_file(load_config_file(ns.from_config), ns.from_config))
    if base_params:
        params.update(copy.deepcopy(base_params))
    params.update(explicit_params(ns))
    if getattr(ns, "seeds", None) is not None:
        params["seeds_list"] = list(ns.seeds)
    elif getattr(ns, "seed", None) is not None:
        params["seeds_list"] = [ns.seed]
    seeds = list(params["seeds_list"])
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    unique = dedupe_seeds(seeds)
    if unique != seeds:
        notes.append(f"duplicate seeds removed (order kept): {seeds} -> {unique}")
    params["seeds_list"] = unique
    params["experiment_suffix"] = params["experiment_suffix"] or title
    first = build_config(params, title=title)
    overrides = apply_overrides(params, first, getattr(ns, "sets", []) or [], getattr(ns, "unsets", []) or [])
    cfg = build_config(params, title=title)
    return ResolvedRun(params=params, config=cfg, overrides=overrides, notes=notes)


def resolve_devices(requested: list[str]) -> list[str]:
    """`cpu`, `auto` (every visible GPU, else CPU) or host GPU indices checked against what exists."""
    items = [str(d).strip().lower() for d in requested]
    if items == ["cpu"]:
        return ["cpu"]
    count = _gpu_count()
    if items == ["auto"]:
        return [str(i) for i in range(count)] or ["cpu"]
    if items.count("cpu") > 1:
        raise LaunchError(f"--devices {' '.join(requested)}: the CPU is one device; use --jobs_per_device N "
                          "to train several seeds on it at once")
    if "cpu" in items or "auto" in items:
        raise LaunchError(f"--devices {' '.join(requested)}: use 'cpu', 'auto' or GPU indices, not a mix")
    bad = [d for d in items if not d.isdigit()]
    if bad:
        raise LaunchError(f"--devices: {bad[0]!r} is not a GPU index (use 'cpu', 'auto' or numbers)")
    if count == 0:
        raise LaunchError(f"--devices {' '.join(items)} asks for GPUs but no GPU is present; "
                          "use --devices cpu (or auto)")
    missing = [d for d in items if int(d) >= count]
    if missing:
        raise LaunchError(f"--devices: GPU {missing[0]} does not exist (this machine has {count}: "
                          f"0..{count - 1})")
    return list(dict.fromkeys(items))


def _gpu_count() -> int:
    try:
        from harness.run.gpu import gpu_inventory

        inv = gpu_inventory()
        if inv.get("gpus"):
            return len(inv["gpus"])
    except Exception:  # noqa: BLE001 - fall back to torch's view
        pass
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def prepare_run(resolved: ResolvedRun, ns: argparse.Namespace, *, reproduction: dict | None = None,
                runtime: str = "local") -> Path:
    """Load the data, create the folder and write config.json + overrides_applied.txt."""
    cfg = resolved.config
    data_dir = getattr(ns, "data_dir", None)
    try:
        dataset = load_from_params(cfg["data"], data_dir)
    except Exception as exc:  # noqa: BLE001 - DatasetError or unexpected: one line
        raise LaunchError(str(exc)) from None
    devices = resolve_devices(resolved.params["devices"])
    threads = max(1, min(int(resolved.params["threads"]), os.cpu_count() or 1))
    resolved.params["threads"] = threads  # the cap is part of the resolved value
    if int(resolved.params.get("jobs_per_device", 1)) < 1:
        raise LaunchError(f"--jobs_per_device must be at least 1, got {resolved.params['jobs_per_device']}")
    requested_devices = resolved.params["devices"]
    resolved.params["devices"] = devices  # 'auto' resolved to what this machine has
    base = Path(ns.output_base) if getattr(ns, "output_base", None) else Path("examples/experiments")
    exp_dir = create_experiment_dir(base, cfg["experiment"]["short_title"],
                                    experiment_dir=getattr(ns, "experiment_dir", None),
                                    force=getattr(ns, "force", False))
    cfg["experiment"]["id"] = exp_dir.name
    cfg["data_checksum"] = checksum_section(dataset)
    cfg["paths"] = {"output_dir": str(exp_dir.resolve()),
                    "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    cfg["runtime"].update({
        "command": command_line(),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "devices": devices,
        "devices_requested": requested_devices,
        "threads": threads,
        "runtime": runtime,
        "resume": None,
    })
    if reproduction is not None:
        cfg["reproduction"] = reproduction
    cfg["missing_params"] = missing_params(resolved.params, cfg)
    if cfg["missing_params"]:
        raise LaunchError(f"config serialisation lost parameters: {cfg['missing_params']} (this is a bug)")
    cfg["config_md5"] = config_md5(cfg)
    atomic_write_json(exp_dir / "config.json", ordered(cfg))
    atomic_write_text(exp_dir / "overrides_applied.txt", overrides_text(cfg, resolved.overrides))
    return exp_dir


def overrides_text(cfg: dict, overrides: list[str]) -> str:
    lines = [f"experiment_id: {cfg['experiment']['id']}", f"override_count: {len(overrides)}"]
    lines += [f"override: {line}" for line in overrides]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Execution


def execute_experiment(exp_dir: Path, *, data_dir: str | None = None, resume: bool = False,
                       quiet: bool = False, seed_runner: Any = None) -> int:
    """Train every seed of a prepared folder and write its artifacts. Exit code 0 if all seeds finished.

    `seed_runner` (default `run_workers`) trains the plans; a sweep passes one that shares device
    slots (or a Ray cluster) between the experiments it runs at once.
    """
    cfg = read_json(exp_dir / "config.json")
    with FolderLock(exp_dir):
        return _execute_locked(exp_dir, cfg, data_dir=data_dir, resume=resume, quiet=quiet,
                               seed_runner=seed_runner or run_workers)


def _execute_locked(exp_dir: Path, cfg: dict, *, data_dir: str | None, resume: bool, quiet: bool,
                    seed_runner: Any = run_workers) -> int:
    from harness.run.progress import Progress

    log = RunLog(exp_dir / "stdout.log", quiet=quiet)
    seeds = cfg["seeds"]["all"]
    devices = cfg["runtime"]["devices"]  # host view, for the records
    # Inside a container the GPUs are renumbered 0..n-1; the host says how (docker_run.py).
    run_devices = json.loads(os.environ.get("HARNESS_INSIDE_DEVICES", "null")) or devices
    runtime = os.environ.get("HARNESS_RUNTIME", cfg["runtime"].get("runtime", "local"))
    jobs_per_device = int(cfg["runtime"].get("jobs_per_device", 1))  # absent in older configs
    seed_devices = seed_device_map(seeds, devices, jobs_per_device)
    done: set[int] = set()
    if resume:
        done = finished_seeds(exp_dir, cfg)
        log.info(f"resuming {cfg['experiment']['id']}: finished seeds {sorted(done) or 'none'} are kept")
    log.info(f"experiment {cfg['experiment']['id']} config_md5 {cfg['config_md5']}")
    log.info(f"seeds {seeds} on devices {devices}: " + ", ".join(f"{s}->{d}" for s, d in seed_devices.items()))
    pairs = capture(runtime=runtime, dataset=cfg["data_checksum"], seed_devices=seed_devices,
                    determinism={"torch_deterministic": cfg["determinism"]["torch_deterministic"]})
    atomic_write_text(exp_dir / "environment.txt", render(pairs))
    atomic_write_json(exp_dir / "run_status.json", {"status": "running"})

    rows = existing_rows(exp_dir) if resume else {}
    trajectories: dict[int, list[dict]] = {s: [] for s in seeds}
    outcomes: dict[int, dict] = {s: previous_outcome(exp_dir, s) for s in done}
    for s in done:
        traj = exp_dir / "artifacts" / f"semantic_trajectory_seed{s}.json"
        if traj.is_file():
            trajectories[s] = read_json(traj)["trajectory"]
    todo = [s for s in seeds if s not in done]
    progress = Progress(todo, cfg["training"]["epochs"], enabled=not quiet)

    def on_event(kind: str, seed: int, payload: Any) -> None:
        if kind == "log":
            log.info(payload)
        elif kind == "epoch":
            rows.setdefault(seed, {})[payload["epoch"]] = payload
            write_metrics(exp_dir, seeds, rows)
            progress.epoch(seed, payload)
        elif kind == "trajectory":
            trajectories[seed].append(payload)
            artifacts.write_trajectory(exp_dir, seed, trajectories[seed])
        elif kind == "failed":
            log.error(f"seed {seed} failed: {payload}")
            progress.finish(seed, "failed")
        elif kind == "result":
            progress.finish(seed, payload["status"])

    interrupted = False
    if todo:
        threads = int(cfg["runtime"].get("threads", 1))
        plans = assign_seeds(seeds, run_devices, jobs_per_device, threads)
        for p in plans:
            p.seeds = [s for s in p.seeds if s in todo]
        plans = [p for p in plans if p.seeds]
        try:
            with progress:
                outcomes.update(seed_runner(plans, exp_dir, data_dir, threads, resume, on_event))
        except KeyboardInterrupt:
            interrupted = True
            log.error("interrupted (Ctrl-C): workers stopped; resume with --resume "
                      f"{cfg['experiment']['id']}")
    for seed, out in outcomes.items():
        result = out.get("result")
        if result:  # the worker's history is complete (it includes epochs before a resume)
            rows[seed] = {r["epoch"]: r for r in result["history"]}
            trajectories[seed] = result["trajectory"]
    write_metrics(exp_dir, seeds, rows)
    results = artifacts.build_results(cfg, outcomes)
    if interrupted:
        results["status"] = "interrupted"
    finish_folder(exp_dir, cfg, results, outcomes, trajectories, seed_devices, pairs, rows)
    status = results["status"]
    atomic_write_json(exp_dir / "run_status.json", {"status": status, "failed_seeds": results["failed_seeds"]})
    log.info(f"status: {status}" + (f"; failed seeds {results['failed_seeds']}" if results["failed_seeds"] else ""))
    from harness.folder.summary import print_summary

    if not quiet:
        print_summary(results, cfg["experiment"]["id"])
    log.close()
    write_manifest(exp_dir)
    if interrupted:
        return 130
    return 0 if status == "completed" else 1


def finish_folder(exp_dir: Path, cfg: dict, results: dict, outcomes: dict[int, dict],
                  trajectories: dict[int, list[dict]], seed_devices: dict[int, str],
                  env_pairs: list[tuple[str, str]], rows: dict[int, dict[int, dict]]) -> None:
    """results*.json, SEED_INFO.md, README.md, per-seed artifacts and plots."""
    histories = {s: [rows[s][e] for e in sorted(rows[s])] for s in cfg["seeds"]["all"] if rows.get(s)}
    examples = {s: o["result"].get("examples") for s, o in outcomes.items() if o.get("result")}
    artifacts.write_results(exp_dir, results)
    for seed in cfg["seeds"]["all"]:
        out = outcomes.get(seed, {})
        result = out.get("result")
        if trajectories.get(seed):
            artifacts.write_trajectory(exp_dir, seed, trajectories[seed])
            artifacts.write_head_stats(exp_dir, seed, trajectories[seed])
        artifacts.write_rng(exp_dir, seed, result, (result or {}).get("determinism", {}))
    gpu_names = {k[3:]: v.split(" | ")[0] for k, v in env_pairs if k.startswith("gpu") and k[3:].isdigit()}
    atomic_write_text(exp_dir / "SEED_INFO.md", artifacts.seed_info_md(cfg, results, seed_devices, gpu_names))
    from harness.folder.plots import write_plots

    write_plots(exp_dir, histories, trajectories, examples)
    checklist = run_checklist(exp_dir, cfg, results)
    atomic_write_text(exp_dir / "README.md", artifacts.readme_md(cfg, results, checklist, cfg["runtime"]["command"]))


def run_checklist(exp_dir: Path, cfg: dict, results: dict) -> list[tuple[str, bool, str]]:
    """Real checks of the finished folder, for the README."""
    from harness.config.build import config_md5 as recompute

    checks: list[tuple[str, bool, str]] = []
    checks.append(("schema_version known", cfg.get("schema_version") in (2, 3), f"{cfg.get('schema_version')}"))
    checks.append(("missing_params empty", cfg.get("missing_params") == [], str(cfg.get("missing_params"))))
    md5 = recompute(cfg)
    checks.append(("config_md5 recomputes", md5 == cfg.get("config_md5"), md5))
    checks.append(("dataset checksum recorded", bool(cfg["data_checksum"].get("sha256")),
                   str(cfg["data_checksum"].get("sha256"))[:16] + "…"))
    env = (exp_dir / "environment.txt").read_text() if (exp_dir / "environment.txt").is_file() else ""
    commit = next((line.split(": ", 1)[1] for line in env.splitlines() if line.startswith("git_commit: ")), "")
    checks.append(("git commit recorded", bool(commit) and not commit.startswith("unknown"), commit or "missing"))
    dirty = next((line.split(": ", 1)[1] for line in env.splitlines() if line.startswith("git_dirty: ")), "unknown")
    checks.append(("code tree clean", dirty == "false", f"git_dirty={dirty}"))
    multi = len(cfg["seeds"]["all"]) > 1
    for seed in cfg["seeds"]["all"]:
        r = results["per_seed"][str(seed)]
        checks.append((f"seed {seed} finished", r["status"] in ("completed", "early_stopped"),
                       r["status"] + (f" ({r.get('reason')})" if r.get("reason") else "")))
        for kind in ("best", "last"):
            path = exp_dir / checkpoint_name(kind, seed, multi)
            ok, detail = False, "missing"
            if path.is_file():
                try:
                    state = load_checkpoint(path)
                    ok = state.get("seed") == seed
                    detail = f"epoch {state['epoch'] + 1}, loads with weights_only"
                except Exception as exc:  # noqa: BLE001
                    detail = f"does not load: {type(exc).__name__}"
            checks.append((f"{path.name} loads", ok, detail))
    checks.append(("deterministic algorithms", bool(cfg["determinism"]["torch_deterministic"]),
                   "on" if cfg["determinism"]["torch_deterministic"] else "off (--torch_deterministic for audits)"))
    amp = cfg["training"]["mixed_precision"]
    checks.append(("AMP off (bit-level reproducibility)", not amp, "AMP on: tolerance-level reproducibility"
                   if amp else "fp32"))
    return checks


def finished_seeds(exp_dir: Path, cfg: dict) -> set[int]:
    """Seeds whose results are already in results.json (completed or early-stopped)."""
    path = exp_dir / "results.json"
    if not path.is_file():
        return set()
    res = read_json(path)
    return {int(s) for s, r in res.get("per_seed", {}).items() if r.get("status") in ("completed", "early_stopped")}


def previous_outcome(exp_dir: Path, seed: int) -> dict:
    """A finished seed's outcome rebuilt from results.json and its trajectory (for --resume)."""
    res = read_json(exp_dir / "results.json")
    return {"status": res["per_seed"][str(seed)]["status"], "previous": res["per_seed"][str(seed)]}


def existing_rows(exp_dir: Path) -> dict[int, dict[int, dict]]:
    path = exp_dir / "metrics_epoch.csv"
    rows: dict[int, dict[int, dict]] = {}
    if not path.is_file():
        return rows
    with path.open() as fh:
        for row in csv.DictReader(fh):
            parsed = {k: _num(v) for k, v in row.items()}
            rows.setdefault(int(parsed["seed"]), {})[int(parsed["epoch"])] = parsed
    return rows


def _num(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def write_metrics(exp_dir: Path, seeds: list[int], rows: dict[int, dict[int, dict]]) -> None:
    ordered_rows = [rows[s][e] for s in seeds if s in rows for e in sorted(rows[s])]
    atomic_write_text(exp_dir / "metrics_epoch.csv", artifacts.render_metrics_csv(ordered_rows))


__all__ = ["ExperimentError", "LaunchError", "resolve_run", "prepare_run", "execute_experiment"]
