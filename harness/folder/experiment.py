"""Experiment folders: naming, resolution, locking, atomic writes and the integrity manifest."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT_BASE = Path("examples/experiments")
MANIFEST = "MANIFEST.sha256"
_TITLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExperimentError(RuntimeError):
    """A problem with an experiment folder; the message is one line for the user."""


def output_base(arg: str | None) -> Path:
    """The folder that holds experiment folders (default examples/experiments)."""
    return Path(arg).expanduser() if arg else DEFAULT_OUTPUT_BASE


def check_title(title: str) -> str:
    """Titles become folder names: letters, digits, '_', '-', '.' only."""
    if not title or not _TITLE.match(title):
        raise ExperimentError(f"invalid experiment title {title!r}: use letters, digits, '_', '-' or '.'")
    return title


def new_experiment_id(title: str, now: datetime | None = None) -> str:
    """`YYYYMMDD_HHMMSS_gainakt2exp_<title>` in UTC (the guide's folder name)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d_%H%M%S}_gainakt2exp_{check_title(title).lower()}"


def title_of(experiment_id: str) -> str:
    """The short title inside an experiment id (everything after `_gainakt2exp_`)."""
    marker = "_gainakt2exp_"
    return experiment_id.split(marker, 1)[1] if marker in experiment_id else experiment_id


def resolve_experiment(ref: str, base: Path) -> Path:
    """An existing experiment folder named by id (under `base`) or by path.

    A bare id must not escape the output base (`../x` is refused), and the folder must hold a
    config.json.
    """
    if not ref:
        raise ExperimentError("no experiment named")
    candidate = Path(ref).expanduser()
    looks_like_path = os.sep in ref or ref.startswith(".")
    if not looks_like_path:
        candidate = base / ref
        if not candidate.resolve().is_relative_to(base.resolve()):
            raise ExperimentError(f"experiment id {ref!r} points outside the output base {base}")
    elif not candidate.exists() and not candidate.is_absolute() and (base / ref).exists():
        candidate = base / ref
    if not candidate.is_dir():
        where = f" under {base}" if not looks_like_path else ""
        raise ExperimentError(f"unknown experiment {ref!r}: no such folder{where}")
    if not (candidate / "config.json").is_file():
        raise ExperimentError(f"{candidate}: not an experiment folder (no config.json)")
    return candidate


def create_experiment_dir(base: Path, title: str, *, experiment_dir: str | None = None,
                          force: bool = False) -> Path:
    """A new experiment folder; an existing non-empty one only with `force`."""
    if experiment_dir:
        path = Path(experiment_dir).expanduser()
        if os.sep not in experiment_dir and not path.is_absolute():
            path = base / experiment_dir
    else:
        path = base / new_experiment_id(title)
    if path.exists() and any(path.iterdir()) and not force:
        raise ExperimentError(f"experiment folder {path} already exists; pass --force to write into it")
    path.mkdir(parents=True, exist_ok=True)
    (path / "artifacts").mkdir(exist_ok=True)
    return path


class FolderLock:
    """An exclusive lock held while a run writes a folder, so two runs never write one folder.

    The lock file sits beside the folder (`.<name>.lock`), so it never appears inside it.
    """

    def __init__(self, folder: Path) -> None:
        # Inside a container the folder's parent is the read-only root: HARNESS_LOCK_DIR moves the lock.
        self.path = Path(os.environ.get("HARNESS_LOCK_DIR") or folder.parent) / f".{folder.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise ExperimentError(
                f"another run is writing {self.path.parent / self.path.name[1:-5]}; refusing to write it too"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def dumps_json(obj: Any) -> str:
    """The project's JSON layout: indent 2, sorted keys, NaN written as null, newline at the end."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


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


def read_json(path: Path) -> Any:
    """Parsed JSON, or ExperimentError naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"{path}: corrupt JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ExperimentError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise ExperimentError(f"{path}: JSON nested too deeply to read") from None


# ---------------------------------------------------------------------------------------------
# Integrity manifest (sha256sum-compatible: `sha256sum -c MANIFEST.sha256` works in the folder)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def folder_files(folder: Path) -> list[str]:
    """Every file in the folder (relative POSIX paths), the manifest itself excluded."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out.append(p.relative_to(folder).as_posix())
    return out


def read_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} from MANIFEST.sha256 (empty when absent)."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    entries = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ExperimentError(f"{path}: malformed line {n}")
        entries[name] = digest
    return entries


def write_manifest(folder: Path, entries: dict[str, str] | None = None) -> None:
    """(Re)write the manifest over every file, or over `entries` when given."""
    if entries is None:
        entries = {name: sha256_file(folder / name) for name in folder_files(folder)}
    text = "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))
    atomic_write_text(folder / MANIFEST, text)


def record_in_manifest(folder: Path, names: Iterable[str]) -> None:
    """Add or refresh entries for reports written after the run (verification, comparison)."""
    entries = read_manifest(folder)
    for name in names:
        entries[name] = sha256_file(folder / name)
    write_manifest(folder, entries)
