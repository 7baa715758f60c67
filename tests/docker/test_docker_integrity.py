"""Docker tier of issue 10: a signalled launcher never leaves its training container behind, and a
stopped container ends in an interrupted, resumable folder owned by its original owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]

LONG = ["--devices", "cpu", "--epochs", "30", "--model_preset", "small", "--synthetic_students", "60",
        "--seeds", "42", "--threads", "2", "--no_verify"]


def start(image_tag: str, base: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([*HARNESS, "run", "sig", "--runtime", "docker", "--image", image_tag, *LONG,
                             "--output_base", str(base)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        found = [p for p in base.iterdir() if p.is_dir()]
        if found and (found[0] / "model_last.pth").exists():
            return proc, found[0]
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("no checkpoint within 600 s")


def training_containers(client, exp: Path) -> list:
    return client.containers.list(all=True, filters={"label": f"org.gainakt.harness.folder.experiment={exp.name}"})


def owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def test_sigterm_of_the_launcher_stops_and_removes_the_container(client, image_tag, tmp_path):
    proc, exp = start(image_tag, tmp_path)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert training_containers(client, exp) == []
    status = json.loads((exp / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"  # the real signal (issue 19)
    assert owner(exp / "model_last.pth") == owner(tmp_path)  # the loan to the container's user ended


def test_sigkill_of_the_launcher_leaves_a_container_the_next_call_reaps(client, image_tag, tmp_path):
    from harness.docker.containers import reap_orphans

    proc, exp = start(image_tag, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert training_containers(client, exp), "the container should outlive a SIGKILLed launcher until reaped"
    assert str(exp.resolve()) in reap_orphans(client)
    assert training_containers(client, exp) == []
    assert owner(exp / "model_last.pth") == owner(tmp_path)
    assert main_resume_admitted(exp)


def main_resume_admitted(exp: Path) -> bool:
    from harness.folder.experiment import FolderLock, check_before_write

    with FolderLock(exp):
        return check_before_write(exp, "resume it") == []


def test_docker_stop_of_the_container_ends_in_an_interrupted_resumable_folder(client, image_tag, tmp_path):
    proc, exp = start(image_tag, tmp_path)
    (container,) = training_containers(client, exp)
    container.stop(timeout=30)  # SIGTERM to the container (tini forwards it), SIGKILL after 30 s
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    status = json.loads((exp / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert (exp / "MANIFEST.sha256").is_file() and training_containers(client, exp) == []
    assert main_resume_admitted(exp)
