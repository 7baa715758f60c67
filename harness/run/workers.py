"""Seeds on devices: `jobs_per_device` worker processes (slots) per device, seed i on slot i mod n.

Slots are numbered device-major (device 0 slot 0, device 0 slot 1, ..., device 1 slot 0, ...) and
seed i goes to slots[i mod len(slots)], so with one job per device seed i is on devices[i mod n].
Each worker sees only its own GPU (CUDA_VISIBLE_DEVICES is set before torch starts), trains its
seeds in order and reports through a queue; a worker that dies does not stop the others. CPU slots
share `--threads` between them so the machine is not oversubscribed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.schema import RunConfig
from harness.errors import is_user_error
from harness.folder.checkpoints import checkpoint_name
from harness.run.allocator import keep_freed_buffers


@dataclass
class WorkerPlan:
    device: str  # "cpu" or a host GPU index as text
    seeds: list[int]
    slot: int = 0  # which of the device's jobs_per_device workers
    jobs_per_device: int = 1
    threads: int | None = None  # CPU threads of this worker; None: the run's --threads

    @property
    def label(self) -> str:
        """The device as shown in the seed->device map: `0`, or `0 slot 1/2` with several jobs."""
        return self.device if self.jobs_per_device == 1 else f"{self.device} slot {self.slot}/{self.jobs_per_device}"


def check_jobs_per_device(jobs_per_device: int) -> int:
    if int(jobs_per_device) < 1:
        raise ValueError(f"--jobs_per_device must be at least 1, got {jobs_per_device}")
    return int(jobs_per_device)


def slot_threads(threads: int, device: str, jobs_per_device: int) -> int:
    """CPU slots split --threads between them (at least one each); GPU workers keep --threads."""
    return max(1, threads // jobs_per_device) if device == "cpu" else threads


# What splitting a 2-core CPU's threads between jobs did when it was measured, per model preset (at
# the preset's own dimensions): (faster, how it was measured). benchmarks/cpu_jobs.py measures any
# preset on the machine at hand (benchmarks/README.md, "CPU jobs per device").
CPU_SPLIT_MEASURED: dict[str, tuple[bool, str]] = {
    "paper": (False, "at the paper preset on a quiet 2-core machine, 2 jobs of 1 thread trained the same seeds "
                     "1.4x slower than 1 job of 2 threads (about 12 min per epoch per job against 4.3 min; issue 22)"),
    "small": (True, "at the small preset on a loaded 2-core machine, 2 jobs of 1 thread trained 4 seeds 2-3x faster "
                    "than 1 job of 2 threads (benchmarks/README.md, \"Sweeps: jobs per device\")"),
}


def cpu_split_warning(devices: list[str], jobs_per_device: int, threads: int, model: Any) -> str | None:
    """The launch warning of a CPU run that splits --threads between several jobs (None otherwise, and
    None where the split was measured faster for this model): what each job gets and what the split
    cost when measured. `model` is the run's ModelConfig."""
    from gainakt.config import MODEL_PRESETS

    if "cpu" not in devices or jobs_per_device <= 1:
        return None
    each = slot_threads(threads, "cpu", jobs_per_device)
    over = (f"; {jobs_per_device} jobs x {each} thread(s) = {jobs_per_device * each} threads on --threads {threads}"
            if jobs_per_device * each > threads else "")
    preset = model.model_preset
    same = all(getattr(model, k) == v for k, v in MODEL_PRESETS[preset].items())
    faster, measured = CPU_SPLIT_MEASURED.get(preset, (False, "")) if same else (False, "")
    if faster and not over:
        return None
    found = (f"Measured: {measured}" if measured else
             f"Not measured for this model ({preset} preset{'' if same else ' with other dimensions'})")
    return (f"--jobs_per_device {jobs_per_device} on the CPU splits --threads {threads} into {jobs_per_device} jobs of "
            f"{each} thread(s) each{over}. {found}. benchmarks/cpu_jobs.py measures the splits for this preset on "
            "this machine; --jobs_per_device 1 keeps every thread on one seed")


def device_slots(devices: list[str], jobs_per_device: int = 1, threads: int | None = None) -> list[WorkerPlan]:
    """Every (device, slot) worker, device-major, with no seeds yet."""
    jobs = check_jobs_per_device(jobs_per_device)
    return [WorkerPlan(device=d, seeds=[], slot=k, jobs_per_device=jobs,
                       threads=None if threads is None else slot_threads(threads, d, jobs))
            for d in devices for k in range(jobs)]


def assign_seeds(seeds: list[int], devices: list[str], jobs_per_device: int = 1,
                 threads: int | None = None) -> list[WorkerPlan]:
    """Seed i goes to slot i mod (devices x jobs_per_device); one plan (worker) per slot with seeds."""
    plans = device_slots(devices, jobs_per_device, threads)
    for i, seed in enumerate(seeds):
        plans[i % len(plans)].seeds.append(seed)
    return [p for p in plans if p.seeds]


def seed_device_map(seeds: list[int], devices: list[str], jobs_per_device: int = 1) -> dict[int, str]:
    return {seed: plan.label for plan in assign_seeds(seeds, devices, jobs_per_device) for seed in plan.seeds}


class FolderSink:
    """TrainSink of a worker: checkpoints to the folder, everything else to the parent's queue."""

    def __init__(self, exp_dir: Path, seed: int, multi_seed: bool, events: Any, suffix: str = "") -> None:
        self.exp_dir, self.seed, self.multi, self.events = exp_dir, seed, multi_seed, events
        # The reference named each seed's logger <suffix>_s<seed>; its lines carry that tag here.
        self.tag = f"[{suffix}_s{seed}] " if suffix else ""
        self._best_model: dict | None = None

    def log(self, message: str) -> None:
        self.events.put(("log", self.seed, self.tag + message))

    def epoch(self, row: dict) -> None:
        self.events.put(("epoch", self.seed, row))

    def trajectory(self, entry: dict) -> None:
        self.events.put(("trajectory", self.seed, entry))

    def checkpoint(self, kind: str, state: dict) -> None:
        import io

        import torch

        from harness.folder.experiment import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(state, buf)
        exit_if_orphaned()  # the launcher holds the folder lock: without it, no write
        atomic_write_bytes(self.exp_dir / checkpoint_name(kind, self.seed, self.multi), buf.getvalue())
        if kind == "best":
            self._best_model = state["model"]
        self.events.put(("checkpoint", self.seed, {"kind": kind, "epoch": state["epoch"] + 1}))

    def best_model_state(self) -> dict | None:
        if self._best_model is not None:
            return self._best_model
        path = self.exp_dir / checkpoint_name("best", self.seed, self.multi)
        if path.is_file():
            from harness.folder.checkpoints import load_checkpoint

            return load_checkpoint(path)["model"]
        return None


# ---------------------------------------------------------------------------------------------
# Ownership: a worker never outlives the launcher that holds the folder lock.

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10  # seconds a worker gets after SIGTERM before it is killed


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), then make sure the
    parent did not die before the request took effect."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:  # pragma: no cover - kernel refused
            print(f"warning: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}); "
                  "relying on the parent check before each write", file=sys.stderr)
    exit_if_orphaned()


def exit_if_orphaned() -> None:
    """Exit at once when the launcher that started this worker is gone (its lock is released)."""
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def _load_resume_state(path: Path) -> Any:
    """The seed's last checkpoint, or ValueError saying which file does not load and why."""

    from harness.folder.checkpoints import load_checkpoint

    try:
        return load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load is this seed's failure
        raise ValueError(f"last checkpoint {path.name} does not load ({type(exc).__name__}: "
                         f"{str(exc)[:120]}); delete it to train this seed from the start") from None


def prepare_process(exp_dir: Path, threads: int) -> dict:
    """Set up a process that trains seeds (thread counts, deterministic cuBLAS when asked, freed
    buffers kept for reuse, before torch computes anything) and return the folder's config record.
    Local workers and Ray tasks share it."""
    keep_freed_buffers()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from harness.folder.experiment import read_json

    cfg = read_json(exp_dir / "config.json")
    if RunConfig.from_dict(cfg).train.determinism.torch_deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.set_num_threads(threads)
    return cfg


def train_one_seed(cfg: dict, data: Any, device: str, exp_dir: Path, seed: int, resume: bool,
                   events: Any) -> tuple[str, int, Any]:
    """Train one seed into its folder (from its last checkpoint when resuming); the final event.

    The one training entry of every backend: the local workers and the Ray tasks of a sweep. A bug
    (not a user error) also sends its whole traceback, which the launcher writes to stdout.log.
    """
    from gainakt.train import train_seed

    run = RunConfig.from_dict(cfg)
    multi = len(run.seeds.all) > 1
    sink = FolderSink(exp_dir, seed, multi, events, run.experiment.experiment_suffix or "")
    last = exp_dir / checkpoint_name("last", seed, multi)
    try:
        resume_state = _load_resume_state(last) if resume and last.is_file() else None
    except ValueError as exc:
        return ("failed", seed, str(exc))
    try:
        result = train_seed(cfg, data, device, sink, seed=seed, resume=resume_state)  # cfg: the checkpoints' record
        return ("result", seed, result.as_dict())
    except Exception as exc:  # noqa: BLE001 - reported per seed, the parent decides the exit code
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        if not is_user_error(exc):  # a bug: its whole traceback goes to stdout.log
            events.put(("traceback", seed, traceback.format_exc()))
        return ("failed", seed, f"{type(exc).__name__}: {exc} ({tb})")


def _worker_main(plan: WorkerPlan, exp_dir: str, data_dir: str | None, threads: int, resume: bool,
                 events: Any) -> None:
    die_with_parent()
    # Isolate the GPU before torch (and CUDA) start in this process.
    if plan.device != "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = plan.device
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from harness.run.datasets import load_for_config

    cfg = prepare_process(Path(exp_dir), threads)
    device = "cpu" if plan.device == "cpu" else "cuda:0"
    try:
        data = load_for_config(cfg, data_dir)
    except Exception as exc:  # noqa: BLE001 - reported per seed, the parent decides the exit code
        for seed in plan.seeds:
            events.put(("failed", seed, f"dataset could not be loaded: {exc}"))
        return
    for seed in plan.seeds:
        events.put(("started", seed, {"device": plan.device, "slot": plan.slot, "threads": threads,
                                      "pid": os.getpid(), "time": time.time()}))
        events.put(train_one_seed(cfg, data, device, Path(exp_dir), seed, resume, events))
    # Everything is reported and written; skip the interpreter's slow teardown of torch & co.
    events.close()
    events.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_workers(plans: list[WorkerPlan], exp_dir: Path, data_dir: str | None, threads: int, resume: bool,
                on_event: Callable[[str, int, Any], None], poll: float = 0.2) -> dict[int, dict]:
    """Run every plan in its own process; return {seed: {"status", "result" | "reason"}}.

    A worker that exits without reporting a seed marks that seed failed with the exit code
    (e.g. -9 when it was killed). KeyboardInterrupt terminates all workers and propagates.
    """
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = []
    for plan in plans:
        p = ctx.Process(target=_worker_main, args=(plan, str(exp_dir), data_dir, plan.threads or threads, resume,
                                                    events), name=f"seed-worker-{plan.device}-{plan.slot}")
        p.start()
        procs.append((plan, p))
    outcomes: dict[int, dict] = {}
    started: set[int] = set()

    def drain(block: bool) -> None:
        while True:
            try:
                kind, seed, payload = events.get(timeout=poll if block else 0.01)
            except queue.Empty:
                return
            block = False
            if kind == "result":
                outcomes[seed] = {"status": payload["status"], "result": payload}
            elif kind == "failed":
                outcomes[seed] = {"status": "failed", "reason": payload}
            elif kind == "started":
                started.add(seed)
            on_event(kind, seed, payload)

    try:
        while any(p.is_alive() for _, p in procs):
            drain(block=True)
        for _, p in procs:
            p.join()
        drain(block=False)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM of the launcher: stop every worker, bounded grace
        for _, p in procs:
            if p.is_alive():
                p.terminate()
        for _, p in procs:
            p.join(timeout=STOP_GRACE_S)
            if p.is_alive():
                p.kill()
                p.join(timeout=STOP_GRACE_S)
        raise
    for plan, p in procs:
        for seed in plan.seeds:
            if seed not in outcomes:
                outcomes[seed] = _died_outcome(plan.label, p.exitcode, seed in started)
                on_event("failed", seed, outcomes[seed]["reason"])
    return outcomes


def _died_outcome(device: str, code: int | None, started: bool) -> dict:
    """A seed its worker never reported: failed when it had started, not_run when it had not."""
    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    if started:
        return {"status": "failed", "reason": f"worker for device {device} died ({why})"}
    return {"status": "not_run", "reason": f"worker for device {device} died ({why}) before this seed started"}
