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
    iterate_batches,
    split_students,
)
from gainakt.determinism import (
    configure_determinism,
    restore_rng_state,
    rng_state,
    rng_state_summary,
    seed_everything,
)
from gainakt.evaluate import SEMANTIC_COLUMNS, EvalResult, Semantics, evaluate
from gainakt.losses import LossSchedule, LossSettings, compute_losses
from gainakt.metrics import LOSS_TERMS, auc_accuracy, loss_abs_shares, stratified_sample
from gainakt.model import GainAKT2Exp

LOSS_SECTIONS = ("interpretability", "alignment", "retention_lag", "scheduling", "stability_controls", "sampling")

EPOCH_COLUMNS = (
    "seed", "epoch", "train_loss", "train_bce", "train_auc", "val_loss", "val_auc", "val_accuracy",
    "train_constraint_term", "train_alignment_term", "train_lag_term", "train_retention_term",
    "main_loss_share", "constraint_loss_share", "alignment_loss_share", "lag_loss_share",
    "retention_loss_share", *(f"{k}_abs_share" for k in LOSS_TERMS),
    *SEMANTIC_COLUMNS, "learning_rate", "epoch_seconds",
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
    return cls(model.parameters(), lr=t["learning_rate"], weight_decay=t["weight_decay"])


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
    bs = tcfg["batch_size"]

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
        train_probs, train_targets = [], []  # kept on the device: no sync per batch
        for b_i, batch in enumerate(iterate_batches(train_set, bs, generator=order, shuffle=True,
                                                    bucket_by_length=bucket)):
            b = batch.to(device)
            with autocast():
                out = model(b.q, b.r, b.qry)
            terms = compute_losses(out, b, weights)
            loss = terms["total"]
            if not torch.isfinite(loss):
                status, reason = "failed", f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {b_i}"
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
                train_probs.append(torch.sigmoid(out["logits"].detach().float()[b.mask]))
                train_targets.append(b.target[b.mask])
            if (b_i + 1) % monitor_freq == 0:
                sink.log(
                    f"seed {seed} epoch {epoch + 1} batch {b_i + 1}: loss {float(loss.detach()):.4f} "
                    f"bce {float(terms['bce']):.4f} mastery_var {float(terms.get('mastery_variance', math.nan)):.5f}"
                )
        if status == "failed":
            break
        means = {k: v for k, v in schedule.observed_means().items() if v is not None}
        train_auc, _ = auc_accuracy(torch.cat(train_targets).cpu().numpy(), torch.cat(train_probs).cpu().numpy())

        # One pass over the validation windows; the semantic sample and the global alignment pass are
        # student subsets of it.
        val = evaluate(model, valid_set, batch_size=bs, device=device, autocast=autocast(), semantics=True,
                       head_students=sem_students if config["sampling"]["log_head_stats"] else None)
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
            f"mastery_corr {fmt(row['mastery_correlation'])} gain_corr {fmt(row['gain_correlation'])} "
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
    result.final, final_val = final_metrics(model, valid_set, test_set, test_window, bs, device, autocast)
    result.rng_final = rng_state_summary(rng_state(order))
    result.examples = trajectory_examples(final_val, sem_students)
    sink.log(
        f"seed {seed}: best epoch {best_epoch} val_auc {result.best_val_auc:.4f}; "
        f"test AUC {fmt(result.final.get('test_auc'))} (window {fmt(result.final.get('test_window_auc'))})"
    )
    return result


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
    row: dict[str, Any] = {
        "seed": seed,
        "epoch": epoch + 1,
        "train_loss": means.get("total", nan),  # the whole objective (guide name)
        "train_bce": means.get("bce", nan),
        "train_auc": train_auc,
        "val_loss": val.loss,
        "val_auc": val.auc,
        "val_accuracy": val.accuracy,
        **{f"train_{k}_term": means.get(k, nan) for k in LOSS_TERMS if k != "bce"},
        "main_loss_share": shares.get("main", nan),
        "constraint_loss_share": shares.get("constraint", nan),
        "alignment_loss_share": shares.get("alignment", nan),
        "lag_loss_share": shares.get("lag", nan),
        "retention_loss_share": shares.get("retention", nan),
        **loss_abs_shares(means),
        **{k: None for k in SEMANTIC_COLUMNS},  # None: not measured
        "learning_rate": optimizer.param_groups[0]["lr"],
        "epoch_seconds": round(seconds, 3),
    }
    if sem is not None:
        row.update(sem.flat())
    return row


def final_metrics(model, valid_set, test_set, test_window, bs, device, autocast) -> tuple[dict[str, Any], EvalResult]:
    """Best model on all validation students and on the test set (non-window and window AUC)."""
    out: dict[str, Any] = {}
    val = evaluate(model, valid_set, batch_size=bs, device=device, autocast=autocast(), semantics=True)
    out.update(_prefixed("val", val))
    if test_set is not None and len(test_set):
        test = evaluate(model, test_set, batch_size=bs, device=device, autocast=autocast(), semantics=True)
        out.update(_prefixed("test", test))
    if test_window is not None and len(test_window):
        win = evaluate(model, test_window, batch_size=bs, device=device, autocast=autocast())
        out["test_window_auc"] = win.auc
        out["test_window_accuracy"] = win.accuracy
        out["test_window_n_scored"] = win.n_scored
    return out, val


def trajectory_examples(val: EvalResult, students: np.ndarray, k: int = 4) -> list[dict]:
    """Whole-student series (all windows, boundaries marked) of the k sampled students with the most
    windows (ties: sample order), so that window boundaries show when any sampled student has them."""
    present = [int(s) for s in students if int(s) in val.students]
    chosen = sorted(present, key=lambda s: -len(val.students[s].mastery))[:k]
    return [{"student": s, **val.students[s].example()} for s in chosen]


def _prefixed(prefix: str, r: EvalResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"{prefix}_auc": r.auc,
        f"{prefix}_accuracy": r.accuracy,
        f"{prefix}_loss": r.loss,
        f"{prefix}_n_scored": r.n_scored,
        f"{prefix}_majority_rate": r.majority_rate,
        f"{prefix}_predictions_collapsed": r.collapsed(),
    }
    sem = r.semantics()
    if sem is not None:
        out.update({f"{prefix}_{k}": v for k, v in sem.flat().items()})
    return out
