"""Training and verifier containers through the Docker SDK, hardened and never pulling.

Both containers run the project image by its ID, as a non-root user, with no network, no new
privileges and every capability dropped. The training container mounts the dataset folder
read-only at /data and the experiment folder read-write at /experiment and gets exactly the
requested GPUs; the verifier mounts everything read-only, gets no GPU and has a read-only root
filesystem. Both are removed afterwards, also on failure and Ctrl-C.

Every failure a user can meet is a :class:`ContainerError` with a one-line message that says
what went wrong and what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

# Inside the container: where the folders are mounted.
DATA_MOUNT = "/data"
EXPERIMENT_MOUNT = "/experiment"
SOURCE_MOUNT = "/source"
# The uid:gid that containers use when the invoking user is root; the image knows it as `harness`.
UNPRIVILEGED_UID = 10001
UNPRIVILEGED_GID = 10001
LABEL_ROLE = "org.gainakt.harness.role"
LABEL_EXPERIMENT = "org.gainakt.harness.folder.experiment"
# Who started a training container: "<host>:<pid>:<process start ticks>" of the launcher, the
# host folder and its original owner, so a later harness call can reap leftovers of dead launchers.
LABEL_LAUNCHER = "org.gainakt.harness.launcher"
LABEL_FOLDER = "org.gainakt.harness.folder.path"
LABEL_OWNER = "org.gainakt.harness.folder.owner"
# Default limits of a training container (configurable with --container_memory/--container_pids).
DEFAULT_PIDS_LIMIT = 4096
SOCKET_HINT = "start the engine (scripts/docker-prereqs.sh on Debian) or use --runtime local"
# Seconds a container gets to stop after SIGINT (Ctrl-C) before it is killed.
STOP_GRACE_S = 10


class ContainerError(HarnessError, RuntimeError):
    """A Docker problem the user can act on; the message is one line. ``exit_code`` is the
    container's exit status where one exists (137 for an OOM kill)."""

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------------
# Engine


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _explain_engine_error(exc: BaseException) -> ContainerError:
    """Turn docker-py's connection errors into one of the two messages users can act on."""
    text = str(exc)
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, PermissionError) for e in chain) or "Permission denied" in text:
        return ContainerError(
            f"permission denied on the Docker socket ({_docker_host()}): add your user to the "
            "'docker' group (then log in again), run as root, or use --runtime local"
        )
    return ContainerError(f"no Docker engine answers at {_docker_host()}: {SOCKET_HINT}")


def docker_client(timeout: int = 120):
    """Return a connected ``docker.DockerClient`` (from the environment, like the CLI).

    Raises ContainerError when the SDK is missing, no engine answers, or the socket refuses us.
    """
    try:
        from docker.errors import DockerException

        import docker
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ContainerError(f"the Docker SDK for Python is not installed ({exc}): pip install docker") from exc
    try:
        client = docker.from_env(timeout=timeout)  # type: ignore[attr-defined]
        client.ping()
    except DockerException as exc:
        raise _explain_engine_error(exc) from None
    except OSError as exc:
        raise _explain_engine_error(exc) from None
    return client


def engine_available() -> bool:
    """True when a Docker engine answers (used by ``--runtime auto``)."""
    try:
        docker_client(timeout=10).close()
    except ContainerError:
        return False
    return True


def engine_version(client) -> str:
    """The engine's version string, e.g. ``20.10.24+dfsg1``."""
    try:
        return str(client.version().get("Version", "unknown"))
    except Exception:  # noqa: BLE001 - a version is informative only
        return "unknown"


def local_image(client, image: str):
    """The local image ``image`` (tag or ID); never pulls.

    Raises ContainerError naming how to get the image when it is not present.
    """
    from docker.errors import APIError, ImageNotFound

    try:
        return client.images.get(image)
    except ImageNotFound:
        raise ContainerError(
            f"image {image} is not present locally and pulls are forbidden: build it with "
            "`harness image build` (or load it with `docker load`)"
        ) from None
    except APIError as exc:
        raise ContainerError(f"the Docker engine could not look up image {image}: {_api_text(exc)}") from None


def _api_text(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# GPUs


def gpu_device_request(devices: list[int]):
    """Map host GPU indices to one Docker device request.

    Returns ``(DeviceRequest(device_ids=[...], capabilities=[["gpu"]]), inside_indices)``: the
    request names exactly the listed GPUs (never a count, which would mean "all" or "any"), and
    the NVIDIA runtime renumbers them from 0 inside the container, in the order given, so
    host ``[1, 3]`` becomes inside ``[0, 1]``.
    """
    from docker.types import DeviceRequest

    if not devices:
        raise ContainerError("no GPU index given for a GPU container: list GPU indices or use --devices cpu")
    bad = [d for d in devices if isinstance(d, bool) or not isinstance(d, int) or d < 0]
    if bad:
        raise ContainerError(f"invalid GPU index {bad[0]!r}: GPU indices are whole numbers >= 0")
    if len(set(devices)) != len(devices):
        raise ContainerError(f"GPU indices repeat in {devices}: name each GPU once")
    request = DeviceRequest(device_ids=[str(d) for d in devices], capabilities=[["gpu"]])
    return request, list(range(len(devices)))


def check_devices(devices: list[int], inventory: dict | None = None) -> dict:
    """Check that every requested GPU index exists on this host (NVML); returns the inventory.

    Raises ContainerError when the host has no NVIDIA driver or an index is out of range.
    """
    from harness.run.gpu import describe_gpus, gpu_inventory

    inventory = gpu_inventory() if inventory is None else inventory
    if not inventory.get("nvml"):
        raise ContainerError(
            f"GPU {' '.join(map(str, devices))} requested but this host has "
            f"{inventory.get('error') or 'no NVIDIA driver'}: use --devices cpu or --runtime local"
        )
    count = len(inventory.get("gpus") or [])
    missing = [d for d in devices if d >= count]
    if missing:
        raise ContainerError(
            f"GPU index {missing[0]} does not exist on this host (GPUs: {describe_gpus(inventory)}): "
            "pick indices from that list or use --devices cpu"
        )
    return inventory


def _is_missing_gpu_runtime(exc: BaseException) -> bool:
    text = _api_text(exc).lower()
    return ("could not select device driver" in text or "unknown or invalid runtime name: nvidia" in text
            or "nvidia-container-cli" in text)


def _gpu_runtime_error(exc: BaseException) -> ContainerError:
    return ContainerError(
        "GPUs were requested but the Docker engine has no NVIDIA runtime (install the NVIDIA Container "
        f"Toolkit and restart dockerd; engine said: {_api_text(exc)}): use --devices cpu or --runtime local"
    )


# --------------------------------------------------------------------------------------------
# Users and folder ownership


def container_user() -> tuple[int, int]:
    """The uid and gid containers run as: the invoking user's, or 10001:10001 for root."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        return UNPRIVILEGED_UID, UNPRIVILEGED_GID
    return uid, gid


@contextlib.contextmanager
def lend_folder(path: Path, uid: int, gid: int) -> Iterator[bool]:
    """Make ``path`` (recursively) owned by ``uid:gid`` for the duration, then restore.

    Used when the invoker is root: the container's unprivileged user gets write access to
    this one folder and nowhere else. Entries that existed get their owner back; entries the
    container created get the folder's original owner. Yields False (and changes nothing) when
    no change is needed or the filesystem refuses it.
    """
    path = Path(path)
    if os.getuid() != 0:
        yield False
        return
    original: dict[str, tuple[int, int]] = {}
    try:
        for entry in _walk(path):
            st = os.lstat(entry)
            original[entry] = (st.st_uid, st.st_gid)
        for entry in original:
            os.lchown(entry, uid, gid)
    except OSError:
        _restore(path, original)
        yield False
        return
    try:
        yield True
    finally:
        _restore(path, original)


def _walk(path: Path) -> Iterator[str]:
    yield str(path)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            yield os.path.join(dirpath, name)


def _restore(path: Path, original: dict[str, tuple[int, int]]) -> None:
    owner = original.get(str(path))
    if owner is None:
        return
    for entry in _walk(path):
        uid, gid = original.get(entry, owner)
        with contextlib.suppress(OSError):
            os.lchown(entry, uid, gid)


def check_readable(path: Path, uid: int, gid: int) -> None:
    """Raise ContainerError when ``uid:gid`` cannot read every file under ``path`` (the dataset is
    mounted read-only and never re-owned, so its permission bits must let the container in)."""
    import stat

    def readable(st: os.stat_result, is_dir: bool) -> bool:
        need = (stat.S_IROTH | stat.S_IXOTH) if is_dir else stat.S_IROTH
        if st.st_uid == uid:
            need <<= 6
        elif st.st_gid == gid:
            need <<= 3
        return st.st_mode & need == need

    entries = list(_walk(path)) if path.is_dir() else [str(path)]
    for entry in entries:
        st = os.stat(entry)
        if not readable(st, os.path.isdir(entry)):
            raise ContainerError(
                f"dataset path {entry} is not readable by the container's user {uid}:{gid}: "
                f"make it readable (chmod -R o+rX {path}) or run as that file's owner")


# --------------------------------------------------------------------------------------------
# Container settings (pure functions: the unit tests check them without an engine)


def _bind(source: Path, target: str, *, read_only: bool):
    from docker.types import Mount

    return Mount(target=target, source=str(Path(source).resolve()), type="bind", read_only=read_only)


def _hardening(uid: int, gid: int) -> dict[str, Any]:
    return {
        "user": f"{uid}:{gid}",
        "network_mode": "none",
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "init": True,  # tini as PID 1 forwards signals and reaps children
    }


def training_container_config(*, image_id: str, exp_dir: Path, data_dir: Path | None,
                              devices: list[int] | None, command: list[str], env: dict[str, str],
                              uid: int, gid: int, mem_limit: str | None = None,
                              pids_limit: int = DEFAULT_PIDS_LIMIT) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for a training container."""
    mounts = [_bind(exp_dir, EXPERIMENT_MOUNT, read_only=False)]
    if data_dir is not None:
        mounts.append(_bind(data_dir, DATA_MOUNT, read_only=True))
    # HARNESS_LOCK_DIR: the experiment's lock file normally sits beside the folder, which inside
    # the container is the read-only root; /tmp is the container's own writable place.
    environment = {"HARNESS_RUNTIME": "docker", **env, "HOME": "/tmp", "HARNESS_LOCK_DIR": "/tmp"}
    config: dict[str, Any] = {
        "image": image_id,
        "command": list(command),
        **_hardening(uid, gid),
        "mounts": mounts,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=4g"},
        "shm_size": "1g",  # the default 64 MB starves PyTorch's shared-memory tensors
        "working_dir": EXPERIMENT_MOUNT,
        "labels": {LABEL_ROLE: "train", LABEL_EXPERIMENT: Path(exp_dir).name, **launcher_labels(exp_dir)},
        "pids_limit": int(pids_limit),
        "detach": True,
    }
    if devices:
        request, inside = gpu_device_request(list(devices))
        config["device_requests"] = [request]
        environment["HARNESS_DEVICE_MAP"] = json.dumps({"host": list(devices), "inside": inside})
    else:
        # Even under an engine whose default runtime is nvidia, a CPU container sees no GPU.
        environment["NVIDIA_VISIBLE_DEVICES"] = "void"
        environment["CUDA_VISIBLE_DEVICES"] = ""
    config["environment"] = environment
    if mem_limit:
        config["mem_limit"] = mem_limit
        config["memswap_limit"] = mem_limit
    return config


def process_identity(pid: int) -> str | None:
    """`<host>:<pid>:<start ticks>` of a live process (the start time tells a reused pid apart)."""
    import socket

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{socket.gethostname()}:{pid}:{fields[19]}"


def launcher_labels(exp_dir: Path) -> dict[str, str]:
    """Labels naming this launcher, the host folder and its owner (for `reap_orphans`)."""
    st = os.stat(exp_dir)
    return {LABEL_LAUNCHER: process_identity(os.getpid()) or f"unknown:{os.getpid()}:0",
            LABEL_FOLDER: str(Path(exp_dir).resolve()), LABEL_OWNER: f"{st.st_uid}:{st.st_gid}"}


def _launcher_dead(identity: str) -> bool:
    import socket

    host, _, rest = identity.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's launcher: not ours to judge
    return process_identity(int(pid)) != identity


def reap_orphans(client) -> list[str]:
    """Stop and remove training containers whose launcher on this host is gone (SIGKILLed), and
    give their folders back to the original owner. Returns the folders handled."""
    from docker.errors import DockerException

    reaped: list[str] = []
    try:
        found = client.containers.list(all=True, filters={"label": [f"{LABEL_ROLE}=train", LABEL_LAUNCHER]})
    except DockerException:
        return reaped
    for container in found:
        labels = container.labels or {}
        if not _launcher_dead(labels.get(LABEL_LAUNCHER, "")):
            continue
        _stop_and_remove(container, signum=int(signal.SIGINT))
        folder, owner = labels.get(LABEL_FOLDER), labels.get(LABEL_OWNER, "")
        if folder and os.getuid() == 0 and Path(folder).is_dir() and ":" in owner:
            uid, gid = (int(x) for x in owner.split(":", 1))
            for entry in _walk(Path(folder)):
                with contextlib.suppress(OSError):
                    os.lchown(entry, uid, gid)
        reaped.append(folder or container.name)
    return reaped


def memory_limit(value: str | None) -> str | None:
    """--container_memory: "auto" (90% of this host's memory), "none", or a Docker size ("8g")."""
    if value in (None, "", "none"):
        return None
    if value == "auto":
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return f"{int(total * 0.9) // (1 << 20)}m"
    import re

    if not re.fullmatch(r"\d+[bkmg]?", value.lower()):
        raise ContainerError(f"--container_memory {value!r}: use auto, none or a size like 8g or 512m")
    return value.lower()


def verifier_command(against: Path | None, *, auc_tolerance: float | None = None,
                     corr_tolerance: float | None = None) -> list[str]:
    """``harness verify /experiment [--against /source [--auc_tolerance A] [--corr_tolerance C]] --json``."""
    command = ["harness", "verify", EXPERIMENT_MOUNT]
    if against is not None:
        command += ["--against", SOURCE_MOUNT]
        for flag, value in (("--auc_tolerance", auc_tolerance), ("--corr_tolerance", corr_tolerance)):
            if value is not None:
                command += [flag, repr(float(value))]
    return command + ["--json"]


def verifier_container_config(*, image_id: str, exp_dir: Path, against: Path | None,
                              uid: int, gid: int, auc_tolerance: float | None = None,
                              corr_tolerance: float | None = None) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` for a verifier container."""
    mounts = [_bind(exp_dir, EXPERIMENT_MOUNT, read_only=True)]
    if against is not None:
        mounts.append(_bind(against, SOURCE_MOUNT, read_only=True))
    return {
        "image": image_id,
        "command": verifier_command(against, auc_tolerance=auc_tolerance, corr_tolerance=corr_tolerance),
        **_hardening(uid, gid),
        "mounts": mounts,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,nodev,size=256m"},
        "environment": {"HARNESS_RUNTIME": "docker", "HOME": "/tmp", "NVIDIA_VISIBLE_DEVICES": "void",
                        "CUDA_VISIBLE_DEVICES": ""},
        "working_dir": "/tmp",
        "labels": {LABEL_ROLE: "verify", LABEL_EXPERIMENT: Path(exp_dir).name},
        "detach": True,
    }


# --------------------------------------------------------------------------------------------
# Running


class _LineSplitter:
    """Cuts a byte stream into text lines (UTF-8, invalid bytes replaced) for ``on_line``."""

    def __init__(self, on_line: Callable[[str], None]):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._on_line = on_line

    def feed(self, chunk: bytes) -> None:
        self._buffer += self._decoder.decode(chunk)
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._on_line(line.rstrip("\r"))

    def close(self) -> None:
        self._buffer += self._decoder.decode(b"", final=True)
        if self._buffer:
            self._on_line(self._buffer.rstrip("\r"))
            self._buffer = ""


def _create(client, config: dict[str, Any], gpus: bool):
    from docker.errors import APIError, ImageNotFound

    try:
        return client.containers.create(**config)
    except ImageNotFound:
        raise ContainerError(
            f"image {config['image']} is not present locally and pulls are forbidden: build it with "
            "`harness image build`"
        ) from None
    except APIError as exc:
        if gpus and _is_missing_gpu_runtime(exc):
            raise _gpu_runtime_error(exc) from None
        raise ContainerError(f"the Docker engine refused to create the container: {_api_text(exc)}") from None


def _start(container, gpus: bool) -> None:
    from docker.errors import APIError

    try:
        container.start()
    except APIError as exc:
        if gpus and _is_missing_gpu_runtime(exc):
            raise _gpu_runtime_error(exc) from None
        raise ContainerError(f"the Docker engine could not start the container: {_api_text(exc)}") from None


def _stop_and_remove(container, *, signum: int | None) -> None:
    """Stop a container that may still run and remove it; never raises. `signum` (the signal that
    interrupted the launcher: SIGINT for Ctrl-C, SIGTERM) goes to the container first, so training
    inside closes its files and records that very signal; None (a failure) kills it at once."""
    from docker.errors import DockerException

    with contextlib.suppress(DockerException, OSError):
        container.reload()
        if container.status in ("running", "restarting", "paused"):
            if signum is not None:
                container.kill(signal=int(signum))
                with contextlib.suppress(Exception):
                    container.wait(timeout=STOP_GRACE_S)
            container.reload()
            if container.status in ("running", "restarting", "paused"):
                container.kill()
    with contextlib.suppress(DockerException, OSError):
        container.remove(force=True, v=True)


def _oom_killed(container) -> bool:
    with contextlib.suppress(Exception):
        container.reload()
        return bool(container.attrs.get("State", {}).get("OOMKilled"))
    return False


def run_training_container(*, image: str, exp_dir: Path, data_dir: Path | None, devices: list[int] | None,
                           command: list[str], env: dict[str, str], on_line: Callable[[str], None],
                           mem_limit: str | None = None, client=None,
                           on_start: Callable[[dict], None] | None = None,
                           pids_limit: int = DEFAULT_PIDS_LIMIT) -> int:
    """Run one training container to completion and return its exit code.

    ``image`` (tag or ID) must exist locally; the container runs by image ID. ``devices`` are
    host GPU indices (None or [] for CPU). Output lines go to ``on_line`` as they appear.
    ``on_start`` receives the container's inspect data once it runs (for audit records).
    The container is removed in every case; the launcher's interrupting signal (SIGINT for Ctrl-C,
    SIGTERM) is sent to it first, then it is killed.
    Raises ContainerError for engine problems, a missing image or GPU runtime, an unknown GPU
    index, and for an OOM kill (exit_code 137).
    """
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ContainerError(f"experiment folder {exp_dir} does not exist")
    if data_dir is not None and not Path(data_dir).exists():
        raise ContainerError(f"dataset folder {data_dir} does not exist")
    gpus = bool(devices)
    if gpus:
        gpu_device_request(list(devices or []))  # validate before any engine call
        check_devices(list(devices or []))
    client = client or docker_client()
    image_id = local_image(client, image).id
    uid, gid = container_user()
    if data_dir is not None:
        check_readable(Path(data_dir), uid, gid)
    config = training_container_config(image_id=image_id, exp_dir=exp_dir, data_dir=data_dir, devices=devices,
                                       command=command, env=env, uid=uid, gid=gid, mem_limit=mem_limit,
                                       pids_limit=pids_limit)
    with lend_folder(exp_dir, uid, gid):
        container = _create(client, config, gpus)
        interrupted: int | None = None
        try:
            _start(container, gpus)
            if on_start is not None:
                container.reload()
                on_start(container.attrs)
            splitter = _LineSplitter(on_line)
            received = 0
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                received += len(chunk)
                splitter.feed(chunk)
            code = int(container.wait().get("StatusCode", 1))
            # The follow stream can close before the engine has logged the container's last
            # bytes (an unterminated last line, typically): take what is missing from the log.
            with contextlib.suppress(Exception):
                everything = container.logs(stdout=True, stderr=True)
                if isinstance(everything, bytes) and len(everything) > received:
                    splitter.feed(everything[received:])
            splitter.close()
            if code == 137 and _oom_killed(container):
                raise ContainerError(
                    "the training container was killed by the out-of-memory killer (exit 137): "
                    "give the container more memory or lower --batch_size", exit_code=137)
            return code
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into harness.run.launcher.Interrupted
            interrupted = int(getattr(exc, "signum", signal.SIGINT))
            raise
        finally:
            _stop_and_remove(container, signum=interrupted)


def parse_verdict(stdout: str) -> dict | None:
    """The verifier's JSON object from its standard output (the whole text, else the last
    line that is a JSON object), or None when there is none."""
    text = stdout.strip()
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    # A multi-line object printed after other lines: try each line that opens an object.
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads("\n".join(lines[i:]))
                if isinstance(value, dict):
                    return value
    return None


def run_verifier_container(*, image: str, exp_dir: Path, against: Path | None, client=None,
                           on_start: Callable[[dict], None] | None = None, auc_tolerance: float | None = None,
                           corr_tolerance: float | None = None) -> tuple[int, dict]:
    """Run ``harness verify`` in a locked-down container; returns ``(exit_code, verdict)``.

    The verdict is the verifier's JSON object ``{passed, checks: [{name, passed, reason}]}``.
    When the verifier prints no JSON, the verdict says so (``passed`` False) and the exit
    code is non-zero. The container is removed in every case.
    """
    exp_dir = Path(exp_dir)
    for folder in [exp_dir] + ([Path(against)] if against is not None else []):
        if not folder.is_dir():
            raise ContainerError(f"experiment folder {folder} does not exist")
    client = client or docker_client()
    image_id = local_image(client, image).id
    uid, gid = container_user()
    config = verifier_container_config(image_id=image_id, exp_dir=exp_dir, against=against, uid=uid, gid=gid,
                                       auc_tolerance=auc_tolerance, corr_tolerance=corr_tolerance)
    with contextlib.ExitStack() as stack:
        # The unprivileged uid must be able to read files that root wrote with mode 0600.
        stack.enter_context(lend_folder(exp_dir, uid, gid))
        if against is not None and Path(against).resolve() != exp_dir.resolve():
            stack.enter_context(lend_folder(Path(against), uid, gid))
        container = _create(client, config, gpus=False)
        interrupted: int | None = None
        try:
            _start(container, gpus=False)
            if on_start is not None:
                container.reload()
                on_start(container.attrs)
            code = int(container.wait().get("StatusCode", 1))
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into harness.run.launcher.Interrupted
            interrupted = int(getattr(exc, "signum", signal.SIGINT))
            raise
        finally:
            _stop_and_remove(container, signum=interrupted)
    verdict = parse_verdict(stdout)
    if verdict is None:
        tail = " ".join((stderr.strip().splitlines() or ["(no output)"])[-3:])
        reason = f"the verifier printed no JSON verdict (exit {code}): {tail}"
        return (code or 1), {"passed": False, "checks": [{"name": "verifier", "passed": False, "reason": reason}]}
    return code, verdict
