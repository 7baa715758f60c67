"""A JSON-ready summary of a dataset under the pyKT protocol (counts computed arithmetically)."""

from __future__ import annotations

import numpy as np

from gainakt.data.dataset import KTDataset
from gainakt.data.splits import SPLITS
from gainakt.data.windows import MIN_WINDOW, chunk_rows, window_protocol_rows


def _chunk_targets(lengths: np.ndarray, max_len: int) -> int:
    full, rest = lengths // max_len, lengths % max_len
    return int((full * (max_len - 1) + np.where(rest >= MIN_WINDOW, rest - 1, 0)).sum())


def describe(ds: KTDataset, max_len: int = 200) -> dict:
    """Return counts that identify a dataset and its protocol, with plain int/str values.

    Keys: name, format, sha256, source_files, split (the rule's name), split_rule (what it
    means), num_concepts, num_concepts_source, valid_folds, students_total,
    students_per_fold ({"0": n, ...}), test_students, interactions {train_valid, test},
    max_len, train_valid_windows {rows, scored_targets} (non-overlapping windows of all
    train+valid students), test_windows {rows, scored_targets} (non-window test),
    test_window_protocol {rows, scored_targets} (pyKT's window protocol).
    """
    lengths = ds.lengths
    folds = np.asarray(ds.folds)
    tv, te = lengths[folds >= 0], lengths[folds == -1]
    return {
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
        "students_per_fold": {str(int(f)): int((folds == f).sum()) for f in np.unique(folds[folds >= 0])},
        "test_students": int(len(te)),
        "interactions": {"train_valid": int(tv.sum()), "test": int(te.sum())},
        "max_len": int(max_len),
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
    }
