"""stdout.log: every line the run prints, timestamped, also shown on the terminal."""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO


def stamp(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%d %H:%M:%S,") + f"{now.microsecond // 1000:03d}"


class RunLog:
    """Appends `<UTC time> - <LEVEL> - <message>` lines to stdout.log and echoes the message."""

    def __init__(self, path: Path | None, echo: TextIO | None = None, quiet: bool = False) -> None:
        self.path = path
        # The stdout of now (default), not of import time: in-process callers may have replaced it.
        self.echo = None if quiet else (echo or sys.stdout)
        self._lock = threading.Lock()
        self._fh = None
        if path is not None:  # appended without following a symlink (a received folder may hold one)
            from harness.folder.experiment import open_append_nofollow

            self._fh = os.fdopen(open_append_nofollow(path), "a", encoding="utf-8")

    def write(self, message: str, level: str = "INFO") -> None:
        with self._lock:
            for line in str(message).splitlines() or [""]:
                if self._fh is not None:
                    self._fh.write(f"{stamp()} - {level} - {line}\n")
                    self._fh.flush()
                if self.echo is not None:
                    print(line, file=self.echo, flush=True)

    def info(self, message: str) -> None:
        self.write(message, "INFO")

    def warning(self, message: str) -> None:
        self.write(message, "WARNING")

    def error(self, message: str) -> None:
        self.write(message, "ERROR")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
