"""The host's NVIDIA GPUs as NVML sees them (nvidia-ml-py), with or without a driver.

NVML numbers GPUs in PCI bus order, the order `nvidia-smi` and the Docker device requests
use; the UUID is the name that NVML, nvidia-smi and CUDA share, so it is what gets recorded.
"""

from __future__ import annotations

from typing import Any


def _text(value: Any) -> str:
    """NVML string getters return bytes in old releases of nvidia-ml-py and str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(pynvml: Any) -> str | None:
    """The CUDA version the driver supports, as "12.8", or None when NVML cannot say."""
    getter = getattr(pynvml, "nvmlSystemGetCudaDriverVersion_v2", None) or getattr(
        pynvml, "nvmlSystemGetCudaDriverVersion", None
    )
    if getter is None:
        return None
    try:
        version = int(getter())
    except pynvml.NVMLError:
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


def _describe_gpu(pynvml: Any, index: int, driver: str) -> dict:
    """One GPU's identity: index, name, UUID, total memory (MiB), driver, PCI bus id, capability."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    gpu = {
        "index": index,
        "name": _text(pynvml.nvmlDeviceGetName(handle)),
        "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
        "memory_total_mib": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
        "driver": driver,
    }
    try:
        gpu["pci_bus_id"] = _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
    except pynvml.NVMLError:
        gpu["pci_bus_id"] = None
    try:
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        gpu["compute_capability"] = f"{major}.{minor}"
    except pynvml.NVMLError:
        gpu["compute_capability"] = None
    return gpu


def gpu_inventory() -> dict:
    """Return the host's GPU inventory from NVML.

    Keys: ``driver`` (version string or None), ``nvml`` (True when NVML answered),
    ``cuda_driver`` (CUDA version the driver supports, or None), ``gpus`` (list of
    ``{index, name, uuid, memory_total_mib, driver, pci_bus_id, compute_capability}``), and
    ``error`` (None, or ``"no NVIDIA driver (NVML: ...)"`` when NVML is unavailable).
    Never raises: a machine without a driver is a normal CPU machine.
    """
    empty: dict[str, Any] = {"driver": None, "nvml": False, "cuda_driver": None, "gpus": []}
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency, but keep the CPU path alive
        return {**empty, "error": f"no NVIDIA driver (NVML: nvidia-ml-py not importable: {exc})"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {**empty, "error": f"no NVIDIA driver (NVML: {exc})"}
    except OSError as exc:  # a broken libnvidia-ml.so can surface as a plain OSError
        return {**empty, "error": f"no NVIDIA driver (NVML: {exc})"}
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = [_describe_gpu(pynvml, i, driver) for i in range(int(pynvml.nvmlDeviceGetCount()))]
        return {"driver": driver, "nvml": True, "cuda_driver": _cuda_version(pynvml), "gpus": gpus,
                "error": None}
    except pynvml.NVMLError as exc:
        return {**empty, "nvml": True, "error": f"NVML failed while listing GPUs: {exc}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def describe_gpus(inventory: dict) -> str:
    """A one-line summary such as ``0 NVIDIA H100 (GPU-1234...), 1 ...`` or ``none``."""
    gpus = inventory.get("gpus") or []
    if not gpus:
        return "none"
    return ", ".join(f"{g['index']} {g['name']} ({g['uuid']})" for g in gpus)
