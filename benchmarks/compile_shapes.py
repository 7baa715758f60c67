"""How many shapes `training.compile` compiles in one epoch, and how much padding it adds, per rounding.

Serves the training batches of one epoch exactly as training does (fold-0 training windows, shuffled
with the seed's generator, packed unless --no-pack) and pads each the way gainakt.compile.CompiledForward
does: rows to the batch size, width to a multiple of W (capped at seq_len), packed rows to a multiple of
R. Prints, per (W, R): the distinct padded shapes (each one is a torch.compile recompile and, with
reduce-overhead, a CUDA graph) and the ratio of padded to unpadded token slots of the epoch (the
extra work of the token-wise layers; attention grows with the square of the width). No model runs.

Example:
    python benchmarks/compile_shapes.py --data /work/shared/datasets/assist2015_pykt
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="pyKT dataset folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--seed", type=int, default=42, help="the batch-order seed (training uses the run's seed)")
    p.add_argument("--no-pack", action="store_true", help="unpacked batches (--no_pack_windows)")
    p.add_argument("--roundings", default="16x4,64x4,64x8,200x4,200x8",
                   help="comma list of WIDTHxROWS multiples")
    args = p.parse_args(argv)

    import torch

    from gainakt.compile import round_up
    from gainakt.data import build_windows, load_dataset, split_students
    from gainakt.data.batching import device_batches

    data = load_dataset(args.data)
    train_idx, _, _ = split_students(data, 0)
    windows = build_windows(data, train_idx, args.seq_len)
    batches = [(b.width, None if plan is None else plan.rows)
               for b, plan in device_batches(windows, "cpu", args.batch_size, shuffle=True, pack=not args.no_pack,
                                             generator=torch.Generator().manual_seed(args.seed))]
    unpadded = sum(w * (rows or args.batch_size) for w, rows in batches)
    print(f"# {args.data.name} fold 0: {len(batches)} training batches of {args.batch_size}, "
          f"{'unpacked' if args.no_pack else 'packed'}, seed {args.seed}")
    print(f"{'W x R':>8} {'shapes':>7} {'padded/unpadded slots':>22}  most frequent (width, packed rows): batches")
    for item in args.roundings.split(","):
        wm, rm = (int(x) for x in item.split("x"))
        shapes: collections.Counter = collections.Counter()
        for width, rows in batches:
            shapes[(round_up(width, wm, args.seq_len),
                    None if rows is None else round_up(rows, rm, args.batch_size))] += 1
        padded = sum(w * (r or args.batch_size) * n for (w, r), n in shapes.items())
        top = ", ".join(f"{s}: {n}" for s, n in shapes.most_common(3))
        print(f"{item:>8} {len(shapes):>7} {padded / unpadded:>22.3f}  {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
