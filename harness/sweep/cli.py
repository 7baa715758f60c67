"""`harness sweep`: its flags and what it does with them."""

from __future__ import annotations

import argparse

from harness.cli.flags import add_launch_flags, add_param_flags, drop_flags, nonneg_int, title
from harness.config.params import PARAMS


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("title", nargs="?", default=None, type=title,
                        help="short title; the folder is <output_base>/YYYYMMDD_HHMMSS_sweep_<title>")
    g = parser.add_argument_group("sweep")
    g.add_argument("--spec", default=None, help="sweep spec (YAML: base, points and/or grid, seeds)")
    g.add_argument("--matrix", default=None, type=matrix_name, help="a built-in spec (see --list-matrices)")
    g.add_argument("--list-matrices", "--list_matrices", dest="list_matrices", action="store_true",
                   help="print the built-in matrices and exit")
    g.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="where jobs train: this machine's devices, or a Ray cluster (default: local; "
                   "with --resume: as launched)")
    g.add_argument("--ray_address", default=None,
                   help="Ray cluster to join (ADDR or 'auto'; default: start Ray on this machine)")
    g.add_argument("--max_retries", type=nonneg_int, default=None,
                   help="Ray: times a job lost with its worker or node is retried from its last checkpoint "
                   "(default: 2; with --resume: as launched)")
    # Every flag of `harness run` sets the base of every point (--resume takes a sweep here),
    # except those that have no meaning for a sweep (typing one is a usage error).
    add_launch_flags(parser)
    add_param_flags(parser)
    from harness.sweep.spec import REFUSED_FLAGS

    drop_flags(parser, set(REFUSED_FLAGS))


def matrix_name(text: str) -> str:
    """--matrix: the name of a built-in matrix."""
    from harness.sweep.matrix import MATRICES

    if text not in MATRICES:
        raise argparse.ArgumentTypeError(f"{text}: unknown matrix (known: {', '.join(sorted(MATRICES))}; "
                                         "see --list-matrices)")
    return text


def sweep_command(ns: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.sweep import runner
    from harness.sweep.matrix import list_matrices

    if ns.list_matrices:
        print(list_matrices())
        return 0
    if ns.resume:
        given = [f"--{p.name}" for p in PARAMS if p.name in vars(ns)] + [f for f, v in (
            ("a title", ns.title), ("--spec", ns.spec), ("--matrix", ns.matrix), ("--set", ns.sets),
            ("--unset", ns.unsets), ("--from_config", ns.from_config), ("--seeds", getattr(ns, "seeds", None)))
            if v]
        if given:
            raise UsageError(f"--resume <sweep> trains the points as they were prepared; {given[0]} cannot "
                             "change them (only --backend, --ray_address, --max_retries, --output_base, --data_dir)")
        return runner.resume(ns)
    if not ns.title:
        raise UsageError("a sweep title is required: harness sweep <title> --spec SPEC.yaml | --matrix NAME")
    if getattr(ns, "runtime", None) == "docker":
        raise UsageError("--runtime docker is not supported by sweeps yet; use --runtime local")
    if ns.backend != "ray" and ns.ray_address:
        raise UsageError("--ray_address needs --backend ray")
    if (ns.spec is None) == (ns.matrix is None):
        raise UsageError("give exactly one of --spec SPEC.yaml or --matrix NAME (see --list-matrices)")
    ns.backend = ns.backend or "local"
    ns.max_retries = 2 if ns.max_retries is None else ns.max_retries
    return runner.start(ns)
