"""`harness ls` and `harness show`: what an output base holds, and one experiment or sweep in detail."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.errors import printable
from harness.folder.listing import SORT_KEYS, SWEEP_JSON


def add_commands(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list the experiments and sweeps of an output base (status, seeds, AUCs, "
                        "config_md5, dataset, signature, stored verify verdict)")
    ls.add_argument("output_base", nargs="?", default=None,
                    help="folder holding experiment and sweep folders (default: examples/experiments)")
    ls.add_argument("--json", action="store_true", help="print one JSON array (a sweep carries its points)")
    ls.add_argument("--sort", default="id", choices=tuple(SORT_KEYS),
                    help="order: id (= creation time, the default), title, status, dataset alphabetically; "
                    "auc (mean best val AUC), test_auc, seeds (finished) largest first")
    ls.add_argument("--status", default=None, metavar="S",
                    help="only folders with this status (completed, partial, failed, interrupted, running, "
                    "crashed, prepared, ...); a sweep's points are filtered too")
    ls.add_argument("--title", default=None, metavar="GLOB", help="only titles matching this glob, e.g. 'lr_*'")
    ls.set_defaults(handler=ls_command)

    show = sub.add_parser("show", help="one experiment's (or sweep's) summary: seeds, AUCs, warnings, parameters")
    show.add_argument("experiment", help="experiment or sweep (id under --output_base, or path)")
    show.add_argument("--output_base", default=None, help="folder holding experiment folders "
                      "(default: examples/experiments)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=show_command)


def printable_lines(text: str) -> str:
    """Each line of `text` safe for a terminal (the line breaks are the table's own)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def ls_command(ns: argparse.Namespace) -> int:
    from harness.folder.experiment import output_base
    from harness.folder.listing import list_base, select, summary_line, table, unreadable_lines

    base = output_base(ns.output_base)
    rows = select(list_base(base), status=ns.status, title=ns.title, sort=ns.sort)
    if ns.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    elif rows:
        print(printable_lines(table(rows)))  # titles and reasons come from the folders
        for line in unreadable_lines(rows):
            print(printable(line))
        print(printable(summary_line(rows, base)))
    else:
        print(f"nothing listed in {base}" + (" matching the filters" if ns.status or ns.title else ""))
    return 0


def resolve_folder(ref: str, base_arg: str | None) -> Path:
    """A sweep folder (id under the output base, or path) or an experiment folder (resolve_experiment);
    a symlinked folder is not followed."""
    import os

    from harness.folder.experiment import ExperimentError, output_base, resolve_experiment
    from harness.folder.io import inside, is_regular
    from harness.folder.listing import _is_dir

    base = output_base(base_arg)
    path = Path(ref).expanduser()
    is_path = os.sep in ref or ref.startswith(".") or path.is_absolute()
    for candidate in ([path] if is_path else [base / ref, path]):
        if _is_dir(candidate) and is_regular(candidate / SWEEP_JSON):
            if base_arg is not None and not inside(base, candidate):  # an explicit --output_base confines it
                raise ExperimentError(f"{candidate}: outside the output base {base}; refusing to read it")
            return candidate
    folder = resolve_experiment(ref, base, confined=base_arg is not None)
    if folder.is_symlink():
        raise ExperimentError(f"{folder}: is a symlink; a symlink is never followed")
    return folder


def show_command(ns: argparse.Namespace) -> int:
    from harness.folder.listing import show, show_text

    data = show(resolve_folder(ns.experiment, ns.output_base))
    print(json.dumps(data, indent=2, sort_keys=True) if ns.json else printable_lines(show_text(data)))
    return 0
