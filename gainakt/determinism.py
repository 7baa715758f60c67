"""Seeding and deterministic-backend settings, and capture/restore of every RNG state."""

from __future__ import annotations

import os
import random
from typing import Any, cast

import numpy as np
import torch

# cuBLAS needs a fixed workspace for deterministic GEMMs; it is read when the first handle is made.
CUBLAS_WORKSPACE = ":4096:8"


def configure_determinism(enabled: bool) -> dict[str, Any]:
    """Apply (or leave off) PyTorch's deterministic settings; return what is now in effect."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif torch.are_deterministic_algorithms_enabled():
        # Only when needed: the call imports torch._inductor (seconds of start-up).
        torch.use_deterministic_algorithms(False)
    return determinism_record()


def determinism_record() -> dict[str, Any]:
    """The deterministic-backend settings as they are now (for environment.txt and checkpoints)."""
    return {
        "torch_deterministic": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG state needed to continue a run exactly (tensors kept as tensors)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        # As a tensor, so checkpoints load with torch.load(weights_only=True).
        "numpy": _numpy_state_portable(cast(tuple, np.random.get_state(legacy=True))),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["batch_order"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of `rng_state`."""
    random.setstate(_as_python_state(state["python"]))
    np_state = state["numpy"]
    keys = np_state[1].numpy() if isinstance(np_state[1], torch.Tensor) else np.asarray(np_state[1])
    np.random.set_state((np_state[0], keys.astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch_cpu"])
    if torch.cuda.is_available() and state.get("torch_cuda"):
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    if generator is not None and "batch_order" in state:
        generator.set_state(state["batch_order"])


def _numpy_state_portable(s: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = s
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _as_python_state(s: Any) -> tuple:
    # After a round trip through a checkpoint the inner tuple may come back as a list.
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def rng_state_summary(state: dict[str, Any]) -> dict[str, Any]:
    """A JSON-ready digest of an RNG state (for artifacts/rng_seed<N>.json)."""
    import hashlib

    def digest(obj: Any) -> str:
        if isinstance(obj, torch.Tensor):
            data = obj.cpu().numpy().tobytes()
        elif isinstance(obj, np.ndarray):
            data = obj.tobytes()
        else:
            data = repr(obj).encode()
        return hashlib.sha256(data).hexdigest()

    np_state = state["numpy"]
    return {
        "python_sha256": digest(state["python"]),
        "numpy_sha256": digest(np_state[1]),
        "numpy_pos": int(np_state[2]),
        "torch_cpu_sha256": digest(state["torch_cpu"]),
        "torch_cuda_sha256": [digest(s) for s in state.get("torch_cuda", [])],
        "batch_order_sha256": digest(state["batch_order"]) if "batch_order" in state else None,
    }
