"""NVML inventory (harness.run.gpu) with and without an NVIDIA driver; NVML itself is faked."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pynvml
import pytest

from harness.run.gpu import describe_gpus, gpu_inventory


class FakeNVML:
    """Enough of pynvml for two GPUs; string getters return bytes like old nvidia-ml-py."""

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus, *, fail_count=False, cuda=12080):
        self._gpus = gpus
        self._fail_count = fail_count
        self._cuda = cuda
        self.calls: list[str] = []

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self):
        return b"580.159.04"

    def nvmlSystemGetCudaDriverVersion_v2(self):
        return self._cuda

    def nvmlDeviceGetCount(self):
        if self._fail_count:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self._gpus[index]

    def nvmlDeviceGetName(self, handle):
        return handle["name"].encode()

    def nvmlDeviceGetUUID(self, handle):
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=handle["mib"] * 1024 * 1024, free=0, used=0)

    def nvmlDeviceGetPciInfo(self, handle):
        if handle.get("no_pci"):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(busId=handle["bus"])

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return (9, 0)


TWO_GPUS = [
    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa", "mib": 81559, "bus": "00000000:19:00.0"},
    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-bbbb", "mib": 81559, "bus": "00000000:3B:00.0", "no_pci": True},
]


def test_inventory_lists_every_gpu_with_name_uuid_memory_and_driver(monkeypatch):
    fake = FakeNVML(TWO_GPUS)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    inv = gpu_inventory()
    assert inv["nvml"] is True and inv["error"] is None
    assert inv["driver"] == "580.159.04"
    assert inv["cuda_driver"] == "12.8"
    assert [g["index"] for g in inv["gpus"]] == [0, 1]
    first = inv["gpus"][0]
    assert first == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa", "memory_total_mib": 81559,
                     "driver": "580.159.04", "pci_bus_id": "00000000:19:00.0", "compute_capability": "9.0"}
    assert inv["gpus"][1]["pci_bus_id"] is None  # an unsupported query does not lose the GPU
    assert fake.calls == ["init", "shutdown"]


def test_inventory_without_driver_library_is_a_normal_cpu_machine(monkeypatch):
    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    inv = gpu_inventory()
    assert inv["nvml"] is False and inv["gpus"] == [] and inv["driver"] is None
    assert inv["error"].startswith("no NVIDIA driver (NVML: ")
    assert "Not Found" in inv["error"]


def test_inventory_with_driver_not_loaded(monkeypatch):
    def not_loaded():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", not_loaded)
    inv = gpu_inventory()
    assert inv["nvml"] is False
    assert inv["error"] == f"no NVIDIA driver (NVML: {pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)})"


def test_inventory_on_this_machine_never_raises():
    inv = gpu_inventory()
    assert set(inv) >= {"driver", "nvml", "gpus", "error"}
    assert isinstance(inv["gpus"], list)
    if not inv["nvml"]:
        assert inv["gpus"] == [] and inv["error"].startswith("no NVIDIA driver (NVML: ")


def test_listing_failure_is_reported_and_nvml_shut_down(monkeypatch):
    fake = FakeNVML(TWO_GPUS, fail_count=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    inv = gpu_inventory()
    assert inv["nvml"] is True and inv["gpus"] == []
    assert inv["error"].startswith("NVML failed while listing GPUs")
    assert fake.calls == ["init", "shutdown"]


def test_describe_gpus_names_index_model_and_uuid():
    assert describe_gpus({"gpus": []}) == "none"
    text = describe_gpus({"gpus": [{"index": 0, "name": "A100", "uuid": "GPU-1"}, {"index": 1, "name": "A100",
                                                                                  "uuid": "GPU-2"}]})
    assert text == "0 A100 (GPU-1), 1 A100 (GPU-2)"


@pytest.mark.parametrize("raw, expected", [(12080, "12.8"), (13000, "13.0"), (11020, "11.2")])
def test_cuda_driver_version_is_major_dot_minor(monkeypatch, raw, expected):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([], cuda=raw))
    assert gpu_inventory()["cuda_driver"] == expected
