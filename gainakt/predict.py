"""Apply a trained model to interaction logs: one row per student and step, streamed in batches.

Long sequences are cut exactly as training and the run's (non-window) evaluation cut them
(:func:`gainakt.data.build_windows`): non-overlapping windows of ``max_len`` interactions, the context
resets at every window start, so the first interaction of each window is never predicted, and a last
piece shorter than 3 interactions is dropped. Rows are produced in the order of the students given,
batch by batch with the same batch size as the run's evaluation, so predicting a run's test students
reproduces the run's own test predictions.

Row of interaction ``step`` (0-based) of a student: the concept answered and its response, the
concept asked next (step + 1) and its response, the predicted probability of answering it correctly,
the model's mastery of that asked concept, and the gain of the practised concept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gainakt.data import KTDataset, SequenceSet, build_windows, iterate_batches
from gainakt.data.batching import packing_for
from gainakt.data.checksum import sha256_files
from gainakt.data.errors import DataError
from gainakt.data.parsing import read_csv_table
from gainakt.metrics import CorrelationSummary, true_mastery_correlation
from gainakt.views import StudentView

COLUMNS = ("student_id", "step", "concept", "response", "next_concept", "next_response", "probability",
           "mastery_next", "gain_practised")
LONG_SEQUENCES = (
    "non-overlapping windows of max_len interactions, as in training and the run's non-window test AUC: "
    "the context resets at each window start, so the first interaction of a window is not predicted (no row "
    "for the step before it), and a last piece shorter than 3 interactions is dropped"
)
CSV_COLUMNS = ("student_id", "concept_id", "response")


def check_concepts(ds: KTDataset, students: np.ndarray, num_c: int) -> None:
    """Raise DataError for the first student answering a concept id the model does not know."""
    for s in students:
        c = ds.concepts[int(s)]
        if len(c) and int(c.max()) >= num_c:
            raise DataError(f"student {ds.uids[int(s)]}: concept id {int(c.max())} is beyond the model's "
                            f"{num_c} concepts (ids 0..{num_c - 1})")


def _window_starts(student: np.ndarray, max_len: int) -> np.ndarray:
    """First interaction of every row of ``build_windows`` (rows of a student are consecutive)."""
    new = np.ones(len(student), dtype=bool)
    new[1:] = student[1:] != student[:-1]
    first = np.maximum.accumulate(np.where(new, np.arange(len(student)), 0))
    return (np.arange(len(student)) - first) * max_len


def _cat(a: SequenceSet, b: SequenceSet) -> SequenceSet:
    values: dict[str, Any] = {}
    for name in SequenceSet.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        values[name] = None if x is None or y is None else torch.cat([x, y])
    return SequenceSet(**values)


def stream_rows(ds: KTDataset, students: np.ndarray, *, max_len: int, batch_size: int,
                chunk_students: int = 512) -> Iterator[tuple[SequenceSet, np.ndarray]]:
    """Yield (batch, first interaction of each row) over the windows of ``students``, in order.

    Windows are built ``chunk_students`` students at a time (bounded memory); rows left over from a
    chunk join the next, so the batches equal those of one ``iterate_batches(build_windows(...))``.
    """
    carry: SequenceSet | None = None
    carry_starts = np.zeros(0, dtype=np.int64)
    for i in range(0, len(students), chunk_students):
        part = build_windows(ds, students[i:i + chunk_students], max_len)
        starts = _window_starts(part.student.numpy(), max_len)
        if carry is not None:
            part, starts = _cat(carry, part), np.concatenate([carry_starts, starts])
        last = i + chunk_students >= len(students)
        full = len(part) if last else len(part) // batch_size * batch_size
        head = part.select(torch.arange(full))
        for j, batch in enumerate(iterate_batches(head, batch_size)):
            yield batch, starts[j * batch_size:(j + 1) * batch_size]
        carry = part.select(torch.arange(full, len(part)))
        carry_starts = starts[full:]


@torch.no_grad()
def predict_batch(model: torch.nn.Module, batch: SequenceSet, starts: np.ndarray, uids: list[str],
                  device: torch.device, full_mastery: bool = False,
                  pack: bool = False, view: StudentView | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Rows (COLUMNS) of one batch's valid positions, and the full mastery [rows, C] when asked.

    `pack`: the batch's windows share rows (``gainakt.data.batching``), as in the run's evaluation.
    `view`: the student view (``gainakt.views.StudentView``, one per pass over the students, fed every
    batch in order): mastery is carried across window boundaries; without it, the window view (the
    model's output). The predictions are the same in both views.
    """
    b = batch.to(device)
    out = model(b.q, b.r, b.qry, pack=packing_for(batch).to(device) if pack else None)
    mask = b.mask.cpu().numpy()
    rows, pos = np.nonzero(mask)
    prob = torch.sigmoid(out["logits"].float()).cpu().numpy()[rows, pos]
    q, qry = b.q.cpu().numpy()[rows, pos], b.qry.cpu().numpy()[rows, pos]
    nan = np.full(len(rows), np.nan)
    mastery, gains = out.get("mastery"), out.get("gains")
    m_next = g_prac = nan
    full = None
    if mastery is not None and gains is not None:
        if view is not None:
            mastery = view(mastery.float(), gains.float(), b.mask, b.student)
        m = mastery.float().cpu().numpy()[rows, pos]
        m_next = m[np.arange(len(rows)), qry].astype(np.float64)
        g_prac = gains.float().cpu().numpy()[rows, pos][np.arange(len(rows)), q].astype(np.float64)
        full = m if full_mastery else None
    student = b.student.cpu().numpy()[rows]
    frame = pd.DataFrame({
        "student_id": [uids[s] for s in student],
        "step": starts[rows] + pos,
        "concept": q,
        "response": b.r.cpu().numpy()[rows, pos],
        "next_concept": qry,
        "next_response": b.target.cpu().numpy()[rows, pos].astype(np.int64),
        "probability": prob.astype(np.float64),
        "mastery_next": m_next,
        "gain_practised": g_prac,
    })
    return frame, full


def read_interactions_csv(path: str | Path) -> KTDataset:
    """A long CSV of interactions (``student_id,concept_id,response``, one row each, in order per student)."""
    path = Path(path)
    table, lines = read_csv_table(path, CSV_COLUMNS)
    values = {}
    for col in CSV_COLUMNS[1:]:
        num = pd.to_numeric(table[col], errors="coerce")
        bad = num.isna().to_numpy() | (num.to_numpy(dtype=float) % 1 != 0)
        bad |= num.to_numpy(dtype=float) < 0
        if col == "response":
            bad |= ~np.isin(num.to_numpy(dtype=float), (0, 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{col} {table[col].iloc[row]!r} is not a valid value", file=path, line=int(lines[row]))
        values[col] = num.to_numpy(dtype=np.int64)
    codes, uids = pd.factorize(table["student_id"], sort=False)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uids))
    cuts = np.cumsum(counts)[:-1]
    concepts = np.split(values["concept_id"][order], cuts)
    digest, names = sha256_files([path])
    return KTDataset(name=path.stem, fmt="csv", num_c=int(values["concept_id"].max()) + 1, concepts=concepts,
                     responses=np.split(values["response"][order], cuts),
                     folds=np.full(len(uids), -1, dtype=np.int64), uids=[str(u) for u in uids],
                     sha256=digest, source_files=names)


def truth_pairs(truth: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """(student_id, step, skill, true_mastery, mastery) for every step t with a prediction of the concept
    answered at t+1, sorted by student and step.

    ``truth``: student_id, step, skill, true_mastery, answered (truth.csv of ``harness data simulate``).
    ``predictions``: either ``student_id, step, next_concept, mastery_next`` (harness predict's rows) or
    the long mastery format ``student_id, step, concept, mastery`` (every concept at every step).
    """
    truth = truth.assign(student_id=truth["student_id"].astype(str))
    answered = truth[truth["answered"].astype(bool)][["student_id", "step", "skill"]]
    asked = answered.assign(step=answered["step"] - 1)  # the skill answered at t+1 is asked at t
    pairs = asked.merge(truth[["student_id", "step", "skill", "true_mastery"]], on=["student_id", "step", "skill"])
    pred = predictions.assign(student_id=predictions["student_id"].astype(str))
    if "mastery_next" in pred.columns:
        pred = pred.rename(columns={"next_concept": "skill", "mastery_next": "mastery"})
    else:
        pred = pred.rename(columns={"concept": "skill"})
    joined = pairs.merge(pred[["student_id", "step", "skill", "mastery"]], on=["student_id", "step", "skill"])
    return joined.dropna(subset=["mastery"]).sort_values(["student_id", "step"], kind="stable")


def score_truth(pairs: pd.DataFrame) -> CorrelationSummary:
    """The run's true-mastery metric over ``truth_pairs``: per student, Pearson r between the predicted and
    the true mastery of the concept asked next, over steps; the mean over students with a Fisher-z CI."""
    groups = [g for _, g in pairs.groupby("student_id", sort=False)]
    # The simulator's truth is float32: compare with exactly the values the run's metric saw.
    return true_mastery_correlation(
        [g["mastery"].to_numpy(np.float64) for g in groups],
        [g["true_mastery"].to_numpy(np.float32).astype(np.float64) for g in groups],
    )
