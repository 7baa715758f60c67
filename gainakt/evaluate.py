"""Evaluation passes: predictive metrics and the interpretability metrics of the guide.

One forward pass over the validation windows yields everything an epoch needs: the AUC over all
students, and per-student series from which the interpretability metrics of any student subset
(the per-epoch semantic sample, the global alignment pass) are summarised without another pass.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gainakt.data import SequenceSet, batch_order, iterate_batches
from gainakt.data.batching import packing_for
from gainakt.metrics import (
    CorrelationSummary,
    auc_accuracy,
    head_statistics,
    per_student_correlation,
    true_mastery_correlation,
    violation_flags,
)


@dataclass
class StudentSeries:
    """One student's valid positions (windows concatenated in order) and violation flags."""

    mastery: list[np.ndarray] = field(default_factory=list)  # mean over concepts at t
    gain: list[np.ndarray] = field(default_factory=list)  # mean over concepts at t
    target: list[np.ndarray] = field(default_factory=list)  # correctness at t+1
    pred_mastery: list[np.ndarray] = field(default_factory=list)  # mastery of the concept asked at t+1
    true_mastery: list[np.ndarray] = field(default_factory=list)  # simulator only
    monotonicity_violation: bool = False
    negative_gain: bool = False
    bounds_violation: bool = False

    def joined(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class Semantics:
    """Interpretability metrics over a set of students."""

    mastery: CorrelationSummary
    gain: CorrelationSummary
    violations: dict[str, float]
    true_mastery: CorrelationSummary | None
    students: int


@dataclass
class EvalResult:
    """What one pass over a set of windows measured."""

    loss: float
    auc: float
    accuracy: float
    n_scored: int
    students: dict[int, StudentSeries] = field(default_factory=dict)
    head_values: dict[str, np.ndarray] | None = None

    def semantics(self, subset: Iterable[int] | None = None) -> Semantics | None:
        """Interpretability metrics over `subset` of students (all when None); None without heads."""
        if not self.students:
            return None
        chosen = self.students if subset is None else {int(s): self.students[int(s)] for s in subset
                                                       if int(s) in self.students}
        rows = list(chosen.values())
        n = max(len(rows), 1)
        has_truth = any(r.true_mastery for r in rows)
        return Semantics(
            mastery=per_student_correlation([r.joined("mastery") for r in rows], [r.joined("target") for r in rows]),
            gain=per_student_correlation([r.joined("gain") for r in rows], [r.joined("target") for r in rows]),
            violations={
                "monotonicity_violation_rate": sum(r.monotonicity_violation for r in rows) / n,
                "negative_gain_rate": sum(r.negative_gain for r in rows) / n,
                "bounds_violation_rate": sum(r.bounds_violation for r in rows) / n,
            },
            true_mastery=true_mastery_correlation([r.joined("pred_mastery") for r in rows],
                                                  [r.joined("true_mastery") for r in rows]) if has_truth else None,
            students=len(rows),
        )

    def head_stats(self) -> dict[str, Any] | None:
        if not self.head_values:
            return None
        return {name: head_statistics(v) for name, v in self.head_values.items()}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    seqs: SequenceSet,
    *,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    semantics: bool = False,
    head_students: Iterable[int] | None = None,
    pack: bool = False,
) -> EvalResult:
    """Run `model` over `seqs` in eval mode.

    AUC/accuracy pool every scored position (pyKT's micro AUC). With `semantics` (and both heads
    on), per-student series of mean mastery, mean gain and next-step correctness are kept, with
    per-student violation flags: mastery mean decreasing by more than 1e-6, a gain below -1e-6, a
    mastery outside [0, 1] by more than 1e-6. `head_students`: collect raw head outputs of these
    students for --log_head_stats. `pack`: pack each batch's rows (``plan_packing``), which changes
    the result only by float rounding.
    """
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    loss_sum, loss_n = 0.0, 0
    students: dict[int, StudentSeries] = defaultdict(StudentSeries)
    head_set = set(int(s) for s in head_students) if head_students is not None else None
    head_parts: dict[str, list[np.ndarray]] = {"mastery": [], "gain": []}
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    for batch in iterate_batches(seqs, batch_size):
        b = batch.to(device)
        with ctx:
            out = model(b.q, b.r, b.qry, pack=packing_for(batch).to(device) if pack else None)
        logits = out["logits"].float()
        score = b.score_mask
        if score.any():
            loss_sum += F.binary_cross_entropy_with_logits(logits[score], b.target[score], reduction="sum").item()
            loss_n += int(score.sum())
            probs.append(torch.sigmoid(logits[score]).cpu().numpy())
            targets.append(b.target[score].cpu().numpy())
        mastery, gains = out.get("mastery"), out.get("gains")
        if semantics and mastery is not None and gains is not None:
            _collect(students, b, mastery.float(), gains.float(), head_set, head_parts)
    model.train(was_training)

    y, p = (np.concatenate(targets), np.concatenate(probs)) if targets else (np.zeros(0), np.zeros(0))
    auc, acc = auc_accuracy(y, p) if len(y) else (math.nan, math.nan)
    result = EvalResult(loss=loss_sum / max(loss_n, 1), auc=auc, accuracy=acc, n_scored=len(y),
                        students=dict(sorted(students.items())))
    if head_set is not None and head_parts["mastery"]:
        result.head_values = {k: np.concatenate(v) for k, v in head_parts.items()}
    return result


def _collect(students: dict[int, StudentSeries], b: SequenceSet, mastery: torch.Tensor, gains: torch.Tensor,
             head_set: set[int] | None, head_parts: dict[str, list[np.ndarray]]) -> None:
    """Per-row reductions on the device, then one transfer; the Python loop is over rows only."""
    mask = b.mask
    mean_m = mastery.mean(-1)
    qry_m = mastery.gather(-1, b.qry.unsqueeze(-1)).squeeze(-1)
    host = {
        "mastery": mean_m.cpu().numpy(), "gain": gains.mean(-1).cpu().numpy(), "target": b.target.cpu().numpy(),
        "pred_mastery": qry_m.cpu().numpy(),
    }
    true_m = b.true_mastery.cpu().numpy() if b.true_mastery is not None else None
    mask_np = mask.cpu().numpy()
    flags = violation_flags(mastery, gains, mask).cpu().numpy()
    for i, s in enumerate(b.student.cpu().numpy().tolist()):
        valid = mask_np[i]
        if not valid.any():
            continue
        rec = students[s]
        for name, arr in host.items():
            getattr(rec, name).append(arr[i][valid])
        if true_m is not None:
            rec.true_mastery.append(true_m[i][valid])
        rec.monotonicity_violation |= bool(flags[i, 0])
        rec.negative_gain |= bool(flags[i, 1])
        rec.bounds_violation |= bool(flags[i, 2])
        if head_set is not None and s in head_set:
            row = mask[i]
            head_parts["mastery"].append(mastery[i][row].flatten().cpu().numpy())
            head_parts["gain"].append(gains[i][row].flatten().cpu().numpy())


@torch.no_grad()
def evaluate_predictions(
    model: torch.nn.Module,
    seqs: SequenceSet,
    *,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    pack: bool = False,
    fast: bool = True,
    progress: Callable[[str], None] | None = None,
    label: str = "evaluation",
    progress_every: int = 20,
) -> EvalResult:
    """AUC/accuracy/loss over the scored targets of `seqs` only (no per-student series).

    This is the pass for pyKT's window protocol, where most rows score only their last target.
    With `fast` the model skips its mastery and gain heads (only the logits are scored), rows that
    score only their last valid position run the last block and the prediction MLP for that
    position alone (``model(..., only_at=...)``), and rows are served in order of length, so each
    batch is trimmed to similar widths; the pooled metrics do not depend on row order, so the result
    equals `fast=False` (the full forward in data order) up to float rounding. `pack` packs the
    batches of the other rows (see ``gainakt.data.batching.plan_packing``). `progress` receives one
    line every `progress_every` batches with the rows done so far.
    """
    was_training = model.training
    model.eval()
    probs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    scored: list[torch.Tensor] = []
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    batches = _prediction_batches(seqs, batch_size, fast)
    total, done, start = len(seqs), 0, time.perf_counter()
    for i, (index, last_only) in enumerate(batches):
        batch = seqs.select(index)
        batch = batch.trim(max(int(batch.length.max()) - 1, 1))
        b = batch.to(device)
        with ctx:
            if last_only:
                at = b.length - 2
                out = model(b.q, b.r, b.qry, only_at=at)
                rows = torch.arange(len(index), device=at.device)
                target, score = b.target[rows, at].unsqueeze(1), b.score_mask[rows, at].unsqueeze(1)
            else:
                plan = packing_for(batch).to(device) if pack else None
                out = model(b.q, b.r, b.qry, heads=not fast, pack=plan)
                target, score = b.target, b.score_mask
        # Whole rows stay on the device (boolean indexing would sync per batch); masked at the end.
        logits = out["logits"].float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        losses.append((bce * score).sum().reshape(1))
        probs.append(torch.sigmoid(logits).flatten())
        targets.append(target.flatten())
        scored.append(score.flatten())
        done += len(index)
        if progress is not None and ((i + 1) % progress_every == 0 or i + 1 == len(batches)):
            progress(f"{label}: {done:,}/{total:,} rows ({100.0 * done / max(total, 1):.0f}%), "
                     f"{time.perf_counter() - start:.1f}s")
    model.train(was_training)
    keep = torch.cat(scored).cpu().numpy() if scored else np.zeros(0, bool)
    y = torch.cat(targets).cpu().numpy()[keep] if targets else np.zeros(0)
    p = torch.cat(probs).cpu().numpy()[keep] if probs else np.zeros(0)
    loss_sum = float(torch.cat(losses).sum()) if losses else 0.0
    auc, acc = auc_accuracy(y, p) if len(y) else (math.nan, math.nan)
    return EvalResult(loss=loss_sum / max(len(y), 1), auc=auc, accuracy=acc, n_scored=len(y))


def _prediction_batches(seqs: SequenceSet, batch_size: int, fast: bool) -> list[tuple[torch.Tensor, bool]]:
    """(row indices, scores only its last valid position) per batch: data order unless `fast`.

    `fast` serves the rows that score more than their last position first, then the last-only rows,
    each group in order of length.
    """
    if not fast:
        return [(index, False) for index in batch_order(seqs.length, batch_size)]
    n = len(seqs)
    lengths = seqs.length.cpu()
    score = seqs.score_mask.cpu()
    last = (lengths - 2).clamp(min=0)
    last_only = (score.sum(1) == 1) & score[torch.arange(n), last] if n else torch.zeros(0, dtype=torch.bool)
    out: list[tuple[torch.Tensor, bool]] = []
    for flag in (False, True):
        rows = torch.nonzero(last_only == flag).squeeze(1)
        out += [(rows[index], flag) for index in batch_order(lengths[rows], batch_size, bucket_by_length=True)]
    return out
