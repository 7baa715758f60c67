"""`harness run --reference_values` (issue 22): the reference's reported runs' values (Era B), exactly
those leaves, hashed through the values they set; explicit flags and --set still win; a sweep refuses it."""

from __future__ import annotations

import pytest

from gainakt.config import REFERENCE_VALUES
from harness.cli.main import build_parser, main
from harness.config.build import config_md5, leaf_paths
from harness.config.launch import LaunchOptions
from harness.run.launcher import resolve_run

SMALL = {"model_preset": "small"}


def _leaves(cfg: dict) -> dict[str, object]:
    return {path.rsplit(".", 1)[-1]: value for path, value in leaf_paths(cfg).items()
            if not path.startswith(("experiment.", "runtime.", "paths.", "config_md5"))}


def test_it_sets_exactly_the_reference_values_and_they_are_hashed():
    plain = resolve_run(LaunchOptions(explicit=SMALL), "t").config
    preset = resolve_run(LaunchOptions(explicit=SMALL, reference_values=True), "t").config
    a, b = _leaves(plain), _leaves(preset)
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {k for k, v in REFERENCE_VALUES.items() if a[k] != v} == set(REFERENCE_VALUES)
    assert all(b[k] == v for k, v in REFERENCE_VALUES.items())
    assert config_md5(preset) != config_md5(plain)
    typed = resolve_run(LaunchOptions(explicit={**SMALL, **REFERENCE_VALUES}), "t").config
    assert config_md5(typed) == config_md5(preset)  # the values are hashed, the flag name is not


def test_explicit_flags_and_set_win_over_the_reference_values():
    cfg = resolve_run(LaunchOptions(explicit={**SMALL, "learning_rate": 0.001}, reference_values=True,
                                    sets=("interpretability.alignment_weight=0.5",)), "t").config
    leaves = _leaves(cfg)
    assert leaves["learning_rate"] == 0.001 and leaves["alignment_weight"] == 0.5
    assert leaves["retention_weight"] == REFERENCE_VALUES["retention_weight"]


def test_the_run_command_line_takes_it_and_a_sweep_refuses_it(capsys):
    ns = build_parser().parse_args(["run", "t", "--reference_values"])
    assert LaunchOptions.from_namespace(ns).reference_values is True
    assert LaunchOptions.from_namespace(build_parser().parse_args(["run", "t"])).reference_values is False
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "s", "--reference_values"])
    assert exc.value.code == 2 and "--reference_values" in capsys.readouterr().err
