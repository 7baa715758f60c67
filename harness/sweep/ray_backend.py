"""The Ray backend: every (point, seed) job is a Ray task that trains with the local training entry.

- A job asks for `num_gpus = 1/jobs_per_device` when the sweep uses GPUs (and the cluster has
  some), else for CPUs (its share of --threads). Ray decides the node; the task records its host,
  Ray node id and GPU in the point's environment.txt (via the `started` event).
- Events (log lines, epoch rows, checkpoints) travel to an actor on the driver's node without
  waiting (a task blocked in `ray.get` lends its CPU to the next job, which would oversubscribe the
  node); the task returns how many it sent and the driver waits for all of them. Checkpoints and results are written by the task straight into the point's folder, which
  is why --output_base must be storage every node sees (checked before anything is created).
- A task lost with its worker or node is retried by Ray (`max_retries`); the retry resumes from
  the seed's last checkpoint, as `harness resume` does. After the last retry the job is failed;
  other jobs continue.
- Before anything is created or submitted, some alive node must be able to hold one job's request
  (CPUs, GPU fraction); otherwise the sweep stops with one line naming the request and the largest
  node, instead of waiting forever. While submitted jobs wait for resources, a line says so at
  least every `WAIT_NOTICE_S` seconds.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.sweep.spec import SweepError


class EventBox:
    """The actor holding a point's events until the driver takes them."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self.items.append(item)

    def take(self) -> list[Any]:
        items, self.items = self.items, []
        return items


class Events:
    """What a task's FolderSink writes to: `put` sends (attempt token, event) without waiting and
    counts, so the driver knows when every event of an attempt has arrived."""

    def __init__(self, box: Any) -> None:
        self.box, self.token, self.sent = box, "", 0

    def for_attempt(self) -> Events:
        attempt = Events(self.box)
        attempt.token = uuid.uuid4().hex
        return attempt

    def put(self, item: Any) -> None:
        self.sent += 1
        self.box.put.remote((self.token, item))


def ray_job(exp_dir: str, data_dir: str | None, seed: int, threads: int, events: Any,
            submitted: float) -> tuple[str, int, Any, str, int]:
    """One seed inside a Ray worker: the same `train_one_seed` as the local workers.

    It always resumes from the seed's last checkpoint when one exists: on a first attempt there is
    none; on a Ray retry it is what the lost attempt saved.
    """
    started = time.time()
    events = events.for_attempt()
    events.put(("scheduled", seed, None))  # the job got its resources: it no longer waits for them
    import ray

    from harness.run.datasets import load_for_config
    from harness.run.workers import prepare_process, train_one_seed

    cfg = prepare_process(Path(exp_dir), threads)
    gpus = [str(g) for g in ray.get_gpu_ids()]
    try:
        data = load_for_config(cfg, data_dir)
    except Exception as exc:  # noqa: BLE001 - reported as the job's failure
        return ("failed", seed, f"dataset could not be loaded on {socket.gethostname()}: {exc}", events.token,
                events.sent)
    ctx = ray.get_runtime_context()
    events.put(("started", seed, {
        "host": socket.gethostname(), "ray_node_id": ctx.get_node_id(), "gpu": gpus or None,
        "device": "cuda" if gpus else "cpu", "threads": threads, "pid": os.getpid(),
        "submitted": submitted, "task_started": started, "time": time.time(),
    }))
    kind, seed, payload = train_one_seed(cfg, data, "cuda:0" if gpus else "cpu", Path(exp_dir), seed, True, events)
    return kind, seed, payload, events.token, events.sent


def read_marker(path: str) -> str:
    """What a node sees at the driver's marker path (the marker's text, or why not).

    It also imports the training code, so the node's idle Ray worker that the first job reuses
    does not pay for importing torch after the job is submitted.
    """
    import torch  # noqa: F401 - warms the worker

    import gainakt.train  # noqa: F401
    import harness.run.datasets  # noqa: F401

    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"unreadable ({type(exc).__name__}: {exc.strerror or exc})"


WAIT_NOTICE_S = 30.0  # while jobs wait for resources, a line at least this often


def _amount(value: float) -> str:
    return f"{value:g}"


def describe_request(request: dict[str, float]) -> str:
    """'2 CPUs' / '1 CPU and 0.5 GPU' for a job's resource request."""
    cpus = request.get("num_cpus", 0)
    parts = [f"{_amount(cpus)} CPU{'s' if cpus != 1 else ''}"]
    if request.get("num_gpus"):
        parts.append(f"{_amount(request['num_gpus'])} GPU")
    return " and ".join(parts)


def capacity_problem(request: dict[str, float], nodes: list[dict]) -> str | None:
    """Why no alive node (Ray's `ray.nodes()` rows) can ever hold one job asking for `request`
    (`num_cpus`, `num_gpus`), naming the largest node; None when one can."""
    alive = [n for n in nodes if n.get("Alive")]
    if not alive:
        return "the Ray cluster has no alive node"
    need_cpu, need_gpu = float(request.get("num_cpus", 0)), float(request.get("num_gpus", 0))

    def fits(n: dict) -> bool:
        res = n.get("Resources") or {}
        return res.get("CPU", 0) >= need_cpu and res.get("GPU", 0) >= need_gpu

    if any(fits(n) for n in alive):
        return None
    largest = max(alive, key=lambda n: ((n.get("Resources") or {}).get("GPU", 0) if need_gpu else 0,
                                        (n.get("Resources") or {}).get("CPU", 0)))
    res = largest.get("Resources") or {}
    gpus = f" and {_amount(res.get('GPU', 0))} GPU" if need_gpu else ""
    return (f"each job asks for {describe_request(request)}, but no alive Ray node has that much: the largest "
            f"({largest.get('NodeManagerAddress', '?')}, of {len(alive)} alive) has "
            f"{_amount(res.get('CPU', 0))} CPU{'s' if res.get('CPU', 0) != 1 else ''}{gpus}")


def waiting_line(waiting: dict[str, float], request: dict[str, float], now: float,
                 available: dict[str, float], total: dict[str, float]) -> str:
    """One line about the jobs (name -> submission time) that wait for resources."""
    longest = now - min(waiting.values())
    names = sorted(waiting)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    free = f"{_amount(available.get('CPU', 0))} of {_amount(total.get('CPU', 0))} CPUs"
    if request.get("num_gpus"):
        free += f", {_amount(available.get('GPU', 0))} of {_amount(total.get('GPU', 0))} GPUs"
    return (f"sweep: {len(waiting)} Ray job{'s' if len(waiting) != 1 else ''} waiting for resources (up to "
            f"{longest:.0f} s; each asks for {describe_request(request)}; free now: {free}): {shown}")


def storage_problem(token: str, answers: dict[str, str]) -> str | None:
    """The first node (label -> what it read) that did not read the driver's token, as a reason."""
    for node, seen in answers.items():
        if seen != token:
            why = seen if seen.startswith("unreadable") else "reads a different file"
            return f"Ray node {node} cannot see it ({why})"
    return None


class RayBackend:
    def __init__(self, launch: Any) -> None:
        try:
            import ray
        except ImportError:
            raise SweepError("--backend ray needs Ray: pip install -e '.[ray]'") from None
        self.ray, self.launch = ray, launch
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
            if not launch.ray_address:
                kwargs["include_dashboard"] = False
            try:
                ray.init(address=launch.ray_address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SweepError(f"cannot connect to Ray at {launch.ray_address or 'a new local instance'}: "
                                 f"{str(exc).splitlines()[0]}") from None
        gpus = ray.cluster_resources().get("GPU", 0)
        self.use_gpus = launch.devices != ["cpu"] and gpus > 0
        self.driver_node = ray.get_runtime_context().get_node_id()
        self._remote = ray.remote(ray_job)
        self._waiting: dict[str, float] = {}  # submitted jobs not started yet -> submission time
        self._wait_lock = threading.Lock()
        self._last_notice = time.monotonic()
        problem = capacity_problem(self.request(), ray.nodes())
        if problem:
            self.close()
            raise SweepError(f"--backend ray: {problem}; lower --threads (now {launch.threads}) or raise "
                             "--jobs_per_device, or add a node that can hold one job")

    def request(self) -> dict[str, float]:
        """What one job asks of a node: CPUs, and a GPU fraction when the sweep uses GPUs."""
        opts = self._options(self.launch.threads)
        return {k: float(opts[k]) for k in ("num_cpus", "num_gpus") if k in opts}

    def _job_waits(self, name: str, submitted: float | None) -> None:
        """Record that job `name` waits for resources since `submitted`, or (None) that it started or ended."""
        with self._wait_lock:
            if submitted is None:
                self._waiting.pop(name, None)
            else:
                self._waiting[name] = submitted

    def note_waiting(self) -> None:
        """At most every WAIT_NOTICE_S seconds (and only while some job waits): one line about it."""
        now = time.monotonic()
        with self._wait_lock:
            if not self._waiting:
                self._last_notice = now  # the clock restarts when jobs begin to wait
                return
            if now - self._last_notice < WAIT_NOTICE_S:
                return
            self._last_notice = now
            waiting = dict(self._waiting)
        line = waiting_line(waiting, self.request(), now, self.ray.available_resources(),
                            self.ray.cluster_resources())
        print(line, flush=True)

    def _nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check_storage(self, base: Path) -> None:
        """A marker written here must be read back by a task on every alive node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        base.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        marker = base.resolve() / f".harness_storage_check_{token}"
        marker.write_text(token)
        try:
            reader = self.ray.remote(num_cpus=0)(read_marker)
            refs = {f"{n['NodeManagerAddress']} ({n['NodeID'][:12]})": reader.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
                for n in self._nodes()}
            answers = {node: self.ray.get(ref, timeout=120) for node, ref in refs.items()}
        finally:
            marker.unlink(missing_ok=True)
        problem = storage_problem(token, answers)
        if problem:
            raise SweepError(f"--output_base {base} is not shared storage: {problem}; mount one folder "
                             "(e.g. NFS) at the same path on every node")

    def _options(self, threads: int) -> dict[str, Any]:
        jobs = self.launch.jobs_per_device
        opts: dict[str, Any] = {"max_retries": self.launch.max_retries, "retry_exceptions": False}
        if self.use_gpus:
            opts.update(num_gpus=1 / jobs, num_cpus=1)
        else:
            opts.update(num_cpus=max(1, threads // jobs))
        return opts

    def seed_runner(self, hook: Callable[[str, int, Any], None]) -> Callable[..., dict[int, dict]]:
        ray = self.ray

        def run(plans: list, exp_dir: Path, data_dir: str | None, threads: int, resume: bool,
                on_event: Callable[[str, int, Any], None]) -> dict[int, dict]:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            lock = threading.Lock()

            def forward(kind: str, seed: int, payload: Any) -> None:
                if kind in ("scheduled", "started", "result", "failed"):
                    self._job_waits(f"{exp_dir.name}/seed {seed}", None)
                if kind == "scheduled":
                    return  # the backend's own event: the launcher has nothing to record for it
                with lock:
                    on_event(kind, seed, payload)
                    hook(kind, seed, payload)

            box = ray.remote(num_cpus=0)(EventBox).options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                self.driver_node, soft=False)).remote()
            events = Events(box)
            opts = self._options(threads)
            job_threads = max(1, threads // self.launch.jobs_per_device) if not self.use_gpus else threads
            seeds = [s for p in plans for s in p.seeds]
            for seed in seeds:
                self._job_waits(f"{exp_dir.name}/seed {seed}", time.monotonic())
            refs = {self._remote.options(name=f"gainakt-{exp_dir.name}-seed{seed}", **opts).remote(
                str(exp_dir), data_dir, seed, job_threads, events, time.time()): seed
                for seed in seeds}
            outcomes: dict[int, dict] = {}
            received: dict[str, int] = {}

            def drain() -> None:
                for token, (kind, seed, payload) in ray.get(box.take.remote()):
                    received[token] = received.get(token, 0) + 1
                    forward(kind, seed, payload)

            pending = list(refs)
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                    drain()
                    self.note_waiting()
                    for ref in done:
                        kind, seed, payload, token, sent = self._outcome(ref, refs[ref])
                        deadline = time.time() + 60  # the attempt's events are in flight at most briefly
                        while received.get(token, 0) < sent and time.time() < deadline:
                            time.sleep(0.05)
                            drain()
                        outcomes[seed] = ({"status": payload["status"], "result": payload} if kind == "result"
                                          else {"status": "failed", "reason": payload})
                        forward(kind, seed, payload)
            finally:
                ray.kill(box)
                for seed in seeds:
                    self._job_waits(f"{exp_dir.name}/seed {seed}", None)
            return outcomes

        return run

    def _outcome(self, ref: Any, seed: int) -> tuple[str, int, Any, str, int]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return ("failed", seed, f"Ray job lost after {self.launch.max_retries} retries: "
                                    f"{type(exc).__name__}: {first[:200]}", "", 0)

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
