"""The opt-in compiled training forward (``training.compile``): torch.compile on a few fixed shapes.

``CompiledForward`` wraps ``torch.compile(model, mode=..., dynamic=False)``. A compiled graph is
specialised to its input shapes, so every batch is padded up to a few sizes before the call and the
outputs are sliced back: the width T to a multiple of ``width_multiple`` (capped at the model's
``max_len``), the rows B to ``rows`` (the batch size), and with packing the packed rows R to a
multiple of ``rows_multiple``. The losses see exactly the unpadded [B, T] outputs, so whatever they
do with padding positions is unchanged.

Why padding never changes a valid output (beyond float rounding of differently-shaped kernels):
* unpacked rows are causal, so an appended position t >= T is seen by no position < T, and an
  appended row is its own batch element; every query sees at least itself, so no attention row is
  fully masked (SDPA would give NaN);
* a packed plan is re-indexed to the padded shape: appended slots and rows are empty slots
  (segment -1), which see only earlier empty slots of their row and themselves, never a window;
  windows keep their slots, positions and block-diagonal masks;
* the mastery is a cumulative sum over time, so its first T steps do not read later ones.

Evaluation passes call the eager model (the same parameters): their shapes and modes
(``heads=False``, ``only_at``) differ from training's and they run once per epoch.

``reduce-overhead`` adds CUDA graphs; on CPU torch.compile would skip them silently, so
``compile_problem`` refuses it there with one line. Under ``--torch_deterministic`` inductor's
random ops fall back to eager's RNG (``torch._inductor.config.fallback_random``) and it skips the
autotuning that can change numerics (``torch._inductor.config.deterministic``); a CPU rerun is
bit-identical (tested), a GPU rerun is still to be checked.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from gainakt.data.batching import Packing
from gainakt.model import GainAKT2Exp

__all__ = ["COMPILE_MODES", "CompiledForward", "compile_problem", "pad_batch", "round_up"]

COMPILE_MODES = ("none", "default", "reduce-overhead")


def compile_problem(mode: str, device: str | torch.device) -> str | None:
    """Why ``mode`` cannot run on ``device`` (None if it can)."""
    if mode not in COMPILE_MODES:
        return f"training.compile: {mode!r} is not one of {', '.join(COMPILE_MODES)}"
    if mode == "reduce-overhead" and torch.device(device).type != "cuda":
        return ("training.compile reduce-overhead records CUDA graphs and needs a CUDA device; "
                "on CPU use --compile default (the same inductor code without graphs)")
    return None


def round_up(n: int, multiple: int, cap: int | None = None) -> int:
    """``n`` rounded up to a multiple of ``multiple``, at most ``cap`` (but never below ``n``)."""
    up = -(-n // multiple) * multiple
    return max(n, min(up, cap)) if cap is not None else up


def pad_batch(q: Tensor, r: Tensor, qry: Tensor, pack: Packing | None, rows: int,
              width: int, packed_rows: int) -> tuple[Tensor, Tensor, Tensor, Packing | None]:
    """The [B, T] inputs (and their packing plan) padded to [rows, width] and ``packed_rows`` packed rows.

    Padding tokens are concept 0 with response 0; they are empty slots of the packed plan.
    """
    b, t = q.shape

    def pad(x: Tensor) -> Tensor:
        return torch.nn.functional.pad(x, (0, width - t, 0, rows - b))

    return pad(q), pad(r), pad(qry), None if pack is None else _pad_plan(pack, b, rows, width, packed_rows)


def _pad_plan(pack: Packing, b: int, rows: int, width: int, packed_rows: int) -> Packing:
    """``pack`` (for [b, pack.width] into pack.rows rows) re-indexed for [rows, width] into ``packed_rows``."""
    t, n_rows = pack.width, pack.rows
    dev = pack.src.device
    # packed slot (row k, column c) of width t -> slot k * width + c; the empty sentinel moves too
    dest = pack.dest.view(b, t)
    dest = torch.where(dest < n_rows * t, dest // t * width + dest % t,
                       torch.full_like(dest, packed_rows * width))
    new_dest = torch.full((rows, width), packed_rows * width, dtype=torch.long, device=dev)
    new_dest[:b, :t] = dest
    # batch position (row i, column c) of width t -> i * width + c, for the slots that hold one
    src = pack.src.view(n_rows, t)
    src = torch.where(src < b * t, src // t * width + src % t, torch.full_like(src, rows * width))
    new_src = torch.full((packed_rows, width), rows * width, dtype=torch.long, device=dev)
    new_src[:n_rows, :t] = src
    segment = torch.full((packed_rows, width), -1, dtype=torch.long, device=dev)
    segment[:n_rows, :t] = pack.segment
    position = torch.zeros((packed_rows, width), dtype=torch.long, device=dev)
    position[:n_rows, :t] = pack.position
    # an appended batch row starts at slot 0: its (sliced-away) mastery reads some finite context
    starts = torch.zeros(rows, dtype=torch.long, device=dev)
    starts[:b] = pack.starts // t * width + pack.starts % t
    return Packing(src=new_src.flatten(), dest=new_dest.flatten(), starts=starts, segment=segment,
                   position=position, rows=packed_rows, width=width)


class CompiledForward:
    """``model(q, r, qry, pack=...)`` through torch.compile on rounded shapes (see the module doc).

    ``shapes`` holds every distinct padded shape (rows, width, packed rows or None) compiled so far and
    ``compile_seconds`` the wall time of the calls that met a new one (tracing, compiling, running).
    Dynamo's recompile limit is raised to the number of shapes the rounding can produce and hitting it
    is an error, so no batch silently falls back to eager.
    """

    def __init__(self, model: GainAKT2Exp, mode: str, *, rows: int, width_multiple: int,
                 rows_multiple: int, deterministic: bool = False) -> None:
        if mode == "none" or mode not in COMPILE_MODES:
            raise ValueError(f"CompiledForward needs mode default or reduce-overhead, got {mode!r}")
        self.model, self.mode = model, mode
        self.rows, self.width_multiple, self.rows_multiple = rows, width_multiple, rows_multiple
        self.max_len = model.max_len
        self.deterministic = deterministic
        self.compiled = torch.compile(model, mode=mode, dynamic=False)
        self.shapes: set[tuple[int, int, int | None]] = set()
        self.compile_seconds = 0.0

    def shape_bound(self) -> int:
        """How many distinct padded shapes the rounding can produce (packed and unpacked together)."""
        widths = math.ceil(self.max_len / self.width_multiple)
        return widths * (1 + math.ceil(self.rows / self.rows_multiple))

    def padded_shape(self, b: int, t: int, pack: Packing | None) -> tuple[int, int, int | None]:
        if b > self.rows:
            raise ValueError(f"batch of {b} rows is larger than the compiled batch size {self.rows}")
        width = round_up(t, self.width_multiple, self.max_len)
        packed = None if pack is None else round_up(pack.rows, self.rows_multiple, self.rows)
        return self.rows, width, packed

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Dynamo's recompile bound and, when deterministic, inductor's eager RNG and no numerics-changing
        autotuning. Each call sets them; hold them around the backward pass as well (inductor compiles
        the backward graph lazily, at its first backward), as ``train_seed`` does for each epoch."""
        limit = max(8, self.shape_bound())
        with torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True), \
                torch._inductor.config.patch(fallback_random=self.deterministic, deterministic=self.deterministic):
            yield

    def __call__(self, q: Tensor, r: Tensor, qry: Tensor, *, pack: Packing | None = None) -> dict[str, Any]:
        b, t = q.shape
        shape = self.padded_shape(b, t, pack)
        rows, width, packed = shape
        args = pad_batch(q, r, qry, pack, rows, width, packed if packed is not None else 0)
        new = shape not in self.shapes
        start = time.perf_counter() if new else 0.0
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with self.settings():
            out = self.compiled(args[0], args[1], args[2], pack=args[3])
        if new:
            self.shapes.add(shape)
            self.compile_seconds += time.perf_counter() - start
        return {k: None if v is None else v[:b, :t] for k, v in out.items()}

    def record(self) -> dict[str, Any]:
        """What ran, for the seed's timings file and log."""
        return {
            "mode": self.mode,
            "evaluation": "eager",
            "width_multiple": self.width_multiple,
            "rows": self.rows,
            "rows_multiple": self.rows_multiple,
            "shapes_compiled": len(self.shapes),
            "shape_bound": self.shape_bound(),
            "first_call_seconds": round(self.compile_seconds, 3),
            "deterministic": self.deterministic,  # inductor: eager RNG, no numerics-changing autotuning
        }
