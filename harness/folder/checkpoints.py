"""Checkpoint file names (the guide's) and safe loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def checkpoint_name(kind: str, seed: int, multi_seed: bool) -> str:
    """`model_best.pth`/`model_last.pth` for one seed, `model_<kind>_seed<N>.pth` for several."""
    if kind not in ("best", "last"):
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    return f"model_{kind}_seed{seed}.pth" if multi_seed else f"model_{kind}.pth"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint loaded without executing pickled code (`weights_only=True`)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
