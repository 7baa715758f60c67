"""Live per-seed progress: a rich display on a terminal, plain timestamped lines otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class LiveDisplay:
    """A rich display shown while the object is used as a context manager (none off a terminal)."""

    _rich: RichProgress | None = None

    def __enter__(self) -> Any:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.stop()


class Progress(LiveDisplay):
    """One bar per seed on a terminal; elsewhere the run log's epoch lines are the progress."""

    def __init__(self, seeds: list[int], epochs: int, enabled: bool = True) -> None:
        self.live = enabled and sys.stdout.isatty()
        self._tasks: dict[int, Any] = {}
        self._rich: RichProgress | None = None
        if self.live:
            self._rich = RichProgress(
                TextColumn("seed {task.fields[seed]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=Console(),
            )
            for s in seeds:
                self._tasks[s] = self._rich.add_task("", total=epochs, seed=s, info="starting")

    def epoch(self, seed: int, row: dict) -> None:
        if self._rich is not None and seed in self._tasks:
            self._rich.update(self._tasks[seed], completed=row["epoch"],
                              info=f"val_auc {row['val_auc']:.4f}")

    def finish(self, seed: int, status: str) -> None:
        if self._rich is not None and seed in self._tasks:
            self._rich.update(self._tasks[seed], info=status)
