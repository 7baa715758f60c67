"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Helpers of the audit tests (tests/fixtures/audit_runs.py: the tiny-run arguments, in-process calls).
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

import audit_runs  # noqa: E402

# The slow tier: tests that train (`-m "not slow and not docker"` is the fast tier). A test is slow
# when it uses a training fixture or is named here (kept in one place rather than spread as
# decorators); test modules may also mark themselves.
TRAINING_FIXTURES = {"base_run", "reproduction", "changed_reproduction", "two_runs"}
SLOW_TESTS = {
    "test_train.py": {
        "test_same_seed_twice_is_bit_identical_and_another_seed_differs", "test_resume_equals_uninterrupted",
        "test_non_finite_loss_fails_the_seed_and_keeps_what_was_written", "test_early_stopping_uses_patience",
        "test_small_model_learns_the_synthetic_default_and_tracks_true_mastery",
        "test_log_head_stats_records_variance_and_skew_per_epoch",
    },
    "test_launcher.py": {
        "test_two_seeds_give_multi_seed_files", "test_existing_folder_is_refused_without_force",
        "test_concurrent_launch_into_one_folder_is_refused", "test_killed_worker_keeps_other_seeds_and_marks_failure",
        "test_experiment_suffix_tags_the_seed_log_lines_and_purpose_reaches_the_readme",
        "test_ctrl_c_stops_the_workers_and_marks_the_folder_interrupted",
    },
    "test_examples.py": {"test_quick_pattern_runs_as_written_with_cpu_devices"},
    "test_reproduce.py": {"test_a_reference_schema2_folder_is_reproduced"},
    "test_resume.py": {"straight_and_resumed"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        named = SLOW_TESTS.get(item.path.name, set())
        if TRAINING_FIXTURES & fixtures or named & (fixtures | {item.originalname}):  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def audit_base(tmp_path_factory) -> Path:
    """One output base for the session's shared runs (experiments are resolved by id under it)."""
    return tmp_path_factory.mktemp("audit_runs")


@pytest.fixture(scope="session")
def base_run(audit_base: Path) -> Path:
    """Three epochs, seed 21, tiny model on CPU in fp32: the source experiment of the audit tests."""
    return audit_runs.harness(audit_base, *audit_runs.BASE_ARGS)[1]


@pytest.fixture(scope="session")
def reproduction(audit_base: Path, base_run: Path) -> Path:
    """`harness reproduce <base_run> --manifest` with nothing changed."""
    return audit_runs.harness(audit_base, "reproduce", base_run.name, *audit_runs.REPRODUCE_ARGS)[1]


@pytest.fixture(scope="session")
def changed_reproduction(audit_base: Path, base_run: Path) -> tuple[int, Path]:
    """`harness reproduce <base_run> --set training.learning_rate=0.001`: (exit code, folder)."""
    return audit_runs.harness(audit_base, "reproduce", base_run.name, *audit_runs.CHANGED_ARGS, expect=None)


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
