#!/usr/bin/env python
"""Time of one fold-0 training epoch on ASSISTments 2015, extrapolated from a fixed fraction.

Runs the real training step of `gainakt.train` (forward, every loss term of `both_lag` after
warm-up, backward, clip 1.0, Adam) on the first `--batches` batches of the seeded epoch order and
multiplies the mean batch time by the epoch's number of batches. Reports it for the plain shuffled
order (each batch trimmed to its longest window) and for length-bucketed batching, next to the
reference's figure on this machine type (11.4 s/step × 193 steps ≈ 37 min: it always pads to 199).

    python benchmarks/epoch_time.py --data_dir ../shared/datasets/assist2015_pykt --batches 6
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gainakt.data import build_windows, iterate_batches, load_dataset, split_students
from gainakt.losses import LossSchedule, compute_losses
from gainakt.train import build_model, loss_settings, make_optimizer
from harness.cli.main import build_parser
from harness.run.launcher import resolve_run


def time_epoch(cfg: dict, windows, batches: int, bucket: bool, device: torch.device) -> dict:
    torch.manual_seed(42)
    model = build_model(cfg, 100).to(device)
    opt = make_optimizer(cfg, model)
    schedule = LossSchedule(loss_settings(cfg), 40, gain_scale=0.1)
    schedule.begin_epoch(9)
    schedule.end_epoch(9, mastery_corr_reference=0.10, loss_shares={"alignment": 0.0})
    weights = schedule.begin_epoch(10)  # every term active, as late in training
    order = torch.Generator().manual_seed(42)
    all_batches = list(iterate_batches(windows, 64, generator=order, shuffle=True, bucket_by_length=bucket))
    widths = [b.q.shape[1] for b in all_batches]
    times = []
    for b in all_batches[:batches]:
        b = b.to(device)
        t0 = time.perf_counter()
        out = model(b.q, b.r, b.qry)
        loss = compute_losses(out, b, weights)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    # The timed batches are a sample of the epoch; scale by width to extrapolate fairly.
    per_width = sum(times) / sum(widths[:batches])
    return {
        "bucket_by_length": bucket,
        "batches_in_epoch": len(all_batches),
        "timed_batches": batches,
        "mean_width_all": statistics.fmean(widths),
        "mean_width_timed": statistics.fmean(widths[:batches]),
        "mean_s_per_timed_batch": statistics.fmean(times),
        "extrapolated_epoch_s": per_width * sum(widths),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--preset", default="paper", choices=("paper", "small"))
    p.add_argument("--device", default="cpu")
    ns = p.parse_args()
    cfg = resolve_run(build_parser().parse_args(["run", "t", "--model_preset", ns.preset, "--no_amp"]), "t").config
    ds = load_dataset(ns.data_dir)
    train_idx, _, _ = split_students(ds, 0)
    windows = build_windows(ds, train_idx, 200)
    device = torch.device(ns.device)
    print(f"# fold-0 training windows: {len(windows)}; preset {ns.preset}; device {device}; "
          f"threads {torch.get_num_threads()}")
    print("bucket  batches  mean_width  timed  s/timed_batch  extrapolated_epoch_s  (reference: 193 x 11.4 = 2200 s)")
    for bucket in (False, True):
        r = time_epoch(cfg, windows, ns.batches, bucket, device)
        print(f"{str(bucket):6}  {r['batches_in_epoch']:7d}  {r['mean_width_all']:10.1f}  {r['timed_batches']:5d}  "
              f"{r['mean_s_per_timed_batch']:13.2f}  {r['extrapolated_epoch_s']:20.0f}")


if __name__ == "__main__":
    main()
