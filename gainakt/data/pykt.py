"""Readers for pyKT's prepared folders: full histories and pre-chunked sequence files.

``fmt="pykt"`` reads ``train_valid.csv`` + ``test.csv`` (one row per student).
``fmt="pykt_sequences"`` reads ``train_valid_sequences.csv`` + ``test_sequences.csv``
(200-chunks padded with -1) and rebuilds each student's history by concatenating that
uid's chunks in file order. The window file ``test_window_sequences.csv`` repeats
interactions, so it is never used to rebuild students. Note that pyKT drops a chunk
remainder shorter than 3, so rebuilt histories can be a few interactions shorter than
the originals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gainakt.data.checksum import sha256_files
from gainakt.data.dataset import KTDataset
from gainakt.data.errors import DataError
from gainakt.data.parsing import check_rows, parse_int_lists, read_csv_table, split_rows
from gainakt.data.splits import PYKT_FOLDS

KEYID_FILE = "keyid2idx.json"
_COLUMNS = ("fold", "uid", "concepts", "responses")


class _Part:
    """Students parsed from one file: parallel lists plus the file line of each student."""

    def __init__(self) -> None:
        self.uids: list[str] = []
        self.folds = np.zeros(0, dtype=np.int64)
        self.concepts: list[np.ndarray] = []
        self.responses: list[np.ndarray] = []
        self.lines = np.zeros(0, dtype=np.int64)
        self.path = Path()
        self.max_concept = -1


def _parse_folds(values: pd.Series, path: Path, lines: np.ndarray) -> np.ndarray:
    folds = pd.to_numeric(values, errors="coerce")
    bad = folds.isna().to_numpy() | (folds.to_numpy(dtype=float) % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"fold {values.iloc[row]!r} is not an integer", file=path, line=int(lines[row]))
    return folds.to_numpy(dtype=np.int64)


def _read_part(path: Path, *, test: bool, chunked: bool) -> _Part:
    table, lines = read_csv_table(path, _COLUMNS)
    folds = _parse_folds(table["fold"], path, lines)
    c_flat, c_len = parse_int_lists(table["concepts"], file=path, lines=lines, column="concepts")
    r_flat, r_len = parse_int_lists(table["responses"], file=path, lines=lines, column="responses")
    check_rows(c_flat, c_len, r_flat, r_len, file=path, lines=lines, allow_padding=chunked)
    bad_fold = (folds < 0) | (folds >= PYKT_FOLDS)
    if not test and bad_fold.any():
        row = int(np.flatnonzero(bad_fold)[0])
        raise DataError(
            f"fold {folds[row]} in a train/valid file (expected 0-{PYKT_FOLDS - 1})",
            file=path,
            line=int(lines[row]),
        )
    part = _Part()
    part.path = path
    part.max_concept = int(c_flat.max()) if c_flat.size else -1
    uid = table["uid"].astype(str)
    if chunked:
        _rebuild_students(part, uid, folds, c_flat, c_len, r_flat, lines, path)
    else:
        part.uids = uid.tolist()
        part.folds = folds
        part.concepts = split_rows(c_flat, c_len)
        part.responses = split_rows(r_flat, r_len)
        part.lines = lines
    if test:
        part.folds = np.full(len(part.uids), -1, dtype=np.int64)
    return part


def _rebuild_students(
    part: _Part,
    uid: pd.Series,
    folds: np.ndarray,
    c_flat: np.ndarray,
    c_len: np.ndarray,
    r_flat: np.ndarray,
    lines: np.ndarray,
    path: Path,
) -> None:
    """Concatenate each uid's chunks (in file order) with the -1 padding removed."""
    pad_c, pad_r = c_flat == -1, r_flat == -1
    row_of = np.repeat(np.arange(len(c_len)), c_len)
    if (pad_c != pad_r).any():
        pos = int(np.flatnonzero(pad_c != pad_r)[0])
        raise DataError(
            "padding -1 in only one of concepts/responses", file=path, line=int(lines[row_of[pos]])
        )
    codes, uniques = pd.factorize(uid, sort=False)  # students in order of first appearance
    real = ~pad_c
    student_of = codes[row_of[real]]
    # A stable sort by student keeps every student's chunks, and positions, in file order.
    order = np.argsort(student_of, kind="stable")
    lengths = np.bincount(student_of, minlength=len(uniques))
    first_row = np.full(len(uniques), len(codes), dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(len(codes)))
    part.uids = [str(u) for u in uniques]
    part.folds = folds[first_row]
    part.concepts = split_rows(c_flat[real][order], lengths)
    part.responses = split_rows(r_flat[real][order], lengths)
    part.lines = lines[first_row]


def _num_concepts(directory: Path, parts: list[_Part]) -> tuple[int, list[Path], str]:
    """Return (num_c, extra files read, source): keyid2idx.json's concept count when present,
    else max id + 1."""
    keyfile = directory / KEYID_FILE
    max_id = max(p.max_concept for p in parts)
    if not keyfile.is_file():
        return max_id + 1, [], f"largest concept id + 1 (no {KEYID_FILE})"
    try:
        num_c = len(json.loads(keyfile.read_text(encoding="utf-8"))["concepts"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"cannot read the concept map ({exc.__class__.__name__}: {exc})", file=keyfile
        ) from None
    if max_id >= num_c:
        for part in parts:
            for i, c in enumerate(part.concepts):
                if len(c) and c.max() >= num_c:
                    raise DataError(
                        f"concept id {int(c.max())} >= {num_c} concepts listed in {KEYID_FILE}",
                        file=part.path,
                        line=int(part.lines[i]),
                    )
    return num_c, [keyfile], f"concepts listed in {KEYID_FILE}"


def _read(directory: Path, files: tuple[str, str], *, fmt: str, name: str | None) -> KTDataset:
    chunked = fmt == "pykt_sequences"
    paths = [directory / f for f in files]
    for path in paths:
        if not path.is_file():
            raise DataError(f"file not found (a {fmt} folder needs {files[0]} and {files[1]})", file=path)
    parts = [
        _read_part(paths[0], test=False, chunked=chunked),
        _read_part(paths[1], test=True, chunked=chunked),
    ]
    num_c, extra, num_c_source = _num_concepts(directory, parts)
    digest, names = sha256_files(paths + extra)
    return KTDataset(
        name=name or directory.name,
        fmt=fmt,
        num_c=num_c,
        concepts=parts[0].concepts + parts[1].concepts,
        responses=parts[0].responses + parts[1].responses,
        folds=np.concatenate([parts[0].folds, parts[1].folds]),
        uids=parts[0].uids + parts[1].uids,
        sha256=digest,
        source_files=names,
        split="pykt_files",
        num_c_source=num_c_source,
    )


def read_pykt(directory: Path, *, name: str | None = None) -> KTDataset:
    """Return the dataset of a pyKT folder's ``train_valid.csv`` (folds 0..4) and ``test.csv`` (fold -1)."""
    return _read(directory, ("train_valid.csv", "test.csv"), fmt="pykt", name=name)


def read_pykt_sequences(directory: Path, *, name: str | None = None) -> KTDataset:
    """Return the dataset rebuilt from ``train_valid_sequences.csv`` and ``test_sequences.csv``."""
    return _read(
        directory, ("train_valid_sequences.csv", "test_sequences.csv"), fmt="pykt_sequences", name=name
    )
