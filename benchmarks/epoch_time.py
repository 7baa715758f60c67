#!/usr/bin/env python
"""Time of one fold-0 training epoch on ASSISTments 2015, extrapolated from a fixed fraction.

Runs the real training step of `gainakt.train` (forward, every loss term of `both_lag` after
warm-up, backward, clip 1.0, Adam) on the first `--batches` batches of the seeded epoch order and
extrapolates to the whole epoch in proportion to the token slots computed (rows x width of every
batch; a packed batch has fewer rows). Modes, all in one process so they share the machine's
moment: `shuffled` (the old default: each batch trimmed to its longest window), `packed` (the same
batches, windows packed into shared rows: `data.pack_windows`), `bucketed` (`--bucket_by_length`),
and `refstyle` (the reference-style computation of benchmarks/train_speed.py on batches always
padded to 199, as the reference does: the same-moment baseline for its ≈37 min calibration).

    python benchmarks/epoch_time.py --data_dir ../shared/datasets/assist2015_pykt --batches 6
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gainakt.data import build_windows, iterate_batches, load_dataset, split_students
from gainakt.data.batching import packing_for
from gainakt.losses import LossSchedule, compute_losses
from gainakt.train import build_model, loss_settings, make_optimizer
from harness.cli.main import build_parser
from harness.run.launcher import resolve_run

MODES = ("shuffled", "packed", "bucketed", "refstyle")


def time_epoch(cfg: dict, windows, batches: int, mode: str, device: torch.device) -> dict:
    torch.manual_seed(42)
    model = build_model(cfg, 100).to(device)
    opt = make_optimizer(cfg, model)
    schedule = LossSchedule(loss_settings(cfg), 40, gain_scale=0.1)
    schedule.begin_epoch(9)
    schedule.end_epoch(9, mastery_corr_reference=0.10, loss_shares={"alignment": 0.0})
    weights = schedule.begin_epoch(10)  # every term active, as late in training
    order = torch.Generator().manual_seed(42)
    bucket, pack = mode == "bucketed", mode == "packed"
    all_batches = list(iterate_batches(windows, 64, generator=order, shuffle=True, bucket_by_length=bucket))
    plans = [packing_for(b) if pack else None for b in all_batches]
    widths = [b.q.shape[1] for b in all_batches]
    slots = [(p.rows if p is not None else len(b)) * b.width for b, p in zip(all_batches, plans, strict=True)]
    times = []
    for b, plan in zip(all_batches[:batches], plans[:batches], strict=True):
        b = b.to(device)
        t0 = time.perf_counter()
        out = model(b.q, b.r, b.qry, pack=None if plan is None else plan.to(device))
        loss = compute_losses(out, b, weights)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    # The timed batches are a sample of the epoch; scale by token slots to extrapolate fairly.
    per_slot = sum(times) / sum(slots[:batches])
    return {
        "mode": mode,
        "batches_in_epoch": len(all_batches),
        "timed_batches": batches,
        "mean_width_all": statistics.fmean(widths),
        "mean_rows_all": statistics.fmean(s / w for s, w in zip(slots, widths, strict=True)),
        "mean_s_per_timed_batch": statistics.fmean(times),
        "extrapolated_epoch_s": per_slot * sum(slots),
    }


def time_refstyle(windows, batches: int) -> dict:
    """The reference-style step (benchmarks/train_speed.py) on 64 rows padded to 199, times the epoch's batch count."""
    import argparse as _ap

    from train_speed import _refstyle_step_factory

    n_batches = -(-len(windows) // 64)
    args = _ap.Namespace(num_c=100, seq_len=199, batch_size=64, seed=42)
    _, step = _refstyle_step_factory(args, torch.device("cpu"), None)
    step()  # warm-up
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"mode": "refstyle", "batches_in_epoch": n_batches, "timed_batches": batches, "mean_width_all": 199.0,
            "mean_rows_all": 64.0, "mean_s_per_timed_batch": statistics.fmean(times),
            "extrapolated_epoch_s": statistics.fmean(times) * n_batches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", default="../shared/datasets/assist2015_pykt")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--preset", default="paper", choices=("paper", "small"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    ns = p.parse_args()
    cfg = resolve_run(build_parser().parse_args(["run", "t", "--model_preset", ns.preset, "--no_amp"]), "t").config
    ds = load_dataset(ns.data_dir)
    train_idx, _, _ = split_students(ds, 0)
    windows = build_windows(ds, train_idx, 200)
    device = torch.device(ns.device)
    print(f"# fold-0 training windows: {len(windows)}; preset {ns.preset}; device {device}; "
          f"threads {torch.get_num_threads()}")
    print("mode      batches  mean_width  mean_rows  timed  s/timed_batch  extrapolated_epoch_s  "
          "(reference calibration: 193 x 11.4 = 2200 s)")
    for mode in ns.modes.split(","):
        if mode == "refstyle":
            r = time_refstyle(windows, max(2, ns.batches // 2))
        else:
            r = time_epoch(cfg, windows, ns.batches, mode, device)
        print(f"{mode:8}  {r['batches_in_epoch']:7d}  {r['mean_width_all']:10.1f}  {r['mean_rows_all']:9.1f}  "
              f"{r['timed_batches']:5d}  {r['mean_s_per_timed_batch']:13.2f}  {r['extrapolated_epoch_s']:20.0f}",
              flush=True)


if __name__ == "__main__":
    main()
