"""A flag whose field admits None takes "none" (its help says what none means); others do not."""

from __future__ import annotations

import pytest

from harness.cli.main import build_parser
from harness.config.launch import LaunchOptions
from harness.run.launcher import resolve_run


@pytest.mark.parametrize("flag, section", [("eval_batch_size", "training"),
                                           ("alignment_max_students", "alignment")])
def test_none_is_a_value_of_an_optional_field(flag, section):
    ns = build_parser().parse_args(["run", "t", f"--{flag}", "none"])
    assert getattr(ns, flag) is None
    cfg = resolve_run(LaunchOptions.from_namespace(ns), "t").config
    assert cfg[section][flag] is None


def test_none_is_refused_for_a_field_that_needs_a_value(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "t", "--epochs", "none"])
    assert exc.value.code == 2 and "expects an integer, got 'none'" in capsys.readouterr().err
