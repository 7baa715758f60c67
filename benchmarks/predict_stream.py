"""`harness predict` on a whole dataset: wall time and peak memory for several --chunk_students.

Each setting runs `harness predict` in a fresh process under `/usr/bin/time -f "%e %M"` (wall seconds,
peak resident set size in KiB) and reports rows written. The run of every setting must write the same
bytes (checked), so the chunk size only changes memory and time, never the output.

    python benchmarks/predict_stream.py --experiment EXP_DIR --data DATA_DIR --chunks 64 512 100000
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path


def run_one(experiment: str, data: str, chunk: int, out: Path) -> tuple[float, int, int, str]:
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "harness.cli", "predict", experiment,
           "--data", data, "--out", str(out), "--chunk_students", str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall, rss_kib = proc.stderr.strip().splitlines()[-1].split()
    rows = sum(1 for _ in out.open()) - 1
    return float(wall), int(rss_kib), rows, hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 512, 100000])
    args = parser.parse_args()
    digests = set()
    print("| --chunk_students | wall (s, whole process) | peak RSS (MiB) | rows written |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for chunk in args.chunks:
            wall, rss, rows, digest = run_one(args.experiment, args.data, chunk, Path(tmp) / f"p{chunk}.csv")
            digests.add(digest)
            print(f"| {chunk} | {wall:.1f} | {rss / 1024:.0f} | {rows:,} |")
    print("same output bytes for every chunk size:", len(digests) == 1)


if __name__ == "__main__":
    main()
