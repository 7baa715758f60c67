"""The typed training configuration: one frozen dataclass per config.json section.

Like nanoGPT's ``GPTConfig``, each section declares its fields once, with the launch guide's
default, a help line and its rule (range or choices). Everything else derives from here: the
harness's parameter registry and command-line flags, ``LossSettings``' defaults, and the
validation of every source of configuration (flags, ``--set``, config files). Constructing a
section checks it: exact types (a string is never taken for a boolean or a number, ``1.5`` is
not an integer), finite floats, ranges, choices and cross-field rules. A violation raises
``ConfigValueError`` naming the ``section.key``.

``TrainConfig`` is what ``train_seed`` reads: the result-determining sections plus the seeds.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

__all__ = [
    "ABLATION_FLAGS",
    "ABLATION_MODES",
    "AlignmentConfig",
    "ConfigValueError",
    "DataConfig",
    "DeterminismConfig",
    "HeadsConfig",
    "InterpretabilityConfig",
    "MODEL_PRESETS",
    "REFERENCE_VALUES",
    "REFERENCE_SEMANTICS",
    "REFERENCE_SEMANTICS_NEEDS",
    "ModelConfig",
    "RetentionLagConfig",
    "SECTION_TYPES",
    "SamplingConfig",
    "SchedulingConfig",
    "SeedsConfig",
    "StabilityConfig",
    "TrainConfig",
    "TrainingConfig",
    "LIMITS",
    "SEED_MAX",
    "check_value",
    "field_default",
    "seed_problem",
    "shown",
    "resolve_ablation",
    "section_from_dict",
]


class ConfigValueError(ValueError):
    """A value that cannot describe a run; ``key`` is its ``section.name`` path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.reason = message


def spec(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
         lt: float | None = None, le: float | None = None, choices: tuple[Any, ...] | None = None,
         derived: str | None = None, before: Any = MISSING) -> Any:
    """A field with its default, help line and rule.

    ``derived`` names where the value comes from when the user gives none ("preset" for model
    dimensions, "ablation" for the objective flags): the command line may leave it unset.
    ``before`` marks a field added after schema 3 was first written: the value that reproduces
    what configs written before it did. A config.json without the key gets that value (so an
    older folder resumes and reproduces as it ran), and while a config holds it the key stays out
    of config_md5 (so an older configuration keeps its md5).
    """
    meta = {"help": help, "ge": ge, "gt": gt, "lt": lt, "le": le, "choices": choices, "derived": derived}
    if before is not MISSING:
        meta["before"] = before
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------
# Limits: every integer of a config has a ceiling, so a value that no machine could run (or that no
# library accepts: numpy seeds are 0..2**32-1) is refused where it is parsed, naming its source,
# instead of creating a folder and failing in the worker. The ceilings lie far above any real run;
# README ("Limits") lists them.

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (np.random.seed, RandomState) accepts 0..2**32-1; torch more
LIMITS: dict[str, int] = {
    "seeds": 1_000,                 # seeds in one run (each one trains a model)
    "epochs": 100_000,              # epochs, patience, warm-up and schedule epochs
    "batch": 1_000_000,             # rows of a training or evaluation batch
    "students": 10_000_000,         # students sampled by the interpretability and alignment passes
    "synthetic_students": 1_000_000,
    "concepts": 1_000_001,          # real data: concept ids up to 1,000,000 (gainakt.data.parsing)
    "synthetic_skills": 10_000,
    "length": 100_000,              # a sequence, window or moving-average length
    "d_model": 65_536,
    "n_heads": 1_024,
    "blocks": 1_024,
    "d_ff": 262_144,
    "steps": 1_000_000,             # a period in training batches
}
_INT64_MAX = 2**63 - 1  # the backstop for any integer a section holds (torch and numpy index with int64)


def seed_problem(seed: int) -> str | None:
    """Why ``seed`` cannot seed a run (None if it can): seeds are 0..SEED_MAX, what numpy and torch accept."""
    if seed < 0:
        return f"seeds must be non-negative, got {shown(seed)}"
    if seed > SEED_MAX:
        return f"seeds must be at most {SEED_MAX:,} (2**32 - 1, what numpy accepts), got {shown(seed)}"
    return None


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: an error line never echoes a huge value."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {len(str(abs(value)))} digits"  # repr() of a longer one is refused by Python
    if isinstance(value, list) and len(value) > 20:
        return f"{shown(value[:5], limit)[:-1]}, ... ({len(value)} items)]"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"d_model": 512, "n_heads": 8, "num_encoder_blocks": 6, "d_ff": 1024, "dropout": 0.2},
    "small": {"d_model": 128, "n_heads": 4, "num_encoder_blocks": 2, "d_ff": 256, "dropout": 0.1},
}
_PAPER = MODEL_PRESETS["paper"]
# How mastery is read across a student's windows (gainakt/views.py): each window from its own start, or
# carried across window boundaries over the whole student. Here so that the CLI need not import torch.
MASTERY_VIEWS = ("window", "student")


# ---------------------------------------------------------------------------------------------
# Ablation modes

ABLATION_FLAGS = (
    "enable_alignment_loss",
    "enable_global_alignment_pass",
    "enable_retention_loss",
    "enable_lag_gain_loss",
)


def _mode(alignment: bool, global_pass: bool, retention: bool, lag: bool) -> dict[str, bool]:
    return dict(zip(ABLATION_FLAGS, (alignment, global_pass, retention, lag), strict=True))


# The one table that maps an ablation mode to the four objective flags. The six constraint losses
# are not part of a mode: they follow `enhanced_constraints` and their weights.
ABLATION_MODES: dict[str, dict[str, bool]] = {
    "none": _mode(False, False, False, False),
    "baseline": _mode(False, False, False, False),
    "alignment_only": _mode(True, True, False, False),
    "align": _mode(True, True, False, False),
    "retention": _mode(False, False, True, False),
    "both": _mode(True, True, True, False),
    "both_lag": _mode(True, True, True, True),
}


def resolve_ablation(mode: str, overrides: Mapping[str, bool | None] | None = None) -> dict[str, bool]:
    """Return the four objective flags of ``mode`` after explicit overrides.

    ``overrides`` maps flag names (``ABLATION_FLAGS``) to True, False or None; True and False win over
    the mode in both directions, None means "not given". Raises ValueError for an unknown mode or
    an unknown flag name.
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; valid modes: {', '.join(ABLATION_MODES)}")
    flags = dict(ABLATION_MODES[mode])
    for name, value in (overrides or {}).items():
        if name not in flags:
            raise ValueError(f"unknown ablation flag {name!r}; valid flags: {', '.join(ABLATION_FLAGS)}")
        if value is not None:
            flags[name] = bool(value)
    return flags


# ---------------------------------------------------------------------------------------------
# Reference semantics

# The switches that restore a fixed defect of the reference implementation (docs/losses.md,
# "Reference semantics"), as {section: {field: value that restores the reference}}. Each field's
# default is our fixed behaviour. `train_shuffle` is the reference's training order (issue 22), not a
# loss semantic; it is listed so that the ablation's `reference_all` restores it too. `clip_before_unscale` acts only under fp16 AMP and
# `constraints_over_padding` needs `pack_windows` off, so both are listed with what they need.
REFERENCE_SEMANTICS: dict[str, dict[str, Any]] = {
    "data": {"train_shuffle": False},
    "interpretability": {"constraints_over_padding": True, "constraints_current_step": True},
    "alignment": {"pooled_correlations": True, "alignment_max_students": 32},
    "retention_lag": {"retention_detached": True, "lag_detached": True},
    "stability_controls": {"variance_floor_per_batch": True},
    "training": {"clip_before_unscale": True},
}
# What a switch needs besides itself: {switch: {field: value}} (flat field names).
REFERENCE_SEMANTICS_NEEDS: dict[str, dict[str, Any]] = {
    "constraints_over_padding": {"pack_windows": False},
    "clip_before_unscale": {"mixed_precision": True, "amp_dtype": "fp16"},
}

# The values of the reference's reported runs (Era B defaults in effect on 2025-11-09, its config.json
# `defaults` block; ../shared/research/reference_gainakt2exp.md section 8.6) where they differ from the
# guide's defaults (ours, from the repro launcher v2). Not semantics: values that our flags already take.
# Era B used lags 1-2 only and stepped ReduceLROnPlateau on val AUC. `harness run --reference_values`
# starts from them (issue 22: on the CPU, 12 epochs and 5 seeds, they reach the reference's AUC within 0.0001).
REFERENCE_VALUES: dict[str, Any] = {
    "learning_rate": 0.000174,
    "alignment_weight": 0.25,
    "retention_weight": 0.14,
    "lag_gain_weight": 0.06,
    "alignment_share_cap": 0.08,
    "alignment_share_decay_factor": 0.7,
    "use_residual_alignment": True,
    "lag_max_lag": 2,
    "lr_scheduler": "plateau",
}


# ---------------------------------------------------------------------------------------------
# Checking one value


def _type_ok(hint: Any, value: Any) -> bool:
    """Exact JSON-level type check: bool is not an int, a string is not a number."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(typing.get_args(hint)[0]).replace('an ', '').replace('a ', '')}s"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:
        return _type_name(args[0]) + " (or null)"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _bounds_message(meta: Mapping[str, Any], value: float) -> str | None:
    ge, gt, lt, le = meta.get("ge"), meta.get("gt"), meta.get("lt"), meta.get("le")
    if isinstance(value, int) and abs(value) > _INT64_MAX:
        return f"must fit in 64 bits, got {shown(value)}"
    value_text = shown(value)
    if ge is not None and le is not None and le - ge <= 2 and not ge <= value <= le and isinstance(value, int):
        allowed = [str(v) for v in range(int(ge), int(le) + 1)]
        return f"must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value_text}"
    if ge is not None and lt is not None and not ge <= value < lt:
        return f"must be in [{ge}, {lt}), got {value_text}"
    if ge is not None and le is not None and ge != 1 and not ge <= value <= le:
        return f"must be between {ge:,} and {le:,}, got {value_text}"
    if ge is not None and value < ge:
        if ge == 1 and isinstance(value, int):
            return f"must be a positive integer, got {value_text}"
        return f"must be >= {ge}, got {value_text}"
    if gt is not None and value <= gt:
        return f"must be {'positive' if gt == 0 else f'> {gt}'}, got {value_text}"
    if le is not None and value > le:
        return f"must be at most {le:,}, got {value_text}"
    return None


def check_value(hint: Any, meta: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` is not allowed for a field of type ``hint`` with rule ``meta`` (None if it is)."""
    if not _type_ok(hint, value):
        return f"expects {_type_name(hint)}, got {shown(value)}"
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {shown(value)}"
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"{shown(value)} is not one of {', '.join(map(str, choices))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bounds_message(meta, value)
    return None


_T = TypeVar("_T")


def _hints(cls: type) -> dict[str, Any]:
    cached = _HINTS.get(cls)
    if cached is None:
        cached = _HINTS[cls] = typing.get_type_hints(cls)
    return cached


_HINTS: dict[type, dict[str, Any]] = {}


class _Section:
    """Base of every section: checks its fields on construction (floats stored as floats)."""

    SECTION = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            problem = check_value(hints[f.name], f.metadata, value)
            if problem:
                raise ConfigValueError(f"{self.SECTION}.{f.name}", problem)
            if hints[f.name] is float and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))
        self._cross_check()

    def _cross_check(self) -> None:
        """Rules between fields of one section (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        absent: frozenset[str] = getattr(self, "_absent", frozenset())  # keys a config predates (filled with `before`)
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if f.name not in absent}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def field_default(cls: type, name: str) -> Any:
    """The declared default of ``cls.name`` (the one place each default is written)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def added_later() -> dict[str, dict[str, Any]]:
    """{section: {key: value before the key existed}} of the fields declared with ``before``."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in SECTION_TYPES.items():
        for f in fields(cls):
            if "before" in f.metadata:
                out.setdefault(name, {})[f.name] = f.metadata["before"]
    return out


def section_from_dict(cls: type[_T], data: Any, *, section: str) -> _T:
    """``cls`` built from a mapping; unknown or missing keys are errors naming ``section.key``."""
    if not isinstance(data, Mapping):
        raise ConfigValueError(section, f"expects a mapping of keys, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigValueError(f"{section}.{unknown[0]}", "unknown key")
    absent = {f.name: f.metadata["before"] for f in fields(cls)  # type: ignore[arg-type]
              if "before" in f.metadata and f.name not in data}
    missing = sorted(names - set(data) - set(absent))
    if missing:
        raise ConfigValueError(f"{section}.{missing[0]}", "missing")
    obj = cls(**data, **absent)
    object.__setattr__(obj, "_absent", frozenset(absent))  # to_dict() leaves them out again: exact round trip
    return obj


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class DataConfig(_Section):
    SECTION = "data"
    dataset: str = spec("synthetic", "dataset name: 'synthetic' (built in, the default) or a name for --data_dir")
    data_format: str = spec("auto", "format of --data_dir",
                            choices=("auto", "pykt", "pykt_sequences", "dkvmn", "raw_assist2015"))
    num_concepts: int | None = spec(None, "number of concepts (default: from the data: keyid2idx.json, else the "
                                    "largest id + 1)", ge=1, le=LIMITS["concepts"], before=None)
    single_file_split: bool = spec(False, "train on a lone three-line file, split like pyKT (a fifth as test, "
                                   "folds 0-4)", before=False)
    fold: int = spec(0, "validation fold (0-4); the other folds train", ge=0, le=4)
    seq_len: int = spec(200, "window length (pyKT maxlen)", ge=3, le=LIMITS["length"])
    bucket_by_length: bool = spec(False, "batch windows of similar length together")
    pack_windows: bool = spec(True, "pack each batch's windows into shared rows (block-diagonal causal attention, "
                              "per-window positions); same batches, float-level differences; --no_pack_windows pads "
                              "every window to the batch width", before=False)
    synthetic_students: int = spec(600, "students in the built-in synthetic dataset", ge=1,
                                   le=LIMITS["synthetic_students"])
    synthetic_skills: int = spec(20, "skills in the built-in synthetic dataset", ge=1,
                                 le=LIMITS["synthetic_skills"])
    synthetic_min_len: int = spec(20, "shortest synthetic student sequence", ge=2, le=LIMITS["length"])
    synthetic_max_len: int = spec(60, "longest synthetic student sequence", ge=2, le=LIMITS["length"])
    synthetic_seed: int = spec(2025, "seed of the synthetic dataset generator", ge=0, le=SEED_MAX)
    synthetic_forgetting: float = spec(0.0, "per-step forgetting of unpractised synthetic skills", ge=0.0, lt=1.0)
    # Reference training order (issue 22): a switch of its own block.
    train_shuffle: bool = spec(True, "shuffle the training windows every epoch; --no_train_shuffle serves them in "
                               "data order (students in file order, each student's windows in time order), the same "
                               "batches every epoch, as the reference's unshuffled loader (defect 17)", before=True)

    def _cross_check(self) -> None:
        if self.synthetic_min_len > self.synthetic_max_len:
            raise ConfigValueError("data.synthetic_min_len", f"must be <= data.synthetic_max_len "
                                   f"({self.synthetic_max_len}), got {self.synthetic_min_len}")


@dataclass(frozen=True)
class ModelConfig(_Section):
    SECTION = "model"
    model_preset: str = spec("paper", "architecture preset", choices=tuple(MODEL_PRESETS))
    d_model: int = spec(_PAPER["d_model"], "model width D (default: from the preset)", ge=1,
                        le=LIMITS["d_model"], derived="preset")
    n_heads: int = spec(_PAPER["n_heads"], "attention heads H (default: from the preset)", ge=1,
                        le=LIMITS["n_heads"], derived="preset")
    num_encoder_blocks: int = spec(_PAPER["num_encoder_blocks"], "encoder blocks N (default: from the preset)",
                                   ge=1, le=LIMITS["blocks"], derived="preset")
    d_ff: int = spec(_PAPER["d_ff"], "feed-forward width F (default: from the preset)", ge=1,
                     le=LIMITS["d_ff"], derived="preset")
    dropout: float = spec(_PAPER["dropout"], "dropout (default: from the preset)", ge=0.0, lt=1.0,
                          derived="preset")
    gain_scale: float = spec(0.1, "scale of gains in the mastery accumulation", ge=0.0)
    enable_head_normalization: bool = spec(False, "LayerNorm the inputs of the mastery/gain heads")
    # Issue 21: how gains accumulate into mastery (opt-in, hashed only when not the paper's head).
    mastery_accumulation: str = spec("clamp", "how gains accumulate into mastery: clamp (the paper's head, "
                                     "m_t = min(1, m_0 + gain_scale * sum g)) or headroom (m_t = 1 - (1 - m_0) "
                                     "* exp(-gain_scale * sum g): each gain closes a share of 1 - m, so mastery "
                                     "does not saturate at 1)", choices=("clamp", "headroom"), before="clamp")

    def _cross_check(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigValueError("model.n_heads", f"must divide model.d_model ({self.d_model}), got {self.n_heads}")


@dataclass(frozen=True)
class HeadsConfig(_Section):
    SECTION = "heads"
    use_mastery_head: bool = spec(True, "mastery head on/off")
    use_gain_head: bool = spec(True, "gain head on/off")


@dataclass(frozen=True)
class TrainingConfig(_Section):
    SECTION = "training"
    epochs: int = spec(40, "training epochs", ge=1, le=LIMITS["epochs"])
    batch_size: int = spec(64, "batch size", ge=1, le=LIMITS["batch"])
    learning_rate: float = spec(0.00016, "Adam learning rate", gt=0.0)
    weight_decay: float = spec(1.7571e-05, "Adam weight decay (L2)", ge=0.0)
    optimizer: str = spec("Adam", "optimizer", choices=("Adam", "AdamW"))
    gradient_clip: float = spec(1.0, "max gradient norm (0 disables clipping)", ge=0.0)
    mixed_precision: bool = spec(True, "automatic mixed precision on CUDA (config.json records it as run: "
                                 "false on CPU)")
    amp_dtype: str = spec("auto", "AMP dtype: auto (bf16 where supported, else fp16), fp16, bf16",
                          choices=("auto", "fp16", "bf16"))
    patience: int = spec(10, "early stopping patience in epochs without val AUC improvement (0: off)", ge=0,
                        le=LIMITS["epochs"])
    lr_scheduler: str = spec("none", "learning-rate scheduler", choices=("none", "plateau"))
    monitor_freq: int = spec(50, "log interpretability statistics every N training batches", ge=1,
                            le=LIMITS["steps"])
    eval_batch_size: int | None = spec(256, "rows per evaluation batch (validation and test passes; none: the "
                                       "training batch size)", ge=1, le=LIMITS["batch"], before=None)
    eval_fast_path: bool = spec(True, "window-protocol test pass: logits only (no mastery/gain heads), rows in "
                                "length order; --no_eval_fast_path runs the full forward in data order", before=False)
    fused_optimizer: bool = spec(True, "fused Adam/AdamW kernel (--no_fused_optimizer: the foreach kernel)",
                                 before=False)
    clip_before_unscale: bool = spec(False, "reference semantics (defect 12): clip the loss-scaled gradients "
                                     "before GradScaler unscales them; acts only under fp16 AMP (bf16 AMP and "
                                     "fp32 have no GradScaler: refused with amp_dtype bf16, warned at run time "
                                     "where AMP does not run as fp16)", before=False)
    compile: str = spec("none", "compile the training forward with torch.compile: none (eager), default "
                        "(inductor), reduce-overhead (inductor + CUDA graphs, CUDA only); evaluation stays eager",
                        choices=("none", "default", "reduce-overhead"), before="none")
    compile_width_multiple: int = spec(64, "with --compile: batch widths are padded up to a multiple of this "
                                       "(capped at --seq_len), so few shapes are compiled", ge=1,
                                       le=LIMITS["length"], before=64)
    compile_rows_multiple: int = spec(4, "with --compile and packing: packed rows are padded up to a multiple "
                                      "of this (unpacked batches are padded to --batch_size rows)", ge=1,
                                      le=LIMITS["batch"], before=4)

    def _cross_check(self) -> None:
        if self.clip_before_unscale and self.amp_dtype == "bf16":
            raise ConfigValueError("training.clip_before_unscale", "has no effect with amp_dtype bf16 (no "
                                   "GradScaler, nothing is scaled): use --amp_dtype fp16, or leave it off")
        if self.clip_before_unscale and self.gradient_clip == 0:
            raise ConfigValueError("training.clip_before_unscale", "has no effect with gradient_clip 0 (nothing "
                                   "is clipped): set --gradient_clip > 0, or leave it off")
        if self.compile == "none":
            for name in ("compile_width_multiple", "compile_rows_multiple"):
                if getattr(self, name) != field_default(TrainingConfig, name):
                    raise ConfigValueError(f"training.{name}", "acts only with training.compile default or "
                                           "reduce-overhead; training.compile is none")


@dataclass(frozen=True)
class InterpretabilityConfig(_Section):
    SECTION = "interpretability"
    non_negative_loss_weight: float = spec(0.0, "weight of the negative-gain penalty", ge=0.0)
    monotonicity_loss_weight: float = spec(0.1, "weight of the mastery monotonicity loss", ge=0.0)
    mastery_performance_loss_weight: float = spec(0.8, "mastery-performance loss weight", ge=0.0)
    gain_performance_loss_weight: float = spec(0.8, "gain-performance loss weight", ge=0.0)
    sparsity_loss_weight: float = spec(0.2, "gain sparsity loss weight", ge=0.0)
    consistency_loss_weight: float = spec(0.3, "mastery/gain consistency loss weight", ge=0.0)
    enhanced_constraints: bool = spec(True, "enable the six constraint losses")
    warmup_constraint_epochs: int = spec(8, "warm-up epochs of the constraint weights", ge=0,
                                         le=LIMITS["epochs"])
    enable_alignment_loss: bool = spec(True, "alignment loss on/off (default: from --ablation_mode)",
                                       derived="ablation")
    alignment_weight: float = spec(0.30, "alignment loss base weight", ge=0.0)
    enable_retention_loss: bool = spec(True, "retention loss on/off (default: from --ablation_mode)",
                                       derived="ablation")
    retention_weight: float = spec(0.12, "retention loss weight", ge=0.0)
    enable_lag_gain_loss: bool = spec(True, "lag-gain loss on/off (default: from --ablation_mode)",
                                      derived="ablation")
    lag_gain_weight: float = spec(0.05, "lag-gain loss weight", ge=0.0)
    constraints_over_padding: bool = spec(False, "reference semantics (defect 3): the six constraint losses "
                                          "also count padding positions (concept 0, incorrect); needs "
                                          "--no-pack_windows", before=False)
    constraints_current_step: bool = spec(False, "reference semantics (defect 4): the performance constraints "
                                          "judge m[t, q_t], g[t, q_t] against r_t (already in the input token) "
                                          "instead of m[t, qry_t], g[t, qry_t] against the response at t+1",
                                          before=False)


@dataclass(frozen=True)
class AlignmentConfig(_Section):
    SECTION = "alignment"
    alignment_warmup_epochs: int = spec(8, "alignment weight warm-up epochs", ge=0, le=LIMITS["epochs"])
    adaptive_alignment: bool = spec(True, "boost alignment while correlation is low")
    alignment_min_correlation: float = spec(0.05, "correlation below which alignment is boosted")
    enable_global_alignment_pass: bool = spec(True, "per-epoch global correlation pass "
                                              "(default: from --ablation_mode)", derived="ablation")
    alignment_global_students: int = spec(600, "students in the global alignment pass", ge=1,
                                           le=LIMITS["students"])
    use_residual_alignment: bool = spec(False, "correlate against residualised performance")
    alignment_residual_window: int = spec(5, "moving-average window of the residualisation", ge=1,
                                         le=LIMITS["length"])
    alignment_share_cap: float = spec(0.10, "cap on the alignment loss share")
    alignment_share_decay_factor: float = spec(0.75, "alignment weight decay when over the cap")
    pooled_correlations: bool = spec(False, "reference semantics (defect 10): alignment, retention and lag "
                                     "correlations pool the valid positions of all rows of the batch instead of "
                                     "one correlation per student row", before=False)
    alignment_max_students: int | None = spec(None, "reference semantics: alignment and lag use only the first N "
                                              "rows of each batch (the reference: 32; none: every row)", ge=1,
                                              le=LIMITS["batch"], before=None)


@dataclass(frozen=True)
class RetentionLagConfig(_Section):
    SECTION = "retention_lag"
    retention_delta: float = spec(0.005, "tolerated drop below the correlation peak")
    lag_max_lag: int = spec(3, "largest lag of the lag-gain loss (1-3)", ge=1, le=3)
    lag_l1_weight: float = spec(0.5, "weight of lag 1", ge=0.0)
    lag_l2_weight: float = spec(0.3, "weight of lag 2", ge=0.0)
    lag_l3_weight: float = spec(0.2, "weight of lag 3", ge=0.0)
    retention_detached: bool = spec(False, "reference semantics (defect 7): the retention term carries no "
                                    "gradient (the reference added it as a constant)", before=False)
    lag_detached: bool = spec(False, "reference semantics (defect 6, Era A): the lag-gain term carries no "
                              "gradient (Era A rebuilt it from Python floats)", before=False)


@dataclass(frozen=True)
class SchedulingConfig(_Section):
    SECTION = "scheduling"
    consistency_rebalance_epoch: int = spec(8, "epoch from which consistency may be rebalanced", ge=0,
                                            le=LIMITS["epochs"])
    consistency_rebalance_threshold: float = spec(0.10, "correlation under which it is")
    consistency_rebalance_new_weight: float = spec(0.2, "consistency weight after rebalance", ge=0.0)
    enable_cosine_perf_schedule: bool = spec(False, "cosine warm-up of performance losses")


@dataclass(frozen=True)
class StabilityConfig(_Section):
    SECTION = "stability_controls"
    freeze_sparsity: bool = spec(False, "never reduce the sparsity weight")
    variance_floor: float = spec(1e-4, "mastery variance floor")
    variance_floor_patience: int = spec(3, "epochs under the floor before reducing", ge=1,
                                       le=LIMITS["epochs"])
    variance_floor_reduce_factor: float = spec(0.5, "sparsity reduction factor")
    variance_floor_per_batch: bool = spec(False, "reference semantics (defect 11): count low-variance batches, "
                                          "not epochs, and reduce sparsity on every batch once the count reaches "
                                          "the patience (compounding); only with alignment on", before=False)


@dataclass(frozen=True)
class SamplingConfig(_Section):
    SECTION = "sampling"
    max_semantic_students: int = spec(50, "students in the per-epoch interpretability sample", ge=1,
                                       le=LIMITS["students"])
    log_head_stats: bool = spec(False, "record per-epoch head variance/skew in artifacts/")


@dataclass(frozen=True)
class DeterminismConfig(_Section):
    SECTION = "determinism"
    torch_deterministic: bool = spec(False, "deterministic PyTorch algorithms (cuBLAS workspace, cuDNN, TF32 off)")


@dataclass(frozen=True)
class SeedsConfig(_Section):
    """The seeds of a run: ``all`` in order, ``primary`` the first."""

    SECTION = "seeds"
    all: list[int] = field(default_factory=lambda: [42], metadata={"help": "seeds to train"})
    primary: int = field(default=42, metadata={"help": "the first seed"})

    def _cross_check(self) -> None:
        if not self.all:
            raise ConfigValueError("seeds.all", "needs at least one seed")
        if len(self.all) > LIMITS["seeds"]:
            raise ConfigValueError("seeds.all", f"at most {LIMITS['seeds']:,} seeds, got {len(self.all):,}")
        problem = next((seed_problem(s) for s in self.all if seed_problem(s)), None)
        if problem:
            raise ConfigValueError("seeds.all", problem)
        if len(set(self.all)) != len(self.all):
            raise ConfigValueError("seeds.all", f"seeds must be unique, got {shown(self.all)}")
        if self.primary != self.all[0]:
            raise ConfigValueError("seeds.primary", f"must be the first of seeds.all ({self.all[0]}), "
                                   f"got {shown(self.primary)}")


# Result-determining sections that gainakt reads, in config.json order.
SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "heads": HeadsConfig,
    "training": TrainingConfig,
    "interpretability": InterpretabilityConfig,
    "alignment": AlignmentConfig,
    "retention_lag": RetentionLagConfig,
    "scheduling": SchedulingConfig,
    "stability_controls": StabilityConfig,
    "sampling": SamplingConfig,
    "determinism": DeterminismConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``train_seed`` needs, typed; ``config_md5`` identifies the run in checkpoints."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    interpretability: InterpretabilityConfig = field(default_factory=InterpretabilityConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    retention_lag: RetentionLagConfig = field(default_factory=RetentionLagConfig)
    scheduling: SchedulingConfig = field(default_factory=SchedulingConfig)
    stability_controls: StabilityConfig = field(default_factory=StabilityConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    determinism: DeterminismConfig = field(default_factory=DeterminismConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    config_md5: str | None = None

    def __post_init__(self) -> None:
        if self.interpretability.constraints_over_padding and self.data.pack_windows:
            raise ConfigValueError("interpretability.constraints_over_padding", "needs --no-pack_windows: packed "
                                   "batches never compute the padding positions the reference's constraint "
                                   "losses counted")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> TrainConfig:
        """The training view of a config.json dict (other sections are ignored)."""
        kwargs: dict[str, Any] = {name: section_from_dict(t, cfg[name], section=name)
                                  for name, t in SECTION_TYPES.items()}
        kwargs["seeds"] = section_from_dict(SeedsConfig, cfg["seeds"], section="seeds")
        return cls(**kwargs, config_md5=cfg.get("config_md5"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name).to_dict() for name in SECTION_TYPES}
        out["seeds"] = self.seeds.to_dict()
        if self.config_md5 is not None:
            out["config_md5"] = self.config_md5
        return out

    def loss_fields(self) -> dict[str, Any]:
        """The flat loss/schedule parameters (the fields of ``LossSettings``)."""
        flat: dict[str, Any] = {}
        for name in ("interpretability", "alignment", "retention_lag", "scheduling", "stability_controls"):
            flat.update(getattr(self, name).to_dict())
        return flat
