"""Sweep progress: a sweep-level bar (jobs done / total, ETA) and one line per running job on a
terminal; elsewhere one plain line per job start and end."""

from __future__ import annotations

import sys
import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from harness.run.progress import LiveDisplay


class SweepProgress(LiveDisplay):
    def __init__(self, total: int, done: int, enabled: bool = True) -> None:
        self.total, self.done = total, done
        self.live = enabled and sys.stdout.isatty()
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, int], Any] = {}
        self._rich: RichProgress | None = None
        if self.live:
            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=Console())
            self._bar = self._rich.add_task("sweep jobs", total=total, completed=done, info="")

    def started(self, point: str, seed: int, placement: dict) -> None:
        where = placement.get("ray_node_id", "")[:8] or placement.get("device", "?")
        with self._lock:
            if self._rich is None:
                print(f"sweep: job {point}/seed {seed} started on {where} ({self.done}/{self.total} jobs done)",
                      flush=True)
                return
            old = self._jobs.pop((point, seed), None)
            if old is not None:
                self._rich.remove_task(old)
            self._jobs[(point, seed)] = self._rich.add_task(f"  {point} seed {seed}", total=None,
                                                            info=f"on {where}")

    def epoch(self, point: str, seed: int, row: dict) -> None:
        with self._lock:
            task = self._jobs.get((point, seed))
            if self._rich is not None and task is not None:
                self._rich.update(task, completed=row["epoch"], info=f"epoch {row['epoch']} val_auc "
                                                                     f"{row['val_auc']:.4f}")

    def finished(self, point: str, seed: int, status: str) -> None:
        with self._lock:
            self.done += 1
            if self._rich is None:
                print(f"sweep: job {point}/seed {seed} {status} ({self.done}/{self.total} jobs done)", flush=True)
                return
            task = self._jobs.pop((point, seed), None)
            if task is not None:
                self._rich.remove_task(task)
            self._rich.update(self._bar, completed=self.done)
