#!/usr/bin/env python
"""The guide's canonical launcher: same flags and engine as `harness run <title>`.

    python examples/train_gainakt2exp_repro.py --experiment_title quickcheck --seeds 21 --epochs 3
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from harness.cli.flags import OneLineParser, title  # noqa: E402
from harness.cli.main import add_run_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="train_gainakt2exp_repro.py",
                           description="Train, reproduce or compare GainAKT2Exp experiments (unified launcher).")
    parser.add_argument("--experiment_title", "--short-title", dest="experiment_title", default="baseline", type=title,
                        help="short title of the experiment folder (default: baseline)")
    add_run_arguments(parser)
    ns = parser.parse_args(argv)
    from harness.cli.main import run_with_errors

    return run_with_errors(lambda: __import__("harness.cli.commands", fromlist=["run"]).run(ns, ns.experiment_title),
                           debug=ns.debug)


if __name__ == "__main__":
    sys.exit(main())
