"""The one error type every dataset reader raises for bad or missing input."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A dataset problem, described in one line that names the file and (1-based) line.

    ``DataError("message")`` works like a plain ``ValueError``; with ``file`` (and ``line``)
    the message is prefixed with ``"<file>, line <n>: "`` so users can open the spot directly.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None) -> None:
        self.file = None if file is None else str(file)
        self.line = line
        prefix = ""
        if self.file is not None:
            prefix = f"{self.file}, line {line}: " if line is not None else f"{self.file}: "
        # One line only: a multi-line message would break the CLI's one-line error contract.
        super().__init__((prefix + message).replace("\n", " "))
