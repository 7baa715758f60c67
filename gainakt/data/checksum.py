"""Checksum of the files a dataset was read from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_files(paths: Iterable[str | Path]) -> tuple[str, tuple[str, ...]]:
    """Return ``(hex sha256, sorted basenames)`` over the given files.

    Files are taken in order of basename; for each, the basename, a NUL byte, the size
    as 8 little-endian bytes and the raw bytes enter the hash. Including the name and
    size means renaming a file or moving bytes from one file to the next changes the
    checksum, while the folder the data sits in does not.
    """
    files = sorted((Path(p) for p in paths), key=lambda p: p.name)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest(), tuple(p.name for p in files)
