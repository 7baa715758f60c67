"""The one folder I/O layer: every read and write of an experiment or sweep folder passes here.

Rules (DESIGN §8b), the same for every command (run, resume, verify, compare, predict, sweep, ls, the
Docker host side, keys):

- a file is opened with O_NOFOLLOW and accepted only when it is a regular file; a symlinked parent
  folder inside the experiment folder is refused too;
- a hard-linked file (st_nlink > 1) is refused where it is evidence or about to be written (an edit
  through the other link would change it, and an append would change the other folder);
- a write goes to a temporary file in the same folder, is fsynced, then renamed over the target;
  `exclusive=True` never replaces an existing file;
- every read is bounded (`limit` bytes) and a refusal never prints the content it refused.

Errors are `FolderIOError` (an `ExperimentError`: one line for the user, naming the file and why).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessError

TEMP_SUFFIX = ".tmp"
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# What a read may load, by kind of file. JSON and text records of a folder are small; stdout.log grows
# with the run; a checkpoint of the paper configuration is about 180 MB.
JSON_LIMIT = 64 * MIB
TEXT_LIMIT = 64 * MIB
LOG_LIMIT = 1 * GIB
CHECKPOINT_LIMIT = 16 * GIB


class ExperimentError(HarnessError, RuntimeError):
    """A problem with an experiment folder; the message is one line for the user."""


class FolderIOError(ExperimentError):
    """A file the layer refuses to read or write; one line naming the file and why (never its content)."""


# ---------------------------------------------------------------------------------------------
# Opening


def _refuse(path: Path, why: str) -> FolderIOError:
    return FolderIOError(f"{path}: {why}")


def check_parents(path: Path, root: Path | None) -> None:
    """Refuse when a folder between `root` (exclusive) and `path` is a symlink; without `root`, the
    immediate parent only (the folder the file is written into)."""
    parents: list[Path] = []
    p = Path(path).parent
    if root is None:
        parents = [p]
    else:
        root_abs = Path(os.path.abspath(root))
        cur = Path(os.path.abspath(p))
        while cur != root_abs and root_abs in cur.parents:
            parents.append(cur)
            cur = cur.parent
    for parent in parents:
        if parent.is_symlink():
            raise _refuse(path, f"its folder {parent.name} is a symlink; a symlink is never followed")


def _open(path: Path, flags: int, *, root: Path | None, allow_hardlink: bool, what: str, mode: int = 0o644) -> int:
    check_parents(path, root)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise _refuse(path, "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or Path(path).is_symlink():  # the last component is a symlink
            raise _refuse(path, f"is a symlink; refusing to {what} through it") from None
        raise _refuse(path, f"cannot {what} it ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(path, f"not a regular file; refusing to {what} it")
    if st.st_nlink > 1 and not allow_hardlink:
        os.close(fd)
        raise _refuse(path, f"is hard-linked ({st.st_nlink} links): a change through another link would change "
                            f"it; refusing to {what} it (copy the folder with `cp -a`, not `cp -l`)")
    os.set_blocking(fd, True)  # O_NONBLOCK only kept a FIFO from blocking the open
    return fd


# ---------------------------------------------------------------------------------------------
# Reading


def read_bytes(path: Path, *, limit: int = TEXT_LIMIT, root: Path | None = None,
               allow_hardlink: bool = True) -> bytes:
    """The bytes of a regular file, at most `limit` of them (a larger file is refused, not cut)."""
    path = Path(path)
    fd = _open(path, os.O_RDONLY, root=root, allow_hardlink=allow_hardlink, what="read")
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise _refuse(path, f"is {size:,} bytes, more than the {limit:,} a read of it may load")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while read
                raise _refuse(path, f"grew beyond the {limit:,} bytes a read of it may load")
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_binary(path: Path, *, limit: int = CHECKPOINT_LIMIT, root: Path | None = None,
                allow_hardlink: bool = True) -> BinaryIO:
    """A binary file object of a regular file (for torch.load), refused above `limit` bytes."""
    path = Path(path)
    fd = _open(path, os.O_RDONLY, root=root, allow_hardlink=allow_hardlink, what="read")
    size = os.fstat(fd).st_size
    if size > limit:
        os.close(fd)
        raise _refuse(path, f"is {size:,} bytes, more than the {limit:,} a read of it may load")
    return os.fdopen(fd, "rb")


def read_text(path: Path, *, limit: int = TEXT_LIMIT, root: Path | None = None,
              allow_hardlink: bool = True, errors: str = "strict") -> str:
    """UTF-8 text of a regular file (see read_bytes); undecodable bytes are an error unless `errors`."""
    data = read_bytes(path, limit=limit, root=root, allow_hardlink=allow_hardlink)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise _refuse(Path(path), f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def loads_json(text: str) -> Any:
    """Strict JSON (harness.config.files.parse_json): a repeated key, a number too long to convert or
    invalid JSON is a ValueError (DocumentError) of one short line that never echoes the text."""
    from harness.config.files import parse_json

    return parse_json(text)


def read_json(path: Path, *, limit: int = JSON_LIMIT, root: Path | None = None, allow_hardlink: bool = True) -> Any:
    """Parsed JSON of a regular file; corrupt, duplicated-key, too deep or too large JSON is one line."""
    path = Path(path)
    text = read_text(path, limit=limit, root=root, allow_hardlink=allow_hardlink)
    try:
        return loads_json(text)
    except ValueError as exc:  # DocumentError: invalid JSON, a repeated key, a number too long
        raise _refuse(path, f"corrupt JSON: {str(exc).replace('not valid JSON ', '')}") from None


def sha256_file(path: Path, *, root: Path | None = None, allow_hardlink: bool = True) -> str:
    """sha256 of a regular file, streamed (no size cap: nothing is kept)."""
    path = Path(path)
    fd = _open(path, os.O_RDONLY, root=root, allow_hardlink=allow_hardlink, what="read")
    h = hashlib.sha256()
    try:
        while True:
            chunk = os.read(fd, MIB)
            if not chunk:
                break
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def is_regular(path: Path) -> bool:
    """A regular file that is not a symlink (lstat: nothing is followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def exists(path: Path) -> bool:
    """Anything at `path`, a dangling symlink included (lstat)."""
    try:
        os.lstat(path)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Writing


def write_bytes(path: Path, data: bytes, *, root: Path | None = None, exclusive: bool = False) -> None:
    """Write via a temporary file in the same folder, fsync, then rename, so readers never see half a
    file. A symlink at `path` is replaced, never written through; a hard-linked target is refused;
    `exclusive` refuses any existing file (nothing is replaced)."""
    with open_write(path, root=root, exclusive=exclusive) as fh:
        fh.write(data)


@contextmanager
def open_write(path: Path, *, root: Path | None = None, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A binary file to stream into, with write_bytes' rules: it is a temporary file in the same folder,
    fsynced and renamed over `path` when the block ends without an error, and removed when it raises
    (nothing half-written is ever seen under `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_parents(path, root)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if exclusive:
            raise _refuse(path, "already exists; refusing to overwrite it")
        if stat.S_ISDIR(st.st_mode):
            raise _refuse(path, "is a folder; refusing to replace it")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise _refuse(path, "is not a regular file (a device, FIFO or socket); refusing to replace it")
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            raise _refuse(path, f"is hard-linked ({st.st_nlink} links); refusing to replace evidence another "
                                "link shares (copy the folder with `cp -a`, not `cp -l`)")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if exclusive:
            try:
                os.link(tmp, path)  # fails when something appeared meanwhile: never replaces
            except FileExistsError:
                raise _refuse(path, "already exists; refusing to overwrite it") from None
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, *, root: Path | None = None, exclusive: bool = False) -> None:
    write_bytes(path, text.encode(), root=root, exclusive=exclusive)


def dumps_json(obj: Any) -> str:
    """The project's JSON layout: indent 2, sorted keys, NaN and infinities written as null, newline at
    the end; so equal data gives equal bytes whatever its insertion order."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _finite(obj.item())
    return obj


def write_json(path: Path, obj: Any, *, root: Path | None = None, exclusive: bool = False) -> None:
    write_text(path, dumps_json(obj), root=root, exclusive=exclusive)


def open_append(path: Path, *, root: Path | None = None) -> int:
    """A descriptor appending to `path` (created if absent): a regular file with one link only."""
    path = Path(path)
    return _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, root=root, allow_hardlink=False, what="append to")


def append_text(path: Path, text: str, *, root: Path | None = None) -> None:
    fd = open_append(path, root=root)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def open_lock(path: Path) -> int:
    """A lock file's descriptor (created if absent): never a symlink, a hard link or anything but a file."""
    return _open(Path(path), os.O_CREAT | os.O_RDWR, root=None, allow_hardlink=False, what="lock with")


def remove(path: Path) -> None:
    """Delete a file (a symlink itself, never its target); absent is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------------------
# Walking a folder (nothing followed)


@dataclass
class FolderScan:
    """What a folder holds, relative POSIX paths, sorted: regular files, symlinks (files and folders),
    hard-linked regular files, and anything else (FIFOs, sockets, devices)."""

    files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    hardlinked: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)


def scan(folder: Path) -> FolderScan:
    out = FolderScan()
    for rel, st in _walk(Path(folder)):
        if stat.S_ISLNK(st.st_mode):
            out.links.append(rel)
        elif stat.S_ISREG(st.st_mode):
            out.files.append(rel)
            if st.st_nlink > 1:
                out.hardlinked.append(rel)
        elif not stat.S_ISDIR(st.st_mode):
            out.special.append(rel)
    for lst in (out.files, out.links, out.hardlinked, out.special):
        lst.sort()
    return out


def _walk(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    stack = [(folder, "")]
    while stack:
        here, prefix = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), rel + "/"))


def is_temp_file(name: str) -> bool:
    """A leftover of an interrupted write: `.<name>.<random>.tmp`."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") and base.endswith(TEMP_SUFFIX)


def inside(base: Path, path: Path) -> bool:
    """Whether `path` (symlinks resolved) lies inside `base` (resolved), or is it."""
    b, p = Path(base).resolve(), Path(path).resolve()
    return p == b or b in p.parents


__all__ = [
    "ExperimentError", "FolderIOError", "FolderScan", "read_bytes", "open_binary", "read_text", "read_json",
    "loads_json", "sha256_file", "write_bytes", "open_write", "write_text", "write_json", "dumps_json",
    "append_text", "open_append", "open_lock",
    "remove", "scan", "is_regular", "exists", "is_temp_file", "inside", "check_parents",
]
