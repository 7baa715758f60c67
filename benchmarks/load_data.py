"""Time loading the shared pyKT ASSISTments 2015 folder and building every tensor set of a run.

Usage (from the repository root):

    .venv/bin/python benchmarks/load_data.py [--data ../shared/datasets/assist2015_pykt] [--repeat 3]

Prints one table row per stage (best of ``--repeat`` runs) and the total. The target is
well under 5 s for load + all tensors (fold 0 train/valid windows, test non-window and
window protocol). Interpreter start-up and ``import torch`` are reported separately:
they are paid once per process whatever the dataset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

_T0 = time.perf_counter()
import torch  # noqa: E402  (timed on purpose)

_IMPORT_TORCH = time.perf_counter() - _T0

from gainakt.data import build_window_test, build_windows, load_dataset, split_students  # noqa: E402

DEFAULT = Path(__file__).resolve().parent.parent / ".." / "shared" / "datasets" / "assist2015_pykt"


def run_once(path: Path) -> list[tuple[str, float, str]]:
    """Return (stage, seconds, what was built) for one full load + build."""
    rows = []
    t = time.perf_counter()
    ds = load_dataset(path)
    rows.append(("load_dataset", time.perf_counter() - t, f"{len(ds)} students, sha256 {ds.sha256[:12]}"))
    train, valid, test = split_students(ds, 0)
    for stage, build, idx in (
        ("train windows (fold != 0)", build_windows, train),
        ("valid windows (fold 0)", build_windows, valid),
        ("test non-window", build_windows, test),
        ("test window protocol", build_window_test, test),
    ):
        t = time.perf_counter()
        seqs = build(ds, idx)
        rows.append((stage, time.perf_counter() - t, f"{len(seqs)} rows, {seqs.num_targets} scored"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT, help="pyKT folder (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best time per stage is shown")
    args = parser.parse_args()
    runs = [run_once(args.data.resolve()) for _ in range(max(1, args.repeat))]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; import torch: {_IMPORT_TORCH:.2f} s"
    )
    print(f"{'stage':<28} {'best s':>8}  built")
    for i, (stage, _, what) in enumerate(runs[0]):
        print(f"{stage:<28} {min(r[i][1] for r in runs):>8.3f}  {what}")
    totals = [sum(r[1] for r in run) for run in runs]
    print(
        f"{'total (best run)':<28} {min(totals):>8.3f}  target < 5 s; all runs: {', '.join(f'{x:.3f}' for x in totals)}"
    )


if __name__ == "__main__":
    main()
