"""The harness's error family: user-facing errors versus bugs.

Every error a user can cause and fix (a bad flag, config file, dataset, folder, container) is a
`HarnessError`: the CLI prints it as one line and exits 1. gainakt's `DataError` (gainakt never
imports harness) is registered as a user error too. Anything else is a bug and keeps its
traceback: the CLI prints one line plus a hint, writes the traceback to the experiment's
stdout.log when a folder exists, and to stderr with `--debug`.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix; its message is one line."""


class UsageError(HarnessError):
    """Command-line flags that do not go together (checked after parsing): exit 2 like argparse's."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from gainakt.config import ConfigValueError
    from gainakt.data import DataError

    return (HarnessError, DataError, ConfigValueError)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, user_error_types())
