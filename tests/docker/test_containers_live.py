"""The training and verifier containers on a real engine: hardening, streaming, cleanup, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.docker.containers import ContainerError, run_training_container, run_verifier_container

pytestmark = pytest.mark.docker

LABEL = "org.gainakt.harness.role"


def run(image_tag, exp_dir, command, *, data_dir=None, **kwargs):
    lines: list[str] = []
    attrs: list[dict] = []
    code = run_training_container(image=image_tag, exp_dir=exp_dir, data_dir=data_dir, devices=None,
                                  command=command, env={"HARNESS_TEST": "1"}, on_line=lines.append,
                                  on_start=attrs.append, **kwargs)
    return code, lines, attrs[0] if attrs else None


def no_harness_containers_left(client) -> bool:
    return client.containers.list(all=True, filters={"label": LABEL}) == []


def test_harness_cli_runs_in_the_image(image_tag, tmp_path, client):
    code, lines, _ = run(image_tag, tmp_path, ["harness", "--help"])
    assert code == 0
    assert any("usage: harness" in line for line in lines)
    assert no_harness_containers_left(client)


def test_training_container_attributes(image_tag, image_record, tmp_path, client):
    data = tmp_path / "data"
    data.mkdir()
    exp = tmp_path / "exp"
    exp.mkdir()
    code, lines, attrs = run(image_tag, exp, ["sh", "-c", "id -u; ls /sys/class/net"], data_dir=data)
    assert code == 0
    expected_uid = "10001" if os.getuid() == 0 else str(os.getuid())
    assert lines[0] == expected_uid
    assert lines[1:] == ["lo"]  # no network interface but loopback
    host = attrs["HostConfig"]
    assert attrs["Image"] == image_record["image_id"]  # ran by ID
    assert attrs["Config"]["User"].split(":")[0] == expected_uid
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert not host.get("DeviceRequests")
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/experiment"]["Source"] == str(exp.resolve()) and not mounts["/experiment"].get("ReadOnly")
    assert mounts["/data"]["Source"] == str(data.resolve()) and mounts["/data"]["ReadOnly"] is True
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["HARNESS_RUNTIME"] == "docker"
    assert no_harness_containers_left(client)


def test_training_container_writes_only_its_experiment_folder(image_tag, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.csv").write_text("x\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.json").write_text("{}\n")
    os.chmod(exp / "config.json", 0o600)  # written by the host; the container must still read it
    script = ("cat /experiment/config.json && echo out > /experiment/written.txt && mkdir /experiment/sub && "
              "echo x > /experiment/sub/f; "
              "touch /data/new 2>/dev/null || echo data-ro; touch /etc/new 2>/dev/null || echo root-ro; "
              "touch /tmp/ok && echo tmp-rw")
    code, lines, _ = run(image_tag, exp, ["sh", "-c", script], data_dir=data)
    assert code == 0
    assert lines == ["{}", "data-ro", "root-ro", "tmp-rw"]
    assert (exp / "written.txt").read_text() == "out\n"
    assert not (data / "new").exists()
    owner = exp.stat().st_uid
    assert {p.stat().st_uid for p in exp.rglob("*")} == {owner}  # ownership given back


def test_exit_code_and_streamed_lines(image_tag, tmp_path):
    code, lines, _ = run(image_tag, tmp_path, ["python3", "-c", "import sys; print('a'); print('b', file=sys.stderr);"
                                               " sys.stdout.write('c'); sys.exit(3)"])
    assert code == 3
    assert sorted(lines) == ["a", "b", "c"]


def test_oom_kill_is_reported(image_tag, tmp_path, client):
    with pytest.raises(ContainerError) as err:
        run(image_tag, tmp_path, ["python3", "-c", "x = bytearray(1 << 30); print(len(x))"], mem_limit="64m")
    assert err.value.exit_code == 137
    assert "out-of-memory" in str(err.value)
    assert no_harness_containers_left(client)


def test_ctrl_c_stops_and_removes_the_container(image_tag, tmp_path, client):
    def on_line(line):
        if line == "started":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training_container(image=image_tag, exp_dir=tmp_path, data_dir=None, devices=None,
                               command=["python3", "-c", "import time; print('started', flush=True); time.sleep(600)"],
                               env={}, on_line=on_line)
    assert no_harness_containers_left(client)


def test_missing_image_is_never_pulled(tmp_path, client):
    with pytest.raises(ContainerError, match="not present locally and pulls are forbidden"):
        run("gainakt-harness:does-not-exist", tmp_path, ["true"])


def test_verifier_container_on_a_hand_made_folder(image_tag, tmp_path, client):
    exp = tmp_path / "20260101_000000_gainakt2exp_handmade"
    exp.mkdir()
    (exp / "config.json").write_text('{"schema_version": 3}')
    attrs: list[dict] = []
    code, verdict = run_verifier_container(image=image_tag, exp_dir=exp, against=None, on_start=attrs.append)
    assert code != 0
    assert verdict["passed"] is False and verdict["checks"]
    assert all({"name", "passed", "reason"} <= set(c) for c in verdict["checks"])
    host = attrs[0]["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"]
    assert all(m.get("ReadOnly") for m in host["Mounts"])
    assert not host.get("DeviceRequests")
    assert Path(exp / "config.json").read_text() == '{"schema_version": 3}'
    assert sorted(p.name for p in exp.iterdir()) == ["config.json"]  # the verifier wrote nothing
    assert no_harness_containers_left(client)
