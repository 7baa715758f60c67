"""Training-container settings and the reaper of issue 10 (no engine needed: fakes stand in)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.docker.containers import (
    LABEL_FOLDER,
    LABEL_LAUNCHER,
    LABEL_OWNER,
    ContainerError,
    memory_limit,
    process_identity,
    reap_orphans,
    training_container_config,
)


def config(exp_dir: Path, **kwargs):
    return training_container_config(image_id="sha256:" + "a" * 64, exp_dir=exp_dir, data_dir=None, devices=None,
                                     command=["harness"], env={}, uid=1000, gid=1000, **kwargs)


def test_training_container_has_noexec_tmp_a_pids_limit_and_launcher_labels(tmp_path):
    cfg = config(tmp_path, mem_limit="2g", pids_limit=512)
    assert "noexec" in cfg["tmpfs"]["/tmp"].split(",")
    assert cfg["pids_limit"] == 512 and cfg["mem_limit"] == "2g"
    labels = cfg["labels"]
    assert labels[LABEL_LAUNCHER] == process_identity(os.getpid())
    assert labels[LABEL_FOLDER] == str(tmp_path.resolve())
    st = tmp_path.stat()
    assert labels[LABEL_OWNER] == f"{st.st_uid}:{st.st_gid}"


def test_memory_limit_values():
    assert memory_limit("none") is None and memory_limit("16G") == "16g"
    assert memory_limit("auto").endswith("m") and int(memory_limit("auto")[:-1]) > 0
    with pytest.raises(ContainerError, match="--container_memory"):
        memory_limit("lots")


class FakeContainer:
    def __init__(self, labels: dict[str, str]):
        self.labels, self.status, self.name = labels, "running", "c"
        self.calls: list[str] = []

    def reload(self):
        pass

    def kill(self, signal=None):
        self.calls.append(f"kill {signal}")
        self.status = "exited"

    def wait(self, timeout=None):
        return {"StatusCode": 130}

    def remove(self, force=False, v=False):
        self.calls.append("remove")


class FakeClient:
    def __init__(self, containers):
        self.containers = self
        self._found = containers

    def list(self, all=False, filters=None):
        assert filters == {"label": ["org.gainakt.harness.role=train", LABEL_LAUNCHER]}
        return self._found


def test_reaper_removes_only_containers_of_dead_launchers(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_identity = process_identity(dead.pid)
    dead.wait()
    assert dead_identity is not None and process_identity(dead.pid) != dead_identity
    orphan = FakeContainer({LABEL_LAUNCHER: dead_identity, LABEL_FOLDER: str(tmp_path), LABEL_OWNER: "0:0"})
    alive = FakeContainer({LABEL_LAUNCHER: process_identity(os.getpid()), LABEL_FOLDER: str(tmp_path)})
    elsewhere = FakeContainer({LABEL_LAUNCHER: "another-host:1:1", LABEL_FOLDER: str(tmp_path)})
    assert reap_orphans(FakeClient([orphan, alive, elsewhere])) == [str(tmp_path)]
    assert "remove" in orphan.calls and alive.calls == [] and elsewhere.calls == []


def test_a_host_write_is_refused_while_a_live_launchers_container_writes_the_folder(tmp_path, monkeypatch):
    import harness.docker.containers as containers
    from harness.docker.run import reap_before_writing
    from harness.folder.experiment import ExperimentError

    running = FakeContainer({LABEL_LAUNCHER: process_identity(os.getpid()), LABEL_FOLDER: str(tmp_path.resolve())})

    class Client(FakeClient):
        def list(self, all=False, filters=None):
            if filters == {"label": f"{LABEL_FOLDER}={tmp_path.resolve()}"}:
                return [running]
            return super().list(all=all, filters=filters)

    monkeypatch.setattr(containers, "docker_client", lambda timeout=120: Client([running]))
    with pytest.raises(ExperimentError, match="still writing"):
        reap_before_writing(tmp_path)
    assert running.calls == []  # its launcher is alive: not reaped
