"""Two views of the same gains: mastery per window (the model's own output) and over a whole student.

The model is trained on independent windows of ``seq_len`` interactions, and its mastery head restarts
at every window start: ``m_0 = sigmoid(W_m context_0)``, then the window's gains accumulate
(``GainAKT2Exp.accumulate``). That is the **window view**, what ``model(...)["mastery"]`` returns.

The **student view** reads the same gains as one trajectory per student: the first window is the window
view, and window k+1 starts from the last mastery of window k instead of its own ``m_0``, then
accumulates its own gains under the same rule (the same clamp, or the same headroom form). As a
step-by-step recursion over a student's windows ``w = 0, 1, ...`` with valid positions ``t = 0..n_w-1``:

    m[0, 0] = sigmoid(W_m context_0 of window 0)
    m[w, 0] = m[w-1, n_{w-1} - 1]                     (w >= 1: carried over the boundary)
    m[w, t] = update(m[w, t-1], gain_scale * g[w, t])  (t >= 1; clamp: min(1, m + s g);
                                                        headroom: 1 - (1 - m) exp(-s g))

The predictions (logits) are not touched: they come from the prediction MLP, not from the heads.
The gain of a window's first position and the last interaction of each window (which is only a
target) are not used, as inside a window.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gainakt.config import MASTERY_VIEWS

__all__ = ["MASTERY_VIEWS", "StudentView"]


class StudentView:
    """Carries mastery across the window rows of each student, batch after batch.

    Call it on consecutive batches of window rows in which every student's windows are consecutive
    and in window order (as ``build_windows`` emits them, in any batch size): it returns the student
    view of each batch's mastery. A student whose rows reappear after another student's is an error
    (the carried value would be wrong), never silently restarted.
    """

    def __init__(self, accumulate: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.accumulate = accumulate  # (initial [B, C], gains [B, T, C]) -> mastery [B, T, C]
        self._student: int | None = None
        self._last: Tensor | None = None  # [C]: the last valid mastery of that student's latest window
        self._done: set[int] = set()

    def __call__(self, mastery: Tensor, gains: Tensor, mask: Tensor, student: Tensor) -> Tensor:
        """The student view [B, T, C] of window rows (``mastery``, ``gains`` [B, T, C]; ``mask`` [B, T],
        valid positions a prefix of each row; ``student`` [B])."""
        n = mastery.shape[0]
        if n == 0:
            return mastery
        out = mastery.float().clone()
        last = (mask.long().sum(1) - 1).clamp(min=0)
        students = [int(s) for s in student.tolist()]
        level = [0] * n  # how many earlier windows of the same student precede the row
        for i, s in enumerate(students):
            previous = students[i - 1] if i else self._student
            if s == previous:
                level[i] = (level[i - 1] if i else 0) + 1
            elif s in self._done:
                raise ValueError(f"student {s}: its windows are not consecutive; the student view needs each "
                                 "student's windows in order, one after another")
            self._done.add(s)
        for lvl in range(1, max(level) + 1):
            rows = [i for i in range(n) if level[i] == lvl]
            if not rows:
                continue
            starts = []
            for i in rows:
                if i == 0:
                    assert self._last is not None
                    starts.append(self._last)
                else:
                    starts.append(out[i - 1, last[i - 1]])
            index = torch.tensor(rows, device=out.device)
            out[index] = self.accumulate(torch.stack(starts), gains[index].float())
        self._student = students[-1]
        self._last = out[n - 1, last[n - 1]].clone()
        return out
