"""`harness ls` on an output base of many folders, without training them: a fixture generator and a timer.

The generator writes experiment folders with the records `harness ls` reads, at their real sizes
(config.json of a schema-3 run, results.json with a full `final` block per seed, run_status.json; a
stored verification_report.json and a signed attestation on some; checkpoints as large files that must
not be read), and sweeps of several points.

    python benchmarks/ls_folders.py --out /tmp/ls_bench --folders 500 --repeat 5

prints the wall time of `list_base` + `select` + `table` in-process (median of --repeat) and of the whole
`harness ls OUTPUT_BASE` and `harness ls OUTPUT_BASE --json` processes (interpreter start included).
Results are recorded in benchmarks/README.md ("harness ls").
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

FINAL_KEYS = 90  # a real run's `final` block holds about this many metrics per seed
STATUSES = ("completed", "completed", "completed", "partial", "failed", "interrupted")


def _config(exp_id: str, title: str, seeds: list[int], rng: random.Random) -> dict:
    """A schema-3 config.json as a run writes it (the defaults, resolved without loading data)."""
    from harness.cli.main import build_parser
    from harness.config.build import config_md5
    from harness.run.launcher import resolve_run

    ns = build_parser().parse_args(["run", title, "--devices", "cpu", "--seeds", *map(str, seeds),
                                    "--learning_rate", str(round(rng.uniform(1e-4, 5e-4), 6))])
    cfg = resolve_run(ns, title).config
    cfg["experiment"]["id"] = exp_id
    cfg["data_checksum"] = {"name": "synthetic", "sha256": f"{rng.getrandbits(256):064x}"}
    cfg["runtime"].update({"timestamp": "2026-12-01T00:00:00Z", "devices": ["cpu"], "threads": 2})
    cfg["config_md5"] = config_md5(cfg)
    return cfg


def _results(cfg: dict, status: str, rng: random.Random) -> dict:
    seeds = cfg["seeds"]["all"]
    per_seed = {}
    for i, s in enumerate(seeds):
        done = status == "completed" or (status == "partial" and i == 0)
        if not done:
            per_seed[str(s)] = {"seed": s, "status": "failed" if status == "failed" else "interrupted",
                                "reason": "synthetic fixture"}
            continue
        auc = rng.uniform(0.68, 0.73)
        final = {f"metric_{k}": rng.random() for k in range(FINAL_KEYS)}
        final.update(val_auc=auc, test_auc=auc - 0.003, val_majority_rate=0.7)
        per_seed[str(s)] = {"seed": s, "status": "completed", "reason": None, "best_epoch": 3, "best_val_auc": auc,
                            "test_auc": auc - 0.003, "test_window_auc": auc - 0.002, "final": final, "warnings": []}
    primary = per_seed[str(seeds[0])]
    return {"schema_version": 3, "config_md5": cfg["config_md5"], "seeds": seeds, "status": status,
            "primary_seed": seeds[0], "best_epoch": primary.get("best_epoch"),
            "best_epoch_auc": primary.get("best_val_auc"), "test_auc": primary.get("test_auc"),
            "test_window_auc": primary.get("test_window_auc"), "per_seed": per_seed, "warnings": []}


def make_experiment(folder: Path, title: str, seeds: list[int], status: str, rng: random.Random, *,
                    signed: bool = False, verdict: str | None = None, checkpoint_bytes: int = 0) -> Path:
    folder.mkdir(parents=True)
    cfg = _config(folder.name, title, seeds, rng)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    (folder / "results.json").write_text(json.dumps(_results(cfg, status, rng), indent=2, sort_keys=True))
    (folder / "run_status.json").write_text(json.dumps({"status": status}))
    if verdict:
        (folder / "verification_report.json").write_text(json.dumps({"verdict": verdict,
                                                                     "passed": verdict == "pass"}))
    if signed:
        (folder / "ATTESTATION.intoto.json").write_text("{}")
    if checkpoint_bytes:
        with (folder / "model_best.pth").open("wb") as fh:  # sparse: ls must never read it
            fh.truncate(checkpoint_bytes)
    return folder


def make_folders(base: Path, n: int, *, seed: int = 0, sweeps: int = 0, points: int = 4,
                 checkpoint_bytes: int = 0) -> list[Path]:
    """`n` experiment folders (and `sweeps` sweeps of `points` points each) under `base`."""
    rng = random.Random(seed)
    base.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(n):
        title = rng.choice(("baseline", "lr", "warmup12", "perf_only", "high_sparsity"))
        made.append(make_experiment(base / f"20261201_{i:06d}_gainakt2exp_{title}", title, [21, 42, 63][: 1 + i % 3],
                                    STATUSES[i % len(STATUSES)], rng, signed=i % 4 == 0,
                                    verdict=("pass", "fail", None)[i % 3], checkpoint_bytes=checkpoint_bytes))
    for j in range(sweeps):
        sweep = base / f"20261202_{j:06d}_sweep_grid{j}"
        sweep.mkdir(parents=True)
        state_points, jobs = [], []
        for k in range(points):
            exp = make_experiment(sweep / f"20261202_{j:06d}_gainakt2exp_p{k}", f"p{k}", [21, 42], "completed", rng)
            md5 = json.loads((exp / "config.json").read_text())["config_md5"]
            state_points.append({"name": f"p{k}", "experiment_id": exp.name, "config_md5": md5, "flags": {}, "set": []})
            jobs += [{"point": f"p{k}", "seed": s, "status": "completed"} for s in (21, 42)]
        (sweep / "sweep.json").write_text(json.dumps({
            "schema_version": 1, "sweep_id": sweep.name, "title": f"grid{j}", "status": "completed",
            "source": "generated by benchmarks/ls_folders.py", "spec": {}, "spec_md5": "0" * 32,
            "base_point": "p0", "seeds": [21, 42], "command": "", "data_dir": None, "created": "2026-12-02T00:00:00Z",
            "launch": {"backend": "local", "ray_address": None, "max_retries": 2, "devices": ["cpu"],
                       "jobs_per_device": 1, "threads": 2},
            "points": state_points, "dropped_points": [], "jobs": jobs, "failed_jobs": []}, indent=2))
        made.append(sweep)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output base to create (replaced if it exists)")
    ap.add_argument("--folders", type=int, default=500)
    ap.add_argument("--sweeps", type=int, default=0, help="sweeps of 4 points each, in addition")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--checkpoint_mb", type=int, default=180, help="sparse model_best.pth per folder (not read)")
    args = ap.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    t0 = time.perf_counter()
    make_folders(args.out, args.folders, sweeps=args.sweeps, checkpoint_bytes=args.checkpoint_mb << 20)
    print(f"generated {args.folders} experiment folders and {args.sweeps} sweeps in {time.perf_counter() - t0:.1f}s")

    from harness.folder.listing import list_base, select, table

    inproc = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows = select(list_base(args.out), sort="auc")
        table(rows)
        inproc.append(time.perf_counter() - t0)
    print(f"in-process list_base+select+table: median {statistics.median(inproc):.3f}s "
          f"(min {min(inproc):.3f}s, {args.repeat} runs, {len(rows)} rows)")
    for extra in ([], ["--json"]):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "harness.cli", "ls", str(args.out), *extra], check=True,
                           stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        print(f"harness ls {' '.join(extra)} (whole process): median {statistics.median(times):.3f}s "
              f"(min {min(times):.3f}s, {args.repeat} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
