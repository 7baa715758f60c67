#!/usr/bin/env python
"""Final-evaluation time against one training epoch, on a real or a long-sequence synthetic dataset.

Trains one seed for one epoch with `gainakt.train.train_seed` (the configuration comes from
`harness run` flags given after `--`), then reports, all in this one process:

* the epoch's wall time (training plus that epoch's validation pass, as in metrics_epoch.csv);
* the wall time of each final-evaluation pass as the run recorded it (`eval_seconds`: validation,
  non-window test, pyKT window-protocol test with the configured fast path);
* the old window-protocol pass (the full forward with the [T, C] mastery and gain heads, data order,
  batches of 64) on the first `--old_rows` rows, extrapolated to all rows in proportion to row count
  (the protocol's rows are mostly full width, so this is close), and its AUC on those rows next to
  the fast pass's AUC on the same rows.

    python benchmarks/eval_time.py --data_dir ../shared/datasets/assist2015_pykt -- --model_preset small
    python benchmarks/eval_time.py --synthetic 1000,200,1200 --students 300 -- --model_preset small
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from gainakt.data import build_window_test, build_windows, load_dataset, split_students
from gainakt.evaluate import evaluate, evaluate_predictions
from gainakt.simulate import simulate
from gainakt.train import MemorySink, build_model, train_seed
from harness.cli.main import build_parser
from harness.run.allocator import keep_freed_buffers
from harness.run.launcher import resolve_run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default=None, help="a dataset folder (pyKT, DKVMN, raw ASSISTments 2015)")
    p.add_argument("--synthetic", default="1000,200,1200",
                   help="skills,min_len,max_len of the simulator when no --data_dir is given")
    p.add_argument("--students", type=int, default=300, help="simulator students")
    p.add_argument("--old_rows", type=int, default=1024, help="window rows timed on the old (full) path")
    p.add_argument("--allocator", choices=("kept", "default"), default="kept",
                   help="kept: freed buffers reused, as in harness's training workers "
                        "(harness/run/allocator.py); default: glibc's own thresholds")
    p.add_argument("harness_args", nargs="*", metavar="-- ARG",
                   help="arguments after -- go to `harness run` unchanged")
    ns = p.parse_args(argv)
    extra: list[str] = ns.harness_args
    if ns.allocator == "kept":
        keep_freed_buffers()
    if ns.data_dir:
        data = load_dataset(ns.data_dir)
    else:
        skills, lo, hi = (int(x) for x in ns.synthetic.split(","))
        data = simulate(num_students=ns.students, num_skills=skills, min_len=lo, max_len=hi, seed=7)
    cfg = resolve_run(build_parser().parse_args(["run", "t", "--devices", "cpu", "--no_amp", "--epochs", "1",
                                                 *extra]), "t").config
    print(f"# dataset {data.name}: {len(data.concepts)} students, {data.num_c} concepts, "
          f"longest sequence {max(len(c) for c in data.concepts)}; torch threads {torch.get_num_threads()}; "
          f"eval_batch_size {cfg['training']['eval_batch_size']}, eval_fast_path {cfg['training']['eval_fast_path']}, "
          f"pack_windows {cfg['data']['pack_windows']}; allocator {ns.allocator}", flush=True)
    sink = MemorySink(echo=False)
    result = train_seed(cfg, data, "cpu", sink)
    epoch_s = result.history[0]["epoch_seconds"]
    print(f"training epoch (train + its validation pass): {epoch_s:.1f} s")
    for name, s in result.eval_seconds.items():
        print(f"final evaluation, {name} pass: {s:.1f} s")
    total = sum(result.eval_seconds.values())
    print(f"final evaluation, all passes: {total:.1f} s = {total / epoch_s:.2f} x the training epoch")

    train_idx, _, test_idx = split_students(data, cfg["data"]["fold"])
    window = build_window_test(data, test_idx, cfg["data"]["seq_len"])
    train_tokens = int(build_windows(data, train_idx, cfg["data"]["seq_len"]).length.sum())
    window_tokens = int(window.length.sum())
    print(f"work: the training epoch runs {train_tokens:,} token positions forward and backward (about 3 forward "
          f"passes' worth: {3 * train_tokens:,}); the window pass runs {window_tokens:,} forward "
          f"({window_tokens / (3 * train_tokens):.1f}x the epoch's, before the last-block shortcut)")
    model = build_model(cfg, data.num_c)
    model.load_state_dict(sink.best_model_state())
    part = window.select(torch.arange(min(ns.old_rows, len(window))))
    t0 = time.perf_counter()
    old = evaluate(model, part, batch_size=64, device=torch.device("cpu"))
    old_s = time.perf_counter() - t0
    fast = evaluate_predictions(model, part, batch_size=cfg["training"]["eval_batch_size"],
                                device=torch.device("cpu"), pack=cfg["data"]["pack_windows"])
    print(f"window protocol: {len(window):,} rows, {window.num_targets:,} scored targets; old full path on the "
          f"first {len(part):,} rows took {old_s:.1f} s -> {old_s * len(window) / len(part):.1f} s extrapolated "
          f"to all rows (AUC on those rows: old {old.auc:.6f}, fast {fast.auc:.6f}, "
          f"|diff| {abs(old.auc - fast.auc):.1e}); fast pass on all rows: "
          f"{result.eval_seconds.get('test_window', float('nan')):.1f} s")
    print(f"test_window_auc (fast, all rows) {result.final.get('test_window_auc', np.nan):.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
