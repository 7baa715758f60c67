"""compare names a switch that is hashed on one side only (a field added after schema 3, on in one run)."""

from __future__ import annotations

from harness.audit.compare import _describe_changes, parameter_differences
from harness.config.build import hashed_view
from harness.config.launch import LaunchOptions
from harness.run.launcher import resolve_run


def _config(**explicit) -> dict:
    return resolve_run(LaunchOptions(explicit={"epochs": 1, "model_preset": "small", **explicit}), "c").config


def test_a_switch_on_in_one_run_is_named_with_both_values():
    base, switched = _config(), _config(pooled_correlations=True)
    assert "pooled_correlations" not in hashed_view(base)["alignment"]  # why it is on one side only
    diff = parameter_differences(base, switched)
    assert diff["changed"] == {"alignment.pooled_correlations": [False, True]}
    assert diff["only_in_target"] == ["alignment.pooled_correlations"]  # the older key keeps its meaning
    assert _describe_changes(diff["changed"]) == "alignment.pooled_correlations false -> true"
    assert parameter_differences(switched, base)["changed"] == {"alignment.pooled_correlations": [True, False]}


def test_a_switch_named_explicitly_at_its_default_is_no_difference():
    assert parameter_differences(_config(), _config(pooled_correlations=False))["changed"] == {}
