"""The command line of `harness predict`, `harness data simulate` and `harness data score-truth`: parse the
flags and dispatch. What they do lives in `harness.run.predict` and `harness.run.simulated`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gainakt.config import MASTERY_VIEWS
from harness.cli.flags import nonneg_int, param_value, positive_int
from harness.run.predict import FORMATS, PredictError, PredictOptions

__all__ = ["PredictError", "add_commands", "csv_file", "predict_command", "student_ids", "torch_device"]


def add_commands(sub: Any, data_sub: Any) -> None:
    """Register `predict` and the `data simulate` / `data score-truth` subcommands."""
    pre = sub.add_parser("predict", help="apply an experiment's trained model to interaction logs")
    pre.add_argument("experiment", help="experiment id (under --output_base) or path")
    pre.add_argument("--data", required=True, help="dataset folder or file to predict")
    pre.add_argument("--format", default="auto", choices=FORMATS, help="format of --data (csv: "
                     "student_id,concept_id,response rows, in order per student)")
    pre.add_argument("--seed", type=nonneg_int, default=None, help="one seed's checkpoint (default: every seed)")
    pre.add_argument("--students", default=None, type=student_ids, help="comma-separated student ids (default: all)")
    pre.add_argument("--out", required=True, type=csv_file,
                     help="output FILE.csv (a FILE.csv.meta.json sidecar is written)")
    pre.add_argument("--full_mastery", action="store_true", help="also write the mastery of every concept")
    pre.add_argument("--mastery_format", default=None, choices=("wide", "long"),
                     help="wide: mastery_c<k> columns; long: FILE_mastery_long.csv (seed,student_id,step,concept,mastery)")
    pre.add_argument("--plot", default=None, metavar="STUDENT", help="write this student's mastery trajectories as PNG")
    pre.add_argument("--mastery_view", default="window", choices=MASTERY_VIEWS,
                     help="window: mastery as the model outputs it, restarting at every window start (default); "
                     "student: carried across window boundaries (window k+1 starts from the last mastery of "
                     "window k); the predictions are the same")
    pre.add_argument("--overwrite", action="store_true",
                     help="replace output files that already exist (never inside an experiment or sweep folder)")
    pre.add_argument("--allow_unverified", action="store_true",
                     help="predict although `harness verify` fails (recorded in the metadata)")
    pre.add_argument("--device", default="cpu", type=torch_device, help="torch device (default cpu)")
    pre.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads (default: the run's; the same count gives bit-identical predictions)")
    pre.add_argument("--chunk_students", type=positive_int, default=512,
                     help="students whose windows are built at once")
    pre.add_argument("--output_base", default=None)
    pre.set_defaults(handler=predict_command)

    from harness.config.build import default_params

    builtin = default_params()  # the defaults are the built-in --dataset synthetic's
    sim = data_sub.add_parser("simulate", help="export simulated students with their true mastery")
    for flag, param in (("students", "synthetic_students"), ("skills", "synthetic_skills"),
                        ("min_len", "synthetic_min_len"), ("max_len", "synthetic_max_len"),
                        ("forgetting", "synthetic_forgetting"), ("seed", "synthetic_seed")):
        sim.add_argument(f"--{flag}", type=param_value(param), default=builtin[param],
                         help=f"as --{param} of `harness run` (default %(default)s)")
    sim.add_argument("--format", default="pykt", choices=("pykt", "dkvmn"))
    sim.add_argument("--out", required=True, help="new or empty folder")
    sim.set_defaults(handler=simulate_command)

    sco = data_sub.add_parser("score-truth", help="score predicted mastery against a simulation's truth")
    sco.add_argument("--truth", required=True, help="truth.csv of `harness data simulate`")
    sco.add_argument("--predictions", required=True, help="harness predict output, or long mastery rows "
                     "(student_id,step,concept,mastery[,seed])")
    sco.add_argument("--json", action="store_true")
    sco.set_defaults(handler=score_truth_command)


def simulate_command(ns: argparse.Namespace) -> int:
    from harness.run.simulated import simulate_export

    simulate_export(ns)
    return 0


def score_truth_command(ns: argparse.Namespace) -> int:
    from harness.run.simulated import score_truth_files

    score_truth_files(ns)
    return 0


def predict_command(ns: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.run.predict import run_predict

    if ns.mastery_format is not None and not ns.full_mastery:
        raise UsageError("--mastery_format needs --full_mastery")
    run_predict(PredictOptions(
        experiment=ns.experiment, data=ns.data, out=ns.out, format=ns.format, seed=ns.seed, students=ns.students,
        full_mastery=ns.full_mastery, mastery_format=ns.mastery_format or "wide", mastery_view=ns.mastery_view,
        plot=ns.plot, allow_unverified=ns.allow_unverified, overwrite=ns.overwrite, device=ns.device,
        threads=ns.threads, chunk_students=ns.chunk_students, output_base=ns.output_base,
    ))
    return 0


def student_ids(text: str) -> str:
    """--students: at least one comma-separated id (whether the data has them is checked later)."""
    if not any(s.strip() for s in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} lists no student id")
    return text


def csv_file(text: str) -> str:
    """--out: a .csv file (whether its folder exists is checked later)."""
    suffix = Path(text).suffix
    if suffix == ".parquet":
        raise argparse.ArgumentTypeError("parquet output needs pyarrow, which this project does not depend on; "
                                         "write a .csv file")
    if suffix != ".csv":
        raise argparse.ArgumentTypeError(f"{text}: write a .csv file")
    return text


def torch_device(text: str) -> str:
    """--device: a torch device name (whether CUDA is available is checked later)."""
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    return text
