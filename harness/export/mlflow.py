"""`harness export mlflow`: an experiment (or each point of a sweep) as MLflow runs.

One parent run per experiment, one child run per seed (``mlflow.parentRunId``):

- params (parent and children): config.json flattened to ``section.key`` leaves (lists as JSON);
- metrics: each seed's metrics_epoch.csv columns with ``step = epoch`` on its child run, and the final
  metrics of results.json: a seed block's numbers on its child (the best model's ``final.*`` metrics
  under that prefix), the top-level guide keys and, with several seeds, ``mean.*`` / ``std.*`` over the
  finished seeds (results_multi_seed.json) on the parent;
- tags: ``experiment_id``, ``config_md5``, ``dataset_sha256``, ``git_commit``, ``image_id`` (from
  environment.txt), ``verify_verdict`` (checked at export), ``status``, and ``seed`` on each child;
- artifacts: README.md, config.json, results.json (+ results_multi_seed.json, SEED_INFO.md) and the plots
  on the parent; each seed's checkpoints on its child only with ``with_checkpoints``.

Re-exporting a folder updates its runs and never duplicates them: each run is found again by its tag
``harness_run_key`` (``<experiment id>`` or ``<experiment id>/seed<N>``); a run whose tag
``harness_content_sha256`` already names the content is left as it is, otherwise only the metric steps
it lacks are logged (metrics carry the run's start time as timestamp, so the same point is the same row).
The folder is verified first, as `harness predict` does; every file is read through the folder I/O
layer and handed to MLflow from a temporary copy.
"""

from __future__ import annotations

import csv
import hashlib
import io as stdio
import json
import math
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.folder import io

RUN_KEY = "harness_run_key"
CONTENT_KEY = "harness_content_sha256"
DEFAULT_EXPERIMENT = "gainakt-harness"
PARENT_FILES = ("README.md", "config.json", "results.json", "results_multi_seed.json", "SEED_INFO.md")
PLOTS = ("learning_curves.png", "interpretability.png", "mastery_trajectories.png")
TOP_LEVEL_METRICS = ("best_epoch", "best_epoch_auc", "best_mastery_corr", "best_gain_corr", "test_auc",
                     "test_window_auc")
STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "failed": "FAILED", "partial": "FAILED",
          "interrupted": "KILLED", "not_run": "KILLED", "crashed": "FAILED"}
BATCH = 100  # MLflow's limit of params (and tags) per log_batch call


class ExportError(HarnessError, RuntimeError):
    """An export that cannot proceed; one line for the user."""


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ExportError("MLflow is not installed: pip install 'gainakt-harness[mlflow]' (the optional "
                          "[mlflow] extra)") from None
    return mlflow


# ---------------------------------------------------------------------------------------------
# What is exported (pure functions of the folder's files)


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Leaves of nested dicts as {"a.b": text}: strings as they are, everything else as JSON."""
    out: dict[str, str] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif prefix:
        out[prefix[:-1]] = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True)
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def numbers(obj: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a results block (nested dicts prefixed, booleans and lists left out)."""
    out: dict[str, float] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(numbers(v, f"{prefix}{k}."))
        elif (x := _number(v)) is not None:
            out[f"{prefix}{k}"] = x
    return out


def epoch_metrics(csv_text: str) -> dict[int, list[tuple[str, float, int]]]:
    """metrics_epoch.csv as {seed: [(column, value, epoch)]}: every finite number but seed and epoch."""
    out: dict[int, list[tuple[str, float, int]]] = {}
    for row in csv.DictReader(stdio.StringIO(csv_text)):
        seed, epoch = int(row["seed"]), int(row["epoch"])
        for key, value in row.items():
            if key in ("seed", "epoch") or (x := _number(value)) is None:
                continue
            out.setdefault(seed, []).append((key, x, epoch))
    return out


def environment(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith("#"):
            out.setdefault(key, value)
    return out


def _read_json(folder: Path, name: str) -> dict[str, Any] | None:
    """A record of the folder (config.json, results.json, ...): a JSON object, or None when absent."""
    path = folder / name
    if not io.exists(path):
        return None
    data = io.read_json(path, root=folder)
    if not isinstance(data, dict):
        raise ExportError(f"{path}: not a JSON object (a {type(data).__name__}); nothing exported")
    return data


def _read_text(folder: Path, name: str) -> str:
    path = folder / name
    return io.read_text(path, root=folder, limit=io.LOG_LIMIT) if io.exists(path) else ""


def _start_ms(cfg: dict[str, Any]) -> int | None:
    stamp = (cfg.get("runtime") or {}).get("timestamp")
    try:
        return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def plan(folder: Path, verdict: str, *, with_checkpoints: bool = False, extra_tags: dict[str, str] | None = None
         ) -> dict[str, Any]:
    """Everything one experiment folder exports: the parent run and one child per seed (params, metrics,
    tags, artifact names), as plain data."""
    cfg = _read_json(folder, "config.json") or {}
    results = _read_json(folder, "results.json") or {}
    multi = _read_json(folder, "results_multi_seed.json") or {}
    env = environment(_read_text(folder, "environment.txt"))
    history = epoch_metrics(_read_text(folder, "metrics_epoch.csv"))
    seeds = [int(s) for s in (cfg.get("seeds") or {}).get("all") or results.get("seeds") or []]
    exp_id = folder.name
    params = flatten({k: v for k, v in cfg.items() if k != "config_md5"})
    status = str(results.get("status") or "unknown")
    tags: dict[str, str] = {
        "experiment_id": exp_id,
        "config_md5": str(cfg.get("config_md5")),
        "dataset_sha256": str((cfg.get("data_checksum") or {}).get("sha256")),
        "git_commit": env.get("git_commit", "unknown"),
        "image_id": env.get("image_id", "none (trained outside a container)"),
        "verify_verdict": verdict,
        "status": status,
        "title": str((cfg.get("experiment") or {}).get("short_title") or ""),
        **(extra_tags or {}),
    }
    parent_metrics = {k: x for k in TOP_LEVEL_METRICS if (x := _number(results.get(k))) is not None}
    for metric, s in (multi.get("stats") or {}).items():
        for stat in ("mean", "std"):
            if (x := _number((s or {}).get(stat))) is not None:
                parent_metrics[f"{stat}.{metric}"] = x
    files = [n for n in PARENT_FILES if io.is_regular(folder / n)]
    files += [f"artifacts/{n}" for n in PLOTS if io.is_regular(folder / "artifacts" / n)]
    children: list[dict[str, Any]] = []
    per_seed = results.get("per_seed") or {}
    for seed in seeds:
        block = per_seed.get(str(seed)) or {}
        seed_status = str(block.get("status") or "not_run")
        final = numbers({k: v for k, v in block.items() if k not in ("best_epoch_metrics", "amp")})
        ckpts = []
        if with_checkpoints:
            names = (f"model_best_seed{seed}.pth", f"model_last_seed{seed}.pth") if len(seeds) > 1 else \
                ("model_best.pth", "model_last.pth")
            ckpts = [n for n in names if io.is_regular(folder / n)]
        children.append({
            "key": f"{exp_id}/seed{seed}", "name": f"{exp_id} seed {seed}", "status": STATUS.get(seed_status, "FAILED"),
            "params": params, "tags": {**tags, "seed": str(seed), "status": seed_status},
            "metrics": final, "history": history.get(seed, []), "files": ckpts,
        })
    return {"key": exp_id, "name": exp_id, "status": STATUS.get(status, "FAILED"), "start_ms": _start_ms(cfg),
            "params": params, "tags": tags, "metrics": parent_metrics, "history": [], "files": files,
            "children": children}


def content_sha256(run: dict[str, Any], folder: Path) -> str:
    """What a run would log, hashed (files by their sha256): equal hashes need no new logging."""
    body = {k: run[k] for k in ("params", "tags", "metrics", "history", "status")}
    body["files"] = {n: io.sha256_file(folder / n, root=folder) for n in run["files"]}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Logging


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Exporter:
    """Logs plans into one MLflow experiment of one tracking URI (runs found again by their key tag)."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        mlflow = _mlflow()
        from mlflow.tracking import MlflowClient

        self.entities = mlflow.entities
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment_name)
            self.experiment_id = found.experiment_id if found is not None else \
                self.client.create_experiment(experiment_name)
        except mlflow.exceptions.MlflowException as exc:
            raise ExportError(f"--tracking_uri {tracking_uri}: {str(exc).splitlines()[0]}") from None

    def find(self, key: str) -> Any:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{RUN_KEY}` = '{key}'",
                                       max_results=2)
        return runs[0] if runs else None

    def export(self, folder: Path, run: dict[str, Any], parent_id: str | None, start_ms: int | None) -> tuple[str, str]:
        """Create or update one run; (run id, "created" | "updated" | "unchanged")."""
        digest = content_sha256(run, folder)
        existing = self.find(run["key"])
        if existing is not None and existing.data.tags.get(CONTENT_KEY) == digest:
            return existing.info.run_id, "unchanged"
        tags = {**run["tags"], RUN_KEY: run["key"]}
        if parent_id is not None:
            tags["mlflow.parentRunId"] = parent_id
        if existing is None:
            run_id = self.client.create_run(self.experiment_id, start_time=start_ms, tags=tags,
                                            run_name=run["name"]).info.run_id
            logged_params: dict[str, str] = {}
            have: dict[str, set[int]] = {}
        else:
            run_id = existing.info.run_id
            logged_params = dict(existing.data.params)
            have = {k: {m.step for m in self.client.get_metric_history(run_id, k)} for k in existing.data.metrics}
        E = self.entities
        params = [E.Param(k, v[:6000]) for k, v in sorted(run["params"].items()) if k not in logged_params]
        stamp = start_ms or 0
        metrics = [E.Metric(k, v, stamp, step) for k, v, step in run["history"] if step not in have.get(k, set())]
        final_step = max((step for _, _, step in run["history"]), default=0)
        metrics += [E.Metric(k, v, stamp, final_step) for k, v in sorted(run["metrics"].items())
                    if final_step not in have.get(k, set())]
        all_tags = [E.RunTag(k, str(v)) for k, v in sorted(tags.items())]
        for chunk in _chunks(params, BATCH):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(all_tags, BATCH):
            self.client.log_batch(run_id, tags=chunk)
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(run_id, metrics=chunk)
        self._artifacts(folder, run_id, run["files"])
        self.client.set_terminated(run_id, status=run["status"])
        self.client.set_tag(run_id, CONTENT_KEY, digest)  # last: an interrupted export is redone
        return run_id, "created" if existing is None else "updated"

    def _artifacts(self, folder: Path, run_id: str, names: list[str]) -> None:
        """Each file read through the folder I/O layer into a temporary copy, then logged (the plots under
        plots/, checkpoints and records at the top)."""
        with tempfile.TemporaryDirectory(prefix="harness_export_") as tmp:
            for name in names:
                limit = io.CHECKPOINT_LIMIT if name.endswith(".pth") else io.JSON_LIMIT
                copy = Path(tmp) / Path(name).name
                copy.write_bytes(io.read_bytes(folder / name, limit=limit, root=folder))
                self.client.log_artifact(run_id, str(copy), "plots" if name.startswith("artifacts/") else None)
                copy.unlink()


def export_experiment(exporter: Exporter, folder: Path, p: dict[str, Any]) -> dict[str, Any]:
    """One experiment folder's plan: its parent run, then a child run per seed. Returns what was done."""
    parent_id, action = exporter.export(folder, p, None, p["start_ms"])
    children = [dict(zip(("run_id", "action"), exporter.export(folder, c, parent_id, p["start_ms"]), strict=True),
                     seed=c["tags"]["seed"]) for c in p["children"]]
    return {"experiment": folder.name, "run_id": parent_id, "action": action, "seeds": children}


def verify_folder(folder: Path, *, sweep: bool, allow_unverified: bool) -> str:
    """The verdict of `harness verify` on the folder (experiment or sweep); a failing one is refused unless
    `allow_unverified` (the verdict is recorded in the runs' tags either way)."""
    if sweep:
        from harness.sweep.verify import verify_sweep

        report = verify_sweep(folder)
    else:
        from harness.audit.verify import verify_experiment

        report = verify_experiment(folder)
    verdict = str(report.get("verdict") or ("pass" if report["passed"] else "fail"))
    if not report["passed"] and not allow_unverified:
        raise ExportError(f"{folder.name} does not verify (verdict {verdict}; failed: {', '.join(report['failed'])});"
                          " see `harness verify`, or pass --allow_unverified to export anyway (recorded in the "
                          "verify_verdict tag)")
    return verdict if report["passed"] else f"{verdict} (exported with --allow_unverified)"


def export_folder(folder: Path, tracking_uri: str, experiment_name: str, *, with_checkpoints: bool = False,
                  allow_unverified: bool = False) -> list[dict[str, Any]]:
    """An experiment folder, or every point of a sweep folder (tagged with the sweep and point)."""
    sweep = io.exists(folder / "sweep.json")
    _mlflow()  # a missing extra is said before the folder is verified
    verdict = verify_folder(folder, sweep=sweep, allow_unverified=allow_unverified)
    targets: list[tuple[Path, dict[str, str] | None]] = [(folder, None)]
    if sweep:
        state = io.read_json(folder / "sweep.json", root=folder)
        targets = [(folder / point["experiment_id"],
                    {"sweep_id": folder.name, "sweep_point": str(point["name"]),
                     "sweep_base_point": str(state.get("base_point"))}) for point in state.get("points") or []]
    # Every folder's records are read before the tracking store is touched: a bad one logs nothing.
    plans = [(target, plan(target, verdict, with_checkpoints=with_checkpoints, extra_tags=extra))
             for target, extra in targets]
    exporter = Exporter(tracking_uri, experiment_name)
    return [export_experiment(exporter, target, p) for target, p in plans]
