"""`harness sweep`: its flags and what it does with them."""

from __future__ import annotations

import argparse

from harness.cli.flags import add_launch_flags, add_param_flags
from harness.config.params import PARAMS


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("title", nargs="?", default=None,
                        help="short title; the folder is <output_base>/YYYYMMDD_HHMMSS_sweep_<title>")
    g = parser.add_argument_group("sweep")
    g.add_argument("--spec", default=None, help="sweep spec (YAML: base, points and/or grid, seeds)")
    g.add_argument("--matrix", default=None, help="a built-in spec (see --list-matrices)")
    g.add_argument("--list-matrices", "--list_matrices", dest="list_matrices", action="store_true",
                   help="print the built-in matrices and exit")
    g.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="where jobs train: this machine's devices, or a Ray cluster (default: local; "
                   "with --resume: as launched)")
    g.add_argument("--ray_address", default=None,
                   help="Ray cluster to join (ADDR or 'auto'; default: start Ray on this machine)")
    g.add_argument("--max_retries", type=int, default=None,
                   help="Ray: times a job lost with its worker or node is retried from its last checkpoint "
                   "(default: 2; with --resume: as launched)")
    # Every flag of `harness run` sets the base of every point (--resume takes a sweep here).
    add_launch_flags(parser)
    add_param_flags(parser)


def sweep_command(ns: argparse.Namespace) -> int:
    from harness.sweep import runner
    from harness.sweep.matrix import list_matrices
    from harness.sweep.spec import SweepError

    if ns.list_matrices:
        print(list_matrices())
        return 0
    if ns.max_retries is not None and ns.max_retries < 0:
        raise SweepError(f"--max_retries must be 0 or more, got {ns.max_retries}")
    if ns.resume:
        given = [f"--{p.name}" for p in PARAMS if p.name in vars(ns)] + [f for f, v in (
            ("a title", ns.title), ("--spec", ns.spec), ("--matrix", ns.matrix), ("--set", ns.sets),
            ("--unset", ns.unsets), ("--from_config", ns.from_config), ("--seeds", getattr(ns, "seeds", None)))
            if v]
        if given:
            raise SweepError(f"--resume <sweep> trains the points as they were prepared; {given[0]} cannot "
                             "change them (only --backend, --ray_address, --max_retries, --output_base, --data_dir)")
        return runner.resume(ns)
    if ns.backend != "ray" and ns.ray_address:
        raise SweepError("--ray_address needs --backend ray")
    ns.backend = ns.backend or "local"
    ns.max_retries = 2 if ns.max_retries is None else ns.max_retries
    return runner.start(ns)
