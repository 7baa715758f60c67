"""End to end: `harness run ... --runtime docker`, the verifier container on good and tampered
folders, and `docker compose up reproduce` with the CPU override."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.docker.containers import run_verifier_container

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


def env_txt(exp: Path) -> dict[str, str]:
    out = {}
    for line in (exp / "environment.txt").read_text().splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def test_docker_run_produces_a_complete_verified_experiment(docker_run, image_record):
    result = docker_run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exp = docker_run["exp"]
    assert exp is not None
    for name in ["config.json", "environment.txt", "stdout.log", "metrics_epoch.csv", "results.json",
                 "SEED_INFO.md", "README.md", "MANIFEST.sha256", "verification_report.json"]:
        assert (exp / name).is_file(), name
    env = env_txt(exp)
    assert env["runtime"] == "docker"
    assert env["image_id"] == image_record["image_id"]
    assert json.loads(env["image_record"])["lock_sha256"] == image_record["lock_sha256"]
    verdict = json.loads((exp / "verification_report.json").read_text())
    assert verdict["passed"] is True, [c for c in verdict["checks"] if not c["passed"]]
    # What the container printed reached the terminal and the log.
    assert "epoch 1/1" in result.stdout and "epoch 1/1" in (exp / "stdout.log").read_text()
    # Files belong to the invoker again, not to the container's uid.
    assert {p.stat().st_uid for p in exp.rglob("*")} == {os.getuid()}


def test_docker_run_containers_were_hardened_and_removed(docker_run, image_record, client):
    assert docker_run["result"].returncode == 0
    (train,) = docker_run["train"]
    (verify,) = docker_run["verify"]
    exp = str(docker_run["exp"].resolve())
    for attrs in (train, verify):
        host = attrs["HostConfig"]
        assert attrs["Image"] == image_record["image_id"]
        assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"] and not host.get("DeviceRequests")
        assert attrs["Config"]["User"] != "" and not attrs["Config"]["User"].startswith("0")
    assert {m["Target"]: bool(m.get("ReadOnly")) for m in train["HostConfig"]["Mounts"]} == {"/experiment": False}
    assert train["HostConfig"]["Mounts"][0]["Source"] == exp
    assert train["Config"]["Cmd"][:3] == ["harness", "execute", "/experiment"]
    assert verify["HostConfig"]["ReadonlyRootfs"] is True
    assert all(m.get("ReadOnly") for m in verify["HostConfig"]["Mounts"])
    assert verify["Config"]["Cmd"] == ["harness", "verify", "/experiment", "--json"]
    for attrs in (train, verify):
        assert client.containers.list(all=True, filters={"id": attrs["Id"]}) == []


def test_verifier_container_passes_the_run_and_fails_a_tampered_copy(docker_run, image_tag, copy_experiment):
    exp = docker_run["exp"]
    assert exp is not None
    code, verdict = run_verifier_container(image=image_tag, exp_dir=exp, against=None)
    assert code == 0 and verdict["passed"] is True

    copy = copy_experiment(exp)
    code, verdict = run_verifier_container(image=image_tag, exp_dir=copy, against=exp)
    assert code == 0 and verdict["passed"] is True, [c for c in verdict["checks"] if not c["passed"]]

    results = json.loads((copy / "results.json").read_text())
    results["tampered"] = True
    (copy / "results.json").write_text(json.dumps(results))
    code, verdict = run_verifier_container(image=image_tag, exp_dir=copy, against=exp)
    assert code != 0 and verdict["passed"] is False
    failed = [c for c in verdict["checks"] if not c["passed"]]
    assert any("results.json" in c["reason"] or "manifest" in c["name"].lower() for c in failed), failed


def compose(*args: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = ["docker", "compose", "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"),
           "-f", str(ROOT / "compose.cpu.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}, cwd=ROOT)


def test_compose_up_reproduce_reproduces_then_verifies(docker_run, image_record, image_tag, tmp_path, client):
    source = docker_run["exp"]
    assert source is not None
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    shutil.copytree(source, experiments / source.name)
    if os.getuid() == 0:  # the services run as 10001 and write into EXPERIMENTS_DIR
        for path in [experiments, *experiments.rglob("*")]:
            os.lchown(path, 10001, 10001)
    project = f"harness-test-{os.getpid()}"
    env = {"SOURCE_EXP": source.name, "REPRO_EXP": "reproduction", "EXPERIMENTS_DIR": str(experiments),
           "HARNESS_IMAGE": image_tag, "HARNESS_IMAGE_ID": image_record["image_id"],
           "COMPOSE_PROJECT_NAME": project, "HARNESS_UID": "10001", "HARNESS_GID": "10001"}
    try:
        up = compose("up", "--attach-dependencies", "reproduce", env=env)
        states = compose("ps", "--all", "--format", "json", env=env)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        rows = [json.loads(line) for line in states.stdout.splitlines() if line.strip()]
        if len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        exits = {row["Service"]: row["ExitCode"] for row in rows}
        assert exits == {"reproduce-run": 0, "reproduce": 0}, up.stdout[-4000:]
        for row in rows:
            attrs = client.api.inspect_container(row["ID"])
            host = attrs["HostConfig"]
            assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"]
            assert attrs["Config"]["User"] == "10001:10001" and not host.get("DeviceRequests")
            assert attrs["Image"] == image_record["image_id"]
    finally:
        # Services sit in profiles; `down` only sees the profiles it is given.
        compose("--profile", "*", "down", "--remove-orphans", env=env, timeout=120)
    assert client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []
    repro = experiments / "reproduction"
    assert (repro / "results.json").is_file() and (repro / "reproduction_report.json").is_file()
    assert env_txt(repro)["runtime"] == "docker"
    assert env_txt(repro)["image_id"] == image_record["image_id"]
    verdict_lines = [ln for ln in up.stdout.splitlines() if ln.startswith("reproduce-1") or ln.startswith("reproduce ")]
    assert any('"passed": true' in ln for ln in verdict_lines), up.stdout[-4000:]
