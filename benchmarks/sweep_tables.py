"""What the sweep-backed benchmark tables share (paper_table.py, semantics_ablation.py): find the newest
sweep of a title, start it from a spec or resume it, and write the table."""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
FINISHED = ("completed", "early_stopped")


def sweep_folder(text: str) -> Path:
    """argparse type of --table_only: a folder `harness sweep` made (it holds sweep.json)."""
    path = Path(text)
    if not (path / "sweep.json").is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a sweep folder (no sweep.json in it)")
    return path


def find_sweep(base: Path, title: str) -> Path | None:
    """The newest sweep folder of `title` under `base` (folders are named <timestamp>_sweep_<title>)."""
    found = sorted(p for p in base.glob(f"*_sweep_{title}") if (p / "sweep.json").is_file())
    return found[-1] if found else None


def run_or_resume(*, title: str, spec: dict[str, Any], output_base: str, data_dir: str | None, devices: str,
                  jobs_per_device: int | None, extra: list[str], launch_extra: list[str] | None = None) -> Path:
    """Start the sweep `title` from `spec`, resume its newest unfinished folder under `output_base`, or
    return a finished one as it is. `extra` goes to `harness sweep` unchanged; `launch_extra` (the
    script's own defaults, e.g. `--threads 2`) only when the sweep starts, since a resumed sweep keeps the
    settings it was prepared with and `harness sweep --resume` refuses them."""
    base = Path(output_base)
    base.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "harness.cli", "sweep"]
    existing = find_sweep(base, title)
    if existing is not None:
        if json.loads((existing / "sweep.json").read_text()).get("status") == "completed":
            print(f"sweep {existing.name} already finished; rebuilding the table")
            return existing
        print(f"resuming sweep {existing.name}")
        cmd += ["--resume", str(existing), "--output_base", str(base)]  # devices and jobs: as launched
    else:
        spec_file = base / f"{title}_spec.yaml"
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        cmd += [title, "--spec", str(spec_file), "--devices", devices, "--output_base", str(base)]
        if jobs_per_device:
            cmd += ["--jobs_per_device", str(jobs_per_device)]
        cmd += list(launch_extra or [])
    if data_dir:
        cmd += ["--data_dir", str(Path(data_dir).resolve())]
    cmd += extra
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    found = find_sweep(base, title)
    if found is None:
        raise SystemExit(f"harness sweep exited with {rc} and left no sweep folder under {base}")
    if rc != 0:
        print(f"harness sweep exited with {rc}; the table covers the seeds that finished (rerun to resume)")
    return found


def write_table(out: str, text: str) -> None:
    """Write the markdown table and show it."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)
    print(f"written: {out}")


def seed_outcomes(exp_dir: Path) -> dict[int, dict[str, Any]]:
    """{seed: its results.json per-seed block} of the seeds of one experiment folder that finished.

    While the point still trains, results.json is not written yet (or holds an earlier launch's
    unfinished seeds): a seed that has finished since is read from its last checkpoint, which
    carries the seed's whole outcome, and summarised by the same function results.json uses.
    """
    from harness.folder.artifacts import seed_summary
    from harness.folder.checkpoints import checkpoint_name, load_checkpoint

    out: dict[int, dict[str, Any]] = {}
    results = exp_dir / "results.json"
    if results.is_file():
        for r in json.loads(results.read_text()).get("per_seed", {}).values():
            if r.get("status") in FINISHED:
                out[int(r["seed"])] = r
    config = exp_dir / "config.json"
    if not config.is_file():
        return out
    seeds = [int(s) for s in json.loads(config.read_text())["seeds"]["all"]]
    for seed in seeds:
        last = exp_dir / checkpoint_name("last", seed, len(seeds) > 1)
        if seed in out or not last.is_file():
            continue
        record = load_checkpoint(last).get("result")
        if record and record.get("status") in FINISHED:
            out[seed] = seed_summary(record)
    return dict(sorted(out.items()))


def epoch_rows(exp_dir: Path) -> dict[int, list[dict[str, float]]]:
    """{seed: its metrics_epoch.csv rows in epoch order} (numbers as floats; empty cells left out)."""
    path = exp_dir / "metrics_epoch.csv"
    rows: dict[int, list[dict[str, float]]] = {}
    if not path.is_file():
        return rows
    with path.open() as f:
        for row in csv.DictReader(f):
            values: dict[str, float] = {}
            for key, text in row.items():
                try:
                    values[key] = float(text)
                except (TypeError, ValueError):
                    continue
            rows.setdefault(int(values["seed"]), []).append(values)
    return {seed: sorted(r, key=lambda v: v["epoch"]) for seed, r in sorted(rows.items())}


def verify_folder(exp_dir: Path) -> dict[str, Any]:
    """`harness verify EXP --json` of one experiment folder, run now: {"verdict", "failed", ...}.

    A report that cannot be had (the command printed no JSON) is {"verdict": "error", "detail": ...}.
    """
    cmd = [sys.executable, "-m", "harness.cli", "verify", str(exp_dir), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"verdict": "error", "failed": [], "detail": f"exit {proc.returncode}: {tail}"}
    return report if isinstance(report, dict) else {"verdict": "error", "failed": [], "detail": "not a report"}


def flat_config(exp_dir: Path) -> dict[str, Any]:
    """The result-determining fields of a folder's config.json as {section.field: value}, absent keys
    filled with the value they had before they existed, and the dataset's checksum."""
    from dataclasses import fields

    from gainakt.config import SECTION_TYPES, TrainConfig

    raw = json.loads((exp_dir / "config.json").read_text())
    cfg = TrainConfig.from_dict(raw)
    flat = {f"{name}.{f.name}": getattr(getattr(cfg, name), f.name) for name in SECTION_TYPES
            for f in fields(getattr(cfg, name))}
    flat["data_checksum.sha256"] = (raw.get("data_checksum") or {}).get("sha256")
    return flat


def paired(point: dict[int, dict[str, float]], base: dict[int, dict[str, float]], key: str) -> dict[str, float]:
    """Paired difference point - base over the seeds both finished: mean, std, ttest_rel p, n."""
    seeds = sorted(s for s in point if s in base and key in point[s] and key in base[s])
    a = [point[s][key] for s in seeds]
    b = [base[s][key] for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs) if diffs else math.nan
    std = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
    p = math.nan
    if len(seeds) > 1 and std > 0:
        p = float(stats.ttest_rel(a, b).pvalue)
    elif len(seeds) > 1:
        p = 1.0 if mean == 0 else 0.0  # every seed moved by the same amount (or not at all)
    return {"mean": mean, "std": std, "p": p, "n": float(len(seeds))}
