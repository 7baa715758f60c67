"""``load_dataset``: detect a dataset's format and dispatch to its reader."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from gainakt.data.dataset import KTDataset
from gainakt.data.dkvmn import find_train_test, looks_three_line, read_dkvmn
from gainakt.data.errors import DataError
from gainakt.data.pykt import read_pykt, read_pykt_sequences
from gainakt.data.raw_assist import has_raw_header, read_raw_assist2015

READERS: dict[str, Callable[..., KTDataset]] = {
    "pykt": read_pykt,
    "pykt_sequences": read_pykt_sequences,
    "dkvmn": read_dkvmn,
    "raw_assist2015": read_raw_assist2015,
}

_EXPECTED = (
    "expected a pyKT folder (train_valid.csv + test.csv, or train_valid_sequences.csv + "
    "test_sequences.csv), a DKVMN three-line file or folder (<name>_train.csv + <name>_test.csv), "
    "or a raw ASSISTments 2015 CSV (user_id,log_id,sequence_id,correct)"
)


def detect_format(path: Path) -> str:
    """Return the format name of a dataset path, or raise DataError when none fits."""
    if path.is_dir():
        if (path / "train_valid.csv").is_file():
            return "pykt"
        if (path / "train_valid_sequences.csv").is_file():
            return "pykt_sequences"
        pair = find_train_test(path)
        if pair is not None and looks_three_line(pair[0]):
            return "dkvmn"
    elif path.is_file():
        if has_raw_header(path):
            return "raw_assist2015"
        if looks_three_line(path):
            return "dkvmn"
    raise DataError(f"unknown dataset format at {path}: {_EXPECTED}")


def load_dataset(
    path: str | Path, fmt: str = "auto", *, name: str | None = None, num_concepts: int | None = None
) -> KTDataset:
    """Read a dataset folder or file and return it as a KTDataset.

    ``fmt`` is ``"auto"`` (detect) or one of ``pykt``, ``pykt_sequences``, ``dkvmn``,
    ``raw_assist2015``. ``name`` defaults to the folder name or the file's stem.
    ``num_concepts`` sets the number of concepts instead of the reader's count (it must
    exceed every concept id read, and agree with a pyKT ``keyid2idx.json``).
    Raises DataError (one line, naming file and line) for a missing path, an unknown
    format or malformed content.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset path not found: {path}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in READERS:
        raise DataError(f"unknown dataset format {fmt!r}; choose auto or one of {', '.join(READERS)}")
    if fmt in ("pykt", "pykt_sequences") and not path.is_dir():
        raise DataError(f"format {fmt} needs a folder, got a file: {path}")
    if fmt == "raw_assist2015" and path.is_dir():
        raise DataError(f"format raw_assist2015 needs a CSV file, got a folder: {path}")
    ds = READERS[fmt](path, name=name)
    return ds if num_concepts is None else with_num_concepts(ds, num_concepts, path)


def with_num_concepts(ds: KTDataset, num_concepts: int, path: Path) -> KTDataset:
    """The dataset with ``num_c`` set by the user, or DataError when the data contradicts it."""
    if num_concepts < 1:
        raise DataError(f"num_concepts must be at least 1, got {num_concepts}")
    largest = max((int(c.max()) for c in ds.concepts if len(c)), default=-1)
    if largest >= num_concepts:
        raise DataError(f"num_concepts {num_concepts} is too small: the data holds concept id {largest} "
                        f"(0-based; needs at least {largest + 1})", file=path)
    if ds.num_c_source.startswith("concepts listed in") and ds.num_c != num_concepts:
        raise DataError(f"num_concepts {num_concepts} contradicts the {ds.num_c} {ds.num_c_source}", file=path)
    return dataclasses.replace(ds, num_c=num_concepts, num_c_source="given (num_concepts)")
