"""Training of one seed, readable top to bottom: `train_seed(config, data, device, sink)`.

The harness calls this once per seed (in a worker process); everything that touches experiment
files goes through `sink`, so this module never writes to disk itself.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from gainakt.data import (
    KTDataset,
    SequenceSet,
    build_window_test,
    build_windows,
    split_students,
)
from gainakt.data.batching import device_batches
from gainakt.determinism import (
    configure_determinism,
    restore_rng_state,
    rng_state,
    rng_state_summary,
    seed_everything,
)
from gainakt.evaluate import EvalResult, Semantics, evaluate, evaluate_predictions
from gainakt.losses import LossSchedule, LossSettings, compute_losses
from gainakt.metrics import auc_accuracy, stratified_sample
from gainakt.model import GainAKT2Exp

LOSS_SECTIONS = ("interpretability", "alignment", "retention_lag", "scheduling", "stability_controls", "sampling")

EPOCH_COLUMNS = (
    "seed", "epoch", "train_loss", "train_auc", "val_loss", "val_auc", "val_accuracy",
    "monotonicity_violation_rate", "negative_gain_rate", "bounds_violation_rate",
    "mastery_correlation", "mastery_ci_low", "mastery_ci_high", "mastery_n",
    "gain_correlation", "gain_ci_low", "gain_ci_high", "gain_n",
    "main_loss_share", "constraint_loss_share", "alignment_loss_share", "lag_loss_share",
    "retention_loss_share", "learning_rate", "epoch_seconds",
)


class TrainSink(Protocol):
    """Where a seed's outputs go (the harness writes them into the experiment folder)."""

    def log(self, message: str) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def checkpoint(self, kind: str, state: dict) -> None: ...
    def trajectory(self, entry: dict) -> None: ...


class SeedFailed(RuntimeError):
    """Training of this seed cannot continue (e.g. a non-finite loss)."""


@dataclass
class SeedResult:
    """Outcome of one seed: status, best validation metrics and the final evaluation."""

    seed: int
    status: str  # "completed" | "early_stopped" | "failed"
    reason: str | None
    epochs_run: int
    best_epoch: int | None
    best_val_auc: float | None
    best: dict[str, Any] = field(default_factory=dict)  # the best epoch's row
    final: dict[str, Any] = field(default_factory=dict)  # best model on all val/test students
    history: list[dict] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    amp: dict[str, Any] = field(default_factory=dict)
    determinism: dict[str, Any] = field(default_factory=dict)
    seconds_per_epoch: float | None = None
    eval_seconds: dict[str, float] = field(default_factory=dict)  # final evaluation passes, wall time
    rng_final: dict[str, Any] | None = None
    # A few validation students' trajectories under the best model (for the mastery plot).
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Settings from the config


def loss_settings(config: dict) -> LossSettings:
    flat: dict[str, Any] = {}
    for section in LOSS_SECTIONS:
        flat.update(config.get(section, {}))
    return LossSettings.from_flat(flat)


def build_model(config: dict, num_c: int) -> GainAKT2Exp:
    m, heads = config["model"], config["heads"]
    return GainAKT2Exp(
        num_c=num_c,
        d_model=m["d_model"],
        n_heads=m["n_heads"],
        n_blocks=m["num_encoder_blocks"],
        d_ff=m["d_ff"],
        dropout=m["dropout"],
        max_len=config["data"]["seq_len"],
        use_mastery_head=heads["use_mastery_head"],
        use_gain_head=heads["use_gain_head"],
        gain_scale=m["gain_scale"],
        head_normalization=m["enable_head_normalization"],
    )


def amp_settings(config: dict, device: torch.device) -> dict[str, Any]:
    """AMP only on CUDA; bf16 where supported under 'auto' (no loss scaling needed), else fp16."""
    t = config["training"]
    if not t["mixed_precision"] or device.type != "cuda":
        reason = "disabled (--no_amp)" if not t["mixed_precision"] else "disabled (not on CUDA)"
        return {"enabled": False, "dtype": None, "grad_scaler": False, "note": reason}
    choice = t.get("amp_dtype", "auto")
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"enabled": True, "dtype": choice, "grad_scaler": choice == "fp16", "note": "enabled"}


def make_optimizer(config: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = config["training"]
    cls = torch.optim.AdamW if t["optimizer"] == "AdamW" else torch.optim.Adam
    # fused: one kernel for the whole update (CUDA and CPU); False keeps PyTorch's foreach default.
    fused = bool(t.get("fused_optimizer", False)) or None
    return cls(model.parameters(), lr=t["learning_rate"], weight_decay=t["weight_decay"], fused=fused)


def student_sample(seqs: SequenceSet, k: int, seed: int) -> np.ndarray:
    """A stratified (by sequence length) sample of k students of `seqs`, same for the same seed."""
    students, inverse = np.unique(seqs.student.numpy(), return_inverse=True)
    lengths = np.bincount(inverse, weights=seqs.length.numpy()).astype(np.int64)
    return students[stratified_sample(lengths, k, seed)]


# ---------------------------------------------------------------------------------------------
# Training


def train_seed(
    config: dict,
    data: KTDataset,
    device: str | torch.device,
    sink: TrainSink,
    *,
    seed: int | None = None,
    resume: dict | None = None,
) -> SeedResult:
    """Train one seed as `config` says and return its result; `resume` is a last checkpoint."""
    seed = int(config["seeds"]["primary"] if seed is None else seed)
    device = torch.device(device)
    tcfg = config["training"]
    determinism = configure_determinism(bool(config["determinism"]["torch_deterministic"]))
    seed_everything(seed)

    # Data: tensors built once per run.
    max_len = config["data"]["seq_len"]
    train_idx, valid_idx, test_idx = split_students(data, config["data"]["fold"])
    train_set = build_windows(data, train_idx, max_len)
    valid_set = build_windows(data, valid_idx, max_len)
    test_set = build_windows(data, test_idx, max_len) if len(test_idx) else None
    test_window = build_window_test(data, test_idx, max_len) if len(test_idx) else None
    if len(train_set) == 0 or len(valid_set) == 0:
        raise SeedFailed(f"fold {config['data']['fold']} leaves no training or validation windows")
    sem_students = student_sample(valid_set, config["sampling"]["max_semantic_students"], seed)
    settings = loss_settings(config)
    global_students = None
    if settings.enable_global_alignment_pass:
        global_students = student_sample(valid_set, settings.alignment_global_students, seed)

    model = build_model(config, data.num_c).to(device)
    optimizer = make_optimizer(config, model)
    amp = amp_settings(config, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp["dtype"] or "", None)
    scaler = torch.amp.GradScaler("cuda", enabled=amp["grad_scaler"])

    def autocast() -> contextlib.AbstractContextManager:
        if not amp["enabled"]:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp_dtype)

    scheduler = None
    if tcfg["lr_scheduler"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=5)
    schedule = LossSchedule(settings, tcfg["epochs"], gain_scale=config["model"]["gain_scale"])
    order = torch.Generator().manual_seed(seed)
    bucket = bool(config["data"]["bucket_by_length"])
    pack = bool(config["data"].get("pack_windows", False))
    bs = tcfg["batch_size"]
    ebs = int(tcfg.get("eval_batch_size", bs))

    start_epoch, best_auc, best_epoch, stale = 0, -math.inf, None, 0
    history: list[dict] = []
    trajectory: list[dict] = []
    best_row: dict = {}
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        schedule.load_state_dict(resume["schedule"])
        if scheduler is not None and resume.get("lr_scheduler"):
            scheduler.load_state_dict(resume["lr_scheduler"])
        start_epoch = resume["epoch"] + 1
        best_auc = resume["best_val_auc"] if resume["best_val_auc"] is not None else -math.inf
        best_epoch, stale = resume["best_epoch"], resume["stale_epochs"]
        history, trajectory = list(resume["history"]), list(resume["trajectory"])
        best_row = dict(resume.get("best_row") or {})
        restore_rng_state(resume["rng"], order)
        sink.log(f"seed {seed}: resuming after epoch {resume['epoch'] + 1}")

    n_params = sum(p.numel() for p in model.parameters())
    sink.log(
        f"seed {seed}: {n_params:,} parameters on {device}; AMP {amp['note']}"
        f"{' (' + amp['dtype'] + ')' if amp['enabled'] else ''}; {len(train_set)} train / "
        f"{len(valid_set)} valid windows"
    )

    def state(epoch: int) -> dict:
        return {
            "epoch": epoch,
            "seed": seed,
            "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "scaler": scaler.state_dict(),
            "schedule": schedule.state_dict(),
            "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
            "best_val_auc": None if best_auc == -math.inf else best_auc,
            "best_epoch": best_epoch,
            "stale_epochs": stale,
            "history": list(history),
            "trajectory": list(trajectory),
            "best_row": dict(best_row),
            "rng": rng_state(order),
            "amp": amp,
            "determinism": determinism,
            "config_md5": config.get("config_md5"),
        }

    status, reason = "completed", None
    epoch_times: list[float] = []
    monitor_freq = max(1, int(tcfg["monitor_freq"]))
    for epoch in range(start_epoch, tcfg["epochs"]):
        t0 = time.perf_counter()
        weights = schedule.begin_epoch(epoch)
        model.train()
        train_probs, train_targets, train_masks = [], [], []  # kept on the device: no sync per batch
        bad = StepHealth(device)
        for b_i, (b, plan) in enumerate(device_batches(train_set, device, bs, generator=order, shuffle=True,
                                                       bucket_by_length=bucket, pack=pack)):
            with autocast():
                out = model(b.q, b.r, b.qry, pack=plan)
            terms = compute_losses(out, b, weights)
            loss = terms["total"]
            bad.observe(loss, b_i)
            if (b_i + 1) % monitor_freq == 0 and bad.failed():
                break
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            if tcfg["gradient_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["gradient_clip"])
            scaler.step(optimizer)
            scaler.update()
            schedule.observe_batch(terms)
            with torch.no_grad():
                train_probs.append(torch.sigmoid(out["logits"].detach().float()).flatten())
                train_targets.append(b.target.flatten())
                train_masks.append(b.mask.flatten())
            if (b_i + 1) % monitor_freq == 0:
                sink.log(
                    f"seed {seed} epoch {epoch + 1} batch {b_i + 1}: loss {float(loss.detach()):.4f} "
                    f"bce {float(terms['bce']):.4f} mastery_var {float(terms.get('mastery_variance', math.nan)):.5f}"
                )
        if bad.failed():
            status, reason = "failed", f"non-finite loss ({bad.value()}) at epoch {epoch + 1}, batch {bad.batch()}"
            break
        means = {k: v for k, v in schedule.observed_means().items() if v is not None}
        seen = torch.cat(train_masks).cpu().numpy()
        train_auc, _ = auc_accuracy(torch.cat(train_targets).cpu().numpy()[seen], torch.cat(train_probs).cpu().numpy()[seen])

        # One pass over the validation windows; the semantic sample and the global alignment pass are
        # student subsets of it.
        val = evaluate(model, valid_set, batch_size=ebs, device=device, autocast=autocast(), semantics=True,
                       head_students=sem_students if config["sampling"]["log_head_stats"] else None, pack=pack)
        sem = val.semantics(sem_students)
        glob = val.semantics(global_students) if global_students is not None else None
        shares = schedule.observed_loss_shares()
        reference = glob.mastery.mean if glob is not None else (sem.mastery.mean if sem is not None else None)
        if reference is not None and math.isnan(reference):
            reference = None
        sched_log = schedule.end_epoch(epoch, mastery_corr_reference=reference)
        if scheduler is not None:
            scheduler.step(val.auc)
        seconds = time.perf_counter() - t0
        epoch_times.append(seconds)
        row = epoch_row(seed, epoch, means, train_auc, val, sem, shares, optimizer, seconds)
        history.append(row)
        sink.epoch(row)
        entry = {
            "epoch": epoch + 1,
            "mastery_correlation": row["mastery_correlation"],
            "gain_correlation": row["gain_correlation"],
            "true_mastery_correlation": sem.true_mastery.mean if sem and sem.true_mastery else None,
            "global_alignment_mastery_corr": glob.mastery.mean if glob else None,
            "global_alignment_gain_corr": glob.gain.mean if glob else None,
            "global_alignment_students": glob.students if glob else 0,
            "loss_means": means,
            "loss_shares": shares,
            **sched_log,
        }
        head = val.head_stats()
        if head is not None:
            entry["head_stats"] = head
        trajectory.append(entry)
        sink.trajectory(entry)
        improved = val.auc > best_auc  # strict: ties keep the earlier epoch
        if improved:
            best_auc, best_epoch, stale, best_row = val.auc, epoch + 1, 0, dict(row)
        else:
            stale += 1
        sink.log(
            f"seed {seed} epoch {epoch + 1}/{tcfg['epochs']}: train_loss {row['train_loss']:.4f} "
            f"train_auc {train_auc:.4f} val_auc {val.auc:.4f} val_acc {val.accuracy:.4f} "
            f"mastery_corr {row['mastery_correlation']:.4f} gain_corr {row['gain_correlation']:.4f} "
            f"({seconds:.1f}s){' *best*' if improved else ''}"
        )
        snapshot = state(epoch)
        if improved:
            sink.checkpoint("best", snapshot)
        sink.checkpoint("last", snapshot)
        if tcfg["patience"] > 0 and stale >= tcfg["patience"]:
            status, reason = "early_stopped", f"no val AUC improvement for {stale} epochs"
            sink.log(f"seed {seed}: early stopping after epoch {epoch + 1} ({reason})")
            break

    result = SeedResult(
        seed=seed, status=status, reason=reason, epochs_run=len(history),
        best_epoch=best_epoch, best_val_auc=None if best_auc == -math.inf else best_auc,
        best=best_row, history=history, trajectory=trajectory, amp=amp, determinism=determinism,
        seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else None,
    )
    if status == "failed":
        sink.log(f"seed {seed}: FAILED: {reason}")
        return result

    # Final evaluation of the best model on every validation and test student.
    model.load_state_dict(best_state_of(sink, model))
    result.final, final_val = final_metrics(model, valid_set, test_set, test_window, ebs, device, autocast,
                                            pack=pack, fast=bool(tcfg.get("eval_fast_path", False)),
                                            progress=lambda m: sink.log(f"seed {seed}: {m}"))
    result.eval_seconds = result.final.pop("eval_seconds")  # timings stay out of the results
    result.rng_final = rng_state_summary(rng_state(order))
    result.examples = trajectory_examples(final_val, sem_students)
    sink.log(
        f"seed {seed}: best epoch {best_epoch} val_auc {result.best_val_auc:.4f}; "
        f"test AUC {fmt(result.final.get('test_auc'))} (window {fmt(result.final.get('test_window_auc'))})"
    )
    return result


class StepHealth:
    """Non-finite losses noticed without a host sync per step: the first bad batch stays on the device.

    ``failed()`` syncs; the training loop calls it at its logging points and at the end of the epoch,
    so a failing epoch stops there instead of at the bad batch (its steps are lost with it anyway).
    """

    def __init__(self, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)

    def observe(self, loss: torch.Tensor, batch: int) -> None:
        new = ~torch.isfinite(loss.detach()) & (self.first < 0)
        self.first = torch.where(new, torch.full_like(self.first, batch), self.first)
        self.loss = torch.where(new, loss.detach().float(), self.loss)

    def failed(self) -> bool:
        return bool(self.first >= 0)

    def batch(self) -> int:
        return int(self.first)

    def value(self) -> float:
        return float(self.loss)


class MemorySink:
    """A sink that keeps everything in memory (for library use and tests)."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.messages: list[str] = []
        self.rows: list[dict] = []
        self.entries: list[dict] = []
        self.checkpoints: dict[str, dict] = {}

    def log(self, message: str) -> None:
        self.messages.append(message)
        if self.echo:
            print(message, flush=True)

    def epoch(self, row: dict) -> None:
        self.rows.append(row)

    def checkpoint(self, kind: str, state: dict) -> None:
        self.checkpoints[kind] = state

    def trajectory(self, entry: dict) -> None:
        self.entries.append(entry)

    def best_model_state(self) -> dict | None:
        best = self.checkpoints.get("best")
        return best["model"] if best else None


def best_state_of(sink: TrainSink, model: torch.nn.Module) -> dict:
    """The best checkpoint's weights, as the sink kept them (it stores every checkpoint it gets)."""
    getter = getattr(sink, "best_model_state", None)
    state = getter() if getter is not None else None
    return state if state is not None else model.state_dict()


def fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def epoch_row(seed: int, epoch: int, means: dict, train_auc: float, val: EvalResult, sem: Semantics | None,
              shares: dict, optimizer: torch.optim.Optimizer, seconds: float) -> dict:
    """One metrics_epoch.csv row (columns EPOCH_COLUMNS)."""
    nan = float("nan")
    m, g = (sem.mastery, sem.gain) if sem is not None else (None, None)
    violations = sem.violations if sem is not None else {}
    row = {
        "seed": seed,
        "epoch": epoch + 1,
        "train_loss": means.get("total", nan),
        "train_auc": train_auc,
        "val_loss": val.loss,
        "val_auc": val.auc,
        "val_accuracy": val.accuracy,
        "monotonicity_violation_rate": violations.get("monotonicity_violation_rate", 0.0),
        "negative_gain_rate": violations.get("negative_gain_rate", 0.0),
        "bounds_violation_rate": violations.get("bounds_violation_rate", 0.0),
        "mastery_correlation": m.mean if m else nan,
        "mastery_ci_low": m.ci_low if m else nan,
        "mastery_ci_high": m.ci_high if m else nan,
        "mastery_n": m.n if m else 0,
        "gain_correlation": g.mean if g else nan,
        "gain_ci_low": g.ci_low if g else nan,
        "gain_ci_high": g.ci_high if g else nan,
        "gain_n": g.n if g else 0,
        "main_loss_share": shares.get("main", nan),
        "constraint_loss_share": shares.get("constraint", nan),
        "alignment_loss_share": shares.get("alignment", nan),
        "lag_loss_share": shares.get("lag", nan),
        "retention_loss_share": shares.get("retention", nan),
        "learning_rate": optimizer.param_groups[0]["lr"],
        "epoch_seconds": round(seconds, 3),
    }
    return row


def final_metrics(model, valid_set, test_set, test_window, bs, device, autocast, *, pack: bool = False,
                  fast: bool = False, progress=None) -> tuple[dict[str, Any], EvalResult]:
    """Best model on all validation students and on the test set (non-window and window AUC).

    ``eval_seconds`` records the wall time of each pass; the window-protocol pass reports its progress.
    """
    out: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    val = evaluate(model, valid_set, batch_size=bs, device=device, autocast=autocast(), semantics=True, pack=pack)
    seconds["val"] = time.perf_counter() - t0
    out.update(_prefixed("val", val))
    if test_set is not None and len(test_set):
        t0 = time.perf_counter()
        test = evaluate(model, test_set, batch_size=bs, device=device, autocast=autocast(), semantics=True,
                        pack=pack)
        seconds["test"] = time.perf_counter() - t0
        out.update(_prefixed("test", test))
    if test_window is not None and len(test_window):
        t0 = time.perf_counter()
        win = evaluate_predictions(model, test_window, batch_size=bs, device=device, autocast=autocast(),
                                   pack=pack, fast=fast, progress=progress, label="test window-protocol evaluation")
        seconds["test_window"] = time.perf_counter() - t0
        out["test_window_auc"] = win.auc
        out["test_window_accuracy"] = win.accuracy
        out["test_window_n_scored"] = win.n_scored
    out["eval_seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return out, val


def trajectory_examples(val: EvalResult, students: np.ndarray, k: int = 4) -> list[dict]:
    """Mean mastery, mastery of the next concept, and correctness over time for k sampled students."""
    out = []
    for s in [int(s) for s in students[:k] if int(s) in val.students]:
        series = val.students[s]
        row: dict[str, Any] = {"student": s}
        for name in ("mastery", "gain", "target", "pred_mastery", "true_mastery"):
            row[name] = [round(float(x), 6) for x in series.joined(name)]
        out.append(row)
    return out


def _prefixed(prefix: str, r: EvalResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"{prefix}_auc": r.auc,
        f"{prefix}_accuracy": r.accuracy,
        f"{prefix}_loss": r.loss,
        f"{prefix}_n_scored": r.n_scored,
    }
    sem = r.semantics()
    if sem is None:
        return out
    for name, summary in (("mastery", sem.mastery), ("gain", sem.gain), ("true_mastery", sem.true_mastery)):
        if summary is not None:
            out[f"{prefix}_{name}_correlation"] = summary.mean
            out[f"{prefix}_{name}_ci_low"] = summary.ci_low
            out[f"{prefix}_{name}_ci_high"] = summary.ci_high
            out[f"{prefix}_{name}_n"] = summary.n
    out[f"{prefix}_semantic_students"] = sem.students
    for k, v in sem.violations.items():
        out[f"{prefix}_{k}"] = v
    return out
