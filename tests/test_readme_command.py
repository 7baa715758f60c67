"""The README's first command prints no warning about its own configuration."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gainakt.losses import first_active_epochs
from gainakt.train import loss_settings
from harness.cli.main import build_parser
from harness.config.schema import RunConfig
from harness.folder import artifacts
from harness.run.launcher import resolve_run


def first_command() -> list[str]:
    """The `harness run ...` of the README's first code block (its continuation lines joined)."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    match = re.search(r"harness (run [^\n&]+)", block)
    assert match, "no `harness run` in the README's first code block"
    return shlex.split(match.group(1))


def test_the_readme_first_command_configures_no_launch_warning():
    argv = first_command()
    ns = build_parser().parse_args([*argv, "--devices", "cpu"])
    run = RunConfig.from_dict(resolve_run(ns, ns.title).config)
    assert artifacts.launch_warnings(run) == []
    # every term its ablation mode requests is scheduled within its epochs
    scheduled = first_active_epochs(loss_settings(run.train))
    assert set(scheduled) == {"alignment", "lag", "retention"}
    assert max(scheduled.values()) <= run.train.training.epochs
