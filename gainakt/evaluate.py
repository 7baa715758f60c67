"""Evaluation passes: predictive metrics and the interpretability metrics of the guide."""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gainakt.data import SequenceSet, iterate_batches
from gainakt.metrics import (
    CorrelationSummary,
    auc_accuracy,
    head_statistics,
    per_student_correlation,
    true_mastery_correlation,
    violation_rates,
)


@dataclass
class EvalResult:
    """What one pass over a set of windows measured. Correlations are None without heads."""

    loss: float
    auc: float
    accuracy: float
    n_scored: int
    mastery: CorrelationSummary | None = None
    gain: CorrelationSummary | None = None
    violations: dict[str, float] = field(default_factory=dict)
    true_mastery: CorrelationSummary | None = None
    head_stats: dict[str, Any] | None = None
    # Per-student series (mean mastery, mean gain, next correctness), kept for trajectories.
    series: dict[int, dict[str, np.ndarray]] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "series"}
        return out


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    seqs: SequenceSet,
    *,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    semantics: bool = False,
    head_stats: bool = False,
    keep_series: bool = False,
) -> EvalResult:
    """Run `model` over `seqs` in eval mode.

    AUC/accuracy pool every scored position (pyKT's micro AUC). With `semantics`, per-student
    correlations of mean mastery and mean gain with next-step correctness are computed over each
    student's valid positions (windows of one student concatenated in order), plus violation rates
    per window and, for synthetic data, the correlation of predicted with true mastery of the
    concept asked next.
    """
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    loss_sum, loss_n = 0.0, 0
    per_student: dict[int, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    viol_counts = {"monotonicity_violation_rate": 0.0, "negative_gain_rate": 0.0, "bounds_violation_rate": 0.0}
    viol_rows = 0
    mastery_values: list[np.ndarray] = []
    gain_values: list[np.ndarray] = []
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    for batch in iterate_batches(seqs, batch_size):
        b = batch.to(device)
        with ctx:
            out = model(b.q, b.r, b.qry)
        logits = out["logits"].float()
        score = b.score_mask
        if score.any():
            loss_sum += F.binary_cross_entropy_with_logits(logits[score], b.target[score], reduction="sum").item()
            loss_n += int(score.sum())
            probs.append(torch.sigmoid(logits[score]).cpu().numpy())
            targets.append(b.target[score].cpu().numpy())
        mastery, gains = out.get("mastery"), out.get("gains")
        if not semantics or mastery is None or gains is None:
            continue
        mastery, gains = mastery.float(), gains.float()
        mean_m = mastery.mean(-1).cpu().numpy()
        mean_g = gains.mean(-1).cpu().numpy()
        mask = b.mask.cpu().numpy()
        tgt = b.target.cpu().numpy()
        qry_m = mastery.gather(-1, b.qry.unsqueeze(-1)).squeeze(-1).cpu().numpy()
        true_m = b.true_mastery.cpu().numpy() if b.true_mastery is not None else None
        students = b.student.cpu().numpy()
        rows_m, rows_g = [], []
        for i, s in enumerate(students):
            valid = mask[i]
            if not valid.any():
                continue
            rec = per_student[int(s)]
            rec["mastery"].append(mean_m[i][valid])
            rec["gain"].append(mean_g[i][valid])
            rec["target"].append(tgt[i][valid])
            rec["pred_mastery"].append(qry_m[i][valid])
            if true_m is not None:
                rec["true_mastery"].append(true_m[i][valid])
            rows_m.append(mastery[i][b.mask[i]].cpu().numpy())
            rows_g.append(gains[i][b.mask[i]].cpu().numpy())
        if rows_m:
            rates = violation_rates(rows_m, rows_g)
            for key in viol_counts:
                viol_counts[key] += rates[key] * len(rows_m)
            viol_rows += len(rows_m)
        if head_stats:
            mastery_values.append(mastery[b.mask].flatten().cpu().numpy())
            gain_values.append(gains[b.mask].flatten().cpu().numpy())
    model.train(was_training)

    y, p = _cat(targets), _cat(probs)
    auc, acc = auc_accuracy(y, p) if len(y) else (math.nan, math.nan)
    result = EvalResult(loss=loss_sum / max(loss_n, 1), auc=auc, accuracy=acc, n_scored=len(y))
    if semantics and per_student:
        series = {s: {k: _cat(v) for k, v in rec.items()} for s, rec in sorted(per_student.items())}
        ordered = list(series.values())
        result.mastery = per_student_correlation([r["mastery"] for r in ordered], [r["target"] for r in ordered])
        result.gain = per_student_correlation([r["gain"] for r in ordered], [r["target"] for r in ordered])
        result.violations = {k: v / max(viol_rows, 1) for k, v in viol_counts.items()}
        if seqs.true_mastery is not None:
            result.true_mastery = true_mastery_correlation(
                [r["pred_mastery"] for r in ordered], [r["true_mastery"] for r in ordered]
            )
        if keep_series:
            result.series = series
    if head_stats and mastery_values:
        result.head_stats = {
            "mastery": head_statistics(_cat(mastery_values)),
            "gain": head_statistics(_cat(gain_values)),
        }
    return result
