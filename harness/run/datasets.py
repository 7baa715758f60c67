"""The dataset a config names: the built-in synthetic students or a folder of real data.

Rules that keep the data selection from being misread:

- ``--data_dir`` without a dataset name takes the name of the folder (or the file's stem); the
  simulator is never trained while a data folder is given.
- A dataset name given with ``--data_dir`` must match the data read: the folder name (or file
  stem) itself, or its prefix up to a ``_``, ``-`` or ``.`` (``assist2015`` for ``assist2015_pykt``);
  ``synthetic`` is refused there.
- A lone three-line file has no test split: it trains only with ``--single_file_split``.
- A published single train/valid split (DKVMN's train1/valid1) validates on fold 0 only.
- What was read (format, files, split rule, number of concepts and its source) is recorded in the
  config's ``data_checksum`` section and printed at the start of a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gainakt.data import DataError, KTDataset, load_dataset
from gainakt.data.splits import SPLITS
from gainakt.simulate import simulate
from harness.config.schema import RunConfig
from harness.errors import HarnessError

SYNTHETIC = "synthetic"


class DatasetError(HarnessError, RuntimeError):
    """The dataset cannot be loaded or is not the one the config was made with."""


def name_of_data(data_dir: str) -> str:
    """The name a data path carries: the folder's name, or a file's stem."""
    path = Path(data_dir).expanduser()
    return path.stem if path.is_file() else path.resolve().name


def name_matches(name: str, found: str) -> bool:
    """True when `name` is `found` or its prefix ending at a ``_``, ``-`` or ``.`` (case-insensitive)."""
    name, found = name.lower(), found.lower()
    return found == name or bool(re.match(re.escape(name) + r"[_.\-]", found))


def dataset_name(requested: str, data_dir: str | None, *, typed: bool) -> str:
    """The dataset name of a run: derived from `data_dir` when none was asked for, else checked.

    `typed` says the user gave the name on this command line (a default 'synthetic' that was
    not typed is "no name").
    """
    if not data_dir:
        return requested
    if not Path(data_dir).expanduser().exists():
        raise DatasetError(f"dataset folder not found: {data_dir}")
    found = name_of_data(data_dir)
    if requested == SYNTHETIC:
        if typed:
            raise DatasetError(f"--dataset synthetic is the built-in simulator but --data_dir {data_dir} was "
                               "given; drop one of them")
        return found
    if not name_matches(requested, found):
        prefix = re.split(r"[_.-]", found)[0]
        also = f" (or {prefix})" if prefix and prefix != found else ""
        raise DatasetError(f"dataset name {requested!r} does not match the data in {data_dir} ({found!r}); "
                           f"use --dataset {found}{also}, or leave --dataset out")
    return requested


def load_from_params(data: dict[str, Any], data_dir: str | None) -> KTDataset:
    """Load the dataset described by a config's `data` section (and `data_dir` for real data)."""
    if data["dataset"] == SYNTHETIC:
        if data_dir:
            raise DatasetError(f"the config names the synthetic dataset but data {data_dir} was given")
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
        ds = load_dataset(data_dir, data["data_format"], name=data["dataset"],
                          num_concepts=data.get("num_concepts"))
    except DataError as exc:
        raise DatasetError(str(exc)) from None
    check_split(ds, data, data_dir)
    return ds


def check_split(ds: KTDataset, data: dict[str, Any], data_dir: str) -> None:
    """Refuse a split the run cannot use: a lone three-line file unasked, or an unavailable fold."""
    if ds.fmt == "dkvmn" and ds.split == "pykt_split_of_file" and not data.get("single_file_split"):
        raise DatasetError(f"{data_dir} is a single three-line file: it has no test split of its own. Give the "
                           "folder with <name>_train.csv and <name>_test.csv, or pass --single_file_split to "
                           "split this file like pyKT (a fifth of its students become the test set)")
    fold = data.get("fold", 0)
    if ds.valid_folds is not None and fold not in ds.valid_folds:
        raise DatasetError(f"--fold {fold}: {data_dir} has {SPLITS.get(ds.split, ds.split)}; usable "
                           f"validation fold(s): {', '.join(map(str, ds.valid_folds))}")


def load_for_config(cfg: RunConfig | Mapping[str, Any], data_dir: str | None = None) -> KTDataset:
    """The config's dataset (a config.json dict is parsed first), checked against the checksum
    recorded in the config."""
    run = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    ds = load_from_params(run.train.data.to_dict(), data_dir or run.paths.get("data_dir"))
    expected = run.data_checksum.get("sha256")
    if expected and ds.sha256 != expected:
        raise DatasetError(
            f"dataset checksum {ds.sha256[:12]}… differs from the config's {expected[:12]}…: not the same data"
        )
    return ds


def checksum_section(ds: KTDataset) -> dict[str, Any]:
    """What was read, for config.json's `data_checksum` section."""
    return {"sha256": ds.sha256, "files": list(ds.source_files), "name": ds.name, "format": ds.fmt,
            "num_concepts": ds.num_c, "num_concepts_source": ds.num_c_source, "students": len(ds.concepts),
            "split": ds.split, "split_rule": SPLITS.get(ds.split, "unknown")}


def describe_read(section: Mapping[str, Any]) -> str:
    """One line saying what a run reads (from a `data_checksum` section)."""
    files = ", ".join(section.get("files") or []) or "generated in memory"
    return (f"data: {section.get('name')} ({section.get('format')}; {files}); {section.get('students')} students, "
            f"{section.get('num_concepts')} concepts ({section.get('num_concepts_source')}); "
            f"split: {section.get('split_rule')}")
