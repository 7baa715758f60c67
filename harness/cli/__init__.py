"""The `harness` command line: argument parsing, flag registry glue, and one action per command."""

from harness.cli.main import main

__all__ = ["main"]
