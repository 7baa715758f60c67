"""The parameter registry: every launcher parameter, its config section, type, default and flags.

One table drives the command-line parser, the config builder, the `missing_params` check and the
validation of `--set`, so a parameter cannot exist in one place and be forgotten in another.
Leaf names are unique across sections (as in the reference's config.json), which is what lets a
flag name and a config leaf be the same word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Sections whose leaves determine results (hashed); order is the order written in config.json.
RESULT_SECTIONS = (
    "data",
    "data_checksum",
    "model",
    "heads",
    "training",
    "interpretability",
    "alignment",
    "retention_lag",
    "scheduling",
    "stability_controls",
    "sampling",
    "determinism",
    "seeds",
)


@dataclass(frozen=True)
class Param:
    """One launcher parameter. `flags` are extra spellings accepted on the command line."""

    name: str
    section: str
    type: type
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    # Booleans get --name / --no_name / --no-name unless custom off-spellings are given.
    off_flags: tuple[str, ...] = field(default=())


P = Param

PARAMS: tuple[Param, ...] = (
    # experiment
    P("ablation_mode", "experiment", str, "both_lag",
      "ablation mode: none|baseline, alignment_only|align, retention, both, both_lag",
      choices=("none", "baseline", "alignment_only", "align", "retention", "both", "both_lag")),
    P("experiment_suffix", "experiment", str, None, "suffix naming per-seed logs (default: the title)",
      nullable=True),
    P("purpose", "experiment", str, "Multi-seed reproducible training run", "free-text purpose of the run"),
    # data
    P("dataset", "data", str, "synthetic",
      "dataset name: 'synthetic' (built in, the default) or a name for --data_dir"),
    P("data_format", "data", str, "auto", "format of --data_dir",
      choices=("auto", "pykt", "pykt_sequences", "dkvmn", "raw_assist2015")),
    P("fold", "data", int, 0, "validation fold (0-4); the other folds train"),
    P("seq_len", "data", int, 200, "window length (pyKT maxlen)", flags=("--max_len",)),
    P("bucket_by_length", "data", bool, False, "batch windows of similar length together"),
    P("synthetic_students", "data", int, 600, "students in the built-in synthetic dataset"),
    P("synthetic_skills", "data", int, 20, "skills in the built-in synthetic dataset"),
    P("synthetic_min_len", "data", int, 20, "shortest synthetic student sequence"),
    P("synthetic_max_len", "data", int, 60, "longest synthetic student sequence"),
    P("synthetic_seed", "data", int, 2025, "seed of the synthetic dataset generator"),
    P("synthetic_forgetting", "data", float, 0.0, "per-step forgetting of unpractised synthetic skills"),
    # model
    P("model_preset", "model", str, "paper", "architecture preset", choices=("paper", "small")),
    P("d_model", "model", int, None, "model width D (default: from the preset)", nullable=True),
    P("n_heads", "model", int, None, "attention heads H (default: from the preset)", nullable=True),
    P("num_encoder_blocks", "model", int, None, "encoder blocks N (default: from the preset)",
      flags=("--n_blocks",), nullable=True),
    P("d_ff", "model", int, None, "feed-forward width F (default: from the preset)", nullable=True),
    P("dropout", "model", float, None, "dropout (default: from the preset)", nullable=True),
    P("gain_scale", "model", float, 0.1, "scale of gains in the mastery accumulation"),
    P("enable_head_normalization", "model", bool, False, "LayerNorm the inputs of the mastery/gain heads"),
    # heads
    P("use_mastery_head", "heads", bool, True, "mastery head on/off"),
    P("use_gain_head", "heads", bool, True, "gain head on/off"),
    # training
    P("epochs", "training", int, 40, "training epochs", flags=("--num_epochs",)),
    P("batch_size", "training", int, 64, "batch size"),
    P("learning_rate", "training", float, 0.00016, "Adam learning rate", flags=("--lr",)),
    P("weight_decay", "training", float, 1.7571e-05, "Adam weight decay (L2)"),
    P("optimizer", "training", str, "Adam", "optimizer", choices=("Adam", "AdamW")),
    P("gradient_clip", "training", float, 1.0, "max gradient norm (0 disables clipping)"),
    P("mixed_precision", "training", bool, True, "automatic mixed precision on CUDA",
      flags=("--amp", "--use_amp"), off_flags=("--no_amp", "--no-amp")),
    P("amp_dtype", "training", str, "auto", "AMP dtype: auto (bf16 where supported, else fp16), fp16, bf16",
      choices=("auto", "fp16", "bf16")),
    P("patience", "training", int, 10, "early stopping patience in epochs without val AUC improvement"),
    P("lr_scheduler", "training", str, "none", "learning-rate scheduler", choices=("none", "plateau")),
    P("monitor_freq", "training", int, 50, "log interpretability statistics every N training batches"),
    # interpretability (constraint weights)
    P("non_negative_loss_weight", "interpretability", float, 0.0, "weight of the negative-gain penalty"),
    P("monotonicity_loss_weight", "interpretability", float, 0.1, "weight of the mastery monotonicity loss"),
    P("mastery_performance_loss_weight", "interpretability", float, 0.8, "mastery-performance loss weight"),
    P("gain_performance_loss_weight", "interpretability", float, 0.8, "gain-performance loss weight"),
    P("sparsity_loss_weight", "interpretability", float, 0.2, "gain sparsity loss weight"),
    P("consistency_loss_weight", "interpretability", float, 0.3, "mastery/gain consistency loss weight"),
    P("enhanced_constraints", "interpretability", bool, True, "enable the six constraint losses"),
    P("warmup_constraint_epochs", "interpretability", int, 8, "warm-up epochs of the constraint weights"),
    P("enable_alignment_loss", "interpretability", bool, None,
      "alignment loss on/off (default: from --ablation_mode)", nullable=True),
    P("alignment_weight", "interpretability", float, 0.30, "alignment loss base weight"),
    P("enable_retention_loss", "interpretability", bool, None,
      "retention loss on/off (default: from --ablation_mode)", nullable=True),
    P("retention_weight", "interpretability", float, 0.12, "retention loss weight"),
    P("enable_lag_gain_loss", "interpretability", bool, None,
      "lag-gain loss on/off (default: from --ablation_mode)", nullable=True),
    P("lag_gain_weight", "interpretability", float, 0.05, "lag-gain loss weight"),
    # alignment
    P("alignment_warmup_epochs", "alignment", int, 8, "alignment weight warm-up epochs"),
    P("adaptive_alignment", "alignment", bool, True, "boost alignment while correlation is low"),
    P("alignment_min_correlation", "alignment", float, 0.05, "correlation below which alignment is boosted"),
    P("enable_global_alignment_pass", "alignment", bool, None,
      "per-epoch global correlation pass (default: from --ablation_mode)", nullable=True),
    P("alignment_global_students", "alignment", int, 600, "students in the global alignment pass"),
    P("use_residual_alignment", "alignment", bool, False, "correlate against residualised performance"),
    P("alignment_residual_window", "alignment", int, 5, "moving-average window of the residualisation"),
    P("alignment_share_cap", "alignment", float, 0.10, "cap on the alignment loss share"),
    P("alignment_share_decay_factor", "alignment", float, 0.75, "alignment weight decay when over the cap"),
    # retention / lag
    P("retention_delta", "retention_lag", float, 0.005, "tolerated drop below the correlation peak"),
    P("lag_max_lag", "retention_lag", int, 3, "largest lag of the lag-gain loss (1-3)"),
    P("lag_l1_weight", "retention_lag", float, 0.5, "weight of lag 1"),
    P("lag_l2_weight", "retention_lag", float, 0.3, "weight of lag 2"),
    P("lag_l3_weight", "retention_lag", float, 0.2, "weight of lag 3"),
    # scheduling
    P("consistency_rebalance_epoch", "scheduling", int, 8, "epoch from which consistency may be rebalanced"),
    P("consistency_rebalance_threshold", "scheduling", float, 0.10, "correlation under which it is"),
    P("consistency_rebalance_new_weight", "scheduling", float, 0.2, "consistency weight after rebalance"),
    P("enable_cosine_perf_schedule", "scheduling", bool, False, "cosine warm-up of performance losses"),
    # stability controls
    P("freeze_sparsity", "stability_controls", bool, False, "never reduce the sparsity weight"),
    P("variance_floor", "stability_controls", float, 1e-4, "mastery variance floor"),
    P("variance_floor_patience", "stability_controls", int, 3, "epochs under the floor before reducing"),
    P("variance_floor_reduce_factor", "stability_controls", float, 0.5, "sparsity reduction factor"),
    # sampling
    P("max_semantic_students", "sampling", int, 50, "students in the per-epoch interpretability sample"),
    P("log_head_stats", "sampling", bool, False, "record per-epoch head variance/skew in artifacts/"),
    # determinism
    P("torch_deterministic", "determinism", bool, False,
      "deterministic PyTorch algorithms (cuBLAS workspace, cuDNN, TF32 off)"),
    # runtime (not hashed)
    P("devices", "runtime", list, ["auto"], "GPU indices, 'cpu' or 'auto'"),
    P("threads", "runtime", int, 8, "CPU threads per worker (capped at the machine's cores)"),
    P("jobs_per_device", "runtime", int, 1,
      "seeds trained at once on each device (CPU: --threads split between them)"),
    P("runtime", "runtime", str, "local", "where training runs", choices=("auto", "local", "docker")),
    P("image", "runtime", str, None, "container image tag (default: built for this code)", nullable=True),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"d_model": 512, "n_heads": 8, "num_encoder_blocks": 6, "d_ff": 1024, "dropout": 0.2},
    "small": {"d_model": 128, "n_heads": 4, "num_encoder_blocks": 2, "d_ff": 256, "dropout": 0.1},
}

SECTION_ORDER = (
    "schema_version",
    "experiment",
    *RESULT_SECTIONS,
    "runtime",
    "paths",
)
