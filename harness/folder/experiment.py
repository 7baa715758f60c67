"""Experiment folders: naming, resolution, locking, atomic writes and the integrity manifest."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.folder import io
from harness.folder.io import TEMP_SUFFIX, ExperimentError, dumps_json, is_temp_file, sha256_file

__all__ = ["ExperimentError", "TEMP_SUFFIX", "dumps_json", "is_temp_file", "sha256_file"]

DEFAULT_OUTPUT_BASE = Path("examples/experiments")
MANIFEST = "MANIFEST.sha256"
ATTESTATION = "ATTESTATION.intoto.json"  # signs the manifest, so it is never listed in it


def output_base(arg: str | None) -> Path:
    """The folder that holds experiment folders (default examples/experiments)."""
    return Path(arg).expanduser() if arg else DEFAULT_OUTPUT_BASE


def check_title(title: str) -> str:
    """Titles become folder names: letters, digits, '_', '-', '.' only."""
    from harness.config.schema import check_title as title_problem

    problem = title_problem(title) if title else "is empty"
    if problem:
        raise ExperimentError(f"invalid experiment title: {problem}")
    return title


def new_experiment_id(title: str, now: datetime | None = None) -> str:
    """`YYYYMMDD_HHMMSS_gainakt2exp_<title>` in UTC (the guide's folder name)."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%d_%H%M%S}_gainakt2exp_{check_title(title).lower()}"


def title_of(experiment_id: str) -> str:
    """The short title inside an experiment id (everything after `_gainakt2exp_`)."""
    marker = "_gainakt2exp_"
    return experiment_id.split(marker, 1)[1] if marker in experiment_id else experiment_id


def find_experiment(ref: str, output_base_arg: str | None) -> Path:
    """The experiment `ref` names for a command with an `--output_base` flag: an explicitly given
    output base confines it (see `resolve_experiment`); without one, a path may lead anywhere."""
    return resolve_experiment(ref, output_base(output_base_arg), confined=output_base_arg is not None)


def resolve_experiment(ref: str, base: Path, *, confined: bool = False) -> Path:
    """An existing experiment folder named by id (under `base`) or by path.

    A bare id must not escape the output base (`../x` is refused); a bare name that is no id under
    `base` but an experiment folder in the current directory is taken as that path. The folder must
    hold a config.json. With `confined` (the user named the output base) the folder, symlinks
    resolved, must lie inside `base`, whether it was named by id or by path: a command told to look
    in one place never checks or writes a folder elsewhere.
    """
    if not ref:
        raise ExperimentError("no experiment named")
    candidate = Path(ref).expanduser()
    looks_like_path = os.sep in ref or ref.startswith(".")
    if not looks_like_path:
        candidate = base / ref
        if not candidate.resolve().is_relative_to(base.resolve()):
            raise ExperimentError(f"experiment id {ref!r} points outside the output base {base}")
        if not candidate.is_dir() and (Path(ref) / "config.json").is_file():
            candidate = Path(ref)  # a folder in the current directory, named without ./
    elif not candidate.exists() and not candidate.is_absolute() and (base / ref).exists():
        candidate = base / ref
    if not candidate.is_dir():
        where = f" under {base}" if not looks_like_path else ""
        raise ExperimentError(f"unknown experiment {ref!r}: no such folder{where}")
    if confined and not candidate.resolve().is_relative_to(base.resolve()):
        raise ExperimentError(f"{ref} is {candidate.resolve()}, outside --output_base {base}: name an "
                              f"experiment inside it, or leave --output_base out to name a folder by its path")
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

    The lock file sits beside the folder (`.<name>.lock`), so it never appears inside it. It is
    opened without following symlinks. `reentrant=True` joins a lock this process already holds
    (a command takes it before writing config.json and keeps it through training); otherwise a
    second holder is refused even within one process.
    """

    _held: dict[str, list[Any]] = {}  # lock path -> [fd, depth] for the locks this process holds

    def __init__(self, folder: Path, *, reentrant: bool = False) -> None:
        self.reentrant = reentrant
        # Inside a container the folder's parent is the read-only root: HARNESS_LOCK_DIR moves the lock.
        self.path = Path(os.environ.get("HARNESS_LOCK_DIR") or folder.parent) / f".{folder.name}.lock"
        self._key = os.path.abspath(self.path)
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        held = FolderLock._held.get(self._key)
        if held is not None and not self.reentrant:
            raise ExperimentError(f"another run is writing {self.path.parent / self.path.name[1:-5]}; "
                                  "refusing to write it too")
        if held is not None:
            held[1] += 1
            self._fd = held[0]
            return self
        self._fd = io.open_lock(self.path)  # never a symlink or a hard link (its content is replaced)
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
        FolderLock._held[self._key] = [self._fd, 1]
        return self

    def __exit__(self, *exc: Any) -> None:
        held = FolderLock._held.get(self._key)
        if self._fd is None or held is None:
            return
        held[1] -= 1
        self._fd = None
        if held[1] > 0:
            return
        del FolderLock._held[self._key]
        fcntl.flock(held[0], fcntl.LOCK_UN)
        os.close(held[0])
        self.path.unlink(missing_ok=True)


def lock_is_held(folder: Path) -> bool:
    """Whether this process holds the folder's lock (writers assert it before writing)."""
    return os.path.abspath(FolderLock(folder).path) in FolderLock._held


# ---------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through the folder I/O layer: temp file in the same folder, fsync, rename (io.write_bytes)."""
    io.write_bytes(path, data)


def open_append_nofollow(path: Path) -> int:
    """A descriptor appending to `path`, created if absent; a symlink, a hard link or a non-regular file
    is refused (io.open_append)."""
    return io.open_append(path)


def remove_temp_files(folder: Path) -> list[str]:
    """Delete the leftovers of interrupted atomic writes (never followed through symlinks)."""
    removed = []
    for name in folder_files(folder):
        if is_temp_file(name):
            io.remove(folder / name)
            removed.append(name)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    io.write_text(path, text)


def atomic_write_json(path: Path, obj: Any) -> None:
    io.write_json(path, obj)


def read_json(path: Path) -> Any:
    """Parsed JSON through the folder I/O layer, or ExperimentError naming the file (io.read_json)."""
    return io.read_json(path)


# ---------------------------------------------------------------------------------------------
# Integrity manifest (sha256sum-compatible: `sha256sum -c MANIFEST.sha256` works in the folder)


def folder_files(folder: Path) -> list[str]:
    """Every regular file in the folder (relative POSIX paths), the manifest and attestation excluded.

    Symlinks are neither followed nor listed (see `folder_links`).
    """
    return [n for n in io.scan(folder).files if n not in (MANIFEST, ATTESTATION)]


def folder_links(folder: Path) -> list[str]:
    """Every symlink inside the folder (files and folders), relative POSIX paths."""
    return io.scan(folder).links


def unsafe_manifest_name(name: str) -> str | None:
    """Why a manifest entry must not be opened (absolute, `..`, empty), or None when it is safe."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name:
        return f"{name!r} is not a relative path inside the folder"
    if any(p in ("", ".", "..") for p in parts):
        return f"{name!r} leaves the folder or is not normalised"
    return None


def read_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} from MANIFEST.sha256 (empty when absent)."""
    path = folder / MANIFEST
    if not io.exists(path):
        return {}
    entries = {}
    try:
        text = io.read_bytes(path, limit=io.TEXT_LIMIT).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExperimentError(f"{path}: not a sha256sum manifest (not UTF-8 text: byte {exc.start})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ExperimentError(f"{path}: malformed line {n}")
        entries[name] = digest
    return entries


def write_manifest(folder: Path, entries: dict[str, str] | None = None) -> None:
    """(Re)write the manifest over every file, or over `entries` when given.

    Leftovers of interrupted atomic writes are deleted first and never listed.
    """
    if entries is None:
        remove_temp_files(folder)
        entries = {name: sha256_file(folder / name) for name in folder_files(folder)}
    text = "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))
    atomic_write_text(folder / MANIFEST, text)


def record_in_manifest(folder: Path, names: Iterable[str]) -> None:
    """Add or refresh entries for reports written after the run (verification, comparison)."""
    entries = read_manifest(folder)
    for name in names:
        entries[name] = sha256_file(folder / name)
    write_manifest(folder, entries)


# ---------------------------------------------------------------------------------------------
# Check before write: a command that writes into an existing folder first holds the lock, then
# confirms the folder is what its manifest says (so it never launders an edit into a new manifest).

ACCEPTED = "modifications_accepted.txt"


def manifest_problems(folder: Path) -> list[str]:
    """Why the folder differs from its manifest (empty when it matches). Temp leftovers are ignored."""
    entries = read_manifest(folder)
    problems = []
    for name in sorted(entries):
        why = unsafe_manifest_name(name)
        path = folder / name
        if why:
            problems.append(why)
        elif path.is_symlink() or not path.is_file():
            problems.append(f"{name} is listed but missing" if not path.is_symlink() else f"{name} is a symlink")
        elif sha256_file(path) != entries[name]:
            problems.append(f"{name} does not match its sha256")
    problems += [f"{n} is not listed" for n in folder_files(folder) if n not in entries and not is_temp_file(n)]
    return problems


def signed_problems(folder: Path) -> list[str]:
    """How the folder differs from what its attestation signed (empty when it has none, or when it
    matches). No key is needed: the signed statement names the digests of MANIFEST.sha256 and
    results.json, and the manifest those of every other file. A folder whose attestation no longer covers
    it was changed after signing; resuming or re-signing it would vouch for the change (issue 19)."""
    import base64
    import binascii
    import json

    path = folder / ATTESTATION
    if path.is_symlink():
        return [f"{ATTESTATION} is a symlink"]
    if not io.exists(path):
        return []
    try:
        envelope = io.loads_json(io.read_text(path, limit=io.JSON_LIMIT))
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        signed = {str(s["name"]): str(s["digest"]["sha256"]) for s in statement["subject"]}
    except (ExperimentError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        return [f"{ATTESTATION} does not parse as a signed statement ({type(exc).__name__})"]
    problems = []
    for name in (MANIFEST, "results.json"):
        target = folder / name
        if name not in signed:
            problems.append(f"{ATTESTATION} does not sign {name}")
        elif target.is_symlink() or not target.is_file():
            problems.append(f"{name} is missing or not a regular file since it was signed ({ATTESTATION})")
        elif sha256_file(target) != signed[name]:
            problems.append(f"{name} changed after it was signed ({ATTESTATION})")
    return problems


# The records every command reads or writes at the top of an experiment folder.
RECORDS = ("config.json", "environment.txt", "stdout.log", "overrides_applied.txt", "run_status.json",
           "results.json", MANIFEST, ATTESTATION, ACCEPTED)


def folders_where_files_belong(folder: Path) -> list[str]:
    """The records (RECORDS, and every name the manifest lists) that are real folders, not files."""
    try:
        listed = list(read_manifest(folder))
    except ExperimentError:
        listed = []  # an unreadable manifest is reported by the manifest check
    names = sorted(set(RECORDS) | {n for n in listed if not unsafe_manifest_name(n)})
    return [n for n in names if not (folder / n).is_symlink() and (folder / n).is_dir()]


def _killed_writer(folder: Path) -> bool:
    """The folder's last writer died (status still "running") or crashed before writing the manifest."""
    try:
        return read_json(folder / "run_status.json").get("status") in ("running", "crashed")
    except (ExperimentError, AttributeError):
        return False


def check_before_write(folder: Path, action: str, *, accept_modified: bool = False,
                       require_manifest: bool = True,
                       remedy: str = "pass --accept_modified to accept and record this") -> list[str]:
    """Refuse (ExperimentError, one line) to write a folder that differs from its manifest.

    Call it with the folder's lock held. Symlinks, hard-linked and special files inside the folder are
    always refused. A folder without a manifest is accepted when its writer was killed mid-run (status
    "running"), or with `require_manifest=False` (a resume, which rebuilds every derived file from the
    primary evidence, so nothing unverified is carried forward).
    With `accept_modified` the differences are recorded in modifications_accepted.txt and returned.
    """
    if not lock_is_held(folder):
        raise RuntimeError(f"check_before_write({folder}) without the folder lock")  # a bug
    found = io.scan(folder)
    if found.links:
        raise ExperimentError(f"{folder}: refusing to {action}: symlinks inside the folder: {', '.join(found.links)}")
    if found.hardlinked or found.special:
        what = ([f"hard-linked with another folder: {', '.join(found.hardlinked[:6])}"] if found.hardlinked else []) \
            + ([f"not regular files: {', '.join(found.special[:6])}"] if found.special else [])
        raise ExperimentError(f"{folder}: refusing to {action}: {'; '.join(what)} (a write would change the other "
                              "copy too; copy a folder with `cp -a`, not `cp -l`)")
    if (folder / MANIFEST).is_symlink():
        raise ExperimentError(f"{folder}: refusing to {action}: {MANIFEST} is a symlink")
    occupied = folders_where_files_belong(folder)
    if occupied:  # no write can heal it, so --accept_modified cannot accept it either
        raise ExperimentError(f"{folder}: refusing to {action}: {', '.join(occupied)} is a folder where the "
                              "experiment's file belongs (move it away; nothing was written)")
    if (folder / MANIFEST).is_file():
        problems = manifest_problems(folder)
    elif _killed_writer(folder) or not require_manifest:
        problems = []
    else:
        problems = [f"{MANIFEST} is missing"]
    problems += signed_problems(folder)
    if problems and not accept_modified:
        raise ExperimentError(f"{folder}: refusing to {action}: the folder differs from its manifest or signature: "
                              f"{'; '.join(problems)} ({remedy})")
    if problems:
        line = f"{datetime.now(timezone.utc).isoformat()} {action}: accepted {'; '.join(problems)}\n"
        fd = open_append_nofollow(folder / ACCEPTED)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    remove_temp_files(folder)
    return problems
