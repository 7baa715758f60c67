"""The local backend: the (device, slot) workers of this machine shared by every point of a sweep.

Each (point, seed) job waits for a free slot and trains in its own worker process exactly as
`harness run` does (`run_workers` with a one-seed plan), so results do not depend on the backend.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.run.workers import WorkerPlan, device_slots, run_workers

EventHook = Callable[[str, int, Any], None]


class SlotPool:
    """Free (device, slot) workers; a job holds one while it trains."""

    def __init__(self, devices: list[str], jobs_per_device: int, threads: int) -> None:
        self.slots = device_slots(devices, jobs_per_device, threads)
        self._free: queue.Queue[WorkerPlan] = queue.Queue()
        for slot in self.slots:
            self._free.put(slot)

    def seed_runner(self, hook: EventHook) -> Callable[..., dict[int, dict]]:
        """A `seed_runner` for execute_experiment: every seed of the plans becomes a job on a free slot.

        `hook(kind, seed, payload)` sees every event after the experiment's own handler (under one
        lock per experiment, so the experiment's files are written by one thread at a time).
        """

        def run(plans: list[WorkerPlan], exp_dir: Path, data_dir: str | None, threads: int, resume: bool,
                on_event: EventHook) -> dict[int, dict]:
            lock = threading.Lock()
            outcomes: dict[int, dict] = {}

            def forward(kind: str, seed: int, payload: Any) -> None:
                with lock:
                    on_event(kind, seed, payload)
                    hook(kind, seed, payload)

            def job(slot: WorkerPlan, seed: int) -> None:
                try:
                    plan = WorkerPlan(slot.device, [seed], slot.slot, slot.jobs_per_device, slot.threads)
                    outcomes.update(run_workers([plan], exp_dir, data_dir, slot.threads or threads, resume,
                                                forward))
                finally:
                    self._free.put(slot)

            running = []
            for seed in [s for p in plans for s in p.seeds]:
                slot = self._free.get()
                t = threading.Thread(target=job, args=(slot, seed), name=f"job-{exp_dir.name}-{seed}", daemon=True)
                t.start()
                running.append(t)
            for t in running:
                t.join()
            return outcomes

        return run
