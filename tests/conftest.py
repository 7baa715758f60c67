"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Shared experiment builders of the audit tests (tests/fixtures/audit_runs.py).
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Return ``../shared/datasets`` (relative to the repo root), or skip when it is absent."""
    path = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
    if not path.is_dir():
        pytest.skip("../shared/datasets not present (real-data tests need it)")
    return path


@pytest.fixture(scope="session")
def assist2015_pykt(shared_datasets: Path):
    """Return the shared pyKT-prepared ASSISTments 2015 dataset, loaded once per session."""
    from gainakt.data import load_dataset

    folder = shared_datasets / "assist2015_pykt"
    if not (folder / "train_valid.csv").is_file():
        pytest.skip(f"{folder} lacks train_valid.csv (real-data tests need it)")
    return load_dataset(folder)
