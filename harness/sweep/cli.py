"""`harness sweep`: its flags and what it does with them."""

from __future__ import annotations

import argparse

from harness.cli.flags import add_launch_flags, add_param_flags


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("title", nargs="?", default=None,
                        help="short title; the folder is <output_base>/YYYYMMDD_HHMMSS_sweep_<title>")
    g = parser.add_argument_group("sweep")
    g.add_argument("--spec", default=None, help="sweep spec (YAML: base, points and/or grid, seeds)")
    g.add_argument("--matrix", default=None, help="a built-in spec (see --list-matrices)")
    g.add_argument("--list-matrices", "--list_matrices", dest="list_matrices", action="store_true",
                   help="print the built-in matrices and exit")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where jobs train: this machine's devices, or a Ray cluster (default: local)")
    g.add_argument("--ray_address", default=None,
                   help="Ray cluster to join (ADDR or 'auto'; default: start Ray on this machine)")
    g.add_argument("--max_retries", type=int, default=2,
                   help="Ray: times a job lost with its worker or node is retried from its last checkpoint")
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
    if ns.max_retries < 0:
        raise SweepError(f"--max_retries must be 0 or more, got {ns.max_retries}")
    if ns.backend != "ray" and ns.ray_address:
        raise SweepError("--ray_address needs --backend ray")
    if ns.resume:
        if ns.title or ns.spec or ns.matrix:
            raise SweepError("--resume <sweep> continues a sweep as it was launched; give no title, --spec "
                             "or --matrix")
        return runner.resume(ns)
    return runner.start(ns)
