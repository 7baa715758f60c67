"""Fixtures of the Docker tier: a live engine and the project image (scripts/docker-prereqs.sh
prepares both). Without an engine these tests skip, except under CI where that is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]
# A run small enough for a 2-core machine: the small model, one epoch, few students, one seed.
QUICK = ["--devices", "cpu", "--epochs", "1", "--model_preset", "small", "--synthetic_students", "60",
         "--seeds", "42", "--threads", "2"]


@pytest.fixture(scope="session")
def client():
    from harness.docker.containers import ContainerError, docker_client

    try:
        return docker_client()
    except ContainerError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Docker tier under CI without an engine: {exc} (did scripts/docker-prereqs.sh run?)")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def image_record(client, tmp_path_factory):
    """The project image for the current code (built on demand, like `harness run` does), or
    the image named by $HARNESS_TEST_IMAGE."""
    from harness.docker.image import ensure_image

    return ensure_image(os.environ.get("HARNESS_TEST_IMAGE"), variant="cpu", client=client,
                        output_base=tmp_path_factory.mktemp("image"), progress=False)


@pytest.fixture(scope="session")
def image_tag(image_record) -> str:
    return image_record.get("tag") or image_record["image"]


class ContainerWatcher:
    """Records the inspect data of every container carrying the harness role label while it
    lives (the harness removes them afterwards)."""

    def __init__(self, client):
        self.client = client
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            try:
                for c in self.client.containers.list(all=True, filters={"label": "org.gainakt.harness.role"}):
                    self.seen.setdefault(c.id, c.attrs)
            except Exception:  # noqa: BLE001 - a container may vanish between list and inspect
                pass
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def by_role(self, role: str) -> list[dict]:
        return [a for a in self.seen.values() if a["Config"]["Labels"].get("org.gainakt.harness.role") == role]


def run_harness(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def docker_run(client, image_tag, tmp_path_factory):
    """`harness run quickcheck --runtime docker --devices cpu ...`: its folder, output and the
    inspect data of the containers it created."""
    base = tmp_path_factory.mktemp("experiments")
    with ContainerWatcher(client) as watcher:
        out = run_harness("run", "quickcheck", "--runtime", "docker", "--image", image_tag, *QUICK,
                          "--output_base", str(base))
    folders = [p for p in base.iterdir() if p.is_dir()]
    return {"result": out, "base": base, "exp": folders[0] if len(folders) == 1 else None,
            "train": watcher.by_role("train"), "verify": watcher.by_role("verify")}


@pytest.fixture
def copy_experiment(tmp_path):
    def make(source: Path, name: str | None = None) -> Path:
        target = tmp_path / (name or source.name)
        shutil.copytree(source, target)
        return target

    return make


@pytest.fixture
def watch_containers(client):
    """`with watch_containers() as watcher:` records the harness containers created meanwhile."""
    return lambda: ContainerWatcher(client)
