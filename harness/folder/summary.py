"""The final table of per-seed and aggregate metrics."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.errors import printable
from harness.folder.artifacts import build_multi_seed

COLUMNS = ("best_epoch", "best_val_auc", "test_auc", "test_window_auc", "mastery_correlation_val_all",
           "gain_correlation_val_all", "qmastery_correlation_val_all")
HEADERS = ("seed", "status", *COLUMNS)


def _f(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary_rows(results: dict) -> list[list[str]]:
    """The table's cells: one row per seed and, for several seeds, mean±std over the completed ones."""
    rows = []
    for seed in results["seeds"]:
        r = results["per_seed"][str(seed)]
        rows.append([str(seed), r["status"], *(_f(r.get(c)) for c in COLUMNS)])
    if len(results["seeds"]) > 1:
        stats = build_multi_seed(results)["stats"]
        rows.append(["mean±std", "", *(_mean_std(stats.get(c)) for c in COLUMNS)])
    return rows


def _mean_std(s: dict | None) -> str:
    if not s or not s["n"]:
        return "-"
    if s["n"] == 1:  # a standard deviation over one value says nothing
        return f"{s['mean']:.4f} (n=1)"
    return f"{s['mean']:.4f}±{s['std']:.4f}"


def print_summary(results: dict, title: str, console: Console | None = None) -> None:
    """Print the table at its natural width: headers and cells are never cut to fit 80 columns."""
    rows = summary_rows(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    needed = sum(widths) + 3 * len(widths) + 1
    console = console or Console()
    if console.width < needed:
        console = Console(width=needed, file=console.file, force_terminal=console.is_terminal)
    table = Table(title=f"{title} ({results['status']})")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="right" if i >= 2 else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in row))  # values from the folder: never markup
    console.print(table)
