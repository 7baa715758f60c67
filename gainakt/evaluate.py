"""Evaluation passes: predictive metrics and the interpretability metrics of the guide.

One forward pass over the validation windows yields everything an epoch needs: the AUC over all
students, and per-student series from which the interpretability metrics of any student subset
(the per-epoch semantic sample, the global alignment pass) are summarised without another pass.
Mastery is kept in two views (``gainakt.views``): per window, as the model outputs it, and over the
whole student, carried across window boundaries; the ``student_view_*`` metrics are the latter's.
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
    TOLERANCE,
    CorrelationSummary,
    auc_accuracy,
    auc_or_none,
    head_statistics,
    per_student_auc,
    per_student_correlation,
    saturation,
    true_mastery_correlation,
    violation_flags,
)
from gainakt.views import StudentView

# Summaries over students: (stem of the CI/n columns, name of the value column).
SUMMARIES = (
    ("mastery", "mastery_correlation"),  # guide
    ("gain", "gain_correlation"),  # guide
    ("qmastery", "qmastery_correlation"),
    ("qmastery_partial", "qmastery_partial_correlation"),
    ("qmastery_auc_student", "qmastery_auc_student"),
    ("qgain", "qgain_correlation"),
    ("qgain_partial", "qgain_partial_correlation"),
    ("qgain_auc_student", "qgain_auc_student"),
    ("true_mastery", "true_mastery_correlation"),  # simulator only (None otherwise)
    ("true_mean_mastery", "true_mean_mastery_correlation"),  # simulator only: the guide's series vs truth
)
GUIDE_VIOLATIONS = ("monotonicity_violation_rate", "negative_gain_rate", "bounds_violation_rate")
WHOLE_STUDENT = ("monotonicity_violation_rate_whole_student", "boundary_drop_rate", "boundary_drop_mean",
                 "boundaries", "multiwindow_students")
POOLED = ("qmastery_auc_pooled", "qmastery_auc_pooled_n", "qgain_auc_pooled", "qgain_auc_pooled_n")
# Asked-concept mastery at the clamp (>= 1 - 1e-6): the window view per window, and the simulator's
# truth over the same positions and windows (docs/metrics.md, "Saturation").
SATURATION = ("mastery_saturated_share", "saturation_reached_share", "saturation_steps_median",
              "saturation_windows", "true_mastery_saturated_share", "true_saturation_reached_share",
              "true_saturation_steps_median")
# The student view (mastery carried across window boundaries, gainakt.views): its summaries over
# students, whole-student monotonicity and saturation per student (the truth per student beside it).
STUDENT_VIEW_SUMMARIES = (
    ("student_view_qmastery", "student_view_qmastery_correlation"),
    ("student_view_qmastery_partial", "student_view_qmastery_partial_correlation"),
    ("student_view_true_mastery", "student_view_true_mastery_correlation"),  # simulator only
)
STUDENT_VIEW_WHOLE = ("student_view_monotonicity_violation_rate_whole_student", "student_view_boundary_drop_rate",
                      "student_view_boundary_drop_mean")
STUDENT_VIEW_SATURATION = ("student_view_mastery_saturated_share", "student_view_saturation_reached_share",
                           "student_view_saturation_steps_median", "student_view_true_saturation_reached_share",
                           "student_view_true_saturation_steps_median")


def _summary_columns(summaries: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    cols: list[str] = []
    for stem, value in summaries:
        cols += [value, f"{stem}_ci_low", f"{stem}_ci_high", f"{stem}_n"]
    return tuple(cols)


# Every column a Semantics contributes (metrics_epoch.csv: validation sample; final: val_*/test_*).
# Columns added later go after the older ones, so older CSVs keep their column order as a prefix.
ADDED_IN_ISSUE21 = (*SATURATION, *_summary_columns(STUDENT_VIEW_SUMMARIES), *STUDENT_VIEW_WHOLE,
                    *STUDENT_VIEW_SATURATION)
SEMANTIC_COLUMNS = (*_summary_columns(SUMMARIES), *POOLED, *GUIDE_VIOLATIONS, *WHOLE_STUDENT, "semantic_students",
                    *ADDED_IN_ISSUE21)


@dataclass
class StudentSeries:
    """One student's valid positions, one array per window in window order, and violation flags.

    Positions t are those with ``mask`` (t and t+1 real); ``step`` is t inside its window and
    ``student_step`` the index of interaction t in the student's whole sequence. The q* lists hold,
    for each position t whose practised concept q_t is asked again later in the same window, the
    gain of q_t at t, the response at that next occurrence, and t. The ``sv_*`` lists are the
    student view of mastery (carried across window boundaries, ``gainakt.views``).
    """

    mastery: list[np.ndarray] = field(default_factory=list)  # mean over concepts at t
    gain: list[np.ndarray] = field(default_factory=list)  # mean over concepts at t
    target: list[np.ndarray] = field(default_factory=list)  # correctness at t+1
    pred_mastery: list[np.ndarray] = field(default_factory=list)  # mastery of the concept asked at t+1
    step: list[np.ndarray] = field(default_factory=list)  # t inside its window
    true_mastery: list[np.ndarray] = field(default_factory=list)  # simulator only
    qgain: list[np.ndarray] = field(default_factory=list)  # g_t[q_t]
    qgain_target: list[np.ndarray] = field(default_factory=list)  # response at the next q_t
    qgain_step: list[np.ndarray] = field(default_factory=list)
    student_step: list[np.ndarray] = field(default_factory=list)  # interaction index in the whole student
    sv_mastery: list[np.ndarray] = field(default_factory=list)  # student view: mean over concepts at t
    sv_pred_mastery: list[np.ndarray] = field(default_factory=list)  # student view: mastery of the asked concept
    interactions_before: int = 0  # interactions in the student's windows collected so far
    monotonicity_violation: bool = False
    negative_gain: bool = False
    bounds_violation: bool = False

    def joined(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)

    def boundary_drops(self, name: str = "mastery") -> np.ndarray:
        """Mean mastery at the last position of each window minus at the first of the next one
        (``name="sv_mastery"``: of the student view)."""
        m = [p for p in getattr(self, name) if p.size]
        return np.array([a[-1] - b[0] for a, b in zip(m[:-1], m[1:], strict=True)], dtype=np.float64)

    def example(self) -> dict[str, Any]:
        """The joined series for a plot, with the index where each window starts."""
        row: dict[str, Any] = {}
        for name in ("mastery", "gain", "target", "pred_mastery", "true_mastery"):
            row[name] = [round(float(x), 6) for x in self.joined(name)]
        sizes = [len(p) for p in self.mastery]
        row["window_starts"] = [int(x) for x in np.cumsum([0, *sizes[:-1]])]
        return row


@dataclass
class Semantics:
    """Interpretability metrics over a set of students (see docs/metrics.md)."""

    mastery: CorrelationSummary
    gain: CorrelationSummary
    violations: dict[str, float]
    true_mastery: CorrelationSummary | None
    students: int
    summaries: dict[str, CorrelationSummary] = field(default_factory=dict)  # keyed by SUMMARIES stem
    pooled: dict[str, float | int] = field(default_factory=dict)
    whole_student: dict[str, float | int] = field(default_factory=dict)
    saturation: dict[str, float | int] = field(default_factory=dict)  # SATURATION and STUDENT_VIEW_SATURATION
    student_view: dict[str, float | int] = field(default_factory=dict)  # STUDENT_VIEW_WHOLE

    def flat(self) -> dict[str, float | int | None]:
        """Every value under its SEMANTIC_COLUMNS name; None where undefined for these students."""
        out: dict[str, float | int | None] = {}
        for stem, value in (*SUMMARIES, *STUDENT_VIEW_SUMMARIES):
            s = self.summaries.get(stem) or CorrelationSummary(math.nan, 0, math.nan, math.nan)
            out.update({value: s.mean, f"{stem}_ci_low": s.ci_low, f"{stem}_ci_high": s.ci_high,
                        f"{stem}_n": s.n})
        out.update(self.pooled)
        out.update(self.violations)
        out.update(self.whole_student)
        out["semantic_students"] = self.students
        out.update(self.saturation)
        out.update(self.student_view)
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


def semantics_of(rows: list[StudentSeries]) -> Semantics:
    """All interpretability metrics of these students (each a list of windows)."""
    j = {name: [r.joined(name) for r in rows] for name in (
        "mastery", "gain", "target", "pred_mastery", "step", "true_mastery", "qgain", "qgain_target", "qgain_step",
        "sv_pred_mastery", "student_step")}
    summaries = {
        "mastery": per_student_correlation(j["mastery"], j["target"]),
        "gain": per_student_correlation(j["gain"], j["target"]),
        "qmastery": per_student_correlation(j["pred_mastery"], j["target"]),
        "qmastery_partial": per_student_correlation(j["pred_mastery"], j["target"], j["step"]),
        "qmastery_auc_student": per_student_auc(j["target"], j["pred_mastery"]),
        "qgain": per_student_correlation(j["qgain"], j["qgain_target"]),
        "qgain_partial": per_student_correlation(j["qgain"], j["qgain_target"], j["qgain_step"]),
        "qgain_auc_student": per_student_auc(j["qgain_target"], j["qgain"]),
    }
    student_view = any(r.sv_pred_mastery for r in rows)
    if student_view:  # time control: the step in the whole student (the student view does not reset)
        summaries["student_view_qmastery"] = per_student_correlation(j["sv_pred_mastery"], j["target"])
        summaries["student_view_qmastery_partial"] = per_student_correlation(j["sv_pred_mastery"], j["target"],
                                                                             j["student_step"])
    has_truth = any(r.true_mastery for r in rows)
    if has_truth:
        summaries["true_mastery"] = true_mastery_correlation(j["pred_mastery"], j["true_mastery"])
        summaries["true_mean_mastery"] = per_student_correlation(j["mastery"], j["true_mastery"])
        if student_view:
            summaries["student_view_true_mastery"] = true_mastery_correlation(j["sv_pred_mastery"],
                                                                              j["true_mastery"])
    pooled: dict[str, float | int] = {}
    for stem, score, y in (("qmastery", "pred_mastery", "target"), ("qgain", "qgain", "qgain_target")):
        ys = np.concatenate(j[y]) if rows else np.zeros(0)
        pooled[f"{stem}_auc_pooled"] = auc_or_none(ys, np.concatenate(j[score]) if rows else ys) or math.nan
        pooled[f"{stem}_auc_pooled_n"] = int(ys.size)
    n = max(len(rows), 1)
    return Semantics(
        mastery=summaries["mastery"], gain=summaries["gain"],
        violations={
            "monotonicity_violation_rate": sum(r.monotonicity_violation for r in rows) / n,
            "negative_gain_rate": sum(r.negative_gain for r in rows) / n,
            "bounds_violation_rate": sum(r.bounds_violation for r in rows) / n,
        },
        true_mastery=summaries.get("true_mastery"), students=len(rows), summaries=summaries, pooled=pooled,
        whole_student=whole_student_violations(rows), saturation=saturation_metrics(rows),
        student_view=student_view_violations(rows),
    )


def saturation_metrics(rows: list[StudentSeries]) -> dict[str, float | int]:
    """SATURATION and STUDENT_VIEW_SATURATION: asked-concept mastery at the clamp, per window (window view)
    and per student (student view, steps counted from the student's first interaction), with the
    simulator's truth measured the same two ways (NaN without a truth)."""
    windows = [w for r in rows for w in r.pred_mastery]
    steps = [w for r in rows for w in r.step]
    win = saturation(windows, steps)
    truth = [r for r in rows if r.true_mastery]
    true_win = saturation([w for r in truth for w in r.true_mastery], [w for r in truth for w in r.step])
    student = saturation([r.joined("sv_pred_mastery") for r in rows], [r.joined("student_step") for r in rows])
    true_student = saturation([r.joined("true_mastery") for r in rows], [r.joined("student_step") for r in rows])
    return {
        "mastery_saturated_share": win["saturated_share"],
        "saturation_reached_share": win["reached_share"],
        "saturation_steps_median": win["steps_median"],
        "saturation_windows": win["segments"],
        "true_mastery_saturated_share": true_win["saturated_share"],
        "true_saturation_reached_share": true_win["reached_share"],
        "true_saturation_steps_median": true_win["steps_median"],
        "student_view_mastery_saturated_share": student["saturated_share"],
        "student_view_saturation_reached_share": student["reached_share"],
        "student_view_saturation_steps_median": student["steps_median"],
        "student_view_true_saturation_reached_share": true_student["reached_share"],
        "student_view_true_saturation_steps_median": true_student["steps_median"],
    }


def student_view_violations(rows: list[StudentSeries]) -> dict[str, float | int]:
    """STUDENT_VIEW_WHOLE: monotonicity of the student view's mean mastery over each student's joined
    windows (boundaries included) and its drops at window boundaries (NaN without a student view)."""
    have = [r for r in rows if r.sv_mastery]
    if not have:
        return dict.fromkeys(STUDENT_VIEW_WHOLE, math.nan)
    drops = [r.boundary_drops("sv_mastery") for r in have]
    all_drops = np.concatenate(drops) if drops else np.zeros(0)
    whole = sum(bool((np.diff(r.joined("sv_mastery")) < -TOLERANCE).any()) for r in have)
    return {
        "student_view_monotonicity_violation_rate_whole_student": whole / len(have),
        "student_view_boundary_drop_rate": float((all_drops > TOLERANCE).mean()) if all_drops.size else math.nan,
        "student_view_boundary_drop_mean": float(all_drops.mean()) if all_drops.size else math.nan,
    }


def whole_student_violations(rows: list[StudentSeries]) -> dict[str, float | int]:
    """Monotonicity over each student's joined windows: a drop at a window boundary counts."""
    drops = [r.boundary_drops() for r in rows]
    all_drops = np.concatenate(drops) if drops else np.zeros(0)
    whole = sum(r.monotonicity_violation or bool((d > TOLERANCE).any()) for r, d in zip(rows, drops, strict=True))
    return {
        "monotonicity_violation_rate_whole_student": whole / max(len(rows), 1),
        "boundary_drop_rate": float((all_drops > TOLERANCE).mean()) if all_drops.size else math.nan,
        "boundary_drop_mean": float(all_drops.mean()) if all_drops.size else math.nan,
        "boundaries": int(all_drops.size),
        "multiwindow_students": sum(int(d.size > 0) for d in drops),
    }


@dataclass
class EvalResult:
    """What one pass over a set of windows measured."""

    loss: float
    auc: float
    accuracy: float
    n_scored: int
    students: dict[int, StudentSeries] = field(default_factory=dict)
    head_values: dict[str, np.ndarray] | None = None
    majority_rate: float = math.nan  # share of the more frequent class among scored targets

    def semantics(self, subset: Iterable[int] | None = None) -> Semantics | None:
        """Interpretability metrics over `subset` of students (all when None); None without heads."""
        if not self.students:
            return None
        chosen = self.students if subset is None else {int(s): self.students[int(s)] for s in subset
                                                       if int(s) in self.students}
        return semantics_of(list(chosen.values()))

    def collapsed(self) -> bool:
        """Predictions collapsed: accuracy equals the majority-class rate and AUC < 0.6."""
        return (math.isfinite(self.accuracy) and abs(self.accuracy - self.majority_rate) < 1e-9
                and not self.auc >= 0.6)

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
    mastery outside [0, 1] by more than 1e-6, and the student view of mastery (carried across window
    boundaries with the model's own ``accumulate``; each student's windows must be consecutive and in
    order in `seqs`, as ``build_windows`` makes them). `head_students`: collect raw head outputs of
    these students for --log_head_stats. `pack`: pack each batch's rows (``plan_packing``), which
    changes the result only by float rounding.
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
    # The student view needs the model's accumulation rule (GainAKT2Exp.accumulate); a model without
    # one (a test double) gets no student view, and its student_view_* metrics are undefined (null).
    accumulate = getattr(model, "accumulate", None) if semantics else None
    view = StudentView(accumulate) if accumulate is not None else None
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
            _collect(students, b, mastery.float(), gains.float(), head_set, head_parts, view)
    model.train(was_training)

    y, p = (np.concatenate(targets), np.concatenate(probs)) if targets else (np.zeros(0), np.zeros(0))
    auc, acc = auc_accuracy(y, p) if len(y) else (math.nan, math.nan)
    result = EvalResult(loss=loss_sum / max(loss_n, 1), auc=auc, accuracy=acc, n_scored=len(y),
                        students=dict(sorted(students.items())),
                        majority_rate=_majority_rate(y))
    if head_set is not None and head_parts["mastery"]:
        result.head_values = {k: np.concatenate(v) for k, v in head_parts.items()}
    return result


def _majority_rate(y: np.ndarray) -> float:
    """Share of the more frequent class (the accuracy of always predicting it)."""
    if not len(y):
        return math.nan
    pos = int((np.asarray(y) >= 0.5).sum())
    return max(pos, len(y) - pos) / len(y)


def _next_practice(b: SequenceSet) -> tuple[torch.Tensor, torch.Tensor]:
    """For each t: whether concept q_t is answered again later in the window, and that response.

    Interaction u of the row has concept ``c_u`` (q for u < T, qry[T-1] for u = T) and response
    ``y_u``; the next occurrence of q_t is the smallest real u > t with c_u == q_t.
    """
    width = b.q.shape[1]
    later_c = b.qry  # c_{u'+1} for u' = 0..T-1
    match = later_c.unsqueeze(1) == b.q.unsqueeze(2)  # [B, t, u']
    u = torch.arange(width, device=b.q.device)
    match &= (u.unsqueeze(0) >= u.unsqueeze(1)).unsqueeze(0) & b.mask.unsqueeze(1)
    first = torch.where(match, u, width).min(-1).values
    has = first < width
    return has, b.target.gather(-1, first.clamp(max=width - 1))


def _collect(students: dict[int, StudentSeries], b: SequenceSet, mastery: torch.Tensor, gains: torch.Tensor,
             head_set: set[int] | None, head_parts: dict[str, list[np.ndarray]], view: StudentView | None) -> None:
    """Per-row reductions on the device, then one transfer; the Python loop is over rows only."""
    mask = b.mask
    has_next, next_y = _next_practice(b)
    host = {
        "mastery": mastery.mean(-1), "gain": gains.mean(-1), "target": b.target,
        "pred_mastery": mastery.gather(-1, b.qry.unsqueeze(-1)).squeeze(-1),
        "step": torch.arange(mask.shape[1], device=mask.device).expand_as(mask),
    }
    if view is not None:
        carried = view(mastery, gains, mask, b.student)
        host["sv_mastery"] = carried.mean(-1)
        host["sv_pred_mastery"] = carried.gather(-1, b.qry.unsqueeze(-1)).squeeze(-1)
    practice = {"qgain": gains.gather(-1, b.q.unsqueeze(-1)).squeeze(-1), "qgain_target": next_y,
                "qgain_step": host["step"]}
    host_np = {k: v.cpu().numpy() for k, v in host.items()}
    practice_np = {k: v.cpu().numpy() for k, v in practice.items()}
    true_m = b.true_mastery.cpu().numpy() if b.true_mastery is not None else None
    mask_np, has_np = mask.cpu().numpy(), has_next.cpu().numpy()
    lengths = b.length.cpu().numpy()
    flags = violation_flags(mastery, gains, mask).cpu().numpy()
    for i, s in enumerate(b.student.cpu().numpy().tolist()):
        valid = mask_np[i]
        if not valid.any():
            continue
        rec = students[s]
        for name, arr in host_np.items():
            getattr(rec, name).append(arr[i][valid])
        rec.student_step.append(host_np["step"][i][valid] + rec.interactions_before)
        rec.interactions_before += int(lengths[i])
        for name, arr in practice_np.items():
            getattr(rec, name).append(arr[i][has_np[i]])
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
