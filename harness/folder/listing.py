"""What an output base holds: `harness ls` (one row per experiment and per sweep) and `harness show`.

Only small records are read (config.json, results.json, run_status.json, verification_report.json,
sweep.json; the presence of ATTESTATION.intoto.json), never a checkpoint or a log, each through the
folder I/O layer: nothing is followed (a symlinked folder or file is not listed or read), every read is
bounded. A folder whose records cannot be read is still listed, with the reason as its status.
The records are read as plain JSON (not the typed RunConfig), so schema-2 reference folders and damaged
ones are listed too.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.folder import io
from harness.folder.io import FolderIOError

RECORD_LIMIT = 4 * io.MIB  # config.json and friends are a few KB; results.json tens of KB
ATTESTATION = "ATTESTATION.intoto.json"
SWEEP_JSON = "sweep.json"
FINISHED = ("completed", "early_stopped")
# --sort keys: the row field, and whether larger comes first (numbers) or alphabetical order (text).
SORT_KEYS = {"id": ("id", False), "title": ("title", False), "status": ("status", False),
             "auc": ("best_val_auc", True), "test_auc": ("test_auc", True), "seeds": ("seeds_finished", True),
             "dataset": ("dataset", False)}


def _record(folder: Path, name: str) -> tuple[Any, str | None]:
    """(parsed JSON, None), (None, None) when absent, or (None, reason) when it cannot be read."""
    path = folder / name
    if not io.exists(path):
        return None, None
    try:
        return io.read_json(path, limit=RECORD_LIMIT, root=folder), None
    except FolderIOError as exc:
        return None, f"{name}: {str(exc).split(': ', 1)[-1]}"


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    return statistics.fmean(vals) if vals else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _verdict(report: Any) -> str | None:
    if not isinstance(report, dict):
        return None
    if isinstance(report.get("verdict"), str):
        return str(report["verdict"])
    return None if "passed" not in report else ("pass" if report["passed"] else "fail")


def experiment_row(folder: Path) -> dict[str, Any]:
    """One experiment folder as `harness ls` lists it (see the module doc for what is read)."""
    cfg, cfg_error = _record(folder, "config.json")
    results, res_error = _record(folder, "results.json")
    run_status, status_error = _record(folder, "run_status.json")
    report, _ = _record(folder, "verification_report.json")
    cfg, results, run_status = _dict(cfg), _dict(results), _dict(run_status)
    exp = _dict(cfg.get("experiment"))
    listed = _dict(cfg.get("seeds")).get("all", results.get("seeds"))
    seeds: list[Any] = listed if isinstance(listed, list) else []
    per_seed = {str(k): _dict(v) for k, v in _dict(results.get("per_seed")).items()}
    finished = [r for r in per_seed.values() if r.get("status") in FINISHED]
    errors = [e for e in (cfg_error, res_error, status_error) if e]
    status = run_status.get("status") or results.get("status") or ("unreadable" if errors else "prepared")
    return {
        "kind": "experiment",
        "id": folder.name,
        "path": str(folder),
        "title": exp.get("short_title") or exp.get("title") or "",
        "status": str(status),
        "seeds_finished": len(finished),
        "seeds_total": len(seeds),
        "best_val_auc": _mean(r.get("best_val_auc") for r in finished),
        "test_auc": _mean(r.get("test_auc") for r in finished),
        "config_md5": cfg.get("config_md5"),
        "dataset": _dict(cfg.get("data")).get("dataset") or _dict(cfg.get("data_checksum")).get("name"),
        "signed": io.is_regular(folder / ATTESTATION),
        "verify": _verdict(report),
        "created": _dict(cfg.get("runtime")).get("timestamp"),
        "warnings": len(results.get("warnings") or []),
        "errors": errors,
    }


def sweep_row(folder: Path) -> dict[str, Any]:
    """One sweep folder: its status, jobs and one experiment row per point (named by the point)."""
    state, error = _record(folder, SWEEP_JSON)
    state = _dict(state)
    report, _ = _record(folder, "verification_report.json")
    jobs = [_dict(j) for j in state.get("jobs") or []]
    points = []
    for p in state.get("points") or []:
        p = _dict(p)
        exp_id = str(p.get("experiment_id") or "")
        point_dir = folder / exp_id
        if exp_id and os.sep not in exp_id and _is_dir(point_dir):
            row = experiment_row(point_dir)
        else:
            row = {"kind": "experiment", "id": exp_id, "path": str(point_dir), "status": "missing",
                   "seeds_finished": 0, "seeds_total": len(state.get("seeds") or []), "best_val_auc": None,
                   "test_auc": None, "config_md5": p.get("config_md5"), "dataset": None, "signed": False,
                   "verify": None, "created": None, "warnings": 0, "errors": ["point folder missing"]}
        row.update(kind="point", point=p.get("name"), title=p.get("name") or row.get("title", ""))
        points.append(row)
    jobs_finished = sum(1 for j in jobs if j.get("status") in FINISHED)
    status = state.get("status") or ("unreadable" if error else "prepared")
    return {
        "kind": "sweep",
        "id": folder.name,
        "path": str(folder),
        "title": state.get("title") or "",
        "status": str(status),
        "seeds_finished": jobs_finished,  # jobs: (point, seed) pairs
        "seeds_total": len(jobs),
        "best_val_auc": None,
        "test_auc": None,
        "config_md5": None,
        "dataset": next((p["dataset"] for p in points if p.get("dataset")), None),
        "signed": io.is_regular(folder / ATTESTATION),
        "verify": _verdict(report),
        "created": state.get("created"),
        "warnings": sum(p.get("warnings") or 0 for p in points),
        "errors": [error] if error else [],
        "base_point": state.get("base_point"),
        "dropped_points": [d.get("name") for d in state.get("dropped_points") or [] if isinstance(d, dict)],
        "points": points,
    }


def _is_dir(path: Path) -> bool:
    """A real folder (lstat: a symlink to one is not followed)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def list_base(base: Path) -> list[dict[str, Any]]:
    """Every experiment and sweep folder directly under `base`, in name (= creation time) order.
    Symlinks are not followed; folders that are neither are left out."""
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError:
        raise FolderIOError(f"{base}: no such folder (give the output base that holds the experiments)") from None
    except NotADirectoryError:
        raise FolderIOError(f"{base}: not a folder") from None
    rows = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        if io.exists(folder / SWEEP_JSON):
            rows.append(sweep_row(folder))
        elif io.exists(folder / "config.json"):
            rows.append(experiment_row(folder))
    return rows


def select(rows: list[dict[str, Any]], *, status: str | None = None, title: str | None = None,
           sort: str = "id") -> list[dict[str, Any]]:
    """Rows whose status is `status` and whose title matches the glob `title` (a sweep matches when
    it or one of its points does; only the matching points are kept), ordered by `sort` (SORT_KEYS:
    numbers largest first, unknown values last; ties in id order)."""
    out = []
    for row in rows:
        if row["kind"] == "sweep":
            points = [p for p in row["points"] if _matches(p, status, title)]
            if _matches(row, status, title):
                out.append(row)
            elif points:
                out.append(dict(row, points=points))
        elif _matches(row, status, title):
            out.append(row)
    field, descending = SORT_KEYS[sort]

    def key(row: dict[str, Any]) -> tuple:
        v = row.get(field)
        if v is None:
            return (1, 0, "", row["id"])
        if descending:
            return (0, -float(v), "", row["id"])
        return (0, 0, str(v), row["id"])

    return sorted(out, key=key)


def _matches(row: dict[str, Any], status: str | None, title: str | None) -> bool:
    if status is not None and row["status"] != status:
        return False
    return title is None or fnmatch.fnmatchcase(str(row.get("title") or ""), title)


# ---------------------------------------------------------------------------------------------
# Text


COLUMNS = (("ID", "id"), ("TITLE", "title"), ("STATUS", "status"), ("SEEDS", "seeds"), ("VAL AUC", "best_val_auc"),
           ("TEST AUC", "test_auc"), ("CONFIG", "config_md5"), ("DATASET", "dataset"), ("SIGNED", "signed"),
           ("VERIFY", "verify"))


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if key == "id" and row["kind"] == "point":
        return f"  └ {row['id']}"
    if key == "seeds":
        return f"{row['seeds_finished']}/{row['seeds_total']}" + (" jobs" if row["kind"] == "sweep" else "")
    if key in ("best_val_auc", "test_auc"):
        return "-" if v is None else f"{v:.4f}"
    if key == "config_md5":
        return str(v)[:8] if v else "-"
    if key == "signed":
        return "yes" if v else "no"
    if key == "status" and row["kind"] == "sweep":
        return f"{v} ({len(row['points'])} points)"
    return "-" if v in (None, "") else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as aligned columns; a sweep's points follow it, indented."""
    flat = []
    for row in rows:
        flat.append(row)
        flat.extend(row.get("points") or [])
    cells = [[h for h, _ in COLUMNS]] + [[_cell(r, k) for _, k in COLUMNS] for r in flat]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines)


def unreadable_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per record that could not be read (a sweep's points included): which folder, which file, why.
    The table shows such a record's columns as `-`; these lines say why."""
    lines = []
    for row in rows:
        for r in [row, *(row.get("points") or [])]:
            lines += [f"unreadable: {r['id']}: {e}" for e in r.get("errors") or []]
    return lines


def summary_line(rows: list[dict[str, Any]], base: Path) -> str:
    n_exp = sum(1 for r in rows if r["kind"] == "experiment")
    n_sweep = sum(1 for r in rows if r["kind"] == "sweep")
    return (f"{n_exp} experiment(s), {n_sweep} sweep(s) in {base}. SEEDS: finished/total seeds (a sweep: "
            "finished/total jobs); VAL AUC / TEST AUC: mean over the finished seeds of the best validation "
            "AUC and the test AUC (every test interaction); CONFIG: config_md5 (first 8 hex digits); VERIFY: "
            "the stored verification_report.json verdict.")


# ---------------------------------------------------------------------------------------------
# One folder: `harness show`

# (config section, key) shown under "Configuration": what most often tells two runs apart.
SHOWN_PARAMS = (("experiment", "ablation_mode"), ("training", "epochs"), ("training", "batch_size"),
                ("training", "learning_rate"), ("training", "mixed_precision"), ("model", "model_preset"),
                ("model", "d_model"), ("data", "fold"), ("determinism", "torch_deterministic"))
SEED_FIELDS = ("status", "best_epoch", "best_val_auc", "test_auc", "test_window_auc", "reason")


def show(folder: Path) -> dict[str, Any]:
    """What `harness show` prints about one experiment or sweep folder (small records only)."""
    if io.exists(folder / SWEEP_JSON):
        return sweep_row(folder)
    row = experiment_row(folder)
    cfg, _ = _record(folder, "config.json")
    results, _ = _record(folder, "results.json")
    cfg, results = _dict(cfg), _dict(results)
    per_seed = _dict(results.get("per_seed"))
    seeds = _dict(cfg.get("seeds")).get("all") or results.get("seeds") or []
    row["seeds"] = [{"seed": s, **{k: _dict(per_seed.get(str(s))).get(k) for k in SEED_FIELDS}}
                    for s in seeds if isinstance(s, int)]
    for r in row["seeds"]:
        r["status"] = r["status"] or "not finished"
    row["warning_lines"] = [str(w) for w in results.get("warnings") or []]
    row["parameters"] = {f"{sec}.{key}": _dict(cfg.get(sec)).get(key) for sec, key in SHOWN_PARAMS
                         if key in _dict(cfg.get(sec))}
    row["dataset_sha256"] = _dict(cfg.get("data_checksum")).get("sha256")
    row["schema_version"] = cfg.get("schema_version")
    row["reproduction_of"] = _dict(cfg.get("reproduction")).get("source_experiment")
    artifacts = folder / "artifacts"  # a symlinked artifacts/ is not followed: its plots are not the folder's
    row["plots"] = [f"artifacts/{n}" for n in ("learning_curves.png", "interpretability.png", "mastery_trajectories.png")
                    if _is_dir(artifacts) and io.is_regular(artifacts / n)]
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def show_text(data: dict[str, Any]) -> str:
    """`harness show` as text."""
    if data["kind"] == "sweep":
        lines = [f"Sweep {data['id']}", f"  path       {data['path']}", f"  title      {data['title']}",
                 f"  status     {data['status']}; jobs finished {data['seeds_finished']}/{data['seeds_total']}",
                 f"  base point {data.get('base_point') or '-'}",
                 f"  signed     {'yes' if data['signed'] else 'no'}; stored verify verdict: {data['verify'] or 'none'}"]
        if data.get("dropped_points"):
            lines.append(f"  dropped    {', '.join(data['dropped_points'])} (same configuration as another point)")
        return "\n".join([*lines, "", table([dict(p, kind="experiment") for p in data["points"]])])
    lines = [f"Experiment {data['id']}",
             f"  path        {data['path']}",
             f"  title       {data['title']}",
             f"  status      {data['status']}; seeds finished {data['seeds_finished']}/{data['seeds_total']}",
             f"  config_md5  {data['config_md5'] or '-'} (schema {data.get('schema_version') or '-'})",
             f"  dataset     {data['dataset'] or '-'} (sha256 {data.get('dataset_sha256') or '-'})",
             f"  created     {data['created'] or '-'}",
             f"  signed      {'yes' if data['signed'] else 'no'}; stored verify verdict: {data['verify'] or 'none'} "
             "(`harness verify` checks the folder now)"]
    if data.get("reproduction_of"):
        lines.append(f"  reproduces  {data['reproduction_of']}")
    for e in data.get("errors") or []:
        lines.append(f"  unreadable  {e}")
    if data.get("parameters"):
        lines += ["", "Configuration:"] + [f"  {k} = {v}" for k, v in data["parameters"].items()]
    if data.get("seeds"):
        header = ("seed", "status", "best epoch", "best val AUC", "test AUC", "test window AUC", "reason")
        cells = [list(header)] + [[str(r["seed"]), *(_fmt(r[k]) for k in SEED_FIELDS)] for r in data["seeds"]]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        lines += ["", "Seeds (best validation AUC of the best epoch; test AUC of the best model over every test "
                      "interaction and in pyKT's window protocol):"]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
        if data["seeds_finished"] > 1:
            lines.append(f"  mean over the {data['seeds_finished']} finished seeds: best val AUC "
                         f"{_fmt(data['best_val_auc'])}, test AUC {_fmt(data['test_auc'])}")
    if data.get("warning_lines"):
        lines += ["", "Warnings:"] + [f"  - {w}" for w in data["warning_lines"]]
    if data.get("plots"):
        lines += ["", "Plots: " + ", ".join(data["plots"])]
    return "\n".join(lines)
