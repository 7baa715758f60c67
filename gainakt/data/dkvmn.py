"""Reader for the DKVMN three-line format (count line, 1-based skill ids, responses).

A folder holds ``<name>_train.csv`` + ``<name>_test.csv``. When the folder also has the
published validation split ``<name>_train1.csv`` + ``<name>_valid1.csv`` (as DKVMN ships it),
that split is used: train1 students train (fold 1), valid1 students validate (fold 0, the only
usable validation fold) and the test file tests (fold -1); the full train file is not read.
Without it, training students get folds 0..4: shuffled with seed 1024 and cut into 5
contiguous blocks, as pyKT's ``KFold_split``; test students get -1. A single file has no
test split of its own, so it is split like pyKT (the last 20% of a seed-1024 shuffle are the
test set, the rest get folds 0..4) and the dataset records that split ("pykt_split_of_file"),
which the harness refuses for training unless asked for. ``num_c`` is the largest skill id
over every file read (ids are 1-based, so that id is the count).

Every student of the file is kept, including those with only 1 or 2 interactions (the
published counts include them); they produce no training windows, and a student with
a single interaction has no prediction target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gainakt.data.checksum import sha256_files
from gainakt.data.dataset import KTDataset
from gainakt.data.errors import DataError
from gainakt.data.parsing import check_rows, parse_int_lists, split_rows
from gainakt.data.splits import kfold_assign, pykt_split


class ThreeLineFile:
    """Students of one three-line file: 0-based concepts, responses and the line each starts on."""

    def __init__(
        self, path: Path, concepts: list[np.ndarray], responses: list[np.ndarray], lines: np.ndarray
    ):
        self.path = path
        self.concepts = concepts
        self.responses = responses
        self.lines = lines


def looks_three_line(path: Path) -> bool:
    """Return True when the first non-blank line of a file is a bare integer (a count line)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                text = raw.strip()
                if text:
                    return text.isdigit()
    except OSError:
        return False
    return False


def read_three_line(path: Path) -> ThreeLineFile:
    """Parse one three-line file; raise DataError naming the line of the first problem."""
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not a text file ({exc.reason})", file=path) from None
    raw_lines = text.splitlines()
    numbers = np.array([i + 1 for i, s in enumerate(raw_lines) if s.strip()], dtype=np.int64)
    lines = [s.strip() for s in raw_lines if s.strip()]
    if not lines:
        raise DataError("file is empty", file=path, line=1)
    if len(lines) % 3:
        start = numbers[len(lines) - len(lines) % 3]
        raise DataError(
            f"last student (starting at line {start}) is truncated: expected 3 lines "
            f"(count, skill ids, responses), found {len(lines) % 3}",
            file=path,
            line=int(numbers[-1]),
        )
    count_lines, count_at = lines[0::3], numbers[0::3]
    bad = [i for i, s in enumerate(count_lines) if not s.isdigit()]
    if bad:
        i = bad[0]
        raise DataError(
            f"expected an interaction count, found {count_lines[i][:30]!r}", file=path, line=int(count_at[i])
        )
    counts = np.array(count_lines, dtype=np.int64)
    # Some three-line exports end list lines with a comma; it carries no value.
    skills, s_len = parse_int_lists(
        [s.rstrip(",") for s in lines[1::3]], file=path, lines=numbers[1::3], column="skill ids"
    )
    responses, r_len = parse_int_lists(
        [s.rstrip(",") for s in lines[2::3]], file=path, lines=numbers[2::3], column="responses"
    )
    check_rows(skills, s_len, responses, r_len, file=path, lines=numbers[2::3])
    mismatch = np.flatnonzero(counts != s_len)
    if mismatch.size:
        i = mismatch[0]
        raise DataError(
            f"count line says {counts[i]} interactions but the next lines hold {s_len[i]}",
            file=path,
            line=int(count_at[i]),
        )
    if skills.size and skills.min() < 1:
        row = int(np.repeat(np.arange(len(s_len)), s_len)[np.argmin(skills)])
        raise DataError(
            f"skill id {skills.min()} < 1 (three-line skill ids are 1-based)",
            file=path,
            line=int(numbers[1::3][row]),
        )
    return ThreeLineFile(path, split_rows(skills - 1, s_len), split_rows(responses, r_len), count_at)


def find_train_test(directory: Path) -> tuple[Path, Path] | None:
    """Return the ``*_train.csv`` and ``*_test.csv`` pair of a folder, or None when absent."""
    trains = sorted(directory.glob("*_train.csv"))
    tests = sorted(directory.glob("*_test.csv"))
    if not trains or not tests:
        return None
    if len(trains) > 1 or len(tests) > 1:
        names = ", ".join(p.name for p in trains + tests)
        raise DataError(
            f"several *_train.csv / *_test.csv files ({names}); pass one file instead", file=directory
        )
    return trains[0], tests[0]


def find_published_split(train: Path) -> tuple[Path, Path] | None:
    """Return DKVMN's published ``<name>_train1.csv`` and ``<name>_valid1.csv`` beside a train file."""
    stem = train.name[: -len("_train.csv")]
    pair = (train.with_name(f"{stem}_train1.csv"), train.with_name(f"{stem}_valid1.csv"))
    return pair if all(p.is_file() for p in pair) else None


def _uids(path: Path, n: int) -> list[str]:
    return [f"{path.stem}:{i}" for i in range(n)]


def _read_folder(path: Path) -> tuple[list[ThreeLineFile], np.ndarray, str, list[Path]]:
    """Files read, per-student folds, split rule and hashed files of a three-line folder."""
    pair = find_train_test(path)
    if pair is None:
        raise DataError("a dkvmn folder needs <name>_train.csv and <name>_test.csv", file=path)
    published = find_published_split(pair[0])
    if published is not None:
        train, valid, test = (read_three_line(p) for p in (*published, pair[1]))
        folds = np.concatenate([
            np.full(len(train.concepts), 1, dtype=np.int64),
            np.zeros(len(valid.concepts), dtype=np.int64),
            np.full(len(test.concepts), -1, dtype=np.int64),
        ])
        return [train, valid, test], folds, "dkvmn_published", [*published, pair[1]]
    train, test = read_three_line(pair[0]), read_three_line(pair[1])
    folds = np.concatenate([kfold_assign(len(train.concepts)), np.full(len(test.concepts), -1, dtype=np.int64)])
    return [train, test], folds, "dkvmn_kfold", [pair[0], pair[1]]


def read_dkvmn(path: Path, *, name: str | None = None) -> KTDataset:
    """Return the dataset of a three-line folder (see the module docstring) or of a single file."""
    if path.is_dir():
        parts, folds, split, files = _read_folder(path)
        default_name = path.name
    else:
        parts = [read_three_line(path)]
        order, labels = pykt_split(len(parts[0].concepts))
        folds = np.empty(len(parts[0].concepts), dtype=np.int64)
        folds[order] = labels
        split, files, default_name = "pykt_split_of_file", [path], path.stem
    concepts = [c for part in parts for c in part.concepts]
    responses = [r for part in parts for r in part.responses]
    uids = [u for part in parts for u in _uids(part.path, len(part.concepts))]
    max_id = int(np.concatenate(concepts).max()) if concepts else -1
    digest, names = sha256_files(files)
    return KTDataset(
        name=name or default_name,
        fmt="dkvmn",
        num_c=max_id + 1,
        concepts=concepts,
        responses=responses,
        folds=folds,
        uids=uids,
        sha256=digest,
        source_files=names,
        split=split,
        num_c_source=f"largest skill id in {', '.join(p.name for p in files)}",
        valid_folds=(0,) if split == "dkvmn_published" else None,
    )
