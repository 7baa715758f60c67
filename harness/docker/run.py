"""`harness run --runtime docker`: train in the pinned image, then verify in a separate container.

`prepare_docker` runs before the folder exists: an engine that answers, the image (built when it is
the current code's and missing), a dataset the container's user can read; a failure there leaves
no folder. Then the host creates the folder and writes config.json. The training container runs
`harness execute /experiment` (a container that cannot even start leaves the folder recorded as
crashed, with the engine's reason in run_status.json); the verifier container runs `harness verify`
on read-only mounts and its JSON verdict is stored as verification_report.json (recorded in the
manifest). For a reproduction the verifier also compares the new folder with its source (hashes
and tolerances, `verify --against`), and its comparison is stored as reproduction_report.json: the
host computes none of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.docker.containers import DEFAULT_PIDS_LIMIT, memory_limit
from harness.folder.experiment import FolderLock, atomic_write_json, check_before_write, record_in_manifest
from harness.run.environment import git_info
from harness.run.launcher import interrupt_signal, signals_as_interrupts
from harness.run.runlog import RunLog


def container_env(cfg: dict, record: dict[str, Any], host_devices: list[str]) -> dict[str, str]:
    """What the training container must know about the host (it has no git and sees renumbered GPUs)."""
    from harness.run.gpu import gpu_inventory

    git = git_info()
    inv = gpu_inventory()
    gpus = [dict(g) for g in inv.get("gpus", []) if str(g["index"]) in host_devices]
    inside = ["cpu"] if host_devices == ["cpu"] else [str(i) for i in range(len(host_devices))]
    return {
        "HARNESS_RUNTIME": "docker",
        "HARNESS_IMAGE_ID": str(record.get("image_id")),
        "HARNESS_IMAGE_RECORD": json.dumps(record, sort_keys=True),
        "HARNESS_HOST_GPUS": json.dumps(gpus, sort_keys=True),
        "HARNESS_INSIDE_DEVICES": json.dumps(inside),
        "HARNESS_GIT_COMMIT": git["git_commit"],
        "HARNESS_GIT_BRANCH": git["git_branch"],
        "HARNESS_GIT_DIRTY": git["git_dirty"],
    }


def prepare_docker(image: str | None, output_base: Path, data_dir: str | None) -> dict[str, Any]:
    """The image record of a Docker run, once everything checkable before its folder exists holds:
    the engine answers (containers of SIGKILLed launchers are reaped), the image exists or is built
    (a missing wheelhouse, a failed build: ContainerError, one line), and the container's user can
    read the dataset."""
    from harness.docker.containers import check_readable, container_user, docker_client, reap_orphans
    from harness.docker.image import ensure_image

    reap_orphans(docker_client())  # leftovers of launchers that were SIGKILLed
    record = ensure_image(tag=image, output_base=output_base)
    if data_dir:
        check_readable(Path(data_dir).resolve(), *container_user())
    return record


def run_in_docker(exp_dir: Path, cfg: dict, ns: argparse.Namespace, record: dict[str, Any], *,
                  against: Path | None = None) -> int:
    """Train `exp_dir` in a container, verify it in another (against `against`, the source of a
    reproduction, when given); exit code of the worse of the two."""
    from harness.config.schema import RunConfig
    from harness.docker.containers import ContainerError, run_training_container

    run = RunConfig.from_dict(cfg)
    log = RunLog(exp_dir / "stdout.log")
    image = record.get("tag") or record["image_id"]
    log.info(f"image {image} ({record['image_id']})")
    host_devices = run.devices
    devices = None if host_devices == ["cpu"] else [int(d) for d in host_devices]
    data_dir = Path(ns.data_dir).resolve() if getattr(ns, "data_dir", None) else None
    command = ["harness", "execute", "/experiment"] + (["--data_dir", "/data"] if data_dir else [])
    mem_limit = memory_limit(getattr(ns, "container_memory", None) or "auto")
    pids_limit = int(getattr(ns, "container_pids", None) or DEFAULT_PIDS_LIMIT)
    log.info(f"training container: {' '.join(command)} (devices {host_devices}; limits: memory "
             f"{mem_limit or 'none'}, pids {pids_limit}; /tmp noexec)")
    log.close()
    interrupted: str | None = None
    with FolderLock(exp_dir, reentrant=True):  # no other run may write the folder while the container does
        try:
            with signals_as_interrupts():  # SIGTERM of this launcher stops and removes the container
                code = run_training_container(image=image, exp_dir=exp_dir, data_dir=data_dir, devices=devices,
                                              command=command, env=container_env(cfg, record, host_devices),
                                              on_line=lambda line: print(line, flush=True),
                                              mem_limit=mem_limit, pids_limit=pids_limit)
        except KeyboardInterrupt as exc:
            interrupted, code = interrupt_signal(exc)
        except ContainerError as exc:
            if exc.exit_code is None and not (exp_dir / "run_status.json").exists():
                record_failed_start(exp_dir, str(exc))  # the container never ran: say why, in the folder
            raise
        # The container controlled the folder until now: never write through what it left there.
        check_before_write(exp_dir, "record the training container's exit", require_manifest=False)
    log = RunLog(exp_dir / "stdout.log")
    log.info(f"training container exited with code {code}"
             + (f" (the launcher was interrupted by {interrupted}; resume with harness resume)" if interrupted else ""))
    log.close()
    if interrupted:
        if (exp_dir / "MANIFEST.sha256").is_file():
            record_in_manifest(exp_dir, ["stdout.log"])
        return code
    if (exp_dir / "MANIFEST.sha256").is_file():
        record_in_manifest(exp_dir, ["stdout.log"])  # the host's lines came after the manifest
    if getattr(ns, "no_verify", False) and against is None:
        return code
    v_code, verdict = run_verifier_container(image, exp_dir, against, ns)
    return max(code, v_code)


def record_failed_start(exp_dir: Path, reason: str) -> None:
    """A training container that never started: stdout.log records it as every seed's outcome (primary
    evidence), and the folder is finalised from that, so results.json, run_status.json and `harness verify`
    name the reason; `harness resume` can train the folder later."""
    from harness.config.schema import RunConfig
    from harness.folder.derive import SESSION_END, SESSION_MARK, finalise, outcome_line
    from harness.folder.experiment import read_json

    why = f"the training container did not start: {' '.join(reason.split())}"[:300]
    log = RunLog(exp_dir / "stdout.log")
    log.info(f"{SESSION_MARK}run")
    log.error(why)
    for seed in RunConfig.from_dict(read_json(exp_dir / "config.json")).seeds.all:
        log.info(outcome_line(seed, "not_run", why))
    log.info(SESSION_END)
    log.close()
    finalise(exp_dir)


def run_verifier_container(image: str, exp_dir: Path, against: Path | None, ns: Any) -> tuple[int, dict]:
    """Verify `exp_dir` in the verifier container and store its verdict as verification_report.json;
    with `against` (a reproduction's source) the container also compares the two folders (hashes
    and tolerances) and its comparison is stored as reproduction_report.json. Both are recorded in
    the folder's manifest. Returns (the verifier's exit code, its verdict)."""
    from harness.audit.compare import REPORT_NAME
    from harness.docker import containers

    v_code, verdict = containers.run_verifier_container(
        image=image, exp_dir=exp_dir, against=against, auc_tolerance=getattr(ns, "auc_tolerance", None),
        corr_tolerance=getattr(ns, "corr_tolerance", None))
    written = ["verification_report.json", "stdout.log"]
    with FolderLock(exp_dir, reentrant=True):
        atomic_write_json(exp_dir / "verification_report.json", verdict)
        comparison = verdict.get("comparison")
        if against is not None and isinstance(comparison, dict):
            atomic_write_json(exp_dir / REPORT_NAME, host_view(comparison, Path(against), exp_dir))
            written.append(REPORT_NAME)
        log = RunLog(exp_dir / "stdout.log")
        log.info(f"verifier container: {'PASSED' if verdict.get('passed') else 'FAILED'} (exit {v_code})"
                 + (f"; reproduction verdict {comparison.get('verdict')}" if isinstance(comparison, dict) else ""))
        for check in verdict.get("checks", []):
            if not check.get("passed"):
                log.error(f"  {check.get('name')}: {check.get('reason')}")
        log.close()
        record_in_manifest(exp_dir, written)
    return v_code, verdict


def host_view(comparison: dict[str, Any], source: Path, target: Path) -> dict[str, Any]:
    """The verifier container's comparison with the folders named as the host knows them (inside,
    they are mounted at /source and /experiment)."""
    out = dict(comparison)
    out.update(source=source.name, target=target.name, source_path=str(source.resolve()),
               target_path=str(target.resolve()), mode="reproduce", source_experiment=source.name,
               compared_in="verifier container (harness verify --against)")
    return out


def reap_before_writing(exp_dir: Path) -> None:
    """Before a host command writes a folder a container trained in: reap containers of dead
    launchers, and refuse while a training container for this folder still runs."""
    from harness.docker.containers import LABEL_FOLDER, ContainerError, docker_client, reap_orphans
    from harness.folder.experiment import ExperimentError

    try:
        client = docker_client(timeout=10)
    except ContainerError:
        return  # no engine: no container can be writing
    reap_orphans(client)
    live = client.containers.list(filters={"label": f"{LABEL_FOLDER}={Path(exp_dir).resolve()}"})
    if live:
        raise ExperimentError(f"training container {live[0].name} is still writing {exp_dir}; refusing to write it too")
