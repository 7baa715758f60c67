"""Mini-batches over a prepared SequenceSet (index selection only, no per-row Python work)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gainakt.data.windows import SequenceSet


def batch_order(
    lengths: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    bucket_by_length: bool = False,
) -> list[torch.Tensor]:
    """Return the row indices of each batch, in the order batches are served.

    ``shuffle`` permutes rows with ``torch.randperm(N, generator=generator)``.
    ``bucket_by_length`` then sorts rows by length (stable, so ties keep the shuffled
    order), cuts batches of similar length and, when shuffling, permutes the batch order
    with the same generator. The same generator seed gives the same batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = int(lengths.shape[0])
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if bucket_by_length:
        order = order[torch.sort(lengths.cpu()[order], stable=True).indices]
    # torch.split of an empty tensor yields one empty piece; an empty set has no batches.
    batches = [b for b in torch.split(order, batch_size) if len(b)]
    if bucket_by_length and shuffle and batches:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def iterate_batches(
    seqs: SequenceSet,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    bucket_by_length: bool = False,
) -> Iterator[SequenceSet]:
    """Yield SequenceSet batches, each trimmed to its longest row (max length - 1 positions)."""
    lengths = seqs.length.cpu()
    for index in batch_order(
        lengths, batch_size, generator=generator, shuffle=shuffle, bucket_by_length=bucket_by_length
    ):
        width = max(int(lengths[index].max()) - 1, 1)
        yield seqs.select(index).trim(width)


@dataclass(frozen=True)
class Packing:
    """Where the valid positions of a [B, T] batch sit in ``rows`` packed rows of ``width`` slots.

    Flat indices: ``src`` [R*W] gives, for every packed slot, the [B*T] position placed there (B*T
    for an empty slot); ``dest`` [B*T] gives, for every batch position, its packed slot (R*W for a
    padding position); ``starts`` [B] the slot of each batch row's position 0. ``segment`` [R, W]
    numbers the windows of a packed row (-1 for empty slots) and ``position`` [R, W] is the position
    inside its window, so each window keeps its own positional embeddings and causal context.
    """

    src: torch.Tensor
    dest: torch.Tensor
    starts: torch.Tensor
    segment: torch.Tensor
    position: torch.Tensor
    rows: int
    width: int

    def to(self, device: str | torch.device) -> Packing:
        """Return the plan with its index tensors on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("src", "dest", "starts", "segment", "position")}
        return Packing(**moved, rows=self.rows, width=self.width)

    def attention_mask(self) -> torch.Tensor:
        """Boolean [R, 1, W, W] mask: slot i sees slot j <= i of the same window (empty slots see earlier empty ones)."""
        seg = self.segment
        same = seg.unsqueeze(2) == seg.unsqueeze(1)
        causal = torch.ones(self.width, self.width, dtype=torch.bool, device=seg.device).tril_()
        return (same & causal).unsqueeze(1)


def plan_packing(valid: torch.Tensor, width: int) -> Packing:
    """Pack rows with ``valid[i]`` leading valid positions (1 <= valid[i] <= width) into rows of ``width``.

    First-fit decreasing (ties in batch order), so the plan depends only on the lengths. Every
    window stays whole inside one packed row, in the order it had.
    """
    counts = [int(v) for v in valid.cpu().tolist()]
    if any(c < 1 or c > width for c in counts):
        raise ValueError(f"every row needs 1..{width} valid positions to be packed, got {counts}")
    b = len(counts)
    free: list[int] = []  # free slots left in each packed row
    row_of, offset_of = [0] * b, [0] * b
    for i in sorted(range(b), key=lambda i: -counts[i]):
        row = next((k for k, f in enumerate(free) if f >= counts[i]), len(free))
        if row == len(free):
            free.append(width)
        row_of[i], offset_of[i] = row, width - free[row]
        free[row] -= counts[i]
    rows = len(free)
    n = torch.tensor(counts, dtype=torch.long)
    first = torch.tensor(row_of, dtype=torch.long) * width + torch.tensor(offset_of, dtype=torch.long)
    t = torch.arange(width)
    is_valid = t.unsqueeze(0) < n.unsqueeze(1)  # [B, T]
    slot = first.unsqueeze(1) + t.unsqueeze(0)
    dest = torch.where(is_valid, slot, torch.full_like(slot, rows * width)).flatten()
    src = torch.full((rows * width,), b * width, dtype=torch.long)
    flat_pos = (torch.arange(b).unsqueeze(1) * width + t.unsqueeze(0))
    src[slot[is_valid]] = flat_pos[is_valid]
    segment = torch.full((rows * width,), -1, dtype=torch.long)
    segment[slot[is_valid]] = torch.arange(b).unsqueeze(1).expand(b, width)[is_valid]
    position = torch.zeros(rows * width, dtype=torch.long)
    position[slot[is_valid]] = t.unsqueeze(0).expand(b, width)[is_valid]
    return Packing(src=src, dest=dest, starts=first, segment=segment.view(rows, width),
                   position=position.view(rows, width), rows=rows, width=width)


def packing_for(batch: SequenceSet) -> Packing:
    """The packing plan of a (CPU) batch: its rows' valid positions (``length - 1``) into its width."""
    return plan_packing((batch.length - 1).clamp(min=1, max=batch.width), batch.width)


def device_batches(
    seqs: SequenceSet,
    device: str | torch.device,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    bucket_by_length: bool = False,
    pack: bool = False,
) -> Iterator[tuple[SequenceSet, Packing | None]]:
    """Like ``iterate_batches``, with the set copied to ``device`` once and (batch, packing plan) served.

    The batch order, widths and plans are computed from host copies of the lengths; per batch the
    row indices and the plan travel to the device in one non-blocking copy from pinned memory (on
    CUDA), so serving a batch never waits for the device.
    """
    device = torch.device(device)
    lengths = seqs.length.cpu()
    resident = seqs.to(device)
    cuda = device.type == "cuda"
    for index in batch_order(lengths, batch_size, generator=generator, shuffle=shuffle,
                             bucket_by_length=bucket_by_length):
        width = max(int(lengths[index].max()) - 1, 1)
        plan = plan_packing((lengths[index] - 1).clamp(min=1, max=width), width) if pack else None
        parts = [index] if plan is None else [index, plan.src, plan.dest, plan.starts, plan.segment.flatten(),
                                              plan.position.flatten()]
        host = torch.cat(parts)
        moved = (host.pin_memory() if cuda else host).to(device, non_blocking=cuda)
        pieces = torch.split(moved, [len(p) for p in parts])
        batch = resident.select(pieces[0]).trim(width)
        if plan is None:
            yield batch, None
            continue
        src, dest, starts, segment, position = pieces[1:]
        yield batch, Packing(src=src, dest=dest, starts=starts, segment=segment.view(plan.rows, width),
                             position=position.view(plan.rows, width), rows=plan.rows, width=width)
