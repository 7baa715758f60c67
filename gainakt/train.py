"""Training of one seed, readable top to bottom: `train_seed(config, data, device, sink)`.

The harness calls this once per seed (in a worker process); everything that touches experiment
files goes through `sink`, so this module never writes to disk itself.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from gainakt.checkpoint import config_record, model_args
from gainakt.compile import CompiledForward, compile_problem
from gainakt.config import ConfigValueError, TrainConfig
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
from gainakt.evaluate import SEMANTIC_COLUMNS, EvalResult, Semantics, evaluate, evaluate_predictions
from gainakt.losses import LossSchedule, LossSettings, compute_losses
from gainakt.metrics import LOSS_TERMS, auc_accuracy, loss_abs_shares, stratified_sample
from gainakt.model import GainAKT2Exp

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
    eval_seconds: dict[str, float] = field(default_factory=dict)  # final evaluation passes, wall time
    compile: dict[str, Any] | None = None  # training.compile: shapes compiled, first-call seconds (None: eager)
    rng_final: dict[str, Any] | None = None
    # A few validation students' trajectories under the best model (for the mastery plot).
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Settings from the config


def as_train_config(config: TrainConfig | Mapping[str, Any]) -> TrainConfig:
    """The typed config (a config.json dict is parsed and checked)."""
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def loss_settings(config: TrainConfig | Mapping[str, Any]) -> LossSettings:
    return LossSettings.from_config(as_train_config(config))


def build_model(config: TrainConfig | Mapping[str, Any], num_c: int) -> GainAKT2Exp:
    cfg = as_train_config(config)
    m, heads = cfg.model, cfg.heads
    return GainAKT2Exp(
        num_c=num_c,
        d_model=m.d_model,
        n_heads=m.n_heads,
        n_blocks=m.num_encoder_blocks,
        d_ff=m.d_ff,
        dropout=m.dropout,
        max_len=cfg.data.seq_len,
        use_mastery_head=heads.use_mastery_head,
        use_gain_head=heads.use_gain_head,
        gain_scale=m.gain_scale,
        head_normalization=m.enable_head_normalization,
        mastery_accumulation=m.mastery_accumulation,
    )


def amp_settings(config: TrainConfig | Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """AMP only on CUDA; bf16 where supported under 'auto' (no loss scaling needed), else fp16."""
    t = as_train_config(config).training
    if not t.mixed_precision or device.type != "cuda":
        reason = "disabled (not on CUDA)" if device.type != "cuda" else "disabled (--no_amp)"
        return {"enabled": False, "dtype": None, "grad_scaler": False, "note": reason}
    choice = t.amp_dtype
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"enabled": True, "dtype": choice, "grad_scaler": choice == "fp16", "note": "enabled"}


def clip_order_note(config: TrainConfig | Mapping[str, Any], amp: Mapping[str, Any]) -> str | None:
    """Why ``clip_before_unscale`` cannot act in a run with these AMP settings (None if it acts or is off)."""
    if not as_train_config(config).training.clip_before_unscale or amp.get("grad_scaler"):
        return None
    precision = f"AMP {amp['dtype']}" if amp.get("enabled") else "fp32 (AMP " + str(amp.get("note")) + ")"
    return (f"training.clip_before_unscale has no effect in this run: {precision} uses no GradScaler, so the "
            "gradients are never scaled (it acts only under fp16 AMP on CUDA)")


def clip_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   max_norm: float, before_unscale: bool = False) -> None:
    """Clip the true gradients: unscale them first (a no-op without an enabled GradScaler), then clip.

    ``before_unscale`` (reference semantics, defect 12) clips the loss-scaled gradients instead, so the
    effective clip norm is max_norm / scale; ``scaler.step`` unscales afterwards. Without an enabled
    GradScaler (bf16 AMP, fp32) the two orders are the same computation.
    """
    if not before_unscale:
        scaler.unscale_(optimizer)
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def make_optimizer(config: TrainConfig | Mapping[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    t = as_train_config(config).training
    cls = torch.optim.AdamW if t.optimizer == "AdamW" else torch.optim.Adam
    # fused: one kernel for the whole update (CUDA and CPU); False keeps PyTorch's foreach default.
    return cls(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay, fused=t.fused_optimizer or None)


def student_sample(seqs: SequenceSet, k: int, seed: int) -> np.ndarray:
    """A stratified (by sequence length) sample of k students of `seqs`, same for the same seed."""
    students, inverse = np.unique(seqs.student.numpy(), return_inverse=True)
    lengths = np.bincount(inverse, weights=seqs.length.numpy()).astype(np.int64)
    return students[stratified_sample(lengths, k, seed)]


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainState:
    """Where training of one seed stands after an epoch; `checkpoint()` is the file's dict.

    The on-disk checkpoint stays a plain dict of tensors and JSON-like values (it loads with
    `torch.load(..., weights_only=True)`); other keys may be added beside these.
    """

    seed: int
    epoch: int = -1  # last finished epoch, 0-based
    best_auc: float = -math.inf
    best_epoch: int | None = None
    stale: int = 0
    history: list[dict] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    best_row: dict = field(default_factory=dict)

    @property
    def best_val_auc(self) -> float | None:
        return None if self.best_auc == -math.inf else self.best_auc

    def improve(self, auc: float, row: dict) -> bool:
        """Record this epoch's validation AUC; strict improvement (ties keep the earlier epoch)."""
        if auc > self.best_auc:
            self.best_auc, self.best_epoch, self.stale, self.best_row = auc, self.epoch + 1, 0, dict(row)
            return True
        self.stale += 1
        return False

    def checkpoint(self, run: _Run) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "model": copy.deepcopy(run.model.state_dict()),
            "optimizer": copy.deepcopy(run.optimizer.state_dict()),
            "scaler": run.scaler.state_dict(),
            "schedule": run.schedule.state_dict(),
            "lr_scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "best_val_auc": self.best_val_auc,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale,
            "history": list(self.history),
            "trajectory": list(self.trajectory),
            "best_row": dict(self.best_row),
            "rng": rng_state(run.order),
            "amp": run.amp,
            "determinism": run.determinism,
            "config_md5": run.cfg.config_md5,
            "model_args": model_args(run.model),
            "config": run.record,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], run: _Run) -> TrainState:
        """Restore the model, optimiser, scaler, schedules and RNG of `run`; return the state."""
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.scaler.load_state_dict(ckpt["scaler"])
        run.schedule.load_state_dict(ckpt["schedule"])
        if run.scheduler is not None and ckpt.get("lr_scheduler"):
            run.scheduler.load_state_dict(ckpt["lr_scheduler"])
        restore_rng_state(ckpt["rng"], run.order)
        best = ckpt["best_val_auc"]
        return cls(seed=int(ckpt["seed"]), epoch=ckpt["epoch"], best_auc=-math.inf if best is None else best,
                   best_epoch=ckpt["best_epoch"], stale=ckpt["stale_epochs"], history=list(ckpt["history"]),
                   trajectory=list(ckpt["trajectory"]), best_row=dict(ckpt.get("best_row") or {}))


@dataclass
class _Run:
    """The objects one seed trains with (built once, restored on resume)."""

    cfg: TrainConfig
    seed: int
    device: torch.device
    model: GainAKT2Exp
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LossSchedule
    scheduler: Any
    order: torch.Generator
    amp: dict[str, Any]
    determinism: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)  # the configuration as given (config.json's dict)
    compiled: CompiledForward | None = None  # training.compile: the training steps' forward

    def forward(self, q: torch.Tensor, r: torch.Tensor, qry: torch.Tensor, pack: Any) -> dict:
        """The training forward: compiled when training.compile asks for it, else the eager model."""
        if self.compiled is not None:
            return self.compiled(q, r, qry, pack=pack)
        return self.model(q, r, qry, pack=pack)

    def compile_settings(self) -> contextlib.AbstractContextManager:
        """The compiled forward's settings, held over a whole epoch (its backward compiles lazily)."""
        return self.compiled.settings() if self.compiled is not None else contextlib.nullcontext()

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp["enabled"]:
            return contextlib.nullcontext()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.amp["dtype"]]
        return torch.autocast(device_type="cuda", dtype=dtype)


@dataclass
class _Data:
    train: SequenceSet
    valid: SequenceSet
    test: SequenceSet | None
    test_window: SequenceSet | None
    sem_students: np.ndarray
    global_students: np.ndarray | None


def _prepare_data(cfg: TrainConfig, data: KTDataset, seed: int) -> _Data:
    """Windows built once per run, and the student samples of the semantic passes."""
    max_len = cfg.data.seq_len
    train_idx, valid_idx, test_idx = split_students(data, cfg.data.fold)
    train_set = build_windows(data, train_idx, max_len)
    valid_set = build_windows(data, valid_idx, max_len)
    if len(train_set) == 0 or len(valid_set) == 0:
        raise SeedFailed(f"fold {cfg.data.fold} leaves no training or validation windows")
    sem = student_sample(valid_set, cfg.sampling.max_semantic_students, seed)
    glob = None
    if cfg.alignment.enable_global_alignment_pass:
        glob = student_sample(valid_set, cfg.alignment.alignment_global_students, seed)
    return _Data(
        train=train_set, valid=valid_set,
        test=build_windows(data, test_idx, max_len) if len(test_idx) else None,
        test_window=build_window_test(data, test_idx, max_len) if len(test_idx) else None,
        sem_students=sem, global_students=glob,
    )


def _build_run(cfg: TrainConfig, seed: int, device: torch.device, num_c: int, determinism: dict) -> _Run:
    model = build_model(cfg, num_c).to(device)
    optimizer = make_optimizer(cfg, model)
    amp = amp_settings(cfg, device)
    if cfg.training.clip_before_unscale:  # recorded in results.json: whether the switch acted
        amp["clip_before_unscale"] = clip_order_note(cfg, amp) or "active: the loss-scaled gradients are clipped"
    scheduler = None
    compiled = None
    if cfg.training.compile != "none":
        t = cfg.training
        compiled = CompiledForward(model, t.compile, rows=t.batch_size, width_multiple=t.compile_width_multiple,
                                   rows_multiple=t.compile_rows_multiple,
                                   deterministic=cfg.determinism.torch_deterministic)
    if cfg.training.lr_scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=5)
    return _Run(
        cfg=cfg, seed=seed, device=device, model=model, optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda", enabled=amp["grad_scaler"]),
        schedule=LossSchedule(LossSettings.from_config(cfg), cfg.training.epochs, gain_scale=cfg.model.gain_scale),
        scheduler=scheduler, order=torch.Generator().manual_seed(seed), amp=amp, determinism=determinism,
        compiled=compiled,
    )


def train_seed(
    config: TrainConfig | Mapping[str, Any],
    data: KTDataset,
    device: str | torch.device,
    sink: TrainSink,
    *,
    seed: int | None = None,
    resume: Mapping[str, Any] | None = None,
) -> SeedResult:
    """Train one seed as `config` says and return its result; `resume` is a last checkpoint."""
    cfg = as_train_config(config)
    seed = int(cfg.seeds.primary if seed is None else seed)
    problem = compile_problem(cfg.training.compile, device)
    if problem:  # e.g. a GPU run's folder resumed on a machine without one: the config's, not a bug
        raise ConfigValueError("training.compile", problem)
    determinism = configure_determinism(cfg.determinism.torch_deterministic)
    seed_everything(seed)
    d = _prepare_data(cfg, data, seed)
    run = _build_run(cfg, seed, torch.device(device), data.num_c, determinism)
    run.record = config_record(config)
    state = TrainState(seed=seed)
    if resume is not None:
        state = TrainState.from_checkpoint(resume, run)
        sink.log(f"seed {seed}: resuming after epoch {state.epoch + 1}")
    n_params = sum(p.numel() for p in run.model.parameters())
    amp = run.amp
    sink.log(
        f"seed {seed}: {n_params:,} parameters on {run.device}; AMP {amp['note']}"
        f"{' (' + amp['dtype'] + ')' if amp['enabled'] else ''}; {len(d.train)} train / "
        f"{len(d.valid)} valid windows"
    )
    clip_note = clip_order_note(cfg, amp)
    if clip_note:
        sink.log(f"seed {seed}: warning: {clip_note}")
    status, reason, epoch_times, last = _train_epochs(run, d, state, sink)
    result = SeedResult(
        seed=seed, status=status, reason=reason, epochs_run=len(state.history),
        best_epoch=state.best_epoch, best_val_auc=state.best_val_auc,
        best=state.best_row, history=state.history, trajectory=state.trajectory, amp=amp,
        determinism=determinism, seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else None,
        compile=run.compiled.record() if run.compiled is not None else None,
    )
    if run.compiled is not None:
        c = result.compile or {}
        sink.log(f"seed {seed}: compiled training forward ({c['mode']}): {c['shapes_compiled']} distinct padded "
                 f"shapes (bound {c['shape_bound']}), {c['first_call_seconds']:.1f}s in the steps that compiled "
                 "them; evaluation ran eager")
    if status == "failed":
        sink.log(f"seed {seed}: FAILED: {reason}")
        return result

    # Final evaluation of the best model on every validation and test student.
    run.model.load_state_dict(best_state_of(sink, run.model))
    result.final, final_val = final_metrics(run.model, d.valid, d.test, d.test_window, cfg.training.eval_batch_size or cfg.training.batch_size,
                                            run.device, run.autocast, pack=cfg.data.pack_windows,
                                            fast=cfg.training.eval_fast_path,
                                            progress=lambda m: sink.log(f"seed {seed}: {m}"))
    result.eval_seconds = result.final.pop("eval_seconds")  # timings stay out of the results
    result.rng_final = rng_state_summary(rng_state(run.order))
    result.examples = trajectory_examples(final_val, d.sem_students)
    if last is not None:  # the seed's primary evidence: the last checkpoint carries its whole outcome
        sink.checkpoint("last", {**last, "result": outcome_record(result)})
    sink.log(
        f"seed {seed}: best epoch {state.best_epoch} val_auc {result.best_val_auc:.4f}; "
        f"test AUC {fmt(result.final.get('test_auc'))} (window {fmt(result.final.get('test_window_auc'))})"
    )
    return result


def outcome_record(result: SeedResult) -> dict[str, Any]:
    """The finished seed's outcome as plain JSON values (loads with weights_only): everything of the
    SeedResult but the history and trajectory, which the checkpoint already carries."""
    record = {k: v for k, v in result.as_dict().items() if k not in ("history", "trajectory")}
    return json.loads(json.dumps(record))


def _train_epochs(run: _Run, d: _Data, state: TrainState,
                  sink: TrainSink) -> tuple[str, str | None, list[float], dict | None]:
    """Epochs from the state's next one to the end, early stop or failure: (status, reason, seconds,
    the last checkpoint written or None)."""
    t = run.cfg.training
    epoch_times: list[float] = []
    last: dict | None = state.checkpoint(run) if state.epoch >= 0 else None  # a resumed state
    if t.patience > 0 and state.stale >= t.patience:  # resumed after its early stop (e.g. a crash in
        return "early_stopped", _stop_reason(state.stale), epoch_times, last  # the final evaluation)
    for epoch in range(state.epoch + 1, t.epochs):
        t0 = time.perf_counter()
        weights = run.schedule.begin_epoch(epoch)
        with run.compile_settings():
            failure, train_auc = _train_one_epoch(run, d.train, weights, epoch, sink)
        if failure:
            return "failed", failure, epoch_times, last
        state.epoch = epoch
        row, entry, val_auc, val_acc = _validate_epoch(run, d, epoch, train_auc, t0)
        epoch_times.append(row["epoch_seconds"])
        state.history.append(row)
        sink.epoch(row)
        state.trajectory.append(entry)
        sink.trajectory(entry)
        improved = state.improve(val_auc, row)
        sink.log(
            f"seed {run.seed} epoch {epoch + 1}/{t.epochs}: train_loss {row['train_loss']:.4f} "
            f"train_auc {train_auc:.4f} val_auc {val_auc:.4f} val_acc {val_acc:.4f} "
            f"mastery_corr {fmt(row['mastery_correlation'])} gain_corr {fmt(row['gain_correlation'])} "
            f"({row['epoch_seconds']:.1f}s){' *best*' if improved else ''}"
            f"{collapse_flag(val_acc, entry.get('val_majority_rate'), val_auc)}"
        )
        last = state.checkpoint(run)
        if improved:
            sink.checkpoint("best", last)
        sink.checkpoint("last", last)
        if t.patience > 0 and state.stale >= t.patience:
            reason = _stop_reason(state.stale)
            sink.log(f"seed {run.seed}: early stopping after epoch {epoch + 1} ({reason})")
            return "early_stopped", reason, epoch_times, last
    return "completed", None, epoch_times, last


def collapse_flag(accuracy: float, majority_rate: float | None, auc: float) -> str:
    """The epoch line's flag of a collapsed model: validation accuracy within 0.001 of the majority-class
    rate and AUC < 0.6 (the model predicts one class). Empty otherwise."""
    if majority_rate is None or not all(map(math.isfinite, (accuracy, majority_rate, auc))):
        return ""
    if abs(accuracy - majority_rate) <= 0.001 and auc < 0.6:
        return (f" COLLAPSED: val_acc within 0.001 of the majority-class rate {majority_rate:.4f} and "
                "val_auc < 0.6 (the model predicts one class)")
    return ""


def _stop_reason(stale: int) -> str:
    return f"no val AUC improvement for {stale} epochs"


def _train_one_epoch(run: _Run, train_set: SequenceSet, weights: Any, epoch: int,
                     sink: TrainSink) -> tuple[str | None, float]:
    """One pass over the training windows: (failure reason or None, train AUC)."""
    t = run.cfg.training
    monitor_freq = max(1, t.monitor_freq)
    run.model.train()
    train_probs, train_targets, train_masks = [], [], []  # kept on the device: no sync per batch
    bad = StepHealth(run.device)
    batches = device_batches(train_set, run.device, t.batch_size, generator=run.order,
                             shuffle=run.cfg.data.train_shuffle,
                             bucket_by_length=run.cfg.data.bucket_by_length, pack=run.cfg.data.pack_windows)
    for b_i, (b, plan) in enumerate(batches):
        with run.autocast():
            out = run.forward(b.q, b.r, b.qry, plan)
        terms = compute_losses(out, b, weights)
        loss = terms["total"]
        bad.observe(loss, b_i)
        if (b_i + 1) % monitor_freq == 0 and bad.failed():
            break
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        clip_gradients(run.model, run.optimizer, run.scaler, t.gradient_clip, t.clip_before_unscale)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.schedule.observe_batch(terms)
        with torch.no_grad():
            train_probs.append(torch.sigmoid(out["logits"].detach().float()).flatten())
            train_targets.append(b.target.flatten())
            train_masks.append(b.mask.flatten())
        if (b_i + 1) % monitor_freq == 0:
            sink.log(
                f"seed {run.seed} epoch {epoch + 1} batch {b_i + 1}: loss {_item(loss):.4f} "
                f"bce {_item(terms['bce']):.4f} mastery_var {_item(terms.get('mastery_variance', math.nan)):.5f}"
            )
    if bad.failed():
        return f"non-finite loss ({bad.value()}) at epoch {epoch + 1}, batch {bad.batch()}", math.nan
    seen = torch.cat(train_masks).cpu().numpy()
    train_auc, _ = auc_accuracy(torch.cat(train_targets).cpu().numpy()[seen], torch.cat(train_probs).cpu().numpy()[seen])
    return None, train_auc


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


def _validate_epoch(run: _Run, d: _Data, epoch: int, train_auc: float,
                    t0: float) -> tuple[dict, dict, float, float]:
    """Validation, the end-of-epoch schedule rules and the epoch's row and trajectory entry."""
    schedule = run.schedule
    means = {k: v for k, v in schedule.observed_means().items() if v is not None}
    # One pass over the validation windows; the semantic sample and the global alignment pass are
    # student subsets of it.
    val = evaluate(run.model, d.valid, batch_size=run.cfg.training.eval_batch_size or run.cfg.training.batch_size,
                   device=run.device,
                   autocast=run.autocast(), semantics=True,
                   head_students=d.sem_students if run.cfg.sampling.log_head_stats else None,
                   pack=run.cfg.data.pack_windows)
    sem = val.semantics(d.sem_students)
    glob = val.semantics(d.global_students) if d.global_students is not None else None
    shares = schedule.observed_loss_shares()
    reference = glob.mastery.mean if glob is not None else (sem.mastery.mean if sem is not None else None)
    if reference is not None and math.isnan(reference):
        reference = None
    sched_log = schedule.end_epoch(epoch, mastery_corr_reference=reference)
    if run.scheduler is not None:
        run.scheduler.step(val.auc)
    row = epoch_row(run.seed, epoch, means, train_auc, val, sem, shares, run.optimizer, time.perf_counter() - t0)
    entry = {
        "mastery_correlation": row["mastery_correlation"],
        "gain_correlation": row["gain_correlation"],
        "true_mastery_correlation": sem.true_mastery.mean if sem and sem.true_mastery else None,
        "global_alignment_mastery_corr": glob.mastery.mean if glob else None,
        "global_alignment_gain_corr": glob.gain.mean if glob else None,
        "global_alignment_students": glob.students if glob else 0,
        "val_majority_rate": val.majority_rate,  # share of the more frequent class: a collapse is judged by it
        "loss_means": means,
        "loss_shares": shares,
        **sched_log,
        "epoch": epoch + 1,  # 1-based like the metrics rows (the schedule's own log counts from 0)
    }
    head = val.head_stats()
    if head is not None:
        entry["head_stats"] = head
    return row, entry, val.auc, val.accuracy


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


def _item(x: Any) -> float:
    """A logged scalar: a tensor (detached, so no autograd warning) or a plain number."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


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
