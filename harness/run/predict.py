"""`harness predict`: an experiment's trained model applied to interaction logs, one row per student step.

What it reads and writes, in order (every check before any work):

1. the output files (`--out FILE.csv`, `FILE.csv.meta.json`, with `--full_mastery --mastery_format long`
   `FILE_mastery_long.csv`, with `--plot S` `FILE_student_<S>.png`): their folder must exist, lie outside
   the `--data` input and outside every experiment or sweep folder (no ancestor folder holding a
   `config.json` or a `sweep.json`), and none may exist unless `--overwrite`;
2. the experiment folder (config.json, `harness verify`, each seed's best checkpoint), read through the
   folder I/O layer (`harness.folder.io`: no symlink followed, regular files, bounded reads);
3. the interaction logs (`gainakt.data`), then the model's rows, streamed batch by batch into a temporary
   file beside each output that is renamed into place when complete; the plot and the metadata are
   written through the same layer. A symlink at an output name is replaced, never written through.

Outputs are CSV: parquet would need pyarrow, which is not a dependency (the CLI refuses `.parquet`).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gainakt.config import ConfigValueError
from harness.config.schema import RunConfig
from harness.folder import io as folder_io
from harness.folder.experiment import ExperimentError, find_experiment, read_json
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
MASTERY_VIEW_RULES = {
    "window": "the model's output: mastery restarts at every window start (m_0 of the window's first position)",
    "student": "mastery carried across window boundaries: window k+1 starts from the last mastery of window k "
               "and accumulates its own gains under the model's rule (gainakt.views); predictions are unchanged",
}
SKIP_SHORT = "fewer than 3 interactions"  # build_windows' rule: a window needs 3 interactions
# A folder is evidence when it holds one of these: an experiment (config.json) or a sweep (sweep.json).
FOLDER_MARKERS = (("config.json", "experiment"), ("sweep.json", "sweep"))


class PredictError(ExperimentError):
    """A predict / data request that cannot be served; one line for the user."""


@dataclass(frozen=True)
class PredictOptions:
    """What `harness predict` was asked to do (the CLI's flags, typed)."""

    experiment: str
    data: str
    out: str
    format: str = "auto"
    seed: int | None = None
    students: str | None = None
    full_mastery: bool = False
    mastery_format: str = "wide"
    mastery_view: str = "window"
    plot: str | None = None
    allow_unverified: bool = False
    overwrite: bool = False
    device: str = "cpu"
    threads: int | None = None
    chunk_students: int = 512
    output_base: str | None = None


@dataclass(frozen=True)
class Outputs:
    """The files one predict call writes (all in the folder of `--out`)."""

    predictions: Path
    meta: Path
    mastery_long: Path | None
    plot: Path | None

    def all(self) -> list[Path]:
        return [p for p in (self.predictions, self.mastery_long, self.plot, self.meta) if p is not None]


def plan_outputs(opts: PredictOptions) -> Outputs:
    """The output paths, in the folder of `--out` with its symlinks resolved (a folder reached through a
    link is written as the real folder it is, and checked as such)."""
    given = Path(opts.out)
    out = given.parent.resolve() / given.name
    long = out.with_name(out.stem + "_mastery_long.csv") if opts.full_mastery and opts.mastery_format == "long" \
        else None
    plot = out.with_name(f"{out.stem}_student_{_safe(opts.plot)}.png") if opts.plot is not None else None
    return Outputs(predictions=out, meta=Path(str(out) + ".meta.json"), mastery_long=long, plot=plot)


def check_outputs(opts: PredictOptions, outputs: Outputs) -> None:
    """Refuse, in one line, outputs that would land in the input, in evidence or over existing files."""
    out = outputs.predictions
    if not out.parent.is_dir():
        raise PredictError(f"--out {opts.out}: folder {Path(opts.out).parent} does not exist")
    data, where = Path(opts.data).resolve(), out.parent
    if where / out.name == data or data == where or data in where.parents:
        raise PredictError(f"--out {opts.out} would overwrite the input --data {opts.data} (or write into it)")
    for folder in (where, *where.parents):
        for marker, kind in FOLDER_MARKERS:
            if folder_io.exists(folder / marker):
                raise PredictError(f"--out {opts.out} lies inside the {kind} folder {folder} (it holds {marker}); "
                                   f"predict never writes into an experiment or sweep folder: write it elsewhere")
    existing = [p.name for p in outputs.all() if folder_io.exists(p)]
    if existing and not opts.overwrite:
        verb = "already exists" if len(existing) == 1 else "already exist"
        raise PredictError(f"--out {opts.out}: {', '.join(existing)} {verb} in {out.parent}; "
                           "pass --overwrite to replace them, or choose another --out")


def run_predict(opts: PredictOptions) -> dict[str, Any]:
    """Predict as `opts` says; returns the metadata written beside the predictions."""
    _check_device(opts.device)
    exp = find_experiment(opts.experiment, opts.output_base)  # an explicit --output_base confines it
    outputs = plan_outputs(opts)
    check_outputs(opts, outputs)
    run = _run_config(exp)
    verified = _verify(exp, opts.allow_unverified)
    seeds = _seeds(run, opts.seed)
    ds = _load_data(opts.data, opts.format)
    students = _select_students(ds, opts.students)
    plot_index = _plot_student(ds, students, opts.plot)
    meta: dict[str, Any] = {
        "experiment": exp.name, "experiment_path": str(exp.resolve()), "config_md5": run.config_md5,
        "verify": verified, "options": asdict(opts),
        "data": {"path": str(Path(opts.data).resolve()), "format": ds.fmt, "sha256": ds.sha256,
                 "students_in_data": len(ds), "students_selected": int(len(students))},
        "long_sequences": None, "device": opts.device, "columns": dict(COLUMN_MEANINGS), "checkpoints": {},
        "mastery_view": {"view": opts.mastery_view, "rule": MASTERY_VIEW_RULES[opts.mastery_view]},
    }
    if opts.mastery_view == "student":
        meta["columns"]["mastery_next"] += " (student view: carried across window boundaries)"
    write_predictions(exp, run, ds, students, seeds, outputs, opts, meta, plot_index)
    return meta


def _check_device(name: str) -> None:
    import torch

    device = torch.device(name)  # the name parsed (the CLI's torch_device); CUDA is this machine's
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PredictError(f"--device {name}: CUDA is not available on this machine")


def _run_config(exp: Path) -> RunConfig:
    """The folder's config.json, typed; a config that does not parse is one line naming the key."""
    try:
        return RunConfig.from_dict(read_json(exp / "config.json"))
    except ConfigValueError as exc:
        raise PredictError(f"{exp.name}/config.json: {exc}") from None


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


def write_predictions(exp: Path, run: RunConfig, ds: Any, students: np.ndarray, seeds: list[int], outputs: Outputs,
                      opts: PredictOptions, meta: dict[str, Any], plot_index: int | None) -> None:
    """Every seed's rows into the predictions file (streamed), the long mastery file, the plot and the
    metadata sidecar."""
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
    threads = opts.threads or int(run.runtime.get("threads") or torch.get_num_threads())
    meta["threads"] = threads
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # float sums depend on the thread count: use the run's
    keep_freed_buffers()  # as in the training workers: batches reuse freed buffers (numbers unchanged)
    try:
        _write_files(exp, run, ds, students, seeds, outputs, opts, meta, plot_index)
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _text_output(path: Path, exclusive: bool) -> Iterator[TextIO]:
    """A text (CSV) file streamed through the folder I/O layer: renamed into place when the block ends."""
    with folder_io.open_write(path, exclusive=exclusive) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            yield text
            text.flush()
        finally:
            text.detach()  # the layer closes (and renames or removes) the binary file


def _write_files(exp: Path, run: RunConfig, ds: Any, students: np.ndarray, seeds: list[int], outputs: Outputs,
                 opts: PredictOptions, meta: dict[str, Any], plot_index: int | None) -> None:
    """Every check first (checkpoints, concept ids), then the files; the CSVs are renamed into place only
    when complete, so a failure leaves no half-written output."""
    import torch

    from gainakt.predict import check_concepts
    from harness.folder.checkpoints import load_trained_model

    models = {}
    for seed in seeds:
        model, state, sha256 = load_trained_model(exp, run, seed)
        check_concepts(ds, students, model.num_c)
        if (opts.full_mastery or plot_index is not None or opts.mastery_view == "student") \
                and not model.heads_enabled:
            raise PredictError("--full_mastery, --plot and --mastery_view student need the mastery and gain heads, "
                               "which this model has off")
        models[seed] = model.to(torch.device(opts.device))
        meta["checkpoints"][str(seed)] = {
            "file": _checkpoint_file(run, seed), "sha256": sha256, "epoch": int(state["epoch"]) + 1,
            "best_val_auc": state.get("best_val_auc"), "config_md5": state.get("config_md5"),
            "model_args": state.get("model_args") or "rebuilt from config.json (checkpoint without model_args)",
        }
    exclusive = not opts.overwrite
    plot_rows: list[Any] = []
    rows = 0
    with_rows: set[int] = set()
    with ExitStack() as stack:
        main_fh = stack.enter_context(_text_output(outputs.predictions, exclusive))
        long_fh = stack.enter_context(_text_output(outputs.mastery_long, exclusive)) \
            if outputs.mastery_long is not None else None
        for seed, model in models.items():
            rows += _predict_seed(model, ds, students, seed, opts, (main_fh, long_fh), rows == 0, meta,
                                  plot_rows if plot_index is not None and not plot_rows else None, plot_index,
                                  with_rows if not with_rows else None)
    meta["rows"] = rows
    skipped = _skipped(ds, students, with_rows)
    meta["data"]["students_with_rows"] = len(with_rows)
    meta["data"]["students_skipped"] = skipped
    meta["files"] = {"predictions": outputs.predictions.name,
                     "mastery_long": outputs.mastery_long.name if outputs.mastery_long else None}
    if opts.full_mastery:
        meta["columns"]["mastery_c<k>" if opts.mastery_format == "wide" else "mastery_long"] = (
            "model mastery of concept k after step (every concept)")
    if plot_rows and outputs.plot is not None:  # the first seed's trajectories
        folder_io.write_bytes(outputs.plot, _plot(plot_rows, meta), exclusive=exclusive)
        meta["files"]["plot"] = outputs.plot.name
    folder_io.write_text(outputs.meta, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n",
                         exclusive=exclusive)
    skip_note = "; ".join(f"{n} skipped: {why}" for why, n in skipped.items()) or "none skipped"
    print(f"wrote {rows} rows ({len(with_rows)} students with rows, {skip_note}; seeds {seeds}) to "
          f"{outputs.predictions}; metadata {outputs.meta}")


def _skipped(ds: Any, students: np.ndarray, with_rows: set[int]) -> dict[str, int]:
    """The selected students without a row, counted by reason."""
    out: dict[str, int] = {}
    for s in students:
        if int(s) in with_rows:
            continue
        why = SKIP_SHORT if len(ds.concepts[int(s)]) < 3 else "no window (unexpected; please report)"
        out[why] = out.get(why, 0) + 1
    return out


def _checkpoint_file(run: RunConfig, seed: int) -> str:
    from harness.folder.checkpoints import checkpoint_name

    return checkpoint_name("best", seed, len(run.seeds.all) > 1)


def _predict_seed(model: Any, ds: Any, students: np.ndarray, seed: int, opts: PredictOptions, handles: tuple,
                  header: bool, meta: dict, plot_rows: list | None, plot_index: int | None,
                  with_rows: set[int] | None) -> int:
    """Stream one seed's batches into the open files; return the number of rows written. `with_rows`
    (one seed's) collects the indices of the students that got rows."""
    import pandas as pd
    import torch
    from rich.console import Console
    from rich.progress import Progress

    from gainakt.data.windows import chunk_rows
    from gainakt.predict import predict_batch, stream_rows
    from gainakt.views import StudentView

    device = torch.device(opts.device)
    max_len, batch_size = meta["long_sequences"]["max_len"], meta["long_sequences"]["batch_size"]
    total = int(chunk_rows(ds.lengths[students], max_len).sum())
    view = StudentView(model.accumulate) if opts.mastery_view == "student" else None
    written = 0
    with Progress(console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(f"seed {seed}: windows", total=total)
        for batch, starts in stream_rows(ds, students, max_len=max_len, batch_size=batch_size,
                                         chunk_students=opts.chunk_students):
            frame, full = predict_batch(model, batch, starts, ds.uids, device,
                                        full_mastery=opts.full_mastery or plot_rows is not None,
                                        pack=meta["long_sequences"]["pack_windows"], view=view)
            if with_rows is not None:
                with_rows.update(int(s) for s in batch.student.tolist())
            frame.insert(0, "seed", seed)
            if plot_rows is not None and plot_index is not None and full is not None:
                mine = (frame["student_id"] == ds.uids[plot_index]).to_numpy()
                plot_rows.append((frame[mine], full[mine]))
            if opts.full_mastery and full is not None and opts.mastery_format == "wide":
                wide = pd.DataFrame(full.astype(np.float64), columns=[f"mastery_c{k}" for k in range(full.shape[1])])
                frame = pd.concat([frame, wide], axis=1)
            elif opts.full_mastery and full is not None:
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


def _plot(parts: list, meta: dict) -> bytes:
    """PNG bytes: mastery of every concept the student is asked, at every step; its answers marked on its line."""
    import pandas as pd

    from harness.folder.plots import plt  # the run's plotting setup (Agg backend)

    frame = pd.concat([f for f, _ in parts], ignore_index=True)
    full = np.concatenate([m for _, m in parts]) if parts else np.zeros((0, 0))
    student = str(frame["student_id"].iloc[0]) if len(frame) else "?"
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = frame["step"].to_numpy() + 1  # mastery after step t is the mastery before answering at t + 1
    for concept in sorted(set(frame["next_concept"].tolist())):
        line, = ax.plot(x, full[:, concept], "-", lw=1, label=f"concept {concept}")
        at = (frame["next_concept"] == concept).to_numpy()
        right, wrong = at & (frame["next_response"] == 1).to_numpy(), at & (frame["next_response"] == 0).to_numpy()
        ax.scatter(x[right], full[right, concept], s=16, color=line.get_color())
        ax.scatter(x[wrong], full[wrong, concept], s=16, facecolors="none", edgecolors=line.get_color())
    seed = frame["seed"].iloc[0] if len(frame) else "?"
    view = "; student view" if meta["mastery_view"]["view"] == "student" else ""
    ax.set(title=f"student {student}, seed {seed} ({meta['experiment']}{view})", ylim=(-0.05, 1.05),
           xlabel="step (answers on their concept's line: filled = correct, hollow = wrong)",
           ylabel="mastery before the step")
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": "gainakt-harness", "Creation Time": None})
    plt.close(fig)
    return buf.getvalue()


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


__all__ = ["COLUMN_MEANINGS", "FORMATS", "MASTERY_VIEW_RULES", "Outputs", "PredictError", "PredictOptions",
           "check_outputs", "plan_outputs", "run_predict"]
