"""Shared, vectorised parsing helpers for the text formats (CSV tables, comma-joined id lists)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gainakt.data.errors import DataError


def read_csv_table(path: Path, required: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a headed CSV as strings; return ``(table, line)`` with the 1-based file line of every row.

    Blank lines are skipped but still counted, so the line numbers in error messages are
    the ones an editor shows. Raises DataError for a missing/empty file, a malformed row,
    a missing required column or a table without data rows.
    """
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        with warnings.catch_warnings():
            # A row with more fields than the header would otherwise be truncated silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False, index_col=False
            )
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=path, line=1) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as exc:
        raise DataError(f"malformed CSV: {str(exc).strip()}", file=path) from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; header has {', '.join(map(str, table.columns))}",
            file=path,
            line=1,
        )
    line = np.arange(len(table), dtype=np.int64) + 2  # header is line 1
    blank = (table == "").all(axis=1).to_numpy()
    if blank.any():
        table = table.loc[~blank].reset_index(drop=True)
        line = line[~blank]
    if len(table) == 0:
        raise DataError("no data rows after the header", file=path, line=2)
    return table, line


_INT_TOKEN = re.compile(r"\s*[+-]?[0-9]+\s*")
_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_LIMITS = np.array([np.iinfo(np.int64).min, _INT64_MAX], dtype=np.int64)

# Concept ids index an embedding table, so an id is also a memory request: refuse ids above
# MAX_CONCEPT_ID outright, and ids of at least SPARSE_FROM that exceed SPARSE_FACTOR times the
# number of distinct ids of the file (ids that are raw keys, not indices 0..num_concepts-1).
MAX_CONCEPT_ID = 1_000_000
SPARSE_FROM = 10_000
SPARSE_FACTOR = 100


def parse_int_lists(
    strings: Sequence[str], *, file: Path, lines: np.ndarray, column: str
) -> tuple[np.ndarray, np.ndarray]:
    """Parse comma-joined integer lists; return ``(flat int64 values, per-row lengths)``.

    The fast path parses all rows in one ``np.fromstring`` call. When that fails, the value
    count disagrees with the comma count, or a value sits at the int64 limits (numpy clamps
    values it cannot hold), every token is checked in Python: a token must be decimal digits
    with an optional sign (no ``1_000``, ``1.0`` or ``1e3``) and fit in int64, else DataError
    names the file, line and token.
    """
    strings = list(strings)
    lengths = np.fromiter((s.count(",") + 1 for s in strings), dtype=np.int64, count=len(strings))
    try:
        flat = np.fromstring(",".join(strings), dtype=np.int64, sep=",")
        if flat.size == int(lengths.sum()) and not np.isin(flat, _INT64_LIMITS).any():
            return flat, lengths
    except ValueError:
        pass
    return _parse_strictly(strings, file=file, lines=lines, column=column), lengths


def _parse_strictly(strings: Sequence[str], *, file: Path, lines: np.ndarray, column: str) -> np.ndarray:
    values: list[int] = []
    for row, text in enumerate(strings):
        for token in text.split(","):
            shown = token if len(token) <= 20 else token[:20] + "..."
            if not _INT_TOKEN.fullmatch(token):
                raise DataError(f"column {column}: {shown!r} is not an integer", file=file, line=int(lines[row]))
            value = int(token)
            if abs(value) >= _INT64_MAX:
                raise DataError(f"column {column}: {shown!r} is out of range (|value| < 2**63 - 1)",
                                file=file, line=int(lines[row]))
            values.append(value)
    return np.array(values, dtype=np.int64)


def check_concept_bound(concepts: np.ndarray, row_of: np.ndarray, *, file: Path, lines: np.ndarray) -> None:
    """Raise DataError when the largest concept id is absurd for an index (see MAX_CONCEPT_ID)."""
    real = concepts[concepts >= 0]
    if not real.size:
        return
    top = int(real.max())
    distinct = int(np.unique(real).size)
    if top > MAX_CONCEPT_ID:
        reason = f"above {MAX_CONCEPT_ID:,}, the largest concept id accepted"
    elif top >= SPARSE_FROM and top >= SPARSE_FACTOR * distinct:
        reason = (f"at least {SPARSE_FACTOR} times the {distinct} distinct ids of this file "
                  "(raw keys, not indices)")
    else:
        return
    pos = int(np.flatnonzero(concepts == top)[0])
    raise DataError(f"concept id {top} is {reason}: ids must be indices 0..num_concepts-1 "
                    "(map them to consecutive numbers first)", file=file, line=int(lines[row_of[pos]]))


def check_rows(
    concepts: np.ndarray,
    c_len: np.ndarray,
    responses: np.ndarray,
    r_len: np.ndarray,
    *,
    file: Path,
    lines: np.ndarray,
    allow_padding: bool = False,
) -> None:
    """Raise DataError naming the first line whose lists differ in length, or hold a bad id/response.

    With ``allow_padding`` the pyKT padding value -1 is accepted in both lists.
    """
    bad_len = np.flatnonzero(c_len != r_len)
    if bad_len.size:
        row = bad_len[0]
        raise DataError(
            f"concepts has {c_len[row]} values but responses has {r_len[row]}",
            file=file,
            line=int(lines[row]),
        )
    row_of = np.repeat(np.arange(len(c_len)), c_len)
    ok_r = (responses == 0) | (responses == 1)
    ok_c = concepts >= 0
    if allow_padding:
        ok_r |= responses == -1
        ok_c |= concepts == -1
    if not ok_r.all():
        pos = int(np.flatnonzero(~ok_r)[0])
        raise DataError(f"response {responses[pos]} is not 0/1", file=file, line=int(lines[row_of[pos]]))
    if not ok_c.all():
        pos = int(np.flatnonzero(~ok_c)[0])
        raise DataError(f"concept id {concepts[pos]} is negative", file=file, line=int(lines[row_of[pos]]))
    check_concept_bound(concepts, row_of, file=file, lines=lines)


def split_rows(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Return ``flat`` cut into consecutive per-row arrays of the given lengths (views)."""
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [flat[a:b] for a, b in zip(starts, ends, strict=True)]
