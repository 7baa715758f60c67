"""`harness sweep`: resolve every point, create the sweep folder, train every (point, seed) job, summarise.

Each point is an ordinary experiment folder inside the sweep folder, trained by
`execute_experiment` (the same engine as `harness run`); the backend only decides where each seed
trains: a free (device, slot) worker of this machine, or a Ray task somewhere in a cluster.
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cli.flags import command_line
from harness.config.build import config_md5
from harness.config.schema import RunConfig
from harness.folder import io as fio
from harness.folder.derive import FINISHED
from harness.folder.experiment import (
    MANIFEST,
    atomic_write_json,
    check_title,
    output_base,
    read_json,
)
from harness.run.launcher import (
    ResolvedRun,
    execute_experiment,
    finished_seeds,
    prepare_run,
    release_folder,
    resolve_run,
)
from harness.sweep.matrix import matrix
from harness.sweep.progress import SweepProgress
from harness.sweep.spec import REFUSED_FLAGS as _REFUSED
from harness.sweep.spec import SweepError, SweepSpec, load_spec_file, parse_spec

SWEEP_JSON = "sweep.json"


def refuse_run_only_flags(ns: argparse.Namespace) -> None:
    """Flags of `harness run` that a sweep does not act on: refused, never parsed and ignored."""
    refused = [f"--{name}" for name in _REFUSED if getattr(ns, name, None)]
    if refused:
        raise SweepError(f"{refused[0]} does not apply to a sweep")


@dataclass
class Launch:
    """Where jobs train (recorded in sweep.json; none of it changes results)."""

    backend: str
    ray_address: str | None
    max_retries: int
    devices: list[str]
    jobs_per_device: int
    threads: int


def new_sweep_id(title: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d_%H%M%S}_sweep_{check_title(title).lower()}"


def spec_document(ns: argparse.Namespace) -> tuple[dict[str, Any], str, Path | None]:
    """The spec document, where it came from (for sweep.json) and the folder its paths are relative to."""
    if bool(ns.spec) == bool(ns.matrix):
        raise SweepError("give exactly one of --spec SPEC.yaml or --matrix NAME (see --list-matrices)")
    if ns.spec:
        return load_spec_file(ns.spec), f"spec {Path(ns.spec).resolve()}", Path(ns.spec).resolve().parent
    return matrix(ns.matrix), f"matrix {ns.matrix}", None


def resolve_points(spec: SweepSpec, ns: argparse.Namespace, spec_dir: Path | None, *,
                   drop_duplicates: bool = False) -> tuple[list[ResolvedRun], list[dict[str, Any]]]:
    """Every point's parameters: defaults < from_config < base flags < command line < base set <
    --set < point flags < point set; and the points dropped.

    Two points with the same config_md5 are refused, unless `drop_duplicates` (a built-in matrix,
    whose points the user did not write: the command line's flags can make one equal another, as
    `--no_amp --torch_deterministic` makes the guide's no_amp_ref the baseline). Then the duplicate is
    dropped, the base point always kept, and each drop is returned as a note for sweep.json."""
    from_config = getattr(ns, "from_config", None) or spec.from_config
    if from_config and spec_dir is not None and not getattr(ns, "from_config", None):
        from_config = str((spec_dir / from_config).resolve())
    runs: list[tuple[Any, ResolvedRun, str]] = []
    for point in spec.points:
        pns = copy.copy(ns)
        for name, value in point.overrides.flags.items():
            setattr(pns, name, copy.deepcopy(value))
        pns.sets = [*spec.base.sets, *(ns.sets or []), *point.overrides.sets]
        pns.seeds, pns.from_config = list(spec.seeds), from_config
        try:
            run = resolve_run(pns, point.name, base_params=copy.deepcopy(spec.base.flags))
        except Exception as exc:
            from harness.errors import is_user_error

            if is_user_error(exc):
                raise SweepError(f"point {point.name}: {exc}") from None
            raise
        runs.append((point, run, config_md5(run.config)))
    # The base point first, so that it is the one kept when another point equals it.
    order = sorted(range(len(runs)), key=lambda i: runs[i][0].name != spec.base_point)
    kept_by_md5: dict[str, str] = {}
    dropped: dict[int, dict[str, Any]] = {}
    for i in order:
        point, _, md5 = runs[i]
        if md5 not in kept_by_md5:
            kept_by_md5[md5] = point.name
            continue
        if not drop_duplicates:
            first, second = sorted((kept_by_md5[md5], point.name), key=[p.name for p in spec.points].index)
            raise SweepError(f"points {first} and {second} resolve to the same config "
                             f"(config_md5 of the parameters {md5[:12]}…): one of them is redundant")
        same = kept_by_md5[md5]
        dropped[i] = {"name": point.name, "same_as": same, "flags": point.overrides.flags,
                      "set": point.overrides.sets,
                      "note": f"point {point.name} dropped: with this command line its configuration equals point "
                              f"{same}'s (same config_md5), so it would train the same model twice"}
    kept = [run for i, (_, run, _) in enumerate(runs) if i not in dropped]
    return kept, [dropped[i] for i in sorted(dropped)]


def launch_settings(ns: argparse.Namespace, first: ResolvedRun) -> Launch:
    from harness.run.launcher import resolve_devices

    params = first.params
    if params.get("runtime") == "docker":
        raise SweepError("--runtime docker is not supported by sweeps yet; use --runtime local")
    jobs = int(params.get("jobs_per_device", 1))
    if jobs < 1:
        raise SweepError(f"--jobs_per_device must be at least 1, got {jobs}")
    import os

    threads = max(1, min(int(params["threads"]), os.cpu_count() or 1))
    # Ray places jobs on the cluster's GPUs (any node), so only the local backend checks this machine's.
    devices = [str(d) for d in params["devices"]] if ns.backend == "ray" else resolve_devices(params["devices"])
    return Launch(backend=ns.backend, ray_address=ns.ray_address, max_retries=ns.max_retries,
                  devices=devices, jobs_per_device=jobs, threads=threads)


def start(ns: argparse.Namespace) -> int:
    """`harness sweep <title> --spec|--matrix`: everything is checked before any folder is created."""
    refuse_run_only_flags(ns)
    if not ns.title:
        raise SweepError("a sweep title is required: harness sweep <title> --spec SPEC.yaml | --matrix NAME")
    doc, source, spec_dir = spec_document(ns)
    seed = getattr(ns, "seed", None)
    spec = parse_spec(doc, getattr(ns, "seeds", None) or ([seed] if seed is not None else None))
    runs, dropped = resolve_points(spec, ns, spec_dir, drop_duplicates=bool(ns.matrix))
    dropped_names = {d["name"] for d in dropped}
    kept_points = [p for p in spec.points if p.name not in dropped_names]
    launch = launch_settings(ns, runs[0])
    backend = make_backend(launch)  # Ray is connected (and storage checked) before folders exist
    base = output_base(ns.output_base)
    sweep_dir = base / new_sweep_id(ns.title)
    if sweep_dir.exists():
        raise SweepError(f"sweep folder {sweep_dir} already exists")
    backend.check_storage(base)
    sweep_dir.mkdir(parents=True)
    points = []
    for note in dropped:
        print(f"note: {note['note']}")
    for point, run in zip(kept_points, runs, strict=True):
        pns = argparse.Namespace(output_base=str(sweep_dir), data_dir=getattr(ns, "data_dir", None),
                                 experiment_dir=None, force=False)
        exp_dir = prepare_run(run, pns, runtime="local")
        release_folder(exp_dir)  # prepare_run holds the folder's lock; each point's training takes it again
        cfg = read_json(exp_dir / "config.json")
        points.append({"name": point.name, "description": point.description, "experiment_id": exp_dir.name,
                       "config_md5": RunConfig.from_dict(cfg).config_md5, "flags": point.overrides.flags,
                       "set": point.overrides.sets})
    for d in dropped:  # the configuration it would have trained: the kept point's, as recorded
        d["config_md5"] = next(p["config_md5"] for p in points if p["name"] == d["same_as"])
    state = {
        "schema_version": 1, "sweep_id": sweep_dir.name, "title": ns.title, "source": source,
        "spec": doc, "spec_md5": spec.md5, "base_point": spec.base_point, "seeds": spec.seeds,
        "command": command_line(), "data_dir": getattr(ns, "data_dir", None), "launch": asdict(launch),
        "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "points": points,
        "dropped_points": dropped,
        "jobs": [{"point": p["name"], "seed": s, "status": "pending", "attempts": 0, "placement": None,
                  "reason": None} for p in points for s in spec.seeds],
    }
    atomic_write_json(sweep_dir / SWEEP_JSON, state)
    print(f"sweep folder: {sweep_dir} ({len(points)} points x {len(spec.seeds)} seeds, backend {launch.backend})")
    return Sweep(sweep_dir, state, backend).run(resume=False)


def resume(ns: argparse.Namespace) -> int:
    """`harness sweep --resume <sweep>`: train only the jobs that did not finish."""
    refuse_run_only_flags(ns)
    sweep_dir = resolve_sweep(ns.resume, ns.output_base)
    state = read_json(sweep_dir / SWEEP_JSON)
    launch = Launch(**state["launch"])
    for name in ("backend", "ray_address", "max_retries"):  # where jobs train may change; what they train may not
        if getattr(ns, name, None) is not None:
            setattr(launch, name, getattr(ns, name))
    if launch.backend != "ray" and launch.ray_address:
        raise SweepError("--ray_address needs --backend ray")
    for p in state["points"]:
        if not (sweep_dir / p["experiment_id"] / "config.json").is_file():
            raise SweepError(f"point {p['name']}: {p['experiment_id']}/config.json is missing; cannot resume")
    backend = make_backend(launch)
    backend.check_storage(sweep_dir.parent)
    state["launch"] = asdict(launch)
    return Sweep(sweep_dir, state, backend).run(resume=True)


def resolve_sweep(ref: str, base_arg: str | None) -> Path:
    """The sweep folder `ref` names (a path, or a name under the output base). An explicitly given
    --output_base confines it: a folder outside it (symlinks resolved) is refused."""
    path = Path(ref).expanduser()
    candidates = [path, output_base(base_arg) / ref]
    for c in candidates:
        if (c / SWEEP_JSON).is_file():
            if base_arg is not None and not c.resolve().is_relative_to(output_base(base_arg).resolve()):
                raise SweepError(f"{ref} is {c.resolve()}, outside --output_base {base_arg}: name a sweep inside "
                                 "it, or leave --output_base out to name a folder by its path")
            return c
    raise SweepError(f"{ref}: not a sweep folder (no {SWEEP_JSON} at {candidates[0]} or {candidates[1]})")


def make_backend(launch: Launch) -> Any:
    if launch.backend == "ray":
        from harness.sweep.ray_backend import RayBackend

        return RayBackend(launch)
    from harness.sweep.local import SlotPool

    return LocalBackend(SlotPool(launch.devices, launch.jobs_per_device, launch.threads))


class LocalBackend:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def check_storage(self, base: Path) -> None:
        """One machine: its own disk is shared with itself."""

    def seed_runner(self, hook: Any) -> Any:
        return self.pool.seed_runner(hook)

    def close(self) -> None:
        pass


class Sweep:
    """A sweep folder being trained: job states in sweep.json, progress, then the summary."""

    def __init__(self, folder: Path, state: dict[str, Any], backend: Any) -> None:
        self.folder, self.state, self.backend = folder, state, backend
        self.lock = threading.Lock()
        self.jobs = {(j["point"], j["seed"]): j for j in state["jobs"]}

    def _save(self) -> None:
        atomic_write_json(self.folder / SWEEP_JSON, self.state)

    def run(self, resume: bool) -> int:
        from harness.sweep.summary import write_summary

        todo = []
        for p in self.state["points"]:
            exp = self.folder / p["experiment_id"]
            done = finished_seeds(exp, read_json(exp / "config.json")) if resume else set()
            for seed in self.state["seeds"]:
                if seed not in done:
                    self.jobs[(p["name"], seed)].update(status="pending", reason=None)
            if len(done) < len(self.state["seeds"]) or not fio.is_regular(exp / MANIFEST):
                todo.append(p)  # unfinished seeds, or a point folder not finalised (a crash): resumed
        self.state["status"] = "running"
        self._save()
        self.progress = SweepProgress(len(self.jobs), sum(j["status"] in ("completed", "early_stopped")
                                                         for j in self.jobs.values()))
        try:
            with self.progress:
                self._run_points(todo, resume)
        finally:
            self.backend.close()
        for p in self.state["points"]:
            self._final_statuses(p)
        failed = [f"{k[0]}/seed {k[1]}" for k, j in self.jobs.items() if j["status"] not in ("completed",
                                                                                              "early_stopped")]
        self.state["status"] = "completed" if not failed else "partial"
        self.state["failed_jobs"] = failed
        self._save()
        write_summary(self.folder, self.state)
        print(f"sweep {self.folder.name}: {self.state['status']}" + (f"; failed jobs: {', '.join(failed)}"
                                                                    if failed else ""))
        print(f"summary: {self.folder / 'SWEEP.md'}")
        return 0 if not failed else 1

    def _run_points(self, points: list[dict], resume: bool) -> None:
        errors: list[BaseException] = []

        def point_main(p: dict) -> None:
            try:
                exp = self.folder / p["experiment_id"]
                execute_experiment(exp, data_dir=self.state.get("data_dir"), resume=resume, quiet=True,
                                   seed_runner=self.backend.seed_runner(self._hook(p["name"], exp)))
                with self.lock:  # the point folder is finalised: only now are its jobs completed
                    self._final_statuses(p)
                    self._save()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=point_main, args=(p,), name=f"point-{p['name']}", daemon=True)
                   for p in points]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
        if errors:
            raise errors[0]

    def _hook(self, point: str, exp: Path) -> Any:
        def hook(kind: str, seed: int, payload: Any) -> None:
            job = self.jobs.get((point, seed))
            if job is None:
                return
            if kind == "started":
                payload = {"host": socket.gethostname(), **payload}
                with self.lock:
                    job.update(status="running", attempts=job["attempts"] + 1, placement=payload)
                    self._save()
                record_placement(exp, seed, payload)
                self.progress.started(point, seed, payload)
            elif kind == "epoch":
                self.progress.epoch(point, seed, payload)
            elif kind in ("result", "failed"):
                status = payload["status"] if kind == "result" else "failed"
                # Trained, not yet completed: a job is completed once its point folder is finalised
                # (_final_statuses), so a crash in between leaves it to `sweep --resume`.
                with self.lock:
                    job.update(status="finalising" if status in FINISHED else status,
                               reason=None if kind == "result" else str(payload))
                    self._save()
                self.progress.finished(point, seed, status)

        return hook

    def _final_statuses(self, p: dict) -> None:
        """Job statuses as the point's finalised results.json has them (the folder is the truth); a point
        without a manifest was not finalised, so none of its jobs counts as completed."""
        exp = self.folder / p["experiment_id"]
        path = exp / "results.json"
        finalised = fio.is_regular(exp / MANIFEST) and fio.is_regular(path)
        per_seed = fio.read_json(path)["per_seed"] if finalised else {}
        for seed in self.state["seeds"]:
            job, r = self.jobs[(p["name"], seed)], per_seed.get(str(seed))
            if r is not None:
                job["status"] = r["status"] if r["status"] != "not_run" else "failed"
                if r["status"] not in ("completed", "early_stopped"):
                    job["reason"] = r.get("reason") or job.get("reason")
            elif job["status"] in ("pending", "running", "finalising"):
                job.update(status="failed", reason=job.get("reason") or "no result recorded (point not finalised)")


def record_placement(exp: Path, seed: int, placement: dict) -> None:
    """Where a seed actually trained (host, Ray node, GPU, slot), as `seed<N>_placement` in environment.txt."""
    # Appended (environment.txt is primary evidence, never rewritten); a later line for the same seed (a
    # retry) wins when the file is read back.
    fio.append_text(exp / "environment.txt", f"seed{seed}_placement: {json.dumps(placement, sort_keys=True)}\n")
