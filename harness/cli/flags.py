"""Command-line flags shared by `harness run` and `examples/train_gainakt2exp_repro.py`.

Every registered parameter becomes a flag whose default is *absent* (argparse.SUPPRESS), so the
launcher can tell what the user actually typed from what comes from defaults or `--from_config`.
Boolean parameters can be turned on and off (`--x`, `--no_x`, `--no-x`).

A flag value is checked where it is parsed: every parameter flag by its config field's rule, and
the other flags by the `type=` validators below (positive_int, nonneg_int, tolerance, ...), so a
bad value is a usage error (one line, exit 2) before anything runs or any folder is created.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import typing
from collections.abc import Callable
from typing import Any, NoReturn

from harness.config.build import field_rules
from harness.config.params import PARAMS, Param


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_param(group: argparse._ArgumentGroup, p: Param) -> None:
    names = [f"--{p.name}", *p.flags]
    if p.type is bool:
        group.add_argument(*names, dest=p.name, action="store_const", const=True,
                           default=argparse.SUPPRESS, help=_with_default(p))
        off = p.off_flags or (f"--no_{p.name}", f"--no-{p.name}")
        group.add_argument(*off, dest=p.name, action="store_const", const=False,
                           default=argparse.SUPPRESS, help=f"turn --{p.name} off")
        return
    if p.type is list:
        devices: dict[str, Any] = {"type": device_item, "action": DevicesAction} if p.name == "devices" else {}
        group.add_argument(*names, dest=p.name, nargs="+", default=argparse.SUPPRESS, **devices,
                           help=f"{p.help} (default: {' '.join(map(str, p.default))})")
        return
    kwargs: dict[str, Any] = {"dest": p.name, "type": _typed(p), "default": argparse.SUPPRESS,
                              "help": _with_default(p)}
    if p.choices:
        kwargs["choices"] = p.choices
    group.add_argument(*names, **kwargs)


def _with_default(p: Param) -> str:
    """The help text with the default appended, unless the text already says it (or it is None)."""
    if "(default:" in p.help or p.default is None:
        return p.help
    return f"{p.help} (default: {p.default})"


def drop_flags(parser: argparse.ArgumentParser, dests: set[str]) -> None:
    """Remove the flags with these destinations from a parser (flags meaningless for a subcommand)."""
    for action in [a for a in parser._actions if a.dest in dests]:
        parser._remove_action(action)
        for group in parser._action_groups:
            if action in group._group_actions:
                group._group_actions.remove(action)
        for option in action.option_strings:
            parser._option_string_actions.pop(option, None)


def _typed(p: Param) -> Callable[[str], Any]:
    """The flag's converter: its type, then its config field's rule (range, choices, finite)."""
    from gainakt.config import check_value

    hint, meta = field_rules()[p.name]
    optional = type(None) in typing.get_args(hint)  # e.g. int | None: "none" (or "null") is None

    def convert(text: str) -> Any:
        if optional and text.strip().lower() in ("none", "null"):
            return None
        value = _number(text, p.type, finite=False) if p.type in (int, float) else p.type(text)
        problem = check_value(hint, meta, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = p.type.__name__
    return convert


# ---------------------------------------------------------------------------------------------
# Validators of flags that are not parameters (argparse `type=`): a bad value exits 2, one line.


_INT64_MAX = 2**63 - 1


def _number(text: str, kind: type, *, finite: bool = True) -> Any:
    """`text` as an int (within 64 bits) or a float (finite unless `finite` is False), else a one-line
    ArgumentTypeError that never echoes more than a few dozen characters of the value."""
    from gainakt.config import shown

    try:
        value = kind(text)
    except ValueError:
        if kind is int and re.fullmatch(r"\s*[+-]?\d+\s*", text):  # int() refuses more than 4300 digits
            raise argparse.ArgumentTypeError(f"must fit in 64 bits, got an integer of {len(text.strip()):,} "
                                             "digits") from None
        raise argparse.ArgumentTypeError(f"expects {'an integer' if kind is int else 'a number'}, "
                                         f"got {shown(text)}") from None
    if kind is int and abs(value) > _INT64_MAX:
        raise argparse.ArgumentTypeError(f"must fit in 64 bits, got {shown(value)}")
    if kind is float and finite and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonneg_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seed(text: str) -> int:
    """A seed: 0..2**32 - 1 (what numpy and torch accept; gainakt.config.seed_problem)."""
    from gainakt.config import seed_problem

    value = nonneg_int(text)
    problem = seed_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem.replace("seeds must", "must"))
    return value


def tolerance(text: str) -> float:
    """An AUC or correlation tolerance: a finite number >= 0."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def param_value(name: str) -> Callable[[str], Any]:
    """The converter of the parameter `name`'s flag, for another command's flag with its meaning
    (`harness data simulate --students` is `--synthetic_students`)."""
    return _typed(next(p for p in PARAMS if p.name == name))


def title(text: str) -> str:
    """An experiment or sweep title: it names a folder."""
    from harness.config.schema import check_title

    problem = check_title(text)
    if problem:
        raise argparse.ArgumentTypeError(f"title {problem}")
    return text


def device_item(text: str) -> str:
    """One --devices entry: 'cpu', 'auto' or a GPU index (whether that GPU exists is checked later)."""
    if text.strip().lower() in ("cpu", "auto") or text.strip().isdigit():
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a GPU index (use 'cpu', 'auto' or numbers)")


class DevicesAction(argparse.Action):
    """--devices: 'cpu', 'auto' or GPU indices, not a mix (which GPUs exist is checked later)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = [str(v).strip().lower() for v in values]
        if items.count("cpu") > 1:
            raise argparse.ArgumentError(self, "the CPU is one device; use --jobs_per_device N to train several "
                                         "seeds on it at once")
        if len(items) > 1 and ("cpu" in items or "auto" in items):
            raise argparse.ArgumentError(self, f"{' '.join(items)}: use 'cpu', 'auto' or GPU indices, not a mix")
        setattr(namespace, self.dest, list(values))


def container_memory(text: str) -> str:
    """--container_memory: auto, none or a Docker size such as 16g or 512m."""
    from harness.docker.containers import ContainerError, memory_limit

    try:
        memory_limit(text)
    except ContainerError:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, none or a size like 16g or 512m") from None
    return text


def assignment(text: str) -> str:
    """A --set KEY.PATH=VALUE (whether the key exists in the config is checked when it is built)."""
    from harness.config.build import ConfigError, _split_assignment

    try:
        _split_assignment(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_param_flags(parser: argparse.ArgumentParser) -> None:
    """Every registered parameter, grouped by config section."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for p in PARAMS:
        group = groups.setdefault(p.section, parser.add_argument_group(p.section))
        _add_param(group, p)


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that steer a launch but are not parameters of the run."""
    g = parser.add_argument_group("launch")
    seeds = parser.add_mutually_exclusive_group()  # --seed N is the same as --seeds N
    seeds.add_argument("--seeds", type=seed, nargs="+", default=argparse.SUPPRESS, help="seeds to train")
    seeds.add_argument("--seed", type=seed, default=argparse.SUPPRESS,
                       help="single seed when --seeds is absent (42)")
    g.add_argument("--data_dir", default=None, help="dataset folder or file (real data)")
    g.add_argument("--output_base", default=None, help="folder holding experiment folders "
                   "(default: examples/experiments)")
    g.add_argument("--experiment_dir", default=None, help="use this experiment folder (id or path)")
    g.add_argument("--force", action="store_true", help="allow writing into an existing folder")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE", type=assignment,
                   help="override any config leaf before hashing (repeatable)")
    g.add_argument("--unset", dest="unsets", action="append", default=[], metavar="KEY.PATH",
                   help="return a config leaf to the launcher default (repeatable)")
    g.add_argument("--from_config", default=None, help="start from a config.json or a YAML/JSON file")
    g.add_argument("--reference_values", action="store_true",
                   help="start from the values of the reference's reported runs (Era B): lr 1.74e-4, alignment "
                   "0.25, retention 0.14, lag 0.06 with lags 1-2, share cap 0.08, decay 0.7, residual alignment, "
                   "plateau LR scheduler; explicit flags and --set still win (the values are hashed, the flag "
                   "itself is not: the same values typed as flags give the same config_md5)")
    g.add_argument("--reproduce_from", default=None, help="reproduce an experiment (id or path)")
    g.add_argument("--compare_only", action="store_true", help="compare --source_exp with --target_exp")
    g.add_argument("--source_exp", default=None, help="source experiment for --compare_only")
    g.add_argument("--target_exp", default=None, help="target experiment for --compare_only")
    g.add_argument("--manifest", action="store_true", help="write reproduction_manifest.json")
    g.add_argument("--strict_schema", action="store_true", help="abort on a schema_version mismatch")
    g.add_argument("--resume", default=None, help="resume an interrupted experiment (id or path)")
    g.add_argument("--auc_tolerance", type=tolerance, default=None, help="override the AUC tolerance")
    g.add_argument("--corr_tolerance", type=tolerance, default=None, help="override the correlation tolerance")
    g.add_argument("--no_verify", action="store_true", help="skip the verifier after a docker run")
    g.add_argument("--debug", action="store_true", help="show the full traceback of an internal error")
    g.add_argument("--container_memory", default="auto", metavar="SIZE", type=container_memory,
                   help="memory limit of the training container: auto (90%% of host memory), none, or e.g. 16g")
    g.add_argument("--container_pids", type=positive_int, default=4096, metavar="N",
                   help="process/thread limit of the training container")
    add_integrity_flags(g)


def add_integrity_flags(parser: Any) -> None:
    """Flags of commands that write into an existing folder or sign a finished one."""
    parser.add_argument("--accept_modified", action="store_true",
                        help="write into a folder that differs from its MANIFEST.sha256 (recorded in "
                        "modifications_accepted.txt) instead of refusing")
    parser.add_argument("--sign_key", default=None, metavar="PATH",
                        help="Ed25519 private key (PEM) that signs the finished run's attestation "
                        "(default: $HARNESS_SIGN_KEY)")
    parser.add_argument("--sign_accepted", action="store_true",
                        help="sign even a folder whose modifications were accepted (modifications_accepted.txt; "
                        "the attestation then records them); without it such a folder is not signed")



def command_line() -> str:
    """The command as typed, for the config's runtime section."""
    import shlex

    return " ".join(shlex.quote(a) for a in sys.argv)
