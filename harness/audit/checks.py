"""One `Check` type for verify, compare and the run README's checklist.

A check has a name, a status and its reasons. Statuses rank met < info < note < skipped < failed;
marking a check again keeps the worst status (compare's criteria), adding one appends a new line
(verify's list). `passed` is every status but "failed" and "skipped" (a check that did not run,
verify's "not applicable": it never counts as passed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RANK = {"met": 0, "info": 1, "note": 2, "skipped": 3, "failed": 4}


@dataclass
class Check:
    name: str
    status: str = "met"
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (status, reason)

    @property
    def passed(self) -> bool:
        return self.status not in ("failed", "skipped")

    @property
    def reason(self) -> str:
        return "; ".join(r for _, r in self.reasons)

    def mark(self, status: str, reason: str | None = None) -> None:
        if RANK[status] > RANK[self.status]:
            self.status = status
        if reason:
            self.reasons.append((status, reason))


class Checks:
    """An ordered list of checks."""

    def __init__(self) -> None:
        self.items: list[Check] = []
        self._by_name: dict[str, Check] = {}

    def add(self, name: str, passed: bool, reason: str) -> Check:
        """A new check line: met or failed, with one reason."""
        check = Check(name)
        check.mark("met" if passed else "failed", reason)
        self.items.append(check)
        self._by_name.setdefault(name, check)
        return check

    def mark(self, name: str, status: str, reason: str | None = None) -> None:
        """Mark the check `name` (created on first use); the worst status sticks."""
        check = self._by_name.get(name)
        if check is None:
            check = self._by_name[name] = Check(name)
            self.items.append(check)
        check.mark(status, reason)

    def skip(self, name: str, reason: str) -> Check:
        """A check that does not apply (e.g. it needs results an unfinished run has not written)."""
        check = Check(name)
        check.mark("skipped", reason)
        self.items.append(check)
        self._by_name.setdefault(name, check)
        return check

    def run(self, name: str, fn: Callable[[], tuple[bool | None, str]]) -> None:
        """Run one check; an unexpected error fails that check (with its message), never the caller.
        A check returning (None, reason) did not apply: it is skipped."""
        try:
            passed, reason = fn()
        except Exception as exc:  # noqa: BLE001 - a broken file must not crash the verifier
            passed, reason = False, f"check could not run: {type(exc).__name__}: {exc}"
        if passed is None:
            self.skip(name, reason)
        else:
            self.add(name, passed, reason)

    def lines(self, status: str) -> list[str]:
        return [r for c in self.items for st, r in c.reasons if st == status]

    def names(self, status: str) -> list[str]:
        return [c.name for c in self.items if c.status == status]

    def as_results(self) -> list[dict[str, Any]]:
        """verify's shape: [{"name", "passed", "status", "reason"}] (status added with the `note` of an
        accepted modification; `passed` as before)."""
        return [{"name": c.name, "passed": c.passed, "status": c.status, "reason": c.reason} for c in self.items]

    def as_criteria(self) -> list[dict[str, Any]]:
        """compare's shape: [{"name", "status", "reasons"}]."""
        return [{"name": c.name, "status": c.status, "reasons": [r for _, r in c.reasons]} for c in self.items]
