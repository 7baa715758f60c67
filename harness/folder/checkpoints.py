"""Checkpoint file names (the guide's), safe loading, and the checks a folder's checkpoints must pass.

Checkpoints describe themselves (`model_args`, `config`, `config_md5`; see gainakt/checkpoint.py).
A checkpoint whose `config_md5` differs from its folder's was made by another configuration: resume
and predict refuse it. Checkpoints written before those keys existed still resume, and the model
arguments of such a file are rebuilt from the folder's config.json.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.folder import io
from harness.folder.experiment import ExperimentError

if TYPE_CHECKING:
    from harness.config.schema import RunConfig


def checkpoint_name(kind: str, seed: int, multi_seed: bool) -> str:
    """`model_best.pth`/`model_last.pth` for one seed, `model_<kind>_seed<N>.pth` for several."""
    if kind not in ("best", "last"):
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return f"model_{kind}_seed{seed}.pth" if multi_seed else f"model_{kind}.pth"


def read_checkpoint(path: Path) -> tuple[dict[str, Any], str]:
    """(checkpoint, sha256 of its bytes): one bounded read through the folder I/O layer (no symlink, a
    regular file), loaded without executing pickled code (`weights_only=True`)."""
    import torch

    data = io.read_bytes(path, limit=io.CHECKPOINT_LIMIT)
    return torch.load(BytesIO(data), map_location="cpu", weights_only=True), hashlib.sha256(data).hexdigest()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint loaded through the folder I/O layer (no symlink, a regular file, bounded) without
    executing pickled code (`weights_only=True`)."""
    import torch

    with io.open_binary(path, limit=io.CHECKPOINT_LIMIT) as fh:
        return torch.load(fh, map_location="cpu", weights_only=True)


def check_config_md5(path: Path, state: dict[str, Any], run: RunConfig) -> None:
    """Refuse (one line) a checkpoint recorded under another configuration than the folder's.

    A checkpoint without `config_md5` (older files) is accepted.
    """
    recorded, ours = state.get("config_md5"), run.config_md5
    if recorded is not None and ours is not None and recorded != ours:
        raise ExperimentError(
            f"{path.name} was written by another configuration (config_md5 {recorded}, the folder's is {ours}); "
            "refusing to use it"
        )


def check_resumable(exp_dir: Path, run: RunConfig, seeds: list[int]) -> None:
    """Before a resume: every last checkpoint of `seeds` must belong to the folder's configuration."""
    multi = len(run.seeds.all) > 1
    for seed in seeds:
        path = exp_dir / checkpoint_name("last", seed, multi)
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint fails its own seed, with the reason, in the worker
            continue
        check_config_md5(path, state, run)


def folder_model_args(run: RunConfig) -> dict[str, Any]:
    """The model arguments a folder's config.json implies (for checkpoints without `model_args`)."""
    from gainakt.checkpoint import model_args
    from gainakt.train import build_model

    num_c = run.data_checksum.get("num_concepts")
    if not num_c:
        raise ExperimentError("config.json records no data_checksum.num_concepts: cannot rebuild the model")
    return model_args(build_model(run.train, int(num_c)))


def load_trained_model(exp_dir: Path, run: RunConfig, seed: int, kind: str = "best") -> tuple[Any, dict, str]:
    """(model in eval mode on CPU, checkpoint dict, sha256 of the file read) of one seed's checkpoint,
    checked against the folder."""
    from gainakt.checkpoint import CheckpointError, model_from_state

    path = exp_dir / checkpoint_name(kind, seed, len(run.seeds.all) > 1)
    if not io.exists(path):
        raise ExperimentError(f"{exp_dir.name}: no checkpoint {path.name} for seed {seed}")
    try:
        state, sha256 = read_checkpoint(path)
    except io.FolderIOError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable file in the folder is reported in one line
        raise ExperimentError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if state.get("seed") not in (None, seed):
        raise ExperimentError(f"{path.name} holds seed {state.get('seed')}, not seed {seed}")
    check_config_md5(path, state, run)
    args = state.get("model_args") or folder_model_args(run)
    try:
        return model_from_state(state, args), state, sha256
    except (CheckpointError, RuntimeError) as exc:
        raise ExperimentError(f"{path.name}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
