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
    # Tests (or their module fixtures) that train, or run a launcher with workers, for tens of seconds
    # on a 2-core machine: the fast tier stays free of training.
    "test_sweep_run.py": {"swept"},
    "test_sweep_jobs.py": {"test_results_are_byte_identical_whatever_jobs_per_device"},
    "test_allocator.py": {"default_faults"},
    "test_predict.py": {"trained"},
    "test_metric_names.py": {"run"},
    "test_perf_paths.py": {"test_window_protocol_fast_path_equals_full_path",
                           "test_training_packed_equals_unpacked_without_dropout"},
    "test_integrity.py": {
        "test_sigterm_of_the_launcher_is_an_interruption_with_truthful_seed_statuses",
        "test_sigkill_of_the_launcher_takes_the_workers_down_and_resume_is_admitted",
        "test_a_killed_worker_reports_a_seed_that_never_started_as_not_run",
        "test_force_into_a_finished_folder_removes_the_old_runs_files",
        "test_a_corrupt_last_checkpoint_fails_only_its_seed_with_the_reason",
        "test_a_run_signs_itself_when_the_key_is_in_the_environment",
    },
    "test_inputs.py": {"test_heads_off_run_passes_its_own_verification",
                       "test_data_dir_alone_trains_on_that_data_named_after_the_folder"},
    "test_run_warnings.py": {"test_a_trained_epoch_entry_is_numbered_like_its_row"},
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
