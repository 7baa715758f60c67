"""`harness --version`: the package version and the git commit the code runs from."""

from __future__ import annotations

import subprocess

import pytest

from harness import __version__
from harness.cli.main import main
from harness.run.environment import REPO_ROOT, git_info


def test_version_prints_the_package_version_and_the_commit(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"gainakt-harness) {__version__}" in out
    commit = git_info()["git_commit"]
    assert f"git commit: {commit}" in out
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout: the commit is the checkout's HEAD
        assert head.stdout.strip() in out


def test_version_needs_no_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version", "--debug"])
    assert exc.value.code == 0 and "the following arguments are required" not in capsys.readouterr().err
