"""The engine behind `harness run` and `examples/train_gainakt2exp_repro.py`.

`prepare_run` resolves parameters into a config and creates the folder; `execute_experiment`
trains every seed of a prepared folder and writes all artifacts (this is also what runs inside the
training container and what `--resume` calls again).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gainakt.compile import compile_problem
from harness.cli.flags import command_line
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
from harness.config.launch import LaunchOptions
from harness.config.schema import RunConfig
from harness.errors import HarnessError, is_user_error
from harness.folder import artifacts, io
from harness.folder.checkpoints import check_resumable
from harness.folder.derive import (
    FINISHED,
    SESSION_END,
    SESSION_MARK,
    derive_folder,
    finalise,
    legacy_seeds,
    outcome_line,
    read_evidence,
    run_interrupted_line,
)
from harness.folder.experiment import (
    ACCEPTED,
    ATTESTATION,
    MANIFEST,
    ExperimentError,
    FolderLock,
    atomic_write_json,
    atomic_write_text,
    check_before_write,
    create_experiment_dir,
    folder_files,
    read_json,
)
from harness.run.datasets import checksum_section, load_from_params
from harness.run.environment import capture, render
from harness.run.runlog import RunLog
from harness.run.workers import assign_seeds, cpu_split_warning, run_workers, seed_device_map


class LaunchError(HarnessError, RuntimeError):
    """A launch that cannot proceed; one line for the user."""


@dataclass
class ResolvedRun:
    params: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str]
    notes: list[str]

    def run_config(self) -> RunConfig:
        """The config built so far, typed (parsed from `config`, which prepare_run still completes)."""
        return RunConfig.from_dict(self.config)


def resolve_run(options: LaunchOptions | argparse.Namespace, title: str, *,
                base_params: dict[str, Any] | None = None, base_source: str = "source config") -> ResolvedRun:
    """Parameters from defaults < --from_config < base_params (a reproduced source) < --reference_values <
    flags < --set.

    One validation path for all of them: the typed config sections check every value when the
    config is built, and an error names the flag, `--set` key or file and key it came from.
    """
    opts = LaunchOptions.from_namespace(options)
    params = default_params()
    params["seeds_list"] = [42]
    sources: dict[str, str] = {}
    notes: list[str] = []
    if opts.from_config:
        params.update(params_from_file(load_config_file(opts.from_config), opts.from_config, sources,
                                       check_values=True))
    if base_params:
        params.update(copy.deepcopy(base_params))
        sources.update({name: f"{base_source}: {name}" for name in base_params})
    if opts.reference_values:
        from gainakt.config import REFERENCE_VALUES

        params.update(REFERENCE_VALUES)
        sources.update({name: "--reference_values" for name in REFERENCE_VALUES})
    params.update(opts.explicit)
    sources.update({name: f"--{name}" for name in opts.explicit})
    if opts.seed_list is not None:
        params["seeds_list"] = opts.seed_list
        sources["seeds_list"] = "--seeds" if opts.seeds is not None else "--seed"
    params["seeds_list"] = _unique_seeds(params["seeds_list"], notes)
    params["experiment_suffix"] = params["experiment_suffix"] or title
    first = build_config(params, title=title, sources=sources)
    overrides = apply_overrides(params, first, opts.sets, opts.unsets, sources)
    cfg = build_config(params, title=title, sources=sources)
    return ResolvedRun(params=params, config=cfg, overrides=overrides, notes=notes)


def _unique_seeds(seeds: Any, notes: list[str]) -> Any:
    """Duplicate seeds removed (order kept, noted); anything but a list is left to the seeds check."""
    if not isinstance(seeds, list):
        return seeds
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    unique = dedupe_seeds(seeds)
    if unique != seeds:
        notes.append(f"duplicate seeds removed (order kept): {seeds} -> {unique}")
    return unique


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


def prepare_run(resolved: ResolvedRun, options: LaunchOptions | argparse.Namespace, *,
                reproduction: dict | None = None, runtime: str = "local",
                before_folder: Callable[[], None] | None = None) -> Path:
    """Load the data, create the folder and write config.json + overrides_applied.txt.

    `before_folder` runs once the data and devices are checked, just before the folder is created
    (a Docker run makes sure of its engine and image there): when it fails, no folder exists."""
    opts = LaunchOptions.from_namespace(options)
    cfg = resolved.config
    run = RunConfig.from_dict(cfg)
    dataset = load_from_params(run.train.data.to_dict(), opts.data_dir)
    devices = resolve_devices(resolved.params["devices"])
    threads = max(1, min(int(resolved.params["threads"]), os.cpu_count() or 1))
    resolved.params["threads"] = threads  # the cap is part of the resolved value
    if int(resolved.params.get("jobs_per_device", 1)) < 1:
        raise LaunchError(f"--jobs_per_device must be at least 1, got {resolved.params['jobs_per_device']}")
    compile_refused = compile_problem(cfg["training"]["compile"], "cpu" if devices == ["cpu"] else "cuda")
    if compile_refused:
        raise LaunchError(compile_refused)
    requested_devices = resolved.params["devices"]
    resolved.params["devices"] = devices  # 'auto' resolved to what this machine has
    amp_requested = bool(resolved.params["mixed_precision"])
    resolved.params["mixed_precision"] = amp_as_run(amp_requested, devices)
    cfg["training"]["mixed_precision"] = resolved.params["mixed_precision"]
    if before_folder is not None:
        before_folder()
    base = Path(opts.output_base) if opts.output_base else Path("examples/experiments")
    exp_dir = create_experiment_dir(base, run.experiment.short_title,
                                    experiment_dir=opts.experiment_dir, force=opts.force)
    claim_folder(exp_dir, accept_modified=opts.accept_modified)
    try:
        runtime_record = {"devices": devices, "devices_requested": requested_devices, "threads": threads,
                          "runtime": runtime, "resume": None, "mixed_precision_requested": amp_requested}
        _write_prepared(exp_dir, cfg, resolved, dataset, opts.data_dir, runtime_record, reproduction)
    except BaseException:
        release_folder(exp_dir)
        raise
    return exp_dir


def _write_prepared(exp_dir: Path, cfg: dict, resolved: ResolvedRun, dataset: Any, data_dir: str | None,
                    runtime_record: dict[str, Any], reproduction: dict | None) -> None:
    cfg["experiment"]["id"] = exp_dir.name
    cfg["data_checksum"] = checksum_section(dataset)
    cfg["paths"] = {"output_dir": str(exp_dir.resolve()),
                    "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    cfg["runtime"].update({
        "command": command_line(),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        **runtime_record,
    })
    if reproduction is not None:
        cfg["reproduction"] = reproduction
    cfg["missing_params"] = missing_params(resolved.params, cfg)
    if cfg["missing_params"]:
        raise RuntimeError(f"config serialisation lost parameters: {cfg['missing_params']} (this is a bug)")
    cfg["config_md5"] = config_md5(cfg)
    atomic_write_json(exp_dir / "config.json", ordered(cfg))
    atomic_write_text(exp_dir / "overrides_applied.txt", overrides_text(exp_dir.name, resolved.overrides))


# ---------------------------------------------------------------------------------------------
# Folder ownership: the lock is taken before config.json is written and held until training ends.


def claim_folder(exp_dir: Path, *, accept_modified: bool = False) -> None:
    """Take the folder's lock (kept until `release_folder`); an earlier run's files are checked
    against their manifest and removed, so a new run never inherits (or lists) them."""
    lock = FolderLock(exp_dir)
    lock.__enter__()
    _CLAIMED[str(exp_dir)] = lock
    try:
        if (exp_dir / "config.json").exists() or (exp_dir / MANIFEST).exists():
            check_before_write(exp_dir, "overwrite it (--force)", accept_modified=accept_modified)
            for name in folder_files(exp_dir):
                if name != ACCEPTED:
                    (exp_dir / name).unlink()
            (exp_dir / MANIFEST).unlink(missing_ok=True)
            (exp_dir / ATTESTATION).unlink(missing_ok=True)
    except BaseException:
        release_folder(exp_dir)
        raise


def release_folder(exp_dir: Path) -> None:
    lock = _CLAIMED.pop(str(exp_dir), None)
    if lock is not None:
        lock.__exit__(None, None, None)


_CLAIMED: dict[str, FolderLock] = {}


def amp_as_run(requested: bool, devices: list[str]) -> bool:
    """AMP runs only on CUDA: on CPU the run is fp32 whatever was asked, and config.json says so
    (training.mixed_precision as run, runtime.mixed_precision_requested as asked), so the hash,
    the README checklist and the compare/verify tolerances follow what ran."""
    return requested and devices != ["cpu"]


def overrides_text(experiment_id: str, overrides: list[str]) -> str:
    lines = [f"experiment_id: {experiment_id}", f"override_count: {len(overrides)}"]
    lines += [f"override: {line}" for line in overrides]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Execution


def execute_experiment(exp_dir: Path, *, data_dir: str | None = None, resume: bool = False,
                       quiet: bool = False, accept_modified: bool = False, seed_runner: Any = None) -> int:
    """Train every seed of a prepared folder and write its artifacts. Exit code 0 if all seeds finished.

    A resume first checks the folder against its manifest (refused on a difference unless
    `accept_modified`). SIGTERM is handled like Ctrl-C: exit code 128 + the signal number.
    `seed_runner` (default `run_workers`) trains the plans; a sweep passes one that shares device
    slots (or a Ray cluster) between the experiments it runs at once.
    """
    with FolderLock(exp_dir, reentrant=True), signals_as_interrupts():
        if resume:
            # A folder without a manifest was not finalised (a crash, or its manifest removed): the resume
            # rebuilds every derived file from the primary evidence, so it is accepted, and said.
            check_before_write(exp_dir, "resume it", accept_modified=accept_modified, require_manifest=False)
            if not io.exists(exp_dir / MANIFEST):
                print(f"note: {exp_dir.name} has no {MANIFEST} (it was not finalised): its derived files are "
                      "rebuilt from config.json, environment.txt, stdout.log and the checkpoints")
        cfg = read_json(exp_dir / "config.json")
        with status_kept_on_crash(exp_dir):
            try:
                return _execute_locked(exp_dir, cfg, data_dir=data_dir, resume=resume, quiet=quiet,
                                       seed_runner=seed_runner or run_workers)
            except Exception:
                _log_bug(exp_dir)
                raise


def _log_bug(exp_dir: Path) -> None:
    """A bug (not a user error) keeps its traceback in the folder's log."""
    exc = sys.exc_info()[1]
    if exc is not None and not is_user_error(exc):
        log = RunLog(exp_dir / "stdout.log", quiet=True)
        log.error("internal error (a bug, please report it):\n" + traceback.format_exc())
        log.close()


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM) turned into the same path as Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_signal(exc: BaseException) -> tuple[str, int]:
    """(signal name, exit code) of an interruption: SIGINT 130, SIGTERM 143."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    return signal.Signals(signum).name, 128 + signum


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Raise `Interrupted` on the first SIGTERM (later ones are ignored while the folder is finalized)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def status_kept_on_crash(exp_dir: Path) -> Iterator[None]:
    """A crash (a bug, a corrupt file) never leaves run_status.json "running": it says "crashed"."""
    try:
        yield
    except Exception as exc:
        status = exp_dir / "run_status.json"
        if status.is_file() and read_json(status).get("status") == "running":
            atomic_write_json(status, {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"[:300]})
        raise


def record_environment(exp_dir: Path, pairs: list[tuple[str, str]], resume: bool) -> None:
    """environment.txt of a new run; a resume keeps the original and appends a `# resume N` section."""
    path = exp_dir / "environment.txt"
    if not (resume and path.is_file()):
        atomic_write_text(path, render(pairs))
        return
    text = io.read_text(path, limit=io.TEXT_LIMIT, errors="replace")
    n = sum(1 for line in text.splitlines() if line.startswith("# resume ") and line.endswith(":")) + 1
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H.%M.%SZ")
    section = f"# resume {n} at {when}:\n" + "".join(f"#   {k}: {v}\n" for k, v in pairs)
    io.append_text(path, ("" if text.endswith("\n") else "\n") + section)  # appended: never rewritten


def interrupted_outcomes(todo: list[int], outcomes: dict[int, dict], started: set[int],
                         rows: dict[int, dict[int, dict]], name: str) -> dict[int, dict]:
    """Seeds a signal stopped: interrupted (resumable) when they had started, not_run otherwise."""
    out = {}
    for seed in todo:
        if seed in outcomes:
            continue
        if seed in started:
            done = max(rows.get(seed, {}) or [0])
            out[seed] = {"status": "interrupted", "reason": f"{name} after epoch {done}; resume continues it"}
        else:
            out[seed] = {"status": "not_run", "reason": f"{name} before it started"}
    return out


def _execute_locked(exp_dir: Path, cfg: dict, *, data_dir: str | None, resume: bool, quiet: bool,
                    seed_runner: Any = run_workers) -> int:
    from harness.run.progress import Progress

    run = RunConfig.from_dict(cfg)
    seeds = run.seeds.all
    evidence = read_evidence(exp_dir) if resume else None  # read everything before the first write
    if evidence is not None:
        legacy = legacy_seeds(exp_dir, evidence)
        if legacy:
            raise ExperimentError(f"{exp_dir}: seeds {legacy} finished under an older harness whose checkpoints "
                                  "carry no final metrics; the folder can be verified and compared, not resumed")
    done = {s for s, e in evidence.seeds.items() if e.finished} if evidence else set()
    if resume:
        check_resumable(exp_dir, run, [s for s in seeds if s not in done])  # refuse before changing anything
    log = RunLog(exp_dir / "stdout.log", quiet=quiet)
    log.info(f"{SESSION_MARK}{'resume' if resume else 'run'}")  # outcome lines after it supersede earlier ones
    devices = run.devices  # host view, for the records
    # Inside a container the GPUs are renumbered 0..n-1; the host says how (docker_run.py).
    run_devices = json.loads(os.environ.get("HARNESS_INSIDE_DEVICES", "null")) or devices
    runtime = os.environ.get("HARNESS_RUNTIME", run.where)
    jobs_per_device = run.jobs_per_device
    seed_devices = seed_device_map(seeds, devices, jobs_per_device)
    if resume:
        io.remove(exp_dir / MANIFEST)  # the folder is being written: no manifest until it is finalised
        io.remove(exp_dir / ATTESTATION)  # signed what is about to change
        log.info(f"resuming {run.experiment_id}: finished seeds {sorted(done) or 'none'} are kept")
    log.info(f"experiment {run.experiment_id} config_md5 {run.config_md5}")
    log.info(f"seeds {seeds} on devices {devices}: " + ", ".join(f"{s}->{d}" for s, d in seed_devices.items()))
    split = cpu_split_warning(devices, jobs_per_device, run.threads, run.train.model)
    for line in [*artifacts.launch_warnings(run), *([split] if split else [])]:
        log.warning(line)
    pairs = capture(runtime=runtime, dataset=dict(run.data_checksum), seed_devices=seed_devices,
                    determinism={"torch_deterministic": run.train.determinism.torch_deterministic})
    record_environment(exp_dir, pairs, resume)
    atomic_write_json(exp_dir / "run_status.json", {"status": "running"})  # the live state until finalised

    # Live views while seeds train (metrics_epoch.csv, trajectories); finalise rebuilds them from evidence.
    rows: dict[int, dict[int, dict]] = {s: {r["epoch"]: r for r in e.history}
                                        for s, e in (evidence.seeds.items() if evidence else ()) if e.history}
    trajectories: dict[int, list[dict]] = {s: list(evidence.seeds[s].trajectory) if evidence else [] for s in seeds}
    todo = [s for s in seeds if s not in done]
    progress = Progress(todo, run.train.training.epochs, enabled=not quiet)
    on_event = _Events(exp_dir, seeds, log, progress, rows, trajectories)

    interrupted: tuple[str, int] | None = None
    outcomes: dict[int, dict] = {}
    if todo:
        threads = run.threads
        plans = assign_seeds(seeds, run_devices, jobs_per_device, threads)
        for p in plans:
            p.seeds = [s for s in p.seeds if s in todo]
        plans = [p for p in plans if p.seeds]
        try:
            with progress:
                outcomes.update(seed_runner(plans, exp_dir, data_dir, threads, resume, on_event))
        except KeyboardInterrupt as exc:
            interrupted = interrupt_signal(exc)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the folder first
            outcomes.update(interrupted_outcomes(todo, outcomes, on_event.started, rows,
                                                 f"interrupted ({interrupted[0]})"))
            log.error(f"interrupted ({interrupted[0]}): workers stopped; resume with --resume "
                      f"{run.experiment_id}")
    for seed in todo:  # primary evidence of what became of a seed that did not finish
        out = outcomes.get(seed) or {"status": "not_run", "reason": "its worker never reported it"}
        if out["status"] not in FINISHED:
            log.info(outcome_line(seed, out["status"], out.get("reason") or (out.get("result") or {}).get("reason")))
    if interrupted:
        log.info(run_interrupted_line(interrupted[0]))
    log.info(SESSION_END)  # every outcome of this session is recorded: what follows is derived from it
    derived = derive_folder(exp_dir)
    results = derived.results
    for line in results.get("warnings", []):
        log.warning(line)
    status = results["status"]
    unfinished = [s for s in results["unfinished_seeds"] if s not in results["failed_seeds"]]
    log.info(f"status: {status}" + (f"; failed seeds {results['failed_seeds']}" if results["failed_seeds"] else "")
             + (f"; unfinished (interrupted or not run) seeds {unfinished}" if unfinished else ""))
    log.close()  # stdout.log is complete before the derived files and the manifest are written
    finalise(exp_dir, derived=derived)
    from harness.folder.summary import print_summary

    if not quiet:
        print_summary(results, run.experiment_id)
    if interrupted:
        return interrupted[1]
    return 0 if status == "completed" else 1


@dataclass
class _Events:
    """What the launcher does with each worker event: the log, metrics_epoch.csv, trajectories, progress."""

    exp_dir: Path
    seeds: list[int]
    log: RunLog
    progress: Any
    rows: dict[int, dict[int, dict]]
    trajectories: dict[int, list[dict]]
    started: set[int] = field(default_factory=set)

    def __call__(self, kind: str, seed: int, payload: Any) -> None:
        if kind == "started":
            self.started.add(seed)
        elif kind == "log":
            self.log.info(payload)
        elif kind == "epoch":
            self.rows.setdefault(seed, {})[payload["epoch"]] = payload
            write_metrics(self.exp_dir, self.seeds, self.rows)
            self.progress.epoch(seed, payload)
        elif kind == "trajectory":
            self.trajectories[seed].append(payload)
            artifacts.write_trajectory(self.exp_dir, seed, self.trajectories[seed])
        elif kind == "traceback":
            self.log.error(f"seed {seed}: traceback of the failure (a bug, please report it):\n{payload}")
        elif kind == "failed":
            self.log.error(f"seed {seed} failed: {payload}")
            self.progress.finish(seed, "failed")
        elif kind == "result":
            self.progress.finish(seed, payload["status"])


def finished_seeds(exp_dir: Path, cfg: dict | None = None) -> set[int]:
    """Seeds whose last checkpoint records their finished result (completed or early-stopped)."""
    return {s for s, e in read_evidence(exp_dir).seeds.items() if e.finished}


def write_metrics(exp_dir: Path, seeds: list[int], rows: dict[int, dict[int, dict]]) -> None:
    ordered_rows = [rows[s][e] for s in seeds if s in rows for e in sorted(rows[s])]
    atomic_write_text(exp_dir / "metrics_epoch.csv", artifacts.render_metrics_csv(ordered_rows))


__all__ = ["ExperimentError", "LaunchError", "resolve_run", "prepare_run", "execute_experiment"]
