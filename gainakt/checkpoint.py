"""Self-describing checkpoints: a checkpoint file alone rebuilds its model (like nanoGPT's ``model_args``).

Every checkpoint ``train_seed`` writes is a plain dict loadable with ``torch.load(..., weights_only=True)``.
Besides the training state it carries:

* ``model_args``: the keyword arguments of :class:`gainakt.model.GainAKT2Exp` (``num_c`` included),
* ``config``: the run's configuration as the JSON dict of config.json, and ``config_md5``.

``load_model(path)`` rebuilds the model from ``model_args`` and loads its weights; checkpoints written
before these keys existed raise :class:`CheckpointError` (the harness then rebuilds the arguments from
the experiment's config.json, see ``harness.folder.checkpoints``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from gainakt.model import GainAKT2Exp

__all__ = ["CheckpointError", "config_record", "load_checkpoint", "load_model", "model_args", "model_from_state"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not describe its model; one line for the user."""


def model_args(model: GainAKT2Exp) -> dict[str, Any]:
    """Return the constructor arguments that rebuild ``model`` (every parameter of ``GainAKT2Exp``).

    Read from the built model itself, so the record cannot disagree with the weights it describes.
    """
    block: Any = model.blocks[0] if len(model.blocks) else None
    derived: dict[str, Any] = {
        "num_c": model.num_c,
        "d_model": model.d_model,
        "n_heads": block.attention.n_heads if block is not None else 1,
        "n_blocks": len(model.blocks),
        "d_ff": model.prediction.fc1.out_features,
        "dropout": model.prediction.p,
        "max_len": model.max_len,
        "use_mastery_head": model.heads_enabled,
        "use_gain_head": model.heads_enabled,
        "gain_scale": model.gain_scale,
        "head_normalization": model.head_normalization,
    }
    out: dict[str, Any] = {}
    for name in list(inspect.signature(GainAKT2Exp.__init__).parameters)[1:]:
        if name in derived:
            out[name] = derived[name]
        elif hasattr(model, name):  # a constructor argument the model keeps under its own name
            out[name] = getattr(model, name)
        else:  # a new constructor argument nobody taught this function: a bug, not a user error
            raise AttributeError(f"model_args: GainAKT2Exp argument {name!r} is not recoverable from the model")
    return out


def config_record(config: Any) -> dict[str, Any]:
    """The configuration as the plain JSON dict of config.json (a typed config's ``to_dict()``)."""
    to_dict = getattr(config, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else dict(config)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict without executing pickled code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input, named in one line
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a gainakt checkpoint (no 'model' weights)")
    return state


def model_from_state(state: dict[str, Any], args: dict[str, Any] | None = None) -> GainAKT2Exp:
    """Rebuild the model of a loaded checkpoint (``args`` overrides a missing ``model_args``), in eval mode."""
    args = args if args is not None else state.get("model_args")
    if not args:
        raise CheckpointError("checkpoint has no model_args (written before checkpoints described their model)")
    model = GainAKT2Exp(**args)
    model.load_state_dict(state["model"])
    return model.eval()


def load_model(path: str | Path) -> GainAKT2Exp:
    """Rebuild the trained model of a checkpoint file from the file alone (CPU, eval mode)."""
    state = load_checkpoint(path)
    try:
        return model_from_state(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
