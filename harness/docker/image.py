"""Build, identify and push the project image (Docker SDK, classic builder, never pulling).

The image for the current code is named ``gainakt-harness:<variant>-<code hash>``, where the
hash covers every file of the build context (the code, the Dockerfile, the lock file) and the
variant, so a missing image for the current code is detected by name and built on demand.
What identifies a built image is written to ``image_record.json`` beside the experiments and
passed into each training container, which copies it into environment.txt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

from harness.docker.containers import ContainerError, docker_client, engine_version, local_image

IMAGE_REPOSITORY = "gainakt-harness"
VARIANTS = ("cpu", "cuda")
# Docker Hub's python:3.11-slim-bookworm, pinned by digest. Builds never pull: `docker pull` it
# once, or build a local base (docker/build-base.sh) and pass --base-image.
DEFAULT_BASE_IMAGE = (
    "python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91"
)
# What docker/build-base.sh makes (debootstrap + docker import) on machines without a registry.
LOCAL_BASE_IMAGE = "gainakt-harness-base:bookworm"
RECORD_NAME = "image_record.json"
RECORD_SCHEMA = 1
BUILDER = "docker-py classic builder (Docker Engine /build API, no BuildKit)"

LABEL_VARIANT = "org.gainakt.harness.variant"
LABEL_LOCK = "org.gainakt.harness.lock-sha256"
LABEL_CODE = "org.gainakt.harness.code-sha256"
LABEL_BUILDER = "org.gainakt.harness.builder"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"
LABEL_BASE_DIGEST = "org.opencontainers.image.base.digest"


def project_root() -> Path:
    """The source checkout (the folder holding the Dockerfile)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "Dockerfile").is_file():
        return here
    cwd = Path.cwd()
    if (cwd / "Dockerfile").is_file():
        return cwd
    raise ContainerError("no Dockerfile found: run image commands from the project's source checkout")


def _variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ContainerError(f"unknown image variant {variant!r}: use cpu or cuda")
    return variant


def lock_path(variant: str = "cpu", root: Path | None = None) -> Path:
    """docker/requirements-<variant>.lock of the checkout."""
    return (root or project_root()) / "docker" / f"requirements-{_variant(variant)}.lock"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_sha256(variant: str = "cpu", root: Path | None = None) -> str:
    """sha256 of the variant's lock file."""
    path = lock_path(variant, root)
    if not path.is_file():
        raise ContainerError(f"lock file {path} is missing")
    return _sha256_file(path)


def context_files(root: Path | None = None) -> list[str]:
    """The files of the build context (relative paths, sorted), as .dockerignore filters them."""
    from docker.utils.build import exclude_paths

    root = root or project_root()
    patterns: list[str] = []
    ignore = root / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    paths = exclude_paths(str(root), patterns, dockerfile="Dockerfile")
    return sorted(p for p in paths if (root / p).is_file())


def code_sha256(variant: str = "cpu", root: Path | None = None) -> str:
    """sha256 over the build context's files (names and contents) and the variant."""
    root = root or project_root()
    digest = hashlib.sha256(f"variant={_variant(variant)}\n".encode())
    for rel in context_files(root):
        digest.update(rel.encode() + b"\0")
        digest.update(_sha256_file(root / rel).encode() + b"\n")
    return digest.hexdigest()


def default_image_tag(variant: str = "cpu", root: Path | None = None) -> str:
    """``gainakt-harness:<variant>-<first 12 hex of code_sha256>`` for the current checkout."""
    return f"{IMAGE_REPOSITORY}:{variant}-{code_sha256(variant, root)[:12]}"


def git_commit(root: Path | None = None) -> str:
    """HEAD's commit, with ``+dirty`` when tracked files differ from it; ``unknown`` without git."""
    from harness.run.environment import git_info

    info = git_info(root or project_root())
    if info["git_commit"].startswith("unknown"):
        return os.environ.get("HARNESS_GIT_COMMIT", "unknown")
    return info["git_commit"] + ("+dirty" if info["git_dirty"] == "true" else "")


def default_wheelhouse(variant: str = "cpu", root: Path | None = None) -> Path:
    """wheelhouse/<variant> of the checkout (filled by docker/wheelhouse.sh)."""
    return (root or project_root()) / "wheelhouse" / _variant(variant)


def check_wheelhouse(wheelhouse: Path, variant: str, root: Path | None = None) -> None:
    """Raise ContainerError unless ``wheelhouse`` was filled from the variant's current lock."""
    stamp = Path(wheelhouse) / ".lock-sha256"
    hint = f"run `docker/wheelhouse.sh {variant} {wheelhouse}`"
    if not Path(wheelhouse).is_dir() or not any(Path(wheelhouse).glob("*.whl")):
        raise ContainerError(f"wheelhouse {wheelhouse} is missing or empty: {hint}")
    if not stamp.is_file() or stamp.read_text().strip() != lock_sha256(variant, root):
        raise ContainerError(f"wheelhouse {wheelhouse} was not made from {lock_path(variant, root).name}: {hint}")


def resolve_base_image(client, base_image: str | None = None) -> str:
    """The base image to build from: the one given, else the pinned default when present
    locally, else the local debootstrap base. Raises ContainerError when none is present."""
    if base_image:
        local_image_or_hint(client, base_image)
        return base_image
    env = os.environ.get("HARNESS_BASE_IMAGE")
    candidates = [env] if env else [DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE]
    for candidate in candidates:
        try:
            local_image(client, candidate)
        except ContainerError:
            continue
        return candidate
    raise ContainerError(
        f"no base image is present locally and builds never pull: `docker pull {candidates[0]}`, "
        f"or build a local one with docker/build-base.sh and pass --base-image {LOCAL_BASE_IMAGE}"
    )


def local_image_or_hint(client, ref: str):
    """The local base image ``ref``; ContainerError with the way to get it when missing."""
    try:
        return local_image(client, ref)
    except ContainerError:
        raise ContainerError(
            f"base image {ref} is not present locally and builds never pull: `docker pull {ref}` or build "
            "a local base with docker/build-base.sh"
        ) from None


def base_image_digest(image, ref: str) -> str:
    """The base image's registry digest when the reference names one (``repo@sha256:...``) or the
    image carries one for its repository; else its local ID (the sha256 of its config)."""
    if "@sha256:" in ref:
        return ref.split("@", 1)[1]
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for repo_digest in image.attrs.get("RepoDigests") or []:
        name, _, digest = repo_digest.partition("@")
        if name == repo or name.endswith("/" + repo):
            return digest
    return image.id


def _add_file(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(source), arcname=arcname)
    # Owner and time do not belong in the context: they would only make it less reproducible.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    with open(source, "rb") as fh:
        tar.addfile(info, fh)


def build_context(root: Path, wheelhouse: Path, file=None):
    """Write the build context tar (context files + the wheelhouse as wheelhouse/) to ``file``
    (a new temporary file by default); returns the file, rewound."""
    fileobj = file if file is not None else tempfile.TemporaryFile()
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for rel in context_files(root):
            _add_file(tar, root / rel, rel)
        for wheel in sorted(Path(wheelhouse).iterdir()):
            if wheel.is_file() and wheel.suffix == ".whl":
                _add_file(tar, wheel, f"wheelhouse/{wheel.name}")
    fileobj.seek(0)
    return fileobj


class _BuildProgress:
    """Shows the build's steps: a rich progress bar on a terminal, else one line per step."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.lines: list[str] = []
        self._console = None
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console

        self._console = Console(stderr=True)
        if self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("[bold]image build"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.description}"),
                                      console=self._console)
            self._progress.__enter__()
            self._task = self._progress.add_task("sending context", total=None)
        else:
            self._console.print("image build: sending the build context", highlight=False)
        return self

    def line(self, text: str) -> None:
        text = text.rstrip()
        if not text:
            return
        self.lines.append(text)
        if not self.enabled or not text.startswith("Step "):
            return
        counter, _, description = text[5:].partition(" : ")
        done, _, total = counter.partition("/")
        if not (done.isdigit() and total.isdigit()):
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=int(done) - 1, total=int(total),
                                  description=description[:60])
        elif self._console is not None:
            self._console.print(f"image build: step {done}/{total}: {description[:100]}", highlight=False,
                                markup=False, soft_wrap=True)

    def finish(self) -> None:
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[0]
            if task.total:
                self._progress.update(self._task, completed=task.total, description="done")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def build_image(*, variant: str = "cpu", base_image: str | None = None, tag: str | None = None,
                wheelhouse: Path | str | None = None, output_base: Path | str | None = None,
                root: Path | None = None, client=None, progress: bool = True,
                network_mode: str = "none", nocache: bool = False) -> dict:
    """Build the image for ``variant`` and return its record (see :func:`image_record`).

    Uses the Docker Engine's classic builder through the SDK's low-level API, with the build
    steps shown as they stream in. Never pulls: the base image must be present locally
    (``pull=False``, and checked first). The build runs without network (``network_mode``),
    installing Python packages from ``wheelhouse`` with hash checking. Tags the result with
    ``tag`` (default: :func:`default_image_tag`; that one also as ``gainakt-harness:<variant>``
    and ``gainakt-harness:latest``), and writes the record to ``<output_base>/image_record.json``
    when ``output_base`` is given.
    """
    from docker.errors import APIError

    root = root or project_root()
    variant = _variant(variant)
    client = client or docker_client(timeout=1800)
    base = resolve_base_image(client, base_image)
    base_obj = local_image(client, base)
    wheelhouse = Path(wheelhouse) if wheelhouse else default_wheelhouse(variant, root)
    check_wheelhouse(wheelhouse, variant, root)
    tag = tag or default_image_tag(variant, root)
    lock_hash = lock_sha256(variant, root)
    code_hash = code_sha256(variant, root)
    buildargs = {
        "VARIANT": variant,
        # FROM the base's ID: the build uses exactly the image whose digest is recorded.
        "BASE_IMAGE": base_obj.id,
        "BASE_IMAGE_DIGEST": base_image_digest(base_obj, base),
        "GIT_COMMIT": git_commit(root),
        "LOCK_SHA256": lock_hash,
        "CODE_SHA256": code_hash,
    }
    started = time.monotonic()
    image_id = None
    with build_context(root, wheelhouse) as context, _BuildProgress(progress) as shown:
        try:
            stream = client.api.build(fileobj=context, custom_context=True, tag=tag, buildargs=buildargs,
                                      labels={LABEL_BUILDER: BUILDER, LABEL_BASE_NAME: base},
                                      pull=False, rm=True, forcerm=True, nocache=nocache, decode=True,
                                      network_mode=network_mode, dockerfile="Dockerfile")
            for chunk in stream:
                if "stream" in chunk:
                    for line in str(chunk["stream"]).splitlines():
                        shown.line(line)
                if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                    last = " | ".join(shown.lines[-3:])
                    raise ContainerError(f"image build failed: {' '.join(str(detail).split())} (last output: {last})")
        except APIError as exc:
            raise ContainerError(f"image build failed: {' '.join(str(exc).split())}") from None
        shown.finish()
    if image_id is None:
        image_id = local_image(client, tag).id
    if tag == default_image_tag(variant, root):
        point_aliases(client, image_id, variant)
    record = image_record(image_id, client=client)
    record["image"] = record["tag"] = tag
    record["build_seconds"] = round(time.monotonic() - started, 1)
    if output_base is not None:
        write_image_record(record, output_base)
    return record


def point_aliases(client, image_id: str, variant: str) -> None:
    """Tag the current code's image ``gainakt-harness:<variant>`` and ``gainakt-harness:latest``
    (the names Compose uses by default)."""
    for alias in (variant, "latest"):
        client.api.tag(image_id, IMAGE_REPOSITORY, alias)


def image_record(image: str | None = None, *, client=None, variant: str = "cpu") -> dict:
    """What identifies an image, as recorded beside the experiments and in environment.txt.

    Keys: image (reference asked for), image_id (local ID: sha256 of the image config),
    repo_digest (registry digest after a push, else None), repo_digests, tags, variant,
    base_image, base_image_digest, lock_sha256, code_sha256, git_commit, builder,
    docker_engine_version, created, size_bytes, record_schema.
    """
    client = client or docker_client()
    ref = image or default_image_tag(variant)
    obj = local_image(client, ref)
    labels = (obj.attrs.get("Config") or {}).get("Labels") or {}
    repo_digests = list(obj.attrs.get("RepoDigests") or [])
    return {
        "record_schema": RECORD_SCHEMA,
        "image": ref,
        "image_id": obj.id,
        "repo_digest": repo_digests[0] if repo_digests else None,
        "repo_digests": repo_digests,
        "tags": list(obj.attrs.get("RepoTags") or []),
        "variant": labels.get(LABEL_VARIANT),
        "base_image": labels.get(LABEL_BASE_NAME),
        "base_image_digest": labels.get(LABEL_BASE_DIGEST),
        "lock_sha256": labels.get(LABEL_LOCK),
        "code_sha256": labels.get(LABEL_CODE),
        "git_commit": labels.get(LABEL_REVISION),
        "builder": labels.get(LABEL_BUILDER, "unknown"),
        "docker_engine_version": engine_version(client),
        "created": obj.attrs.get("Created"),
        "size_bytes": obj.attrs.get("Size"),
    }


def record_path(output_base: Path | str) -> Path:
    """``<output_base>/image_record.json``."""
    return Path(output_base) / RECORD_NAME


def write_image_record(record: dict, output_base: Path | str) -> Path:
    """Write the record atomically to ``<output_base>/image_record.json``; returns the path."""
    path = record_path(output_base)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".image_record.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_image_record(output_base: Path | str) -> dict | None:
    """The record written by the last build or push, or None when there is none."""
    path = record_path(output_base)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def host_variant() -> str:
    """``cuda`` when NVML finds a GPU on this host, else ``cpu``."""
    from harness.run.gpu import gpu_inventory

    return "cuda" if gpu_inventory().get("gpus") else "cpu"


def ensure_image(tag: str | None = None, *, variant: str | None = None, base_image: str | None = None,
                 wheelhouse: Path | str | None = None, output_base: Path | str | None = None,
                 client=None, build_missing: bool = True, progress: bool = True,
                 build_any_tag: bool = False) -> dict:
    """The record of the image to run, building it first when it is the current code's image
    and missing. ``variant`` defaults to $HARNESS_IMAGE_VARIANT, else cuda on a host with an
    NVIDIA GPU and cpu elsewhere. An explicitly named image that is missing is an error (pulls are forbidden),
    unless ``build_any_tag`` (then it is built under that name).
    Writes the record to ``<output_base>/image_record.json`` when ``output_base`` is given."""
    client = client or docker_client()
    variant = variant or os.environ.get("HARNESS_IMAGE_VARIANT") or host_variant()
    default = None
    if tag is None:
        default = default_image_tag(variant)
        tag = default
    try:
        record = image_record(tag, client=client)
    except ContainerError:
        if not build_missing or (tag != default and not build_any_tag):
            raise
        print(f"image {tag} is missing; building it", flush=True)
        return build_image(variant=variant, base_image=base_image, tag=tag, wheelhouse=wheelhouse,
                           output_base=output_base, client=client, progress=progress)
    if tag == default:
        point_aliases(client, record["image_id"], variant)
    if output_base is not None:
        write_image_record(record, output_base)
    return record


def push_image(registry: str, *, image: str | None = None, variant: str = "cpu",
               output_base: Path | str | None = None, client=None, progress: bool = True) -> dict:
    """Push the image to ``registry`` (e.g. ``ghcr.io/lab``) and return its record with
    ``repo_digest`` set to ``<registry>/gainakt-harness@sha256:...`` (the manifest digest the
    registry computed). Writes the record to ``<output_base>/image_record.json`` when given."""
    from docker.errors import APIError

    client = client or docker_client()
    ref = image or default_image_tag(variant)
    obj = local_image(client, ref)
    registry = registry.rstrip("/")
    if not registry:
        raise ContainerError("no registry given: harness image push <registry>, e.g. ghcr.io/your-lab")
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] and not ref.startswith("sha256:") else "latest"
    target = f"{registry}/{IMAGE_REPOSITORY}"
    client.api.tag(obj.id, target, tag)
    digest = None
    try:
        for chunk in client.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                raise ContainerError(f"push of {target}:{tag} failed: {' '.join(str(detail).split())}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = aux["Digest"]
            if progress and chunk.get("status") and not chunk.get("progressDetail"):
                print(f"push: {chunk.get('id', '')} {chunk['status']}".strip(), flush=True)
    except APIError as exc:
        raise ContainerError(f"push of {target}:{tag} failed: {' '.join(str(exc).split())}") from None
    if digest is None:
        raise ContainerError(f"push of {target}:{tag} reported no digest")
    record = image_record(obj.id, client=client)
    record["image"] = ref
    record["pushed_as"] = f"{target}:{tag}"
    record["repo_digest"] = f"{target}@{digest}"
    if record["repo_digest"] not in record["repo_digests"]:
        record["repo_digests"].append(record["repo_digest"])
    if output_base is not None:
        write_image_record(record, output_base)
    return record


__all__ = [
    "BUILDER", "DEFAULT_BASE_IMAGE", "IMAGE_REPOSITORY", "LOCAL_BASE_IMAGE", "RECORD_NAME", "build_image",
    "code_sha256", "default_image_tag", "ensure_image", "image_record", "lock_sha256",
    "push_image", "read_image_record", "write_image_record",
]
