"""A JSON-ready summary of a dataset under the pyKT protocol (counts computed arithmetically)."""

from __future__ import annotations

import numpy as np

from gainakt.data.dataset import KTDataset
from gainakt.data.splits import SPLITS
from gainakt.data.windows import MIN_WINDOW, chunk_rows, window_protocol_rows


def _chunk_targets(lengths: np.ndarray, max_len: int) -> int:
    full, rest = lengths // max_len, lengths % max_len
    return int((full * (max_len - 1) + np.where(rest >= MIN_WINDOW, rest - 1, 0)).sum())


# Sequence-length quantiles reported beside the window length (so `max_len` is not read as the longest).
LENGTH_QUANTILES = (0.5, 0.9, 0.99)


def _students_per_split(ds: KTDataset, folds: np.ndarray) -> dict[str, int]:
    """Students by role, named as the split names them: a published split's train / valid / test files,
    else the train+valid pool (cut into folds) and the test set."""
    test = int((folds == -1).sum())
    if ds.split == "dkvmn_published":  # fold 0 = *_valid1.csv, fold 1 = *_train1.csv (train only)
        return {"train": int((folds == 1).sum()), "valid": int((folds == 0).sum()), "test": test}
    return {"train_valid": int((folds >= 0).sum()), "test": test}


def _length_summary(lengths: np.ndarray) -> dict:
    """Interactions per student: min, max, mean and quantiles (p50/p90/p99, linear interpolation)."""
    if len(lengths) == 0:
        return {"min": 0, "max": 0, "mean": 0.0, **{f"p{round(q * 100)}": 0.0 for q in LENGTH_QUANTILES}}
    return {
        "min": int(lengths.min()),
        "max": int(lengths.max()),
        "mean": round(float(lengths.mean()), 2),
        **{f"p{round(q * 100)}": round(float(np.quantile(lengths, q)), 1) for q in LENGTH_QUANTILES},
    }


def describe(ds: KTDataset, max_len: int = 200) -> dict:
    """Return counts that identify a dataset and its protocol, with plain int/str values.

    Keys: name, format, sha256, source_files, split (the rule's name), split_rule (what it
    means), num_concepts, num_concepts_source, valid_folds, students_total,
    students_per_split (a published split: {train, valid, test}; otherwise {train_valid, test}),
    students_per_fold ({"0": n, ...}; only for splits that cut folds, not a published split, whose
    fold numbers are internal), test_students, interactions {train_valid, test},
    sequence_length (interactions per student over every student: min, max, mean, p50, p90, p99),
    window_length (the --max_len windows are cut to; not the longest sequence),
    train_valid_windows {rows, scored_targets} (non-overlapping windows of all
    train+valid students), test_windows {rows, scored_targets} (non-window test),
    test_window_protocol {rows, scored_targets} (pyKT's window protocol).
    """
    lengths = ds.lengths
    folds = np.asarray(ds.folds)
    tv, te = lengths[folds >= 0], lengths[folds == -1]
    info: dict = {
        "name": ds.name,
        "format": ds.fmt,
        "sha256": ds.sha256,
        "source_files": list(ds.source_files),
        "split": ds.split,
        "split_rule": SPLITS.get(ds.split, "unknown"),
        "num_concepts": int(ds.num_c),
        "num_concepts_source": ds.num_c_source,
        "valid_folds": None if ds.valid_folds is None else list(ds.valid_folds),
        "students_total": int(len(lengths)),
        "students_per_split": _students_per_split(ds, folds),
    }
    if ds.split != "dkvmn_published":
        info["students_per_fold"] = {str(int(f)): int((folds == f).sum()) for f in np.unique(folds[folds >= 0])}
    info.update({
        "test_students": int(len(te)),
        "interactions": {"train_valid": int(tv.sum()), "test": int(te.sum())},
        "sequence_length": _length_summary(np.asarray(lengths)),
        "window_length": int(max_len),
        "train_valid_windows": {
            "rows": int(chunk_rows(tv, max_len).sum()),
            "scored_targets": _chunk_targets(tv, max_len),
        },
        "test_windows": {
            "rows": int(chunk_rows(te, max_len).sum()),
            "scored_targets": _chunk_targets(te, max_len),
        },
        "test_window_protocol": {
            "rows": int(window_protocol_rows(te, max_len).sum()),
            "scored_targets": int(np.maximum(te - 1, 0).sum()),
        },
    })
    return info
