"""`harness predict` (a trained model on new interaction logs) and the `harness data simulate` /
`harness data score-truth` commands (the simulator's students and truth, shared with other models).

Outputs are CSV: parquet would need pyarrow, which is not a dependency, so a `.parquet` name is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gainakt.config import ConfigValueError
from harness.cli.flags import nonneg_int, param_value, positive_int
from harness.config.schema import RunConfig
from harness.folder.experiment import ExperimentError, output_base, read_json, resolve_experiment
from harness.run.allocator import keep_freed_buffers

FORMATS = ("auto", "pykt", "pykt_sequences", "dkvmn", "raw_assist2015", "csv")
COLUMN_MEANINGS = {
    "seed": "training seed of the checkpoint used",
    "student_id": "the student's id in the data (pyKT uid; dkvmn: <file stem>:<row>; csv: student_id)",
    "step": "0-based index of the interaction in the student's sequence",
    "concept": "concept answered at step",
    "response": "response at step (0/1)",
    "next_concept": "concept asked at step + 1",
    "next_response": "response at step + 1 (0/1), the prediction's target",
    "probability": "predicted probability of answering next_concept correctly",
    "mastery_next": "model mastery of next_concept after step",
    "gain_practised": "model learning gain of the concept answered at step",
}


class PredictError(ExperimentError):
    """A predict / data request that cannot be served; one line for the user."""


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


# ---------------------------------------------------------------------------------------------
# harness data simulate / score-truth


def simulate_command(ns: argparse.Namespace) -> int:
    from gainakt.simulate import export, generator_parameters, simulate

    out = Path(ns.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PredictError(f"--out {out} exists and is not an empty folder")
    try:
        ds = simulate(ns.students, ns.skills, ns.min_len, ns.max_len, ns.seed, ns.forgetting)
    except ValueError as exc:
        raise PredictError(f"simulate: {exc}") from None
    empty = [name for name, fold in (("test", -1), *((f"fold {k}", k) for k in range(5))) if not (ds.folds == fold).any()]
    if empty:
        raise PredictError(f"--students {ns.students} is too few for the pyKT split (20% test, folds 0-4): "
                           f"no student in {', '.join(empty)}; the exported data could not be trained on")
    params = generator_parameters(ns.students, ns.skills, ns.min_len, ns.max_len, ns.seed, ns.forgetting)
    try:
        record = export(ds, out, ns.format, params)
    except OSError as exc:
        raise PredictError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    print(f"wrote {record['students']} students, {record['skills']} skills ({ns.format}) and truth.csv to {out}")
    return 0


def _read_table(path: str, what: str) -> Any:
    import pandas as pd

    if not Path(path).is_file():
        raise PredictError(f"{what} file not found: {path}")
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PredictError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def score_truth_command(ns: argparse.Namespace) -> int:
    import pandas as pd

    from gainakt.predict import score_truth, truth_pairs

    truth = _read_table(ns.truth, "--truth")
    preds = _read_table(ns.predictions, "--predictions")
    _require(truth, ("student_id", "step", "skill", "true_mastery", "answered"), ns.truth)
    long = "mastery_next" not in preds.columns
    _require(preds, ("student_id", "step", "concept", "mastery") if long else ("student_id", "step", "next_concept"),
             ns.predictions)
    column = "mastery" if long else "mastery_next"
    values = pd.to_numeric(preds[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        first = preds[bad].iloc[0]
        raise PredictError(f"{ns.predictions}: {int(bad.sum())} row(s) have no finite {column} value (first: "
                           f"student {first['student_id']}, step {first['step']}); score-truth needs a number "
                           "in every row")
    parts = preds.groupby("seed", sort=True) if "seed" in preds.columns else [(None, preds)]
    scores = {}
    for seed, part in parts:
        pairs = truth_pairs(truth, part)
        if pairs.empty:
            raise PredictError(f"no prediction in {ns.predictions} matches a (student_id, step, concept) of "
                               f"{ns.truth}: predictions of another dataset?")
        s = score_truth(pairs)
        if s.n == 0:
            raise PredictError(f"no student of {ns.predictions}{'' if seed is None else f' (seed {seed})'} can be "
                               "scored: a correlation needs 3 or more steps whose predicted and true mastery both vary")
        scores["all" if seed is None else str(seed)] = {
            "true_mastery_correlation": s.mean, "students": s.n, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "pairs": len(pairs)}
    if ns.json:
        print(json.dumps(scores, indent=2, sort_keys=True))
        return 0
    for seed, row in scores.items():
        print(f"seed {seed}: mean per-student Pearson r of predicted vs true mastery of the concept asked next "
              f"= {row['true_mastery_correlation']:.4f} over {row['students']} students ({row['pairs']} steps) "
              f"(95% CI {row['ci_low']:.4f} to {row['ci_high']:.4f})")
    return 0


def _require(table: Any, columns: tuple[str, ...], path: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PredictError(f"{path}: missing column(s) {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------
# harness predict


def predict_command(ns: argparse.Namespace) -> int:
    _check_options(ns)
    exp = resolve_experiment(ns.experiment, output_base(ns.output_base))
    run = _run_config(exp)
    out = _output_path(ns.out)
    verified = _verify(exp, ns.allow_unverified)
    seeds = _seeds(run, ns.seed)
    ds = _load_data(ns.data, ns.format)
    students = _select_students(ds, ns.students)
    plot_index = _plot_student(ds, students, ns.plot)
    meta: dict[str, Any] = {
        "experiment": exp.name, "experiment_path": str(exp.resolve()), "config_md5": run.config_md5,
        "verify": verified, "options": {k: v for k, v in vars(ns).items() if k != "handler"},
        "data": {"path": str(Path(ns.data).resolve()), "format": ds.fmt, "sha256": ds.sha256,
                 "students_in_data": len(ds), "students_predicted": int(len(students))},
        "long_sequences": None, "device": ns.device, "columns": dict(COLUMN_MEANINGS), "checkpoints": {},
    }
    write_predictions(exp, run, ds, students, seeds, out, ns, meta, plot_index)
    return 0


def _run_config(exp: Path) -> RunConfig:
    """The folder's config.json, typed; a config that does not parse is one line naming the key."""
    try:
        return RunConfig.from_dict(read_json(exp / "config.json"))
    except ConfigValueError as exc:
        raise PredictError(f"{exp.name}/config.json: {exc}") from None


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


def _check_options(ns: argparse.Namespace) -> None:
    import torch

    from harness.errors import UsageError

    if ns.mastery_format is not None and not ns.full_mastery:
        raise UsageError("--mastery_format needs --full_mastery")
    data, out = Path(ns.data).resolve(), Path(ns.out).resolve()
    if out == data or data in out.parents:
        raise PredictError(f"--out {ns.out} would overwrite the input --data {ns.data} (or write into it)")
    ns.mastery_format = ns.mastery_format or "wide"
    device = torch.device(ns.device)  # the name parsed (torch_device); CUDA is this machine's
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"--device {ns.device}: CUDA is not available on this machine")


def _output_path(name: str) -> Path:
    out = Path(name)  # a .csv name (csv_file)
    if not out.parent.is_dir():
        raise PredictError(f"--out {name}: folder {out.parent} does not exist")
    return out


def _verify(exp: Path, allow: bool) -> dict[str, Any]:
    from harness.audit.verify import verify_experiment

    report = verify_experiment(exp)
    if not report["passed"] and not allow:
        raise PredictError(f"{exp.name} does not verify (failed: {', '.join(report['failed'])}); "
                           "see `harness verify`, or pass --allow_unverified to predict anyway")
    return {"passed": report["passed"], "failed": report["failed"], "overridden": not report["passed"]}


def _seeds(run: RunConfig, seed: int | None) -> list[int]:
    seeds = [int(s) for s in run.seeds.all]
    if seed is None:
        return seeds
    if seed not in seeds:
        raise PredictError(f"seed {seed} is not a seed of this experiment (seeds: {seeds})")
    return [seed]


def _load_data(path: str, fmt: str) -> Any:
    from gainakt.data import load_dataset
    from gainakt.predict import read_interactions_csv

    if not Path(path).exists():
        raise PredictError(f"--data {path} not found")
    return read_interactions_csv(path) if fmt == "csv" else load_dataset(path, fmt)


def _select_students(ds: Any, ids: str | None) -> np.ndarray:
    """Indices of the requested students, in the data's order (so batches match the run's evaluation)."""
    if ids is None:
        return np.arange(len(ds), dtype=np.int64)
    wanted = [s.strip() for s in ids.split(",") if s.strip()]
    if not wanted:
        raise PredictError("--students lists no student id")
    index = {u: i for i, u in enumerate(ds.uids)}
    unknown = [s for s in wanted if s not in index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise PredictError(f"unknown student id(s) {shown} (the data has {len(ds)} students, e.g. {ds.uids[0]})")
    return np.array(sorted({index[s] for s in wanted}), dtype=np.int64)


def _plot_student(ds: Any, students: np.ndarray, student: str | None) -> int | None:
    if student is None:
        return None
    chosen = {ds.uids[int(i)]: int(i) for i in students}
    if student not in chosen:
        raise PredictError(f"--plot {student}: not among the students predicted")
    return chosen[student]


# ---------------------------------------------------------------------------------------------
# Writing the rows


def write_predictions(exp: Path, run: RunConfig, ds: Any, students: np.ndarray, seeds: list[int], out: Path,
                      ns: argparse.Namespace, meta: dict[str, Any], plot_index: int | None) -> None:
    """Every seed's rows into `out` (streamed), the long mastery file, the plot and the metadata sidecar."""
    import torch

    from gainakt.predict import LONG_SEQUENCES

    # The run's evaluation batches: its eval batch size (the training one in configs that predate it)
    # and its packing, so the written numbers equal the run's own to the last bit.
    data, training = run.train.data, run.train.training
    max_len = data.seq_len
    batch_size = training.eval_batch_size or training.batch_size
    pack = data.pack_windows
    meta["long_sequences"] = {"rule": LONG_SEQUENCES, "max_len": max_len, "batch_size": batch_size,
                              "pack_windows": pack}
    threads = ns.threads or int(run.runtime.get("threads") or torch.get_num_threads())
    meta["threads"] = threads
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # float sums depend on the thread count: use the run's
    keep_freed_buffers()  # as in the training workers: batches reuse freed buffers (numbers unchanged)
    try:
        _write_files(exp, run, ds, students, seeds, out, ns, meta, plot_index)
    finally:
        torch.set_num_threads(previous)


def _write_files(exp: Path, run: RunConfig, ds: Any, students: np.ndarray, seeds: list[int], out: Path,
                 ns: argparse.Namespace, meta: dict[str, Any], plot_index: int | None) -> None:
    """Every check first (checkpoints, concept ids), then the files, written under temporary names and
    renamed at the end, so a failure leaves no half-written output."""
    import torch

    from gainakt.predict import check_concepts
    from harness.folder.checkpoints import load_trained_model
    from harness.folder.experiment import sha256_file

    models = {}
    for seed in seeds:
        model, state = load_trained_model(exp, run, seed)
        check_concepts(ds, students, model.num_c)
        if (ns.full_mastery or plot_index is not None) and not model.heads_enabled:
            raise PredictError("--full_mastery and --plot need the mastery and gain heads, which this model has off")
        models[seed] = model.to(torch.device(ns.device))
        path = exp / _checkpoint_file(run, seed)
        meta["checkpoints"][str(seed)] = {
            "file": path.name, "sha256": sha256_file(path), "epoch": int(state["epoch"]) + 1,
            "best_val_auc": state.get("best_val_auc"), "config_md5": state.get("config_md5"),
            "model_args": state.get("model_args") or "rebuilt from config.json (checkpoint without model_args)",
        }
    long_path = out.with_name(out.stem + "_mastery_long.csv") if ns.full_mastery and ns.mastery_format == "long" \
        else None
    targets = [p for p in (out, long_path) if p is not None]
    parts = {p: p.with_name(p.name + ".part") for p in targets}
    plot_rows: list[Any] = []
    rows = 0
    try:
        with parts[out].open("w", newline="") as main_fh, \
                (parts[long_path].open("w", newline="") if long_path else _Null()) as long_fh:
            for seed, model in models.items():
                rows += _predict_seed(model, ds, students, seed, ns, (main_fh, long_fh), rows == 0, meta,
                                      plot_rows if plot_index is not None and not plot_rows else None, plot_index)
        for target, part in parts.items():
            part.replace(target)
    finally:
        for part in parts.values():
            part.unlink(missing_ok=True)
    meta["rows"] = rows
    meta["files"] = {"predictions": out.name, "mastery_long": long_path.name if long_path else None}
    if ns.full_mastery:
        meta["columns"]["mastery_c<k>" if ns.mastery_format == "wide" else "mastery_long"] = (
            "model mastery of concept k after step (every concept)")
    if plot_rows:  # the first seed's trajectories
        meta["files"]["plot"] = _plot(plot_rows, out, meta).name
    Path(str(out) + ".meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    print(f"wrote {rows} rows ({len(students)} students, seeds {seeds}) to {out}; metadata {out}.meta.json")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _checkpoint_file(run: RunConfig, seed: int) -> str:
    from harness.folder.checkpoints import checkpoint_name

    return checkpoint_name("best", seed, len(run.seeds.all) > 1)


def _predict_seed(model: Any, ds: Any, students: np.ndarray, seed: int, ns: argparse.Namespace, handles: tuple,
                  header: bool, meta: dict, plot_rows: list | None, plot_index: int | None) -> int:
    """Stream one seed's batches into the open files; return the number of rows written."""
    import pandas as pd
    import torch
    from rich.console import Console
    from rich.progress import Progress

    from gainakt.data.windows import chunk_rows
    from gainakt.predict import predict_batch, stream_rows

    device = torch.device(ns.device)
    max_len, batch_size = meta["long_sequences"]["max_len"], meta["long_sequences"]["batch_size"]
    total = int(chunk_rows(ds.lengths[students], max_len).sum())
    written = 0
    with Progress(console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(f"seed {seed}: windows", total=total)
        for batch, starts in stream_rows(ds, students, max_len=max_len, batch_size=batch_size,
                                         chunk_students=ns.chunk_students):
            frame, full = predict_batch(model, batch, starts, ds.uids, device,
                                        full_mastery=ns.full_mastery or plot_rows is not None,
                                        pack=meta["long_sequences"]["pack_windows"])
            frame.insert(0, "seed", seed)
            if plot_rows is not None and plot_index is not None and full is not None:
                mine = (frame["student_id"] == ds.uids[plot_index]).to_numpy()
                plot_rows.append((frame[mine], full[mine]))
            if ns.full_mastery and full is not None and ns.mastery_format == "wide":
                wide = pd.DataFrame(full.astype(np.float64), columns=[f"mastery_c{k}" for k in range(full.shape[1])])
                frame = pd.concat([frame, wide], axis=1)
            elif ns.full_mastery and full is not None:
                _write_long(handles[1], frame, full, header and written == 0)
            frame.to_csv(handles[0], header=header and written == 0, index=False)
            written += len(frame)
            bar.advance(task, len(batch))
    return written


def _write_long(handle: Any, frame: Any, full: np.ndarray, header: bool) -> None:
    import pandas as pd

    n, c = full.shape
    pd.DataFrame({
        "seed": np.repeat(frame["seed"].to_numpy(), c), "student_id": np.repeat(frame["student_id"].to_numpy(), c),
        "step": np.repeat(frame["step"].to_numpy(), c), "concept": np.tile(np.arange(c), n),
        "mastery": full.astype(np.float64).ravel(),
    }).to_csv(handle, header=header, index=False)


def _plot(parts: list, out: Path, meta: dict) -> Path:
    """Mastery of every concept the student is asked, at every step; its answers marked on its line."""
    import pandas as pd

    from harness.folder.plots import plt  # the run's plotting setup (Agg backend)

    frame = pd.concat([f for f, _ in parts], ignore_index=True)
    full = np.concatenate([m for _, m in parts]) if parts else np.zeros((0, 0))
    student = str(frame["student_id"].iloc[0]) if len(frame) else "?"
    path = out.with_name(f"{out.stem}_student_{_safe(student)}.png")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = frame["step"].to_numpy() + 1  # mastery after step t is the mastery before answering at t + 1
    for concept in sorted(set(frame["next_concept"].tolist())):
        line, = ax.plot(x, full[:, concept], "-", lw=1, label=f"concept {concept}")
        at = (frame["next_concept"] == concept).to_numpy()
        right, wrong = at & (frame["next_response"] == 1).to_numpy(), at & (frame["next_response"] == 0).to_numpy()
        ax.scatter(x[right], full[right, concept], s=16, color=line.get_color())
        ax.scatter(x[wrong], full[wrong, concept], s=16, facecolors="none", edgecolors=line.get_color())
    seed = frame["seed"].iloc[0] if len(frame) else "?"
    ax.set(title=f"student {student}, seed {seed} ({meta['experiment']})", ylim=(-0.05, 1.05),
           xlabel="step (answers on their concept's line: filled = correct, hollow = wrong)",
           ylabel="mastery before the step")
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": "gainakt-harness", "Creation Time": None})
    plt.close(fig)
    return path


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
