"""The `harness` command: run, reproduce, compare, verify, resume, data and image commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli.flags import (
    OneLineParser,
    add_integrity_flags,
    add_launch_flags,
    add_param_flags,
    drop_flags,
    param_value,
    title,
    tolerance,
)


def version_text() -> str:
    """`harness --version`: the installed package's version and the git commit of the code that runs
    (with its branch and whether the tree has uncommitted changes), as environment.txt records them."""
    from harness import __version__
    from harness.run.environment import git_info, package_version

    installed = package_version("gainakt-harness")
    version = installed if installed != "not installed" else __version__
    git = git_info()
    commit = git["git_commit"]
    if not commit.startswith("unknown"):
        dirty = {"true": ", uncommitted changes", "false": ""}.get(git["git_dirty"], ", dirty state unknown")
        commit = f"{commit} (branch {git['git_branch']}{dirty})"
    return f"harness (gainakt-harness) {version}\ngit commit: {commit}"


class VersionAction(argparse.Action):
    """--version: computed only when asked (it runs git), printed to stdout, exit 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_text())
        parser.exit(0)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Every guide flag plus the launch flags (shared with examples/train_gainakt2exp_repro.py)."""
    add_launch_flags(parser)
    add_param_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="harness", description="Train, reproduce and verify GainAKT2Exp experiments.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an internal error (also accepted after the command)")
    parser.add_argument("--version", action=VersionAction,
                        help="print the package version and the git commit the code runs from, then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="train a new experiment")
    run.add_argument("title", type=title,
                     help="short title; the folder is <output_base>/YYYYMMDD_HHMMSS_gainakt2exp_<title>")
    add_run_arguments(run)

    rep = sub.add_parser("reproduce", help="re-run an experiment from its own config")
    rep.add_argument("source", help="experiment id (under --output_base) or path")
    add_run_arguments(rep)
    # The source is the positional argument; these launcher spellings have no meaning here.
    drop_flags(rep, {"reproduce_from", "from_config", "compare_only", "source_exp", "target_exp", "resume"})
    rep.add_argument("--allow_different_data", action="store_true",
                     help="run even when the data's sha256 differs from the source's (recorded)")

    cmp_ = sub.add_parser("compare", help="compare two finished experiments (no training)")
    cmp_.add_argument("source", help="source experiment (id under --output_base, or path)")
    cmp_.add_argument("target", help="target experiment; reproduction_report.json is written into it")
    cmp_.add_argument("--output_base", default=None, help="folder holding experiment folders "
                      "(default: examples/experiments)")
    cmp_.add_argument("--auc_tolerance", type=tolerance, default=None,
                      help="largest AUC difference accepted (default: 0.0002 fp32, 0.002 with AMP)")
    cmp_.add_argument("--corr_tolerance", type=tolerance, default=None,
                      help="largest correlation difference accepted (default: 0.0005 fp32, 0.01 with AMP)")
    cmp_.add_argument("--json", action="store_true", help="print the report as JSON")
    cmp_.add_argument("--accept_modified", action="store_true",
                      help="write the report even if the target differs from its manifest (recorded)")
    cmp_.add_argument("--manifest", action="store_true",
                      help="also write reproduction_manifest.json into the target (config md5s, normalized hashes, "
                      "environment.txt md5, first and last lines of stdout.log, metric differences)")
    cmp_.add_argument("--strict_schema", action="store_true",
                      help="refuse (writing nothing) unless both folders have this harness's schema_version")

    ver = sub.add_parser("verify", help="check an experiment folder (writes nothing unless --write_report "
                         "or --report_file)")
    ver.add_argument("experiment", help="experiment (id under --output_base, or path)")
    ver.add_argument("--against", default=None, help="also compare with this source experiment")
    ver.add_argument("--output_base", default=None, help="folder holding experiment folders "
                     "(default: examples/experiments)")
    ver.add_argument("--json", action="store_true", help="print one JSON object")
    ver.add_argument("--auc_tolerance", type=tolerance, default=None,
                     help="with --against: largest AUC difference accepted (default: by AMP, as compare)")
    ver.add_argument("--corr_tolerance", type=tolerance, default=None,
                     help="with --against: largest correlation difference accepted (default: by AMP)")
    ver.add_argument("--write_report", action="store_true",
                     help="store the verdict as <experiment>/verification_report.json (recorded in its manifest); "
                     "refused, writing nothing, unless every check of the folder itself passes")
    ver.add_argument("--report_file", default=None, metavar="PATH",
                     help="also write the JSON report to PATH, outside the verified folder (any verdict)")
    ver.add_argument("--trusted_key", default=None, metavar="PUB",
                     help="Ed25519 public key (PEM): the folder's signed attestation must verify with it")

    res = sub.add_parser("resume", help="continue an interrupted or partly failed experiment")
    res.add_argument("experiment")
    res.add_argument("--output_base", default=None)
    res.add_argument("--data_dir", default=None)
    add_integrity_flags(res)

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
    desc.add_argument("--format", default="auto",
                      choices=("auto", "pykt", "pykt_sequences", "dkvmn", "raw_assist2015"),
                      help="dataset format (default: auto, detected)")
    desc.add_argument("--max_len", type=param_value("seq_len"), default=200,
                      help="window length for the window counts (default: 200)")
    desc.add_argument("--num_concepts", type=param_value("num_concepts"), default=None,
                      help="number of concepts (default: from the data)")
    desc.add_argument("--json", action="store_true", help="print one JSON object")
    from harness.cli.predict import add_commands as add_predict_commands

    add_predict_commands(sub, data_sub)

    from harness.cli.listing import add_commands as add_listing_commands

    add_listing_commands(sub)
    from harness.cli.export import add_commands as add_export_commands

    add_export_commands(sub)
    add_keys_commands(sub)

    from harness.cli.image import add_image_commands

    add_image_commands(sub)
    return parser


def add_keys_commands(sub: Any) -> None:
    """`harness keys generate|sign`: Ed25519 keys and signed attestations (docs/reproducibility.md)."""
    keys = sub.add_parser("keys", help="signing keys for attestations")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=OneLineParser)
    gen = keys_sub.add_parser("generate", help="write an Ed25519 key pair (PEM): PATH (private) and PATH.pub")
    gen.add_argument("path", help="private key file to create (mode 0600); the public key goes to PATH.pub")
    gen.add_argument("--force", action="store_true", help="replace existing key files")
    sign = keys_sub.add_parser("sign", help="sign a finished experiment folder that matches its manifest")
    sign.add_argument("experiment", help="experiment id (under --output_base) or path")
    sign.add_argument("--sign_key", default=None, metavar="PATH", help="Ed25519 private key (default: $HARNESS_SIGN_KEY)")
    sign.add_argument("--sign_accepted", action="store_true",
                      help="sign even a folder whose modifications were accepted (the attestation records them)")
    sign.add_argument("--output_base", default=None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args  # accepted before or after the subcommand
    ns = parser.parse_args([a for a in args if a != "--debug"])
    return run_with_errors(lambda: dispatch(ns), debug=debug or getattr(ns, "debug", False))


DEBUG_HINT = "run with --debug for the traceback"


def run_with_errors(action: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command. A user error (HarnessError, gainakt's DataError) is one line and exit 1 (a
    UsageError, flags that do not go together: exit 2, as argparse's); any other exception is a
    bug: one line plus a hint, or its full traceback on stderr with --debug (the engine also writes
    it to the experiment's stdout.log when a folder exists)."""
    from harness.errors import UsageError, is_user_error, printable

    try:
        return action()
    except KeyboardInterrupt as exc:
        from harness.run.launcher import interrupt_signal

        name, code = interrupt_signal(exc)
        print(f"harness: interrupted ({name})", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
        if is_user_error(exc):
            print(f"harness: error: {printable(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, UsageError) else 1
        if debug:
            raise
        print(f"harness: internal error (a bug): {type(exc).__name__}: {printable(exc)}; {DEBUG_HINT}", file=sys.stderr)
        return 1


def dispatch(ns: argparse.Namespace) -> int:
    if getattr(ns, "handler", None) is not None:  # ls, show, predict, data simulate, data score-truth
        return ns.handler(ns)
    from harness.cli import commands  # the training engine (torch): only for the commands that need it

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
    if ns.command == "keys":
        from harness.audit.attest import keys_command

        return keys_command(ns)
    raise AssertionError(ns.command)


def data_describe(ns: argparse.Namespace) -> int:
    from gainakt.data import describe, load_dataset
    from gainakt.simulate import simulate

    ds = simulate() if ns.path == "synthetic" else load_dataset(ns.path, ns.format, num_concepts=ns.num_concepts)
    info = describe(ds, max_len=ns.max_len)
    if ns.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            if isinstance(value, dict):  # e.g. "train 11123, valid 2812, test 5905"
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            if key == "window_length":
                value = f"{value} (--max_len: windows are cut to this length; sequence_length says how long " \
                        "the students' sequences are)"
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
