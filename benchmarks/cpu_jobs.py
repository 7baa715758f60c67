#!/usr/bin/env python
"""CPU jobs per device: is one job with T threads or J jobs of T/J threads faster at training seeds?

`harness run --devices cpu --jobs_per_device J --threads T` trains J seeds at once, each in its own
worker with T // J threads. This measures the training throughput of every split on this machine:
for each preset and split "JxK" (J concurrent jobs of K threads each), J child processes (each set
up as a harness worker: K torch/OpenMP/MKL threads, freed buffers kept) load the fold-0 training
windows, wait until all are ready, then run the real training step (forward, every `both_lag` loss
as late in training, backward, clip, Adam; benchmarks/epoch_time.py's `time_epoch`, packed batches
as the default) on the same first --batches batches of the seeded epoch order, at the same moment.

Reported per split: mean seconds per batch of each job, and the throughput in seed-batches per second
(J / mean seconds per batch) relative to the first split (the one-job default). A ratio below 1 is the
cost of the split: the same seeds take 1/ratio times as long.

    python benchmarks/cpu_jobs.py --data_dir ../shared/datasets/assist2015_pykt --presets small,paper --batches 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_split(text: str) -> tuple[int, int]:
    """'2x1' -> (2 jobs, 1 thread each)."""
    try:
        jobs, threads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a split is JOBSxTHREADS (e.g. 1x2, 2x1), got {text!r}") from None
    if jobs < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"jobs and threads must be at least 1, got {text!r}")
    return jobs, threads


def child(preset: str, threads: int, batches: int, data_dir: str) -> None:
    """One job: set up like a harness worker, load the windows, say ready, wait for go, time, print JSON."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from harness.run.allocator import keep_freed_buffers

    keep_freed_buffers()
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from epoch_time import time_epoch

    from gainakt.data import build_windows, load_dataset, split_students
    from harness.cli.main import build_parser
    from harness.run.launcher import resolve_run

    cfg = resolve_run(build_parser().parse_args(["run", "t", "--model_preset", preset, "--no_amp"]), "t").config
    ds = load_dataset(data_dir)
    train_idx, _, _ = split_students(ds, 0)
    windows = build_windows(ds, train_idx, 200)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    r = time_epoch(cfg, windows, batches, "packed", torch.device("cpu"))
    r["wall_s"] = time.perf_counter() - t0
    r["threads"] = torch.get_num_threads()
    print(json.dumps(r), flush=True)


def run_split(preset: str, jobs: int, threads: int, batches: int, data_dir: str) -> dict:
    """J children at once; their results once all have finished."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", preset, str(threads), str(batches), data_dir]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(jobs)]
    for p in procs:  # every job loaded: start them together
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a {preset} job did not start (said {line!r}; exit {p.wait()})")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a {preset} job failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    per_batch = [r["mean_s_per_timed_batch"] for r in results]
    return {"preset": preset, "jobs": jobs, "threads": threads, "s_per_batch": per_batch,
            "throughput": jobs / statistics.fmean(per_batch)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]), int(argv[3]), argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--presets", default="small,paper", help="comma list of small, paper")
    p.add_argument("--splits", type=lambda s: [parse_split(x) for x in s.split(",")], default=[(1, 2), (2, 1)],
                   help="comma list of JOBSxTHREADS, the first the reference (default 1x2,2x1)")
    p.add_argument("--batches", type=int, default=4, help="timed batches per job")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    ns = p.parse_args(argv)
    rows = []
    print(f"# fold-0 training batches (packed), {ns.batches} per job; machine: {os.cpu_count()} CPUs", flush=True)
    print("| preset | split (jobs x threads) | s per batch, each job | throughput (seed-batches/s) | vs first split |")
    print("|---|---|---|---:|---:|")
    for preset in ns.presets.split(","):
        first = None
        for jobs, threads in ns.splits:
            r = run_split(preset, jobs, threads, ns.batches, str(Path(ns.data_dir).resolve()))
            first = first or r["throughput"]
            r["vs_first"] = r["throughput"] / first
            rows.append(r)
            each = ", ".join(f"{x:.2f}" for x in r["s_per_batch"])
            print(f"| {preset} | {jobs}x{threads} | {each} | {r['throughput']:.3f} | {r['vs_first']:.2f} |", flush=True)
    if ns.json:
        ns.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
