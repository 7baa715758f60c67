"""The dataset a config names: the built-in synthetic students or a folder of real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gainakt.data import DataError, KTDataset, load_dataset
from gainakt.simulate import simulate
from harness.errors import HarnessError


class DatasetError(HarnessError, RuntimeError):
    """The dataset cannot be loaded or is not the one the config was made with."""


def load_from_params(data: dict[str, Any], data_dir: str | None) -> KTDataset:
    """Load the dataset described by a config's `data` section (and `data_dir` for real data)."""
    if data["dataset"] == "synthetic":
        return simulate(
            num_students=data["synthetic_students"],
            num_skills=data["synthetic_skills"],
            min_len=data["synthetic_min_len"],
            max_len=data["synthetic_max_len"],
            seed=data["synthetic_seed"],
            forgetting=data["synthetic_forgetting"],
        )
    if not data_dir:
        raise DatasetError(f"dataset {data['dataset']!r} needs --data_dir (only 'synthetic' is built in)")
    if not Path(data_dir).exists():
        raise DatasetError(f"dataset folder not found: {data_dir}")
    try:
        return load_dataset(data_dir, data["data_format"], name=data["dataset"])
    except DataError as exc:
        raise DatasetError(str(exc)) from None


def load_for_config(cfg: dict[str, Any], data_dir: str | None = None) -> KTDataset:
    """The config's dataset, checked against the checksum recorded in the config."""
    ds = load_from_params(cfg["data"], data_dir or cfg.get("paths", {}).get("data_dir"))
    expected = cfg.get("data_checksum", {}).get("sha256")
    if expected and ds.sha256 != expected:
        raise DatasetError(
            f"dataset checksum {ds.sha256[:12]}… differs from the config's {expected[:12]}…: not the same data"
        )
    return ds


def checksum_section(ds: KTDataset) -> dict[str, Any]:
    return {"sha256": ds.sha256, "files": list(ds.source_files), "name": ds.name, "format": ds.fmt,
            "num_concepts": ds.num_c, "students": len(ds.concepts)}
