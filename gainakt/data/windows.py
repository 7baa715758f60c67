"""Window tensors: students cut into fixed-width rows for training and evaluation.

A row holds up to ``max_len`` consecutive interactions of one student. Position t of a
row (t < T = max_len - 1) pairs the interaction at t (``q``, ``r``) with the next one,
whose concept is asked (``qry``) and whose response is the target. Positions without
such a pair (``mask`` False) are 0 in every tensor, as in pyKT; ``score_mask`` marks the targets that count for
AUC/accuracy. All tensors are built at once with numpy indexing, never per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from gainakt.data.dataset import KTDataset

MIN_WINDOW = 3  # pyKT's min_seq_len: a chunk remainder shorter than this is dropped


@dataclass
class SequenceSet:
    """Rows of windows as CPU (or device) tensors; shapes ``[N, T]`` unless noted."""

    q: torch.Tensor  # long: concept answered at t
    r: torch.Tensor  # long: response at t
    qry: torch.Tensor  # long: concept asked at t+1
    target: torch.Tensor  # float: response at t+1
    mask: torch.Tensor  # bool: t and t+1 are both real interactions
    score_mask: torch.Tensor  # bool: targets that count for AUC/accuracy
    student: torch.Tensor  # long [N]: index into KTDataset.concepts
    length: torch.Tensor  # long [N]: real interactions in the row (valid positions = length - 1)
    true_mastery: torch.Tensor | None = None  # float: true mastery of qry[t] after interaction t

    def __len__(self) -> int:
        """Return the number of rows."""
        return int(self.q.shape[0])

    @property
    def width(self) -> int:
        """Return the number of positions T per row."""
        return int(self.q.shape[1])

    def _map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> SequenceSet:
        """Return a SequenceSet with ``fn(name, tensor)`` applied to every tensor field."""
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = None if value is None else fn(f.name, value)
        return SequenceSet(**values)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> SequenceSet:
        """Return a copy with every tensor on ``device``."""
        return self._map(lambda _, t: t.to(device, non_blocking=non_blocking))

    def select(self, index: torch.Tensor) -> SequenceSet:
        """Return the rows at ``index`` (a long tensor of row numbers), in that order."""
        index = index.to(self.q.device)
        return self._map(lambda _, t: t.index_select(0, index))

    def trim(self, width: int) -> SequenceSet:
        """Return a view keeping only the first ``width`` positions of every row."""
        return self._map(lambda name, t: t if name in ("student", "length") else t[:, :width])

    @property
    def num_targets(self) -> int:
        """Return the number of scored targets (true entries of ``score_mask``)."""
        return int(self.score_mask.sum())


def _gather_rows(
    ds: KTDataset,
    row_student: np.ndarray,
    row_start: np.ndarray,
    row_len: np.ndarray,
    last_only: np.ndarray,
    max_len: int,
) -> SequenceSet:
    """Build a SequenceSet from row specs (student, first interaction, length, score last only)."""
    students = np.unique(row_student)
    lengths = np.array([len(ds.concepts[i]) for i in students], dtype=np.int64)
    offsets = np.zeros(len(ds.concepts), dtype=np.int64)
    offsets[students] = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(students) else []
    flat_c = np.concatenate([ds.concepts[i] for i in students]) if len(students) else np.zeros(0, np.int64)
    flat_r = np.concatenate([ds.responses[i] for i in students]) if len(students) else np.zeros(0, np.int64)

    pos = np.arange(max_len)
    valid = pos[None, :] < row_len[:, None]
    idx = np.where(valid, offsets[row_student][:, None] + row_start[:, None] + pos[None, :], 0)
    if flat_c.size == 0:
        idx = np.zeros_like(idx)
        flat_c = flat_r = np.zeros(1, np.int64)
    c = np.where(valid, flat_c[idx], 0)
    r = np.where(valid, flat_r[idx], 0)
    mask = valid[:, 1:]  # valid is a prefix, so t+1 real implies t real
    score = mask.copy()
    if last_only.any():
        score[last_only] = False
        score[last_only, max_len - 2] = True
    tm = None
    if ds.true_mastery is not None:
        tm_flat = (
            np.concatenate([ds.true_mastery[i] for i in students])
            if len(students)
            else np.zeros((1, ds.num_c), np.float32)
        )
        tm = np.where(mask, tm_flat[idx[:, :-1], c[:, 1:]], 0.0).astype(np.float32)
    # As in pyKT, every position without a (t, t+1) pair is padding, including a row's
    # last real interaction, so q/r/qry/target are all 0 exactly where mask is False.
    return SequenceSet(
        q=torch.from_numpy(np.where(mask, c[:, :-1], 0)),
        r=torch.from_numpy(np.where(mask, r[:, :-1], 0)),
        qry=torch.from_numpy(np.ascontiguousarray(c[:, 1:])),
        target=torch.from_numpy(r[:, 1:].astype(np.float32)),
        mask=torch.from_numpy(np.ascontiguousarray(mask)),
        score_mask=torch.from_numpy(score),
        student=torch.from_numpy(row_student.astype(np.int64)),
        length=torch.from_numpy(row_len.astype(np.int64)),
        true_mastery=None if tm is None else torch.from_numpy(tm),
    )


def _lengths_of(ds: KTDataset, students: np.ndarray) -> np.ndarray:
    return np.array([len(ds.concepts[i]) for i in students], dtype=np.int64)


def _within(counts: np.ndarray) -> np.ndarray:
    """Return 0..counts[i]-1 for every i, concatenated (the row number inside its student)."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def chunk_rows(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Return the number of non-overlapping windows per student (remainders < 3 dropped)."""
    return lengths // max_len + (lengths % max_len >= MIN_WINDOW)


def window_protocol_rows(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Return the number of window-protocol rows per student (0 for a single interaction)."""
    return np.where(lengths > max_len, 1 + lengths - max_len, (lengths >= 2).astype(np.int64))


def _check(max_len: int) -> None:
    if max_len < MIN_WINDOW:
        raise ValueError(f"max_len must be >= {MIN_WINDOW}, got {max_len}")


def build_windows(ds: KTDataset, students: np.ndarray, max_len: int = 200) -> SequenceSet:
    """Return non-overlapping ``max_len`` windows of the given students (pyKT's sequence files).

    Each student is cut at 0, max_len, 2*max_len, ...; a last piece shorter than 3 is
    dropped. Every valid position is scored. Context resets at each window start.
    """
    _check(max_len)
    students = np.asarray(students, dtype=np.int64)
    lengths = _lengths_of(ds, students)
    counts = chunk_rows(lengths, max_len)
    row_student = np.repeat(students, counts)
    row_start = _within(counts) * max_len
    row_len = np.minimum(max_len, lengths.repeat(counts) - row_start)
    return _gather_rows(ds, row_student, row_start, row_len, np.zeros(len(row_student), bool), max_len)


def build_window_test(ds: KTDataset, students: np.ndarray, max_len: int = 200) -> SequenceSet:
    """Return pyKT's window-protocol rows: every interaction after the first scored exactly once.

    A student with L <= max_len gives one row scoring all its targets. With L > max_len,
    the first max_len interactions form one fully scored row, then each later interaction
    j (0-based) gets a row of interactions j-max_len+1 .. j whose last position alone is
    scored, so it is predicted with max_len-1 earlier interactions as context.
    """
    _check(max_len)
    students = np.asarray(students, dtype=np.int64)
    lengths = _lengths_of(ds, students)
    counts = window_protocol_rows(lengths, max_len)
    row_student = np.repeat(students, counts)
    k = _within(counts)  # row k >= 1 ends at interaction j = max_len + k - 1, so starts at k
    row_len = np.minimum(lengths.repeat(counts), max_len)
    return _gather_rows(ds, row_student, k, row_len, k >= 1, max_len)
