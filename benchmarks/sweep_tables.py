"""What the sweep-backed benchmark tables share (paper_table.py, semantics_ablation.py): find the newest
sweep of a title, start it from a spec or resume it, and write the table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
                  jobs_per_device: int | None, extra: list[str]) -> Path:
    """Start the sweep `title` from `spec`, resume its newest unfinished folder under `output_base`, or
    return a finished one as it is. `extra` goes to `harness sweep` unchanged."""
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
