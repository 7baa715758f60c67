"""Datasets for knowledge tracing: readers, checksums, pyKT splits, window tensors and batches.

Formats: pyKT folders (full histories or pre-chunked sequences), the DKVMN three-line
format, and the raw ASSISTments 2015 CSV (preprocessed by pyKT's rules). Every reader
returns a :class:`KTDataset`; :func:`load_dataset` detects the format.
"""

from gainakt.data.batching import batch_order, iterate_batches
from gainakt.data.checksum import sha256_files
from gainakt.data.dataset import KTDataset
from gainakt.data.describe import describe
from gainakt.data.errors import DataError
from gainakt.data.loader import READERS, detect_format, load_dataset
from gainakt.data.splits import kfold_assign, pykt_split, split_students
from gainakt.data.windows import SequenceSet, build_window_test, build_windows

__all__ = [
    "READERS",
    "DataError",
    "KTDataset",
    "SequenceSet",
    "batch_order",
    "build_window_test",
    "build_windows",
    "describe",
    "detect_format",
    "iterate_batches",
    "kfold_assign",
    "load_dataset",
    "pykt_split",
    "sha256_files",
    "split_students",
]
