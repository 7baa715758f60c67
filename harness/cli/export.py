"""`harness export mlflow <experiment|sweep> --tracking_uri URI`: runs in an MLflow tracking store."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    from harness.cli.flags import OneLineParser

    exp = sub.add_parser("export", help="export finished experiments to another tool (MLflow)")
    exp_sub = exp.add_subparsers(dest="export_command", required=True, parser_class=OneLineParser)
    ml = exp_sub.add_parser("mlflow", help="one MLflow parent run per experiment (per point of a sweep) with a "
                            "child run per seed: config as params, epoch and final metrics, tags, README/plots "
                            "(needs the [mlflow] extra)")
    ml.add_argument("experiment", help="experiment or sweep (id under --output_base, or path)")
    ml.add_argument("--tracking_uri", required=True, metavar="URI",
                    help="MLflow tracking URI: sqlite:///mlflow.db, a file:// folder, or http://host:port of "
                    "`mlflow server`")
    ml.add_argument("--experiment_name", default=None, metavar="NAME",
                    help="MLflow experiment to log into (created if absent; default: gainakt-harness)")
    ml.add_argument("--with_checkpoints", action="store_true",
                    help="also upload each seed's model_best/model_last checkpoints to its run")
    ml.add_argument("--allow_unverified", action="store_true",
                    help="export although `harness verify` fails (the verdict is recorded in the tags)")
    ml.add_argument("--output_base", default=None, help="folder holding experiment folders "
                    "(default: examples/experiments)")
    ml.set_defaults(handler=export_mlflow_command)


def export_mlflow_command(ns: argparse.Namespace) -> int:
    from harness.cli.listing import resolve_folder
    from harness.export.mlflow import DEFAULT_EXPERIMENT, export_folder

    folder = resolve_folder(ns.experiment, ns.output_base)
    name = ns.experiment_name or DEFAULT_EXPERIMENT
    done = export_folder(folder, ns.tracking_uri, name, with_checkpoints=ns.with_checkpoints,
                         allow_unverified=ns.allow_unverified)
    for exp in done:
        seeds = ", ".join(f"seed {s['seed']} {s['run_id']} ({s['action']})" for s in exp["seeds"])
        print(f"{exp['experiment']}: run {exp['run_id']} ({exp['action']}); {seeds}")
    print(f"MLflow experiment {name!r} at {ns.tracking_uri}: {len(done)} parent run(s)")
    return 0
