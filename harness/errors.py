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


_CONTROL = dict.fromkeys([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])


def printable(text: object) -> str:
    """`text` safe for a terminal: control characters (ESC, BEL, newlines, C1) shown as `\\xNN` escapes,
    so that what a folder's files say (a reason, a title) can neither move the cursor, retitle the
    terminal nor split one line into several."""
    s = str(text)
    if not any(ord(ch) in _CONTROL for ch in s):
        return s
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) in _CONTROL else ch for ch in s)
