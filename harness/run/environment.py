"""environment.txt: what software and hardware produced a run, as `key: value` lines."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.run import allocator

REPO_ROOT = Path(__file__).resolve().parent.parent


def git_info(root: Path = REPO_ROOT) -> dict[str, str]:
    """Commit, branch and dirty flag of the code's repository.

    Inside a container there is no repository; the host passes what it knew through
    HARNESS_GIT_COMMIT / HARNESS_GIT_BRANCH / HARNESS_GIT_DIRTY.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {
            "git_commit": os.environ.get("HARNESS_GIT_COMMIT", "unknown (no git repository)"),
            "git_branch": os.environ.get("HARNESS_GIT_BRANCH", "unknown"),
            "git_dirty": os.environ.get("HARNESS_GIT_DIRTY", "unknown"),
        }
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit,
        "git_branch": git("rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


# Libraries whose numerics enter the results (metrics, data reading, plots), recorded by version.
LIBRARIES = (("scikit_learn", "scikit-learn"), ("pandas", "pandas"), ("scipy", "scipy"),
             ("matplotlib", "matplotlib"))


def package_version(dist: str) -> str:
    """The installed version of a distribution, or 'not installed'."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_lines() -> list[tuple[str, str]]:
    """One line per GPU (name, UUID, driver, memory) through NVML, or a clear no-driver line."""
    from harness.run.gpu import gpu_inventory

    inv = gpu_inventory()
    if not inv.get("gpus"):
        return [("gpus", inv.get("error") or "none (NVML found no GPU)")]
    lines = [("nvidia_driver", str(inv.get("driver")))]
    for g in inv["gpus"]:
        lines.append((f"gpu{g['index']}", f"{g['name']} | uuid {g['uuid']} | {g['memory_total_mib']} MiB | "
                                         f"driver {g.get('driver', inv.get('driver'))}"))
    return lines


def capture(*, runtime: str, dataset: dict[str, Any], determinism: dict[str, Any] | None = None,
            seed_devices: dict[int, str] | None = None) -> list[tuple[str, str]]:
    """The environment as ordered (key, value) pairs; the reference's keys come first."""
    import numpy
    import torch

    cuda = torch.cuda.is_available()
    pairs: list[tuple[str, str]] = [
        ("python", sys.version.replace("\n", " ")),
        ("platform", platform.platform()),
        ("cuda_available", str(cuda)),
        ("torch_version", torch.__version__),
        ("cuda_version", str(torch.version.cuda)),
    ]
    pairs += list(git_info().items())
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    pairs += [
        ("cudnn_version", str(cudnn)),
        ("numpy_version", numpy.__version__),
        *((f"{key}_version", package_version(dist)) for key, dist in LIBRARIES),
        ("harness_version", _package_version()),
        ("cpu", cpu_name()),
        ("cpu_arch", platform.machine() or "unknown"),
        ("cpu_count", str(os.cpu_count())),
        ("cpu_usable", str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "unknown"),
        ("torch_threads", str(torch.get_num_threads())),
        ("allocator", allocator.description()),
    ]
    pairs += gpu_lines()
    host_gpus = os.environ.get("HARNESS_HOST_GPUS")
    if host_gpus:
        pairs.append(("host_gpus", host_gpus))
    pairs += [
        ("dataset", str(dataset.get("name"))),
        ("dataset_sha256", str(dataset.get("sha256"))),
        ("dataset_read", f"{dataset.get('format')}; files {', '.join(dataset.get('files') or []) or 'none'}; "
                         f"split {dataset.get('split')}; {dataset.get('num_concepts')} concepts"),
        ("runtime", runtime),
    ]
    if runtime == "docker":
        pairs += image_lines()
    if determinism:
        pairs.append(("determinism", json.dumps(determinism, sort_keys=True)))
    if seed_devices:
        pairs.append(("seed_devices", json.dumps({str(k): v for k, v in seed_devices.items()})))
    return pairs


def image_lines() -> list[tuple[str, str]]:
    """image_id and image_record of a container run.

    From HARNESS_IMAGE_ID / HARNESS_IMAGE_RECORD (set by `harness run --runtime docker`), else
    from the build record at HARNESS_IMAGE_RECORD_FILE (Compose points it at the
    image_record.json that `harness image build` wrote beside the experiments).
    """
    image_id = os.environ.get("HARNESS_IMAGE_ID") or ""
    record_text = os.environ.get("HARNESS_IMAGE_RECORD") or ""
    record: dict[str, Any] | None = json.loads(record_text) if record_text else None
    source = "HARNESS_IMAGE_ID"
    path = os.environ.get("HARNESS_IMAGE_RECORD_FILE")
    if record is None and path:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = None
        record = loaded if isinstance(loaded, dict) else None
        if record is not None and not image_id:
            image_id, source = str(record.get("image_id") or ""), f"{path} (the last build's record)"
    pairs = [("image_id", image_id or "unknown")]
    if image_id and source != "HARNESS_IMAGE_ID":
        pairs.append(("image_id_source", source))
    if record is not None:
        pairs.append(("image_record", json.dumps(record, sort_keys=True)))
    return pairs


def render(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in pairs)


def parse(text: str) -> dict[str, str]:
    """environment.txt back into a dict."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):  # per-resume sections (launcher.record_environment) keep the original
            continue
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def _package_version() -> str:
    from harness import __version__

    return __version__
