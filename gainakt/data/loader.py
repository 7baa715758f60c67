"""``load_dataset``: detect a dataset's format and dispatch to its reader."""

from __future__ import annotations

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


def load_dataset(path: str | Path, fmt: str = "auto", *, name: str | None = None) -> KTDataset:
    """Read a dataset folder or file and return it as a KTDataset.

    ``fmt`` is ``"auto"`` (detect) or one of ``pykt``, ``pykt_sequences``, ``dkvmn``,
    ``raw_assist2015``. ``name`` defaults to the folder name or the file's stem.
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
    return READERS[fmt](path, name=name)
