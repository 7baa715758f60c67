"""The `harness` command: run, reproduce, compare, verify, resume, data and image commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli.flags import OneLineParser, add_launch_flags, add_param_flags

EXIT_USAGE = 2


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every guide flag plus the launch flags (shared with examples/train_gainakt2exp_repro.py)."""
    add_launch_flags(parser)
    add_param_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="harness", description="Train, reproduce and verify GainAKT2Exp experiments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="train a new experiment")
    run.add_argument("title", help="short title; the folder is <output_base>/YYYYMMDD_HHMMSS_gainakt2exp_<title>")
    add_run_arguments(run)

    rep = sub.add_parser("reproduce", help="re-run an experiment from its own config")
    rep.add_argument("source", help="experiment id (under --output_base) or path")
    add_run_arguments(rep)

    cmp_ = sub.add_parser("compare", help="compare two finished experiments (no training)")
    cmp_.add_argument("source")
    cmp_.add_argument("target")
    cmp_.add_argument("--output_base", default=None)
    cmp_.add_argument("--auc_tolerance", type=float, default=None)
    cmp_.add_argument("--corr_tolerance", type=float, default=None)
    cmp_.add_argument("--json", action="store_true", help="print the report as JSON")

    ver = sub.add_parser("verify", help="check an experiment folder (writes nothing)")
    ver.add_argument("experiment")
    ver.add_argument("--against", default=None, help="also compare with this source experiment")
    ver.add_argument("--output_base", default=None)
    ver.add_argument("--json", action="store_true", help="print one JSON object")
    ver.add_argument("--auc_tolerance", type=float, default=None)
    ver.add_argument("--corr_tolerance", type=float, default=None)

    res = sub.add_parser("resume", help="continue an interrupted or partly failed experiment")
    res.add_argument("experiment")
    res.add_argument("--output_base", default=None)
    res.add_argument("--data_dir", default=None)

    exe = sub.add_parser("execute", help="train a prepared experiment folder (used inside containers)")
    exe.add_argument("experiment_dir")
    exe.add_argument("--data_dir", default=None)
    exe.add_argument("--resume", action="store_true")

    swp = sub.add_parser("sweep", help="train the points of a spec or built-in matrix across seeds")
    from harness.sweep.cli import add_sweep_arguments

    add_sweep_arguments(swp)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=OneLineParser)
    desc = data_sub.add_parser("describe", help="students, folds, concepts and window counts of a dataset")
    desc.add_argument("path", help="dataset folder or file, or 'synthetic'")
    desc.add_argument("--format", default="auto")
    desc.add_argument("--max_len", type=int, default=200)
    desc.add_argument("--json", action="store_true")

    try:
        from harness.cli.image import add_image_commands
    except ImportError:  # pragma: no cover - shipped with the package
        pass
    else:
        add_image_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    return run_with_errors(lambda: dispatch(ns))


def run_with_errors(action) -> int:
    """Run a command; user-facing errors become one line on stderr and exit code 1."""
    try:
        return action()
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user-facing errors are one line
        from harness.errors import is_user_error

        if not is_user_error(exc):
            raise
        print(f"harness: error: {exc}", file=sys.stderr)
        return 1


def dispatch(ns: argparse.Namespace) -> int:
    from harness.cli import commands

    if ns.command == "run":
        return commands.run(ns, ns.title)
    if ns.command == "reproduce":
        ns.reproduce_from = ns.source
        return commands.run(ns, None)
    if ns.command == "compare":
        return commands.compare(ns.source, ns.target, ns)
    if ns.command == "sweep":
        from harness.sweep.cli import sweep_command

        return sweep_command(ns)
    if ns.command == "verify":
        from harness.sweep.verify import is_sweep, verify_sweep_command

        if is_sweep(ns.experiment, ns.output_base):
            return verify_sweep_command(ns)
        return commands.verify(ns)
    if ns.command == "resume":
        return commands.resume(ns.experiment, ns)
    if ns.command == "execute":
        from harness.run.launcher import execute_experiment

        return execute_experiment(Path(ns.experiment_dir), data_dir=ns.data_dir, resume=ns.resume)
    if ns.command == "data":
        return data_describe(ns)
    if ns.command == "image":
        return ns.image_handler(ns)
    raise AssertionError(ns.command)


def data_describe(ns: argparse.Namespace) -> int:
    from gainakt.data import describe, load_dataset
    from gainakt.simulate import simulate

    ds = simulate() if ns.path == "synthetic" else load_dataset(ns.path, ns.format)
    info = describe(ds, max_len=ns.max_len)
    if ns.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
