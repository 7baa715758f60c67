"""Docker tier of issue 19 (item 10): an image that cannot be made leaves no folder, and
`harness reproduce --runtime docker` compares in the verifier container. (The SIGTERM signal that
the container records is asserted in test_docker_integrity.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]
QUICK = ["--devices", "cpu", "--epochs", "1", "--model_preset", "small", "--synthetic_students", "60",
         "--seeds", "42", "--threads", "2"]


def harness(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("how", ["missing wheelhouse", "missing named image"])
def test_an_image_that_cannot_be_made_leaves_no_folder(client, tmp_path, how):
    base = tmp_path / "experiments"
    if how == "missing wheelhouse":  # the cuda variant's image is absent and wheelhouse/cuda was never made
        if (ROOT / "wheelhouse" / "cuda").is_dir():
            pytest.skip("this checkout has a cuda wheelhouse")
        out = harness("run", "nowheel", "--runtime", "docker", *QUICK, "--output_base", str(base),
                      env={"HARNESS_IMAGE_VARIANT": "cuda"})
        message = "wheelhouse"
    else:
        out = harness("run", "noimage", "--runtime", "docker", "--image", "gainakt-harness:no-such-image", *QUICK,
                      "--output_base", str(base))
        message = "not present locally"
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert [p for p in base.iterdir() if p.is_dir()] == [] if base.exists() else True


def test_docker_reproduce_compares_in_the_verifier_container(docker_run, image_tag, watch_containers, tmp_path):
    source = docker_run["exp"]
    assert source is not None
    src = tmp_path / "sources" / source.name
    shutil.copytree(source, src)
    base = tmp_path / "experiments"
    base.mkdir()
    with watch_containers() as watcher:
        out = harness("reproduce", str(src), "--runtime", "docker", "--image", image_tag, "--devices", "cpu",
                      "--threads", "2", "--output_base", str(base))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (repro,) = [p for p in base.iterdir() if p.is_dir()]
    (verify,) = watcher.by_role("verify")
    assert verify["Config"]["Cmd"] == ["harness", "verify", "/experiment", "--against", "/source", "--json"]
    assert {m["Target"]: bool(m.get("ReadOnly")) for m in verify["HostConfig"]["Mounts"]} == {
        "/experiment": True, "/source": True}
    report = json.loads((repro / "reproduction_report.json").read_text())
    assert report["compared_in"].startswith("verifier container") and report["verdict"] != "fail"
    assert report["source"] == src.name and report["target"] == repro.name
    assert report["integrity"]["source"]["verdict"] == report["integrity"]["target"]["verdict"] == "pass"
    verification = json.loads((repro / "verification_report.json").read_text())
    assert verification["passed"] and any(c["name"] == "against: within_tolerance" for c in verification["checks"])
    assert "compared in the verifier container" in out.stdout
    assert harness("verify", str(repro)).returncode == 0
