"""Ray overhead per sweep job on a local 2-node cluster (127.0.0.1, 1 CPU per node).

Starts the cluster, runs `harness sweep --backend ray` of one point x N seeds (tiny model, 1 epoch),
and reads each job's placement from sweep.json: `submitted` (driver submitted the task), `task_started`
(the Ray worker entered the job) and `time` (data loaded, the training entry about to build the model
and take its first step). Prints per-job and mean/max seconds.

    PYTHONPATH=$PWD python benchmarks/ray_overhead.py --seeds 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep the 127.0.0.1 addresses (see tests/ray)

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--synthetic_students", "80", "--synthetic_max_len", "25",
        "--synthetic_min_len", "8", "--batch_size", "16", "--max_semantic_students", "10",
        "--alignment_global_students", "20", "--threads", "1", "--epochs", "1"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    from harness.cli.main import main as harness
    from harness.folder.experiment import read_json

    t0 = time.time()
    common = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**common, "include_dashboard": False})
    cluster.add_node(**common)
    cluster.wait_for_nodes()
    print(f"cluster of 2 nodes up in {time.time() - t0:.1f} s")
    with tempfile.TemporaryDirectory(prefix="ray_overhead_") as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text("points:\n  one: {}\n")
        t1 = time.time()
        code = harness(["sweep", "overhead", "--spec", str(spec), "--output_base", str(Path(tmp) / "out"),
                        "--seeds", *map(str, args.seeds), *TINY, "--backend", "ray",
                        "--ray_address", cluster.address])
        wall = time.time() - t1
        (folder,) = (Path(tmp) / "out").glob("*_sweep_overhead")
        jobs = read_json(folder / "sweep.json")["jobs"]
    cluster.shutdown()
    assert code == 0, code
    start = [j["placement"]["task_started"] - j["placement"]["submitted"] for j in jobs]
    entry = [j["placement"]["time"] - j["placement"]["submitted"] for j in jobs]
    for j, a, b in zip(jobs, start, entry, strict=True):
        print(f"seed {j['seed']}: submitted -> task started {a:.2f} s, -> training entry {b:.2f} s")
    print(f"{len(jobs)} jobs, sweep wall {wall:.1f} s; submitted -> training entry: mean {statistics.fmean(entry):.2f} s, "
          f"max {max(entry):.2f} s (includes waiting for a free CPU: 2 slots for {len(jobs)} jobs)")
    worker = [b - a for a, b in zip(start, entry, strict=True)]
    print(f"in the worker, task started -> training entry: mean {statistics.fmean(worker):.2f} s, "
          f"max {max(worker):.2f} s")
    first = sorted(entry)[:2]
    print(f"the first two jobs (no queueing): submitted -> training entry {', '.join(f'{x:.2f}' for x in first)} s")


if __name__ == "__main__":
    main()
