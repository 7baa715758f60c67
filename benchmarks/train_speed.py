"""Training-step speed of GainAKT2Exp (paper and small configurations), with pyKT's AKT as a peer.

One training step = forward, all losses (ablation mode both_lag after warm-up: the six constraints,
alignment, lag and retention all active), backward, clip_grad_norm_(1.0), Adam step. Batch 64 of
full-length rows (T = 199), synthetic inputs with C = 100 concepts, fp32 unless --amp.

Each configuration runs in its own child process so that its peak memory is its own:
CPU - peak resident set size of the child (ru_maxrss) and its growth during the steps;
CUDA - torch.cuda.max_memory_allocated.
Reported time: median seconds per step over --steps steps after one warm-up step.

`refstyle` is the paper configuration written the way the public reference computes it (our own
re-implementation from research/reference_gainakt2exp.md, not its code): attention scores by
matmul with a -1e9 causal mask, nn.Dropout, the prediction MLP on the concatenation, the mastery
recursion as a Python loop over t, and its unmasked constraint losses and pooled alignment. It gives
a same-machine, same-moment baseline for the speed of `paper`, since wall times on a shared
2-core machine drift by tens of percent from run to run.

AKT (pyKT 0.0.38: d_model 256, 4 blocks, 8 heads, d_ff 256, dropout 0.05, BCE) is measured when
`pykt` is importable, e.g. installed outside the project environment with
    pip install --target /tmp/pykt pykt-toolkit==0.0.38 --no-deps
and run with PYTHONPATH=/tmp/pykt. Otherwise it is skipped with a note.

`--compile MODE` (default or reduce-overhead; gainakt configurations only) times the eager and the
compiled training step side by side in one child process: two copies of the same initial model, each
with its own Adam, stepping on the same batches in alternating order, so load changes hit both. The
compiled step is gainakt.compile.CompiledForward (the `training.compile` path: shapes padded up to a
multiple of --compile-width-multiple, packed rows to a multiple of --compile-rows-multiple). Steps that
met a new padded shape are compile steps: counted and timed apart. Both medians are over the same
steps (the ones after the warm-up where the compiled step ran already-compiled code), and the speed-up
is the median of the per-step ratios eager/compiled.
`--data DIR` takes the batches from a pyKT dataset (fold-0 training windows, shuffled batches, packed
as the default training path does, one batch per step) instead of one synthetic full-length batch.

Examples:
    python benchmarks/train_speed.py --steps 3
    python benchmarks/train_speed.py --device cuda --steps 20 --amp
    python benchmarks/train_speed.py --configs small --compile default --steps 20 \
        --data /work/shared/datasets/assist2015_pykt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GAINAKT_CONFIGS = {
    "paper": dict(d_model=512, n_heads=8, n_blocks=6, d_ff=1024, dropout=0.2),
    "small": dict(d_model=256, n_heads=8, n_blocks=2, d_ff=512, dropout=0.2),
}
AKT_CONFIG = dict(d_model=256, n_blocks=4, num_attn_heads=8, d_ff=256, dropout=0.05)
ALL_CONFIGS = (*GAINAKT_CONFIGS, "refstyle", "akt")
# glibc: serve every allocation from the heap and never trim it, so the large activation buffers of
# one step are reused by the next instead of being mapped (and zero-faulted) again.
MALLOC_TUNING = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    p.add_argument("--configs", default=",".join(ALL_CONFIGS), help=f"comma list of {', '.join(ALL_CONFIGS)}")
    p.add_argument("--amp", action="store_true", help="autocast (CUDA: bf16 if supported else fp16)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=199, help="input length T (pyKT windows of 200 give 199)")
    p.add_argument("--num-c", type=int, default=100, help="number of concepts")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune-malloc", action="store_true",
                   help="run the children with glibc malloc never returning memory to the OS "
                        f"({' '.join(f'{k}={v}' for k, v in MALLOC_TUNING.items())}): fewer page faults")
    p.add_argument("--compile", default="none", choices=("none", "default", "reduce-overhead"),
                   help="also time the torch.compile training step of this mode, side by side with eager")
    p.add_argument("--compile-width-multiple", type=int, default=64, help="with --compile: width rounding")
    p.add_argument("--compile-rows-multiple", type=int, default=4, help="with --compile: packed-row rounding")
    p.add_argument("--dropout", type=float, default=None,
                   help="with --compile: the gainakt configurations' dropout instead of theirs (0.2)")
    p.add_argument("--data", type=Path, default=None,
                   help="pyKT dataset folder: real fold-0 training batches (packed) instead of a synthetic one")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in ALL_CONFIGS]
    if unknown:
        p.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(ALL_CONFIGS)}")
    if args.steps < 1:
        p.error("--steps must be >= 1")
    chosen = [args.child] if args.child else args.configs
    for option, given in (("--compile", args.compile != "none"), ("--data", args.data is not None)):
        if given and any(c not in GAINAKT_CONFIGS for c in chosen):
            p.error(f"{option} applies to the gainakt configurations only ({', '.join(GAINAKT_CONFIGS)})")
    for option, given in (("--data", args.data is not None), ("--dropout", args.dropout is not None)):
        if given and args.compile == "none":
            p.error(f"{option} is used by the side-by-side --compile comparison; add --compile default")
    return args


# ----------------------------------------------------------------------------------- child side


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synthetic_batch(args, device) -> dict:
    """Full-length rows of random concepts and responses (the worst case for the step time)."""
    import torch

    g = torch.Generator().manual_seed(args.seed)
    b, t, c = args.batch_size, args.seq_len, args.num_c
    batch = {
        "q": torch.randint(0, c, (b, t), generator=g),
        "r": torch.randint(0, 2, (b, t), generator=g),
        "qry": torch.randint(0, c, (b, t), generator=g),
        "target": torch.randint(0, 2, (b, t), generator=g).float(),
        "mask": torch.ones(b, t, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


def _gainakt_step_factory(name: str, args, device, amp_dtype):
    import torch

    from gainakt.losses import LossSchedule, LossSettings, compute_losses, resolve_ablation
    from gainakt.model import GainAKT2Exp

    model = GainAKT2Exp(num_c=args.num_c, max_len=args.seq_len + 1, **GAINAKT_CONFIGS[name]).to(device)
    settings = LossSettings(**resolve_ablation("both_lag"))
    schedule = LossSchedule(settings, num_epochs=40, gain_scale=model.gain_scale)
    # after warm-up: epoch index 10 (lag from e1 >= 10), with a retention peak from the epoch before
    schedule.begin_epoch(9)
    schedule.end_epoch(9, mastery_corr_reference=0.10, loss_shares={"alignment": 0.0})
    weights = schedule.begin_epoch(10)
    assert weights.alignment > 0 and weights.lag_active and weights.retention_active

    batch = _synthetic_batch(args, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.6e-4, weight_decay=1.7571e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    model.train()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(batch["q"], batch["r"], batch["qry"])
        return _update(compute_losses(out, batch, weights)["total"], model, optimizer, scaler)

    return model, step


def _weights_after_warmup():
    from gainakt.losses import LossSchedule, LossSettings, resolve_ablation

    schedule = LossSchedule(LossSettings(**resolve_ablation("both_lag")), num_epochs=40, gain_scale=0.1)
    schedule.begin_epoch(9)
    schedule.end_epoch(9, mastery_corr_reference=0.10, loss_shares={"alignment": 0.0})
    return schedule.begin_epoch(10)


def _step_batches(args, device) -> tuple[list, int]:
    """(batch, packing plan) per step and the number of concepts: one synthetic batch, or --data's batches."""
    import itertools

    import torch

    if args.data is None:
        return [(_synthetic_batch(args, device), None)], args.num_c
    from gainakt.data import build_windows, load_dataset, split_students
    from gainakt.data.batching import device_batches

    data = load_dataset(args.data)
    train_idx, _, _ = split_students(data, 0)
    windows = build_windows(data, train_idx, args.seq_len + 1)
    order = torch.Generator().manual_seed(args.seed)
    batches = device_batches(windows, device, args.batch_size, generator=order, shuffle=True, pack=True)
    return list(itertools.islice(batches, args.steps + 1)), data.num_c


def _field(batch, name: str):
    return batch[name] if isinstance(batch, dict) else getattr(batch, name)


def _compiled_side_by_side(name: str, args, device, amp_dtype) -> list[dict]:
    """Eager and compiled training steps of one configuration, alternating on the same batches."""
    import contextlib
    import copy

    import torch

    from gainakt.compile import CompiledForward
    from gainakt.losses import compute_losses
    from gainakt.model import GainAKT2Exp

    batches, num_c = _step_batches(args, device)
    weights = _weights_after_warmup()
    dims = dict(GAINAKT_CONFIGS[name], **({} if args.dropout is None else {"dropout": args.dropout}))
    eager = GainAKT2Exp(num_c=num_c, max_len=args.seq_len + 1, **dims).to(device).train()
    twin = copy.deepcopy(eager)
    compiled = CompiledForward(twin, args.compile, rows=args.batch_size, width_multiple=args.compile_width_multiple,
                               rows_multiple=args.compile_rows_multiple)

    def make_step(model, forward):
        optimizer = torch.optim.Adam(model.parameters(), lr=1.6e-4, weight_decay=1.7571e-5, fused=True)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        def step(batch, plan) -> float:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = forward(_field(batch, "q"), _field(batch, "r"), _field(batch, "qry"), pack=plan)
            return _update(compute_losses(out, batch, weights)["total"], model, optimizer, scaler)

        return step

    steps = {"eager": make_step(eager, eager), "compiled": make_step(twin, compiled)}
    times: dict[str, dict[int, float]] = {"eager": {}, "compiled": {}}
    compile_times: list[float] = []
    for i in range(args.steps + 1):
        batch, plan = batches[i % len(batches)]
        for kind in ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager"):
            shapes = len(compiled.shapes)
            _sync(device)
            start = time.perf_counter()
            with compiled.settings() if kind == "compiled" else contextlib.nullcontext():
                loss = steps[kind](batch, plan)
            _sync(device)
            elapsed = time.perf_counter() - start
            if not (loss == loss):
                raise RuntimeError(f"{name} {kind}: NaN loss at step {i}")
            if kind == "compiled" and len(compiled.shapes) > shapes:
                compile_times.append(elapsed)  # this step traced and compiled a new shape
            elif i > 0:
                times[kind][i] = elapsed
    paired = sorted(set(times["eager"]) & set(times["compiled"]))  # steps where the compiled one ran compiled code
    params = sum(p.numel() for p in eager.parameters())
    tokens = sum(int(_field(b, "mask").sum()) for b, _ in batches[1:args.steps + 1]) if args.data else None
    rows = []
    for kind in ("eager", "compiled"):
        own = [times[kind][i] for i in paired]
        median = statistics.median(own) if own else float("nan")
        row = {
            "config": name if kind == "eager" else f"{name}+{args.compile}",
            "params": params, "device": str(device), "amp": {None: "fp32", torch.bfloat16: "bf16",
                                                            torch.float16: "fp16"}[amp_dtype],
            "threads": torch.get_num_threads(), "steps": args.steps, "data": str(args.data or "synthetic"),
            "dropout": dims["dropout"],
            "paired_steps": paired, "step_times_s": [round(x, 4) for x in own], "s_per_step": round(median, 4),
            "steps_per_s": round(1.0 / median, 4), "scored_positions": tokens,
        }
        if kind == "compiled":
            ratios = [times["eager"][i] / times["compiled"][i] for i in paired]
            row.update(speedup_median=round(statistics.median(ratios), 3) if ratios else None,
                       compile_steps=len(compile_times), compile_step_seconds=[round(x, 2) for x in compile_times],
                       shapes=sorted(compiled.shapes, key=str), shape_bound=compiled.shape_bound())
        rows.append(row)
    return rows


def _refstyle_model(num_c: int, max_len: int):
    """Paper-size GainAKT2Exp computed the reference's way (see the module docstring)."""
    import torch
    from torch import nn

    d, h, n_blocks, d_ff, p = 512, 8, 6, 1024, 0.2

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.drop = nn.Dropout(p)

        def forward(self, ctx, val):
            b, t, _ = ctx.shape

            def split(x):
                return x.view(b, t, h, d // h).transpose(1, 2)

            scores = split(self.q(ctx)) @ split(self.k(ctx)).transpose(-1, -2) / (d // h) ** 0.5
            future = torch.triu(torch.ones(t, t, device=ctx.device), diagonal=1).bool()
            att = torch.softmax(scores.float().masked_fill(future, -1e9), dim=-1).to(val.dtype)
            out = (att @ split(self.v(val))).transpose(1, 2).reshape(b, t, d)
            return self.drop(self.o(out))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = Attention()
            self.n_val, self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
            self.ffn = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(p), nn.Linear(d_ff, d))
            self.drop = nn.Dropout(p)

        def forward(self, ctx, val):
            a = self.att(ctx, val)
            val = self.n_val(val + a)
            mid = self.n1(ctx + a)
            return self.n2(mid + self.drop(self.ffn(mid))), val

    class RefStyle(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_c = num_c
            self.ctx_emb, self.val_emb = nn.Embedding(2 * num_c, d), nn.Embedding(2 * num_c, d)
            self.concept_emb, self.pos_emb = nn.Embedding(num_c, d), nn.Embedding(max_len, d)
            self.blocks = nn.ModuleList(Block() for _ in range(n_blocks))
            self.pred = nn.Sequential(nn.Linear(3 * d, d_ff), nn.ReLU(), nn.Dropout(p), nn.Linear(d_ff, 1))
            self.mastery_head, self.gain_head = nn.Linear(d, num_c), nn.Linear(d, num_c)

        def forward(self, q, r, qry):
            x = q + self.num_c * r
            pos = self.pos_emb(torch.arange(q.shape[1], device=q.device)).unsqueeze(0)
            ctx, val = self.ctx_emb(x) + pos, self.val_emb(x) + pos
            for block in self.blocks:
                ctx, val = block(ctx, val)
            logits = self.pred(torch.cat([ctx, val, self.concept_emb(qry)], -1)).squeeze(-1)
            gains = torch.relu(self.gain_head(val))
            init = torch.sigmoid(self.mastery_head(ctx))
            steps = [init[:, 0]]
            for t in range(1, q.shape[1]):  # the reference's recursion
                steps.append(torch.clamp(steps[-1] + 0.1 * gains[:, t], 0.0, 1.0))
            return {"logits": logits, "mastery": torch.stack(steps, 1), "gains": gains}

    return RefStyle()


def _refstyle_losses(out, batch):
    """The reference's unmasked constraint losses (weights after warm-up) and pooled alignment."""
    import torch
    import torch.nn.functional as F

    m, g, mask = out["mastery"], out["gains"], batch["mask"]
    q, r = batch["q"], batch["r"].float()
    bce = F.binary_cross_entropy_with_logits(out["logits"][mask], batch["target"][mask])
    onehot = F.one_hot(q, m.shape[-1]).float()
    m_rel, g_rel = (m * onehot).sum(-1).flatten(), (g * onehot).sum(-1).flatten()
    correct, wrong = r.flatten() == 1, r.flatten() == 0
    loss = bce + 0.1 * F.relu(m[:, :-1] - m[:, 1:]).mean()
    loss = loss + 0.8 * ((1 - m_rel[correct]).clamp(min=0).mean() + m_rel[wrong].clamp(min=0).mean())
    loss = loss + 0.8 * F.relu(g_rel[wrong].mean() - g_rel[correct].mean() + 0.1)
    loss = loss + 0.2 * (g * (1 - onehot)).abs().mean()
    loss = loss + 0.3 * ((m[:, 1:] - m[:, :-1]) - 0.1 * g[:, 1:]).abs().mean()

    def corr(x, y):
        x, y = x - x.mean(), y - y.mean()
        return (x * y).mean() / (x.std(unbiased=False) * y.std(unbiased=False) + 1e-6)

    sub = mask[:32]
    perf = batch["target"][:32][sub]
    align = -(corr(m[:32].mean(-1)[sub], perf) + corr(g[:32].mean(-1)[sub], perf))
    lag = torch.zeros((), device=m.device)
    for b in range(min(32, m.shape[0])):
        for lag_n, w in ((1, 0.5), (2, 0.3)):
            lag = lag + w * corr(g[b, :-lag_n].mean(-1), batch["target"][b, lag_n:])
    return loss + 0.3 * align - 0.05 * F.relu(lag / 0.8)


def _update(loss, model, optimizer, scaler) -> float:
    """The training loop's update: backward through the scaler, unscale, clip at 1.0, step; the loss."""
    import torch

    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _refstyle_step_factory(args, device, amp_dtype):
    import torch

    model = _refstyle_model(args.num_c, args.seq_len + 1).to(device)
    batch = _synthetic_batch(args, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.6e-4, weight_decay=1.7571e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    model.train()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(batch["q"], batch["r"], batch["qry"])
        loss = _refstyle_losses({k: v.float() for k, v in out.items()}, batch)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    return model, step


def _akt_step_factory(args, device, amp_dtype):
    import torch
    import torch.nn.functional as F
    from pykt.models.akt import AKT  # noqa: PLC0415 - optional peer

    model = AKT(n_question=args.num_c, n_pid=0, emb_type="qid", **AKT_CONFIG).to(device)
    g = torch.Generator().manual_seed(args.seed)
    b, t, c = args.batch_size, args.seq_len + 1, args.num_c
    # pyKT feeds the whole window (200) and scores predictions 1..199
    concepts = torch.randint(0, c, (b, t), generator=g).to(device)
    responses = torch.randint(0, 2, (b, t), generator=g).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    model.train()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            preds, reg = model(concepts, responses)
        loss = F.binary_cross_entropy(preds[:, 1:].float(), responses[:, 1:].float()) + reg
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    return model, step


def _run_child(args) -> dict | list[dict]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    amp_dtype = None
    if args.amp:
        if device.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            amp_dtype = torch.bfloat16
    name = args.child
    if args.compile != "none":
        return _compiled_side_by_side(name, args, device, amp_dtype)
    if name == "akt":
        model, step = _akt_step_factory(args, device, amp_dtype)
    elif name == "refstyle":
        model, step = _refstyle_step_factory(args, device, amp_dtype)
    else:
        model, step = _gainakt_step_factory(name, args, device, amp_dtype)
    params = sum(p.numel() for p in model.parameters())

    rss_before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu_times = [], []
    for i in range(args.steps + 1):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step()
        _sync(device)
        if i > 0:  # the first step is the warm-up
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        if not (loss == loss):  # NaN
            raise RuntimeError(f"{name}: NaN loss at step {i}")
    median = statistics.median(times)
    result = {
        "config": name,
        "params": params,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "amp": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype],
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "step_times_s": [round(x, 4) for x in times],
        "s_per_step": round(median, 4),
        # CPU seconds of this process (all threads): less sensitive than wall time to other load
        "cpu_s_per_step": round(statistics.median(cpu_times), 4),
        "sequences_per_s": round(args.batch_size / median, 2),
    }
    if device.type == "cuda":
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["peak_mem_kind"] = "cuda max_memory_allocated"
    else:
        result["peak_mem_mb"] = round(_rss_mb(), 1)
        result["peak_mem_growth_mb"] = round(_rss_mb() - rss_before, 1)
        result["peak_mem_kind"] = "process peak RSS"
    return result


# ----------------------------------------------------------------------------------- parent side


def _pykt_importable() -> bool:
    try:
        import pykt.models.akt  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return True


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _format_row(r: dict) -> str:
    mem = f"{r['peak_mem_mb']:>9.1f}"
    growth = f" (+{r['peak_mem_growth_mb']:.1f})" if "peak_mem_growth_mb" in r else ""
    return (
        f"{r['config']:<8} {r['params']:>12,} {r['amp']:>5} {r['s_per_step']:>9.3f} "
        f"{r['sequences_per_s']:>9.2f} {r['cpu_s_per_step']:>9.2f} {mem}{growth}  steps={r['step_times_s']}"
    )


def _format_compare_row(r: dict) -> str:
    compiled = (f"  speed-up x{r['speedup_median']} (median of paired eager/compiled step times); "
                f"compile steps {r['compile_steps']} ({sum(r['compile_step_seconds']):.1f}s: "
                f"{r['compile_step_seconds']}), shapes {len(r['shapes'])}/{r['shape_bound']}") if "shapes" in r else ""
    return (f"{r['config']:<22} {r['params']:>12,} {r['amp']:>5} {r['s_per_step']:>9.3f} s/step "
            f"{r['steps_per_s']:>8.3f} steps/s over {len(r['step_times_s'])} steps{compiled}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one line per configuration and returns the exit code."""
    args = _parse(argv)
    if args.child:
        out = _run_child(args)
        for row in out if isinstance(out, list) else [out]:
            print("RESULT " + json.dumps(row))
        return 0

    args.device = _resolve_device(args.device)
    print(f"# train_speed: device={args.device} batch={args.batch_size} T={args.seq_len} C={args.num_c} "
          f"steps={args.steps} (+1 warm-up) amp={args.amp} tune_malloc={args.tune_malloc} "
          f"compile={args.compile} data={args.data or 'synthetic'} dropout={args.dropout or 'preset'} "
          f"python={platform.python_version()}")
    print(f"{'config':<8} {'params':>12} {'prec':>5} {'s/step':>9} {'seq/s':>9} {'cpu s':>9} {'peak MB':>9}")
    results, skipped = [], []
    for name in args.configs:
        if name == "akt" and not _pykt_importable():
            line = ("akt      skipped: pykt is not importable (pip install --target /tmp/pykt "
                    "pykt-toolkit==0.0.38 --no-deps; then PYTHONPATH=/tmp/pykt)")
            print(line)
            skipped.append({"config": "akt", "skipped": "pykt not importable"})
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--device", args.device,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
               "--num-c", str(args.num_c), "--threads", str(args.threads), "--seed", str(args.seed)]
        if args.amp:
            cmd.append("--amp")
        if args.compile != "none":
            cmd += ["--compile", args.compile, "--compile-width-multiple", str(args.compile_width_multiple),
                    "--compile-rows-multiple", str(args.compile_rows_multiple)]
        if args.data is not None:
            cmd += ["--data", str(args.data)]
        if args.dropout is not None:
            cmd += ["--dropout", str(args.dropout)]
        env = os.environ.copy()
        if args.tune_malloc:
            env.update(MALLOC_TUNING)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"{name:<8} failed: {tail[0]}")
            skipped.append({"config": name, "failed": tail[0]})
            continue
        for line in found:
            result = json.loads(line[len("RESULT "):])
            results.append(result)
            print(_format_row(result) if "cpu_s_per_step" in result else _format_compare_row(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "skipped": skipped}, indent=2) + "\n")
    return 0 if results or not args.configs else 1


if __name__ == "__main__":
    sys.exit(main())
