"""Mini-batches over a prepared SequenceSet (index selection only, no per-row Python work)."""

from __future__ import annotations

from collections.abc import Iterator

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
