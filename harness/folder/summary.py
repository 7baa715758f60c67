"""The final table of per-seed and aggregate metrics."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.folder.artifacts import build_multi_seed

COLUMNS = ("best_epoch", "best_val_auc", "test_auc", "test_window_auc", "mastery_correlation_val_all",
           "gain_correlation_val_all", "qmastery_correlation_val_all")


def _f(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def print_summary(results: dict, title: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{title} ({results['status']})")
    table.add_column("seed")
    table.add_column("status")
    for c in COLUMNS:
        table.add_column(c, justify="right")
    for seed in results["seeds"]:
        r = results["per_seed"][str(seed)]
        table.add_row(str(seed), r["status"], *(_f(r.get(c)) for c in COLUMNS))
    if len(results["seeds"]) > 1:
        stats = build_multi_seed(results)["stats"]
        table.add_row("mean±std", "", *(
            "-" if c not in stats or not stats[c]["n"] else f"{stats[c]['mean']:.4f}±{stats[c]['std']:.4f}"
            for c in COLUMNS))
    console.print(table)
