"""Containers, image and their files, without a Docker engine (the Docker client is faked).

Covers the GPU request mapping, the hardening of both containers, every user-facing error,
the image tag/record logic, the `harness image` commands, and static checks of the Dockerfile,
the Compose files, the CI workflow and the lock files (skipped when a checker is missing).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker.errors import APIError, DockerException, ImageNotFound
from docker.types import DeviceRequest

from harness.docker import containers, image
from harness.docker.containers import (
    ContainerError,
    check_devices,
    gpu_device_request,
    parse_verdict,
    run_training_container,
    run_verifier_container,
    training_container_config,
    verifier_container_config,
)

ROOT = Path(__file__).resolve().parent.parent
IMAGE_ID = "sha256:" + "ab" * 32
NO_DRIVER = {"driver": None, "nvml": False, "gpus": [], "error": "no NVIDIA driver (NVML: NVML Shared Library Not Found)"}
TWO_GPUS = {"driver": "580.1", "nvml": True, "error": None,
            "gpus": [{"index": 0, "name": "H100", "uuid": "GPU-a"}, {"index": 1, "name": "H100", "uuid": "GPU-b"}]}
FOUR_GPUS = {**TWO_GPUS, "gpus": [{"index": i, "name": "H100", "uuid": f"GPU-{i}"} for i in range(4)]}


# --------------------------------------------------------------------------------------------
# A fake Docker client: records what the harness asks for, answers like the SDK.


class FakeContainer:
    def __init__(self, client, config):
        self.client = client
        self.config = config
        self.status = "created"
        self.attrs = {"Id": "c0ffee", "Image": config["image"], "State": {"OOMKilled": False},
                      "HostConfig": {"NetworkMode": config.get("network_mode")}}
        self.killed: list = []
        self.removed = False

    def start(self):
        if self.client.start_error is not None:
            raise self.client.start_error
        self.status = "running"

    def reload(self):
        pass

    def logs(self, stream=False, follow=False, stdout=True, stderr=True):
        if stream:
            return self._stream()
        if stdout and not stderr:
            return self.client.stdout
        return self.client.stderr

    def _stream(self):
        for chunk in self.client.chunks:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
        self.status = "exited"

    def wait(self, timeout=None):
        self.status = "exited"
        self.attrs["State"]["OOMKilled"] = self.client.oom
        return {"StatusCode": self.client.exit_code}

    def kill(self, signal=None):
        self.killed.append(signal)
        self.status = "exited"

    def remove(self, force=False, v=False):
        self.removed = True


class FakeImages:
    def __init__(self, client):
        self.client = client

    def get(self, ref):
        if ref in self.client.missing:
            raise ImageNotFound(f"No such image: {ref}")
        attrs = dict(self.client.image_attrs)
        return SimpleNamespace(id=self.client.image_ids.get(ref, IMAGE_ID), attrs=attrs)

    def pull(self, *args, **kwargs):  # pragma: no cover - must never be called
        raise AssertionError("the harness must never pull an image")


class FakeContainers:
    def __init__(self, client):
        self.client = client

    def create(self, **config):
        if self.client.create_error is not None:
            raise self.client.create_error
        container = FakeContainer(self.client, config)
        self.client.created.append(container)
        return container

    def run(self, *args, **kwargs):  # pragma: no cover - run() pulls on ImageNotFound
        raise AssertionError("containers.run() pulls missing images; the harness must use create()")


class FakeAPI:
    def __init__(self, client):
        self.client = client
        self.build_kwargs = None
        self.tags: list[tuple] = []
        self.pushed: list[tuple] = []

    def build(self, **kwargs):
        self.build_kwargs = kwargs
        self.build_context = kwargs["fileobj"].read()
        yield from self.client.build_stream

    def tag(self, image_id, repository, tag=None):
        self.tags.append((image_id, repository, tag))
        return True

    def push(self, repository, tag=None, stream=False, decode=False):
        self.pushed.append((repository, tag))
        yield from self.client.push_stream


class FakeClient:
    def __init__(self, *, chunks=(b"",), exit_code=0, oom=False, stdout=b"", stderr=b"", missing=(),
                 create_error=None, start_error=None):
        self.chunks = list(chunks)
        self.exit_code = exit_code
        self.oom = oom
        self.stdout = stdout
        self.stderr = stderr
        self.missing = set(missing)
        self.create_error = create_error
        self.start_error = start_error
        self.created: list[FakeContainer] = []
        self.images = FakeImages(self)
        self.containers = FakeContainers(self)
        self.api = FakeAPI(self)
        self.image_ids: dict[str, str] = {}
        self.image_attrs = {"RepoDigests": [], "RepoTags": ["gainakt-harness:latest"], "Config": {"Labels": {}},
                            "Created": "2026-01-01T00:00:00Z", "Size": 123}
        self.build_stream: list[dict] = []
        self.push_stream: list[dict] = []

    def version(self):
        return {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}

    def ping(self):
        return True


def api_error(message: str, status: int = 500) -> APIError:
    response = SimpleNamespace(status_code=status, reason="Server Error", url="http://docker/x")
    return APIError("500 Server Error", response=response, explanation=message)


@pytest.fixture
def exp_dir(tmp_path):
    folder = tmp_path / "20260101_000000_gainakt2exp_quick"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def train(client, exp_dir, *, devices=None, data_dir=None, lines=None, **kwargs):
    sink = lines if lines is not None else []
    return run_training_container(image="gainakt-harness:latest", exp_dir=exp_dir, data_dir=data_dir,
                                  devices=devices, command=["harness", "execute", "/experiment"],
                                  env={"HARNESS_IMAGE_ID": IMAGE_ID}, on_line=sink.append, client=client, **kwargs)


# --------------------------------------------------------------------------------------------
# GPU request mapping


def test_gpu_request_names_exactly_the_listed_host_gpus_and_renumbers_inside():
    request, inside = gpu_device_request([1, 3])
    assert isinstance(request, DeviceRequest)
    assert request.device_ids == ["1", "3"]
    assert request.capabilities == [["gpu"]]
    assert request.count == 0  # a count would mean "any N" or, with -1, all GPUs
    assert inside == [0, 1]


def test_gpu_request_keeps_the_given_order():
    request, inside = gpu_device_request([2, 0, 1])
    assert request.device_ids == ["2", "0", "1"]
    assert inside == [0, 1, 2]


@pytest.mark.parametrize("devices, message", [
    ([], "no GPU index given"),
    ([1, 1], "GPU indices repeat"),
    ([-1], "invalid GPU index -1"),
    ([True], "invalid GPU index True"),
])
def test_gpu_request_rejects_bad_device_lists(devices, message):
    with pytest.raises(ContainerError, match=message):
        gpu_device_request(devices)


def test_unknown_gpu_index_is_a_clear_error_naming_the_host_gpus():
    with pytest.raises(ContainerError) as err:
        check_devices([0, 3], TWO_GPUS)
    text = str(err.value)
    assert "GPU index 3 does not exist on this host" in text
    assert "0 H100 (GPU-a), 1 H100 (GPU-b)" in text
    assert "\n" not in text


def test_gpus_requested_on_a_host_without_driver_suggest_cpu_or_local():
    with pytest.raises(ContainerError) as err:
        check_devices([0], NO_DRIVER)
    text = str(err.value)
    assert "no NVIDIA driver" in text and "--devices cpu" in text and "--runtime local" in text


def test_existing_gpu_indices_pass_the_check():
    assert check_devices([1, 0], TWO_GPUS) is TWO_GPUS


# --------------------------------------------------------------------------------------------
# Container settings


def test_training_container_is_hardened_and_mounts_data_read_only(tmp_path, exp_dir):
    data = tmp_path / "data"
    data.mkdir()
    cfg = training_container_config(image_id=IMAGE_ID, exp_dir=exp_dir, data_dir=data, devices=None,
                                    command=["harness", "execute", "/experiment", "--data_dir", "/data"],
                                    env={"X": "1"}, uid=10001, gid=10001)
    assert cfg["image"] == IMAGE_ID
    assert cfg["user"] == "10001:10001"
    assert cfg["network_mode"] == "none"
    assert cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["cap_drop"] == ["ALL"]
    assert cfg["read_only"] is True and "/tmp" in cfg["tmpfs"]
    mounts = {m["Target"]: m for m in cfg["mounts"]}
    assert mounts["/experiment"]["Source"] == str(exp_dir.resolve()) and mounts["/experiment"]["ReadOnly"] is False
    assert mounts["/data"]["Source"] == str(data.resolve()) and mounts["/data"]["ReadOnly"] is True
    assert all(m["Type"] == "bind" for m in cfg["mounts"])
    assert "device_requests" not in cfg
    assert cfg["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"  # no GPU even under a default nvidia runtime
    assert cfg["environment"]["HARNESS_RUNTIME"] == "docker" and cfg["environment"]["X"] == "1"
    assert "privileged" not in cfg and "volumes" not in cfg


def test_training_container_without_dataset_has_no_data_mount(exp_dir):
    cfg = training_container_config(image_id=IMAGE_ID, exp_dir=exp_dir, data_dir=None, devices=[],
                                    command=["harness"], env={}, uid=1000, gid=1000)
    assert [m["Target"] for m in cfg["mounts"]] == ["/experiment"]
    assert cfg["user"] == "1000:1000"


def test_training_container_requests_the_listed_gpus(exp_dir):
    cfg = training_container_config(image_id=IMAGE_ID, exp_dir=exp_dir, data_dir=None, devices=[1, 3],
                                    command=["harness"], env={}, uid=1000, gid=1000)
    (request,) = cfg["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Capabilities"] == [["gpu"]] and request["Count"] == 0
    assert json.loads(cfg["environment"]["HARNESS_DEVICE_MAP"]) == {"host": [1, 3], "inside": [0, 1]}
    assert "NVIDIA_VISIBLE_DEVICES" not in cfg["environment"]


def test_verifier_container_is_read_only_without_network_gpu_or_capabilities(tmp_path, exp_dir):
    source = tmp_path / "source"
    source.mkdir()
    cfg = verifier_container_config(image_id=IMAGE_ID, exp_dir=exp_dir, against=source, uid=10001, gid=10001)
    assert cfg["command"] == ["harness", "verify", "/experiment", "--against", "/source", "--json"]
    assert cfg["read_only"] is True and cfg["tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=256m"}
    assert cfg["network_mode"] == "none" and cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges"] and cfg["user"] == "10001:10001"
    assert "device_requests" not in cfg and cfg["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert {m["Target"]: m["ReadOnly"] for m in cfg["mounts"]} == {"/experiment": True, "/source": True}


def test_verifier_command_without_source():
    assert containers.verifier_command(None) == ["harness", "verify", "/experiment", "--json"]


def test_root_invoker_runs_containers_as_the_unprivileged_uid(monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "getgid", lambda: 0)
    assert containers.container_user() == (10001, 10001)
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    monkeypatch.setattr(os, "getgid", lambda: 99)
    assert containers.container_user() == (1234, 99)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")
def test_lent_folder_gets_back_its_owners_and_new_files_the_folder_owner(tmp_path):
    folder = tmp_path / "exp"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    os.chown(folder / "a.json", 4321, 4321)  # a pre-existing file with its own owner
    with containers.lend_folder(folder, 10001, 10001) as lent:
        assert lent is True
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [folder, *folder.rglob("*")]} == {(10001, 10001)}
        (folder / "sub" / "new.txt").write_text("x")  # what the container writes
        os.chown(folder / "sub" / "new.txt", 10001, 10001)
    assert (folder / "a.json").stat().st_uid == 4321
    assert folder.stat().st_uid == 0 and (folder / "sub").stat().st_uid == 0
    assert (folder / "sub" / "new.txt").stat().st_uid == 0


def test_lend_folder_does_nothing_for_a_non_root_invoker(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    with containers.lend_folder(tmp_path, 10001, 10001) as lent:
        assert lent is False


# --------------------------------------------------------------------------------------------
# Running the training container (fake engine)


def test_training_streams_lines_runs_by_image_id_and_removes_the_container(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(chunks=[b"epoch 1 auc 0.7", b"0\nsecond line\r\ncaf\xc3", b"\xa9\nno newline at end"])
    client.image_ids["gainakt-harness:latest"] = IMAGE_ID
    lines: list[str] = []
    seen: list[dict] = []
    assert train(client, exp_dir, lines=lines, on_start=seen.append) == 0
    assert lines == ["epoch 1 auc 0.70", "second line", "café", "no newline at end"]
    (container,) = client.created
    assert container.config["image"] == IMAGE_ID  # run by ID, not by the movable tag
    assert container.config["command"] == ["harness", "execute", "/experiment"]
    assert container.removed is True
    assert seen and seen[0]["Image"] == IMAGE_ID


def test_training_exit_code_is_returned_and_container_removed(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(exit_code=3)
    assert train(client, exp_dir) == 3
    assert client.created[0].removed


def test_oom_kill_is_reported_as_such(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(exit_code=137, oom=True)
    with pytest.raises(ContainerError) as err:
        train(client, exp_dir)
    assert err.value.exit_code == 137
    assert "out-of-memory killer (exit 137)" in str(err.value)
    assert client.created[0].removed


def test_exit_137_without_oom_is_just_an_exit_code(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    assert train(FakeClient(exit_code=137, oom=False), exp_dir) == 137


def test_ctrl_c_interrupts_the_container_then_removes_it(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(chunks=[b"line\n", KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        train(client, exp_dir)
    (container,) = client.created
    assert container.killed[0] == int(signal.SIGINT)
    assert container.removed


def test_sigterm_of_the_launcher_reaches_the_container_as_sigterm(monkeypatch, exp_dir):
    """The container records the signal it gets: the launcher's own (issue 19), not always SIGINT."""
    from harness.run.launcher import Interrupted

    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(chunks=[b"line\n", Interrupted(signal.SIGTERM)])
    with pytest.raises(KeyboardInterrupt):
        train(client, exp_dir)
    (container,) = client.created
    assert container.killed[0] == int(signal.SIGTERM)
    assert container.removed


def test_verifier_command_passes_the_tolerances_with_a_source():
    assert containers.verifier_command(Path("/s"), auc_tolerance=0.01, corr_tolerance=None) == [
        "harness", "verify", "/experiment", "--against", "/source", "--auc_tolerance", "0.01", "--json"]
    assert containers.verifier_command(None, auc_tolerance=0.01) == ["harness", "verify", "/experiment", "--json"]


def test_failure_while_streaming_still_removes_the_container(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(chunks=[RuntimeError("stream broke")])
    with pytest.raises(RuntimeError):
        train(client, exp_dir)
    assert client.created[0].removed


def test_missing_image_is_an_error_and_nothing_is_pulled(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(missing={"gainakt-harness:latest"})
    with pytest.raises(ContainerError) as err:
        train(client, exp_dir)
    assert "not present locally and pulls are forbidden" in str(err.value)
    assert "harness image build" in str(err.value)
    assert client.created == []


def test_image_vanishing_before_create_is_the_same_error(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(create_error=ImageNotFound("No such image"))
    with pytest.raises(ContainerError, match="pulls are forbidden"):
        train(client, exp_dir)


def test_missing_nvidia_runtime_suggests_cpu_or_local(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    monkeypatch.setattr("harness.run.gpu.gpu_inventory", lambda: TWO_GPUS)
    error = api_error('could not select device driver "" with capabilities: [[gpu]]')
    client = FakeClient(start_error=error)
    with pytest.raises(ContainerError) as err:
        train(client, exp_dir, devices=[0])
    text = str(err.value)
    assert "no NVIDIA runtime" in text and "--devices cpu" in text and "--runtime local" in text
    assert client.created[0].removed
    assert client.created[0].config["device_requests"][0]["DeviceIDs"] == ["0"]


def test_unknown_gpu_index_fails_before_any_container_exists(monkeypatch, exp_dir):
    monkeypatch.setattr("harness.run.gpu.gpu_inventory", lambda: FOUR_GPUS)
    client = FakeClient()
    with pytest.raises(ContainerError, match="GPU index 7 does not exist"):
        train(client, exp_dir, devices=[1, 7])
    assert client.created == []


def test_gpu_request_on_a_host_without_driver_fails_clearly(monkeypatch, exp_dir):
    monkeypatch.setattr("harness.run.gpu.gpu_inventory", lambda: NO_DRIVER)
    with pytest.raises(ContainerError, match="no NVIDIA driver.*--devices cpu or --runtime local"):
        train(FakeClient(), exp_dir, devices=[0])


def test_other_engine_refusals_are_one_line(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(create_error=api_error("invalid mount config\nfor type bind"))
    with pytest.raises(ContainerError) as err:
        train(client, exp_dir)
    assert "refused to create the container: invalid mount config for type bind" in str(err.value)


def test_missing_experiment_or_dataset_folder(tmp_path, exp_dir):
    with pytest.raises(ContainerError, match="experiment folder .* does not exist"):
        train(FakeClient(), tmp_path / "nope")
    with pytest.raises(ContainerError, match="dataset folder .* does not exist"):
        train(FakeClient(), exp_dir, data_dir=tmp_path / "nodata")


# --------------------------------------------------------------------------------------------
# Running the verifier (fake engine)


def test_verifier_returns_exit_code_and_parsed_verdict(monkeypatch, tmp_path, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    verdict = {"passed": True, "checks": [{"name": "manifest", "passed": True, "reason": "ok"}]}
    client = FakeClient(stdout=json.dumps(verdict, indent=2).encode())
    source = tmp_path / "src"
    source.mkdir()
    code, got = run_verifier_container(image="gainakt-harness:latest", exp_dir=exp_dir, against=source,
                                       client=client)
    assert (code, got) == (0, verdict)
    (container,) = client.created
    assert container.config["read_only"] is True and container.removed


def test_verifier_failure_keeps_the_verdict(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    verdict = {"passed": False, "checks": [{"name": "manifest", "passed": False, "reason": "config.json changed"}]}
    client = FakeClient(exit_code=1, stdout=json.dumps(verdict).encode())
    assert run_verifier_container(image="x", exp_dir=exp_dir, against=None, client=client) == (1, verdict)


def test_verifier_without_json_output_fails_with_its_stderr(monkeypatch, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (1000, 1000))
    client = FakeClient(exit_code=0, stdout=b"", stderr=b"Traceback\nImportError: boom\n")
    code, verdict = run_verifier_container(image="x", exp_dir=exp_dir, against=None, client=client)
    assert code == 1 and verdict["passed"] is False
    assert "printed no JSON verdict" in verdict["checks"][0]["reason"]
    assert "ImportError: boom" in verdict["checks"][0]["reason"]


def test_parse_verdict_finds_the_object_after_other_output():
    assert parse_verdict('{"passed": true, "checks": []}') == {"passed": True, "checks": []}
    assert parse_verdict('note: x\n{\n  "passed": false,\n  "checks": []\n}\n') == {"passed": False, "checks": []}
    assert parse_verdict("no json here") is None
    assert parse_verdict("[1, 2]") is None


# --------------------------------------------------------------------------------------------
# Engine errors


def test_no_engine_is_one_clear_line(monkeypatch):
    import docker

    def refuse(**kwargs):
        raise DockerException("Error while fetching server API version: ('Connection aborted.', "
                              "FileNotFoundError(2, 'No such file or directory'))")

    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(ContainerError) as err:
        containers.docker_client()
    assert str(err.value) == ("no Docker engine answers at unix:///var/run/docker.sock: start the engine "
                              "(scripts/docker-prereqs.sh on Debian) or use --runtime local")


def test_permission_denied_on_the_socket_is_named(monkeypatch):
    import docker

    def refuse(**kwargs):
        try:
            raise PermissionError(13, "Permission denied")
        except PermissionError as exc:
            raise DockerException("Error while fetching server API version: ('Connection aborted.', "
                                  "PermissionError(13, 'Permission denied'))") from exc

    monkeypatch.setattr(docker, "from_env", refuse)
    with pytest.raises(ContainerError) as err:
        containers.docker_client()
    assert "permission denied on the Docker socket" in str(err.value)
    assert "docker' group" in str(err.value) and "--runtime local" in str(err.value)


def test_engine_available_is_false_when_nothing_listens(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    assert containers.engine_available() is False
    with pytest.raises(ContainerError, match=f"no Docker engine answers at unix://{tmp_path}/no.sock"):
        containers.docker_client(timeout=5)


# --------------------------------------------------------------------------------------------
# Image tag, context, build, record, push


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    for rel in ["Dockerfile", ".dockerignore", "pyproject.toml", "docker/entrypoint.sh",
                "docker/requirements-cpu.lock", "docker/requirements-cuda.lock"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    (root / "harness").mkdir()
    (root / "harness" / "__init__.py").write_text("x = 1\n")
    (root / "gainakt").mkdir()
    (root / "gainakt" / "__init__.py").write_text("")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    (root / "examples" / "experiments" / "run1").mkdir(parents=True)
    (root / "examples" / "experiments" / "run1" / "config.json").write_text("{}")
    wheels = root / "wheelhouse" / "cpu"
    wheels.mkdir(parents=True)
    (wheels / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (wheels / ".lock-sha256").write_text(image.lock_sha256("cpu", root) + "\n")
    return root


def test_context_holds_code_and_locks_but_no_experiments_wheelhouses_or_tests(tmp_path):
    root = make_project(tmp_path)
    files = image.context_files(root)
    assert "harness/__init__.py" in files and "docker/requirements-cpu.lock" in files and "Dockerfile" in files
    assert not any(f.startswith(("examples/", "wheelhouse/", "tests/", ".git")) for f in files)


def test_default_tag_follows_code_lock_and_variant(tmp_path):
    root = make_project(tmp_path)
    tag = image.default_image_tag("cpu", root)
    assert re.fullmatch(r"gainakt-harness:cpu-[0-9a-f]{12}", tag)
    assert image.default_image_tag("cpu", root) == tag
    assert image.default_image_tag("cuda", root).startswith("gainakt-harness:cuda-")
    (root / "examples" / "experiments" / "run1" / "results.json").write_text("{}")
    assert image.default_image_tag("cpu", root) == tag  # experiments are not code
    (root / "harness" / "__init__.py").write_text("x = 2\n")
    changed = image.default_image_tag("cpu", root)
    assert changed != tag
    with open(root / "docker" / "requirements-cpu.lock", "a") as fh:
        fh.write("# changed\n")
    assert image.default_image_tag("cpu", root) != changed


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(ContainerError, match="unknown image variant 'rocm'"):
        image.lock_path("rocm", tmp_path)


def test_wheelhouse_must_match_the_lock(tmp_path):
    root = make_project(tmp_path)
    wheels = root / "wheelhouse" / "cpu"
    image.check_wheelhouse(wheels, "cpu", root)
    (wheels / ".lock-sha256").write_text("0" * 64)
    with pytest.raises(ContainerError, match="was not made from requirements-cpu.lock: run `docker/wheelhouse.sh cpu"):
        image.check_wheelhouse(wheels, "cpu", root)
    with pytest.raises(ContainerError, match="is missing or empty"):
        image.check_wheelhouse(root / "wheelhouse" / "cuda", "cuda", root)


def test_build_context_adds_the_wheelhouse(tmp_path):
    root = make_project(tmp_path)
    with image.build_context(root, root / "wheelhouse" / "cpu") as ctx:
        names = tarfile.open(fileobj=io.BytesIO(ctx.read())).getnames()
    assert "wheelhouse/pkg-1.0-py3-none-any.whl" in names and "harness/__init__.py" in names
    assert not any(n.startswith(("examples", "tests")) for n in names)


def build_client():
    client = FakeClient()
    client.image_ids["gainakt-harness-base:bookworm"] = "sha256:" + "be" * 32
    client.build_stream = [{"stream": "Step 1/2 : FROM x\n"}, {"stream": "Step 2/2 : RUN y\n"},
                           {"aux": {"ID": IMAGE_ID}}, {"stream": "Successfully built abab\n"}]
    client.image_attrs["Config"] = {"Labels": {image.LABEL_LOCK: "lockhash", image.LABEL_VARIANT: "cpu",
                                               image.LABEL_BUILDER: image.BUILDER}}
    return client


def test_build_never_pulls_runs_offline_and_records_provenance(tmp_path):
    root = make_project(tmp_path)
    client = build_client()
    client.missing.add(image.DEFAULT_BASE_IMAGE)
    record = image.build_image(variant="cpu", root=root, client=client, output_base=tmp_path / "out",
                               progress=False)
    kwargs = client.api.build_kwargs
    assert kwargs["pull"] is False and kwargs["network_mode"] == "none"
    assert kwargs["custom_context"] is True
    args = kwargs["buildargs"]
    assert args["BASE_IMAGE"] == "sha256:" + "be" * 32  # FROM the exact base image that is recorded
    assert args["BASE_IMAGE_DIGEST"] == "sha256:" + "be" * 32
    assert args["LOCK_SHA256"] == image.lock_sha256("cpu", root)
    assert args["VARIANT"] == "cpu" and args["CODE_SHA256"] == image.code_sha256("cpu", root)
    assert kwargs["tag"] == image.default_image_tag("cpu", root)
    assert (IMAGE_ID, "gainakt-harness", "latest") in client.api.tags
    assert (IMAGE_ID, "gainakt-harness", "cpu") in client.api.tags
    assert record["image_id"] == IMAGE_ID and record["docker_engine_version"] == "20.10.24+dfsg1"
    assert record["repo_digest"] is None and record["builder"] == image.BUILDER
    assert image.read_image_record(tmp_path / "out") == record


def test_build_stream_error_is_one_line(tmp_path):
    root = make_project(tmp_path)
    client = build_client()
    client.build_stream = [{"stream": "Step 1/2 : FROM x\n"}, {"error": "The command '/bin/sh' returned\n code 1"}]
    with pytest.raises(ContainerError) as err:
        image.build_image(root=root, client=client, base_image="gainakt-harness-base:bookworm", progress=False)
    assert "image build failed: The command '/bin/sh' returned code 1" in str(err.value)
    assert "\n" not in str(err.value)


def test_build_without_any_local_base_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_BASE_IMAGE", raising=False)
    root = make_project(tmp_path)
    client = build_client()
    client.missing |= {image.DEFAULT_BASE_IMAGE, image.LOCAL_BASE_IMAGE}
    with pytest.raises(ContainerError) as err:
        image.build_image(root=root, client=client, progress=False)
    assert "builds never pull" in str(err.value) and "docker/build-base.sh" in str(err.value)
    assert client.api.build_kwargs is None
    with pytest.raises(ContainerError, match="base image my/base:1 is not present locally and builds never pull"):
        image.build_image(root=root, client=FakeClient(missing={"my/base:1"}), base_image="my/base:1",
                          progress=False)


def test_base_digest_prefers_the_registry_digest():
    obj = SimpleNamespace(id="sha256:local", attrs={"RepoDigests": ["python@sha256:reg"]})
    assert image.base_image_digest(obj, "python:3.11-slim-bookworm@sha256:pinned") == "sha256:pinned"
    assert image.base_image_digest(obj, "python:3.11") == "sha256:reg"
    assert image.base_image_digest(SimpleNamespace(id="sha256:local", attrs={}), "base:1") == "sha256:local"


def test_push_records_the_repo_digest(tmp_path):
    client = FakeClient()
    client.push_stream = [{"status": "Pushing"}, {"aux": {"Tag": "cpu-1", "Digest": "sha256:feed", "Size": 1}}]
    record = image.push_image("registry.example/lab/", image="gainakt-harness:cpu-1", client=client,
                              output_base=tmp_path, progress=False)
    assert client.api.pushed == [("registry.example/lab/gainakt-harness", "cpu-1")]
    assert record["repo_digest"] == "registry.example/lab/gainakt-harness@sha256:feed"
    assert image.read_image_record(tmp_path)["repo_digest"] == record["repo_digest"]


def test_push_error_is_reported(tmp_path):
    client = FakeClient()
    client.push_stream = [{"errorDetail": {"message": "denied: requested access"}, "error": "denied"}]
    with pytest.raises(ContainerError, match="push of r.example/gainakt-harness:latest failed: denied"):
        image.push_image("r.example", image="sha256:abc", client=client, progress=False)


def test_ensure_image_records_a_present_image(tmp_path):
    client = FakeClient()
    record = image.ensure_image("gainakt-harness:given", client=client, output_base=tmp_path, variant="cpu")
    assert record["image_id"] == IMAGE_ID
    assert image.read_image_record(tmp_path)["image_id"] == IMAGE_ID
    assert client.api.tags == []  # a named image does not move gainakt-harness:latest


def test_ensure_image_points_latest_at_the_current_codes_image():
    client = FakeClient()
    image.ensure_image(client=client, variant="cpu")
    assert set(client.api.tags) == {(IMAGE_ID, "gainakt-harness", "cpu"), (IMAGE_ID, "gainakt-harness", "latest")}


def test_build_under_another_tag_leaves_the_aliases_alone(tmp_path):
    root = make_project(tmp_path)
    client = build_client()
    image.build_image(root=root, client=client, tag="mine:1", base_image="gainakt-harness-base:bookworm",
                      progress=False)
    assert client.api.tags == []


def test_ensure_image_refuses_a_missing_named_image():
    client = FakeClient(missing={"someone/else:1"})
    with pytest.raises(ContainerError, match="someone/else:1 is not present locally and pulls are forbidden"):
        image.ensure_image("someone/else:1", client=client, variant="cpu")


def test_ensure_image_builds_the_current_codes_image_when_missing(monkeypatch):
    tag = image.default_image_tag("cpu")
    client = FakeClient(missing={tag})
    built = {}
    monkeypatch.setattr(image, "build_image", lambda **kw: built.update(kw) or {"image_id": IMAGE_ID, "tag": tag})
    assert image.ensure_image(client=client, variant="cpu")["tag"] == tag
    assert built["tag"] == tag and built["variant"] == "cpu"


# --------------------------------------------------------------------------------------------
# `harness image` commands


def image_parser():
    from harness.cli.image import add_image_commands

    parser = argparse.ArgumentParser(prog="harness")
    add_image_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_image_build_flags_reach_build_image(monkeypatch, capsys):
    got = {}
    monkeypatch.setattr(image, "build_image", lambda **kw: got.update(kw) or {"image_id": IMAGE_ID, "tag": "t"})
    ns = image_parser().parse_args(["image", "build", "--variant", "cuda", "--base-image", "b@sha256:1",
                                    "--tag", "t", "--wheelhouse", "w", "--output_base", "out"])
    assert ns.image_handler(ns) == 0
    assert (got["variant"], got["base_image"], got["tag"], got["wheelhouse"]) == ("cuda", "b@sha256:1", "t", "w")
    assert str(got["output_base"]) == "out"
    assert "image_id: " + IMAGE_ID in capsys.readouterr().out


def test_image_build_if_missing_uses_ensure(monkeypatch):
    got = {}
    monkeypatch.setattr(image, "ensure_image", lambda tag, **kw: got.update(kw, tag=tag) or {"image_id": IMAGE_ID})
    monkeypatch.setattr(image, "build_image", lambda **kw: pytest.fail("must not rebuild"))
    ns = image_parser().parse_args(["image", "build", "--if-missing", "--json"])
    assert ns.image_handler(ns) == 0
    assert got["variant"] == "cpu" and got["tag"] is None and got["build_any_tag"] is True


def test_image_push_passes_the_registry(monkeypatch):
    got = {}
    monkeypatch.setattr(image, "push_image", lambda registry, **kw: got.update(kw, registry=registry) or {})
    ns = image_parser().parse_args(["image", "push", "ghcr.io/lab", "--image", "gainakt-harness:cpu-1"])
    assert ns.image_handler(ns) == 0
    assert got["registry"] == "ghcr.io/lab" and got["image"] == "gainakt-harness:cpu-1"


def test_image_command_errors_are_one_line_exit_1(monkeypatch, capsys):
    def fail(**kw):
        raise ContainerError("no Docker engine answers at unix:///var/run/docker.sock: start it")

    monkeypatch.setattr(image, "build_image", fail)
    ns = image_parser().parse_args(["image", "build"])
    assert ns.image_handler(ns) == 1
    err = capsys.readouterr().err
    assert err == "harness image build: error: no Docker engine answers at unix:///var/run/docker.sock: start it\n"


def test_image_variant_choices_are_checked():
    with pytest.raises(SystemExit):
        image_parser().parse_args(["image", "build", "--variant", "rocm"])


# --------------------------------------------------------------------------------------------
# Files: Dockerfile, lock files, Compose, workflow, scripts


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(os.sys.executable).parent))
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def test_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_pins_base_by_digest_and_installs_offline_with_hashes():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", text, re.M)
    assert "--no-index" in text and "--require-hashes" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "org.opencontainers.image.revision" in text and "org.gainakt.harness.lock-sha256" in text


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_lock_files_pin_and_hash_every_package(variant):
    text = (ROOT / "docker" / f"requirements-{variant}.lock").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", text, re.M)
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith(("#", " "))]
    assert len(entries) == len(requirement_lines) > 10
    names = {name for name, _, _ in entries}
    for dependency in ["numpy", "pandas", "scikit-learn", "pyyaml", "docker", "nvidia-ml-py", "rich",
                       "matplotlib", "torch", "setuptools"]:
        assert dependency in names, dependency
    torch = dict((n, v) for n, v, _ in entries)["torch"]
    assert torch == ("2.13.0+cpu" if variant == "cpu" else "2.13.0")


def test_lock_files_cover_every_project_dependency():
    tomllib = pytest.importorskip("tomllib")

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    text = (ROOT / "docker" / "requirements-cpu.lock").read_text().lower()
    for dep in deps:
        name = re.split(r"[<>=!~ \[;]", dep)[0].lower().replace("_", "-")
        assert f"\n{name}==" in text, name


def compose_config(*files: str, env: dict | None = None) -> dict:
    binary = shutil.which("docker")
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    if binary and plugin.exists():
        cmd = [binary, "compose"]
    else:
        cmd = [tool("docker-compose")]
    args = [*cmd, "--project-directory", str(ROOT)]
    for f in files:
        args += ["-f", str(ROOT / f)]
    args += ["--profile", "*", "config", "--format", "json"]
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_services_are_hardened_and_reproduce_waits_for_its_run():
    cfg = compose_config("compose.yaml", env={"SOURCE_EXP": "20260101_000000_gainakt2exp_x"})
    services = cfg["services"]
    assert {"train", "reproduce-run", "reproduce", "verify"} <= set(services)
    for name, svc in services.items():
        assert svc["network_mode"] == "none", name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert svc["user"] == "10001:10001" and svc["read_only"] is True, name
        assert svc["pull_policy"] == "never", name
    assert services["reproduce"]["depends_on"]["reproduce-run"]["condition"] == "service_completed_successfully"
    repro_folder = "/experiments/20260101_000000_gainakt2exp_x_reproduce"
    for name in ("reproduce", "verify"):
        # The reproduce verifier may write only into the reproduction's folder (its verdict).
        assert all(v.get("read_only") for v in services[name]["volumes"] if v["target"] != repro_folder), name
        assert "deploy" not in services[name]
    for name in ("train", "reproduce-run"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["device_ids"] == ["0"] and "count" not in device
        mounts = {v["target"]: v.get("read_only", False) for v in services[name]["volumes"]}
        assert mounts == {"/experiments": False, "/data/data": True}  # /data/$DATA_NAME
    assert services["reproduce-run"]["environment"]["REPRO_EXP"] == "20260101_000000_gainakt2exp_x_reproduce"


def test_compose_cpu_override_removes_the_gpu_reservation():
    services = compose_config("compose.yaml", "compose.cpu.yaml", env={"SOURCE_EXP": "x"})["services"]
    for name in ("train", "reproduce-run"):
        assert "deploy" not in services[name] or not services[name]["deploy"].get("resources"), name
        assert services[name]["environment"]["HARNESS_DEVICES"] == "cpu"
        assert services[name]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_gpu_audit_workflow_matches_the_github_schema():
    out = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                          str(ROOT / ".github" / "workflows" / "gpu-audit.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_gpu_audit_workflow_runs_on_gpu_runners_and_reproduces_deterministically():
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu-audit.yml").read_text())
    job = next(iter(wf["jobs"].values()))
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    text = (ROOT / ".github" / "workflows" / "gpu-audit.yml").read_text()
    assert text.count("--no_amp --torch_deterministic") >= 2
    assert "harness image build" in text and "harness verify" in text and "upload-artifact" in text


@pytest.mark.parametrize("script", ["scripts/docker-prereqs.sh", "docker/build-base.sh", "docker/wheelhouse.sh",
                                    "docker/entrypoint.sh"])
def test_shell_scripts_parse(script):
    shell = "sh" if script.endswith("entrypoint.sh") else "bash"
    out = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_dockerignore_keeps_bulky_and_private_folders_out():
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in patterns  # everything is out unless listed
    assert not any(p.startswith("!") and any(k in p for k in ("experiments", "wheelhouse", "datasets", ".git"))
                   for p in patterns)


def test_unreadable_dataset_is_refused_before_the_container_starts(monkeypatch, tmp_path, exp_dir):
    monkeypatch.setattr(containers, "container_user", lambda: (10001, 10001))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_valid.csv").write_text("x")
    os.chmod(data / "train_valid.csv", 0o600)
    client = FakeClient()
    with pytest.raises(ContainerError, match="train_valid.csv is not readable by the container's user 10001:10001"):
        train(client, exp_dir, data_dir=data)
    assert client.created == []
    os.chmod(data / "train_valid.csv", 0o644)
    assert train(client, exp_dir, data_dir=data) == 0
