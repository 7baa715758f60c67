"""Reader for the raw ASSISTments 2015 CSV, preprocessed by pyKT's rules.

Rules (pyKT ``assist2015_preprocess.py`` and ``split_datasets.py``, read from the
pykt-team/pykt-toolkit sources):

1. Drop rows with a missing ``user_id``, ``log_id``, ``sequence_id`` or ``correct``.
2. Keep only rows with ``correct`` equal to 0 or 1 (partial-credit values are dropped).
3. Students in order of first appearance in the file (``groupby(sort=False)``); each
   student's rows ordered by ``log_id``, ties by file order.
4. Drop students with fewer than 3 interactions.
5. Concept ids: ``sequence_id`` values numbered 0, 1, ... in order of first appearance
   over the kept students' ordered histories (pyKT's ``id_mapping``); user ids likewise
   (the uid written to pyKT's files is that number).
6. Split: shuffle students as ``df.sample(frac=1, random_state=1024)``; the last
   ``int(0.2 * n)`` are the test set (fold -1); the rest is shuffled again the same way
   and cut into 5 contiguous folds (pyKT's ``KFold_split``; the same assignment as
   scikit-learn's ``KFold(5, shuffle=True, random_state=1024)``).

Students come out in pyKT's file order: the ``train_valid.csv`` rows, then ``test.csv``.

Verified: the tests rebuild a raw-format file from the shared ``assist2015_pykt`` folder
(original user and sequence ids recovered from its ``keyid2idx.json``) and check that this
reader reproduces that folder's students, folds, uids and concept ids exactly; and that
the shuffles equal pandas' ``sample`` and scikit-learn's ``KFold``. Not verified: a run on
the original raw ASSISTments file, which is not available here. Unlike pyKT, ids that are
not integers are an error rather than strings to be mapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gainakt.data.checksum import sha256_files
from gainakt.data.dataset import KTDataset
from gainakt.data.errors import DataError
from gainakt.data.parsing import split_rows
from gainakt.data.splits import pykt_split

RAW_COLUMNS = ("user_id", "log_id", "sequence_id", "correct")
MIN_INTERACTIONS = 3


def has_raw_header(path: Path) -> bool:
    """Return True when a file's header line contains the four raw ASSISTments 2015 columns."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return False
    names = {h.strip().strip('"') for h in header.split(",")}
    return set(RAW_COLUMNS) <= names


def _numbers(table: pd.DataFrame, column: str, path: Path, *, integer: bool) -> np.ndarray:
    """Return a column as float64, or raise DataError naming the first bad value's line.

    pandas already parsed clean numeric columns; only a column with text in it goes through
    the slower element-wise conversion, to find the offending line.
    """
    values = table[column]
    if not pd.api.types.is_numeric_dtype(values):
        values = pd.to_numeric(values, errors="coerce")
    as_float = values.to_numpy(dtype=float)
    bad = np.isnan(as_float)
    if integer:
        bad |= as_float % 1 != 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        raise DataError(
            f"column {column}: {table[column].iloc[row]!r} is not {kind}",
            file=path,
            line=int(table["_line"].iloc[row]),
        )
    return as_float


def read_raw_assist2015(path: Path, *, name: str | None = None) -> KTDataset:
    """Return the dataset built from a raw ASSISTments 2015 CSV with pyKT's preprocessing."""
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        table = pd.read_csv(path, skip_blank_lines=False, usecols=lambda c: c in RAW_COLUMNS)
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=path, line=1) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"malformed CSV: {str(exc).strip()}", file=path) from None
    missing = [c for c in RAW_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}", file=path, line=1)
    table["_line"] = np.arange(len(table), dtype=np.int64) + 2
    table = table.dropna(subset=list(RAW_COLUMNS))

    correct = _numbers(table, "correct", path, integer=False)
    binary = (correct == 0) | (correct == 1)
    table, correct = table.loc[binary], correct[binary].astype(np.int64)
    user, log, concept = (
        _numbers(table, col, path, integer=True).astype(np.int64)
        for col in ("user_id", "log_id", "sequence_id")
    )
    if len(user) == 0:
        raise DataError("no usable rows (after dropping missing fields and non-binary correct)", file=path)

    user_code, _ = pd.factorize(user, sort=False)  # first appearance, as groupby(sort=False)
    order = np.lexsort((np.arange(len(user)), log, user_code))  # by user, then log_id, then file row
    user_code, concept, correct = user_code[order], concept[order], correct[order]
    lengths = np.bincount(user_code)
    keep_user = lengths >= MIN_INTERACTIONS
    if not keep_user.any():
        raise DataError(f"no student has {MIN_INTERACTIONS} or more usable interactions", file=path)
    keep = keep_user[user_code]
    concept, correct = concept[keep], correct[keep]
    lengths = lengths[keep_user]
    concept_ids, _ = pd.factorize(concept, sort=False)  # pyKT's id_mapping: first appearance

    concepts = split_rows(concept_ids.astype(np.int64), lengths)
    responses = split_rows(correct, lengths)
    student_order, folds = pykt_split(len(lengths))
    digest, names = sha256_files([path])
    return KTDataset(
        name=name or path.stem,
        fmt="raw_assist2015",
        num_c=int(concept_ids.max()) + 1,
        concepts=[concepts[i] for i in student_order],
        responses=[responses[i] for i in student_order],
        folds=folds,
        uids=[str(int(i)) for i in student_order],
        sha256=digest,
        source_files=names,
        split="pykt_split_of_file",
        num_c_source="distinct sequence_id values (numbered like pyKT)",
    )
