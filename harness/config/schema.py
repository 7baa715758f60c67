"""The typed config.json: `RunConfig.from_dict()` / `to_dict()` round-trips the hashed record exactly.

The result-determining sections are gainakt's (`gainakt.config`); this module adds the sections
only the harness knows: experiment naming, runtime, paths, the dataset checksum and the
reproduction block. Sections that other parts of the harness extend with records (runtime, paths,
data_checksum, reproduction) stay mappings; their parameters (devices, threads, ...) are declared
here once and checked like every other parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gainakt.config import (
    ABLATION_MODES,
    SECTION_TYPES,
    ConfigValueError,
    SeedsConfig,
    TrainConfig,
    check_value,
    section_from_dict,
    spec,
)
from gainakt.config import _Section as Section

__all__ = ["ExperimentParams", "ExperimentSection", "RunConfig", "RuntimeParams", "TITLE_MAX", "check_title"]

ABLATION_CHOICES = tuple(ABLATION_MODES)

# Ceilings of the launch settings (README, "Limits"); the result parameters' are gainakt.config.LIMITS.
RUNTIME_LIMITS = {"threads": 4_096, "jobs_per_device": 1_024}

# A title names a folder: letters, digits, '-', '_', '.'; one path component, not too long for
# the file system once the timestamp prefix is added.
TITLE_MAX = 120
_TITLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_title(title: str) -> str | None:
    """Why `title` cannot name an experiment folder (None if it can)."""
    if len(title) > TITLE_MAX:
        return f"is {len(title)} characters long; the limit is {TITLE_MAX}"
    if not _TITLE.fullmatch(title):
        return (f"{title!r} may contain only letters, digits, '-', '_' and '.', "
                "starting with a letter or digit")
    return None


@dataclass(frozen=True)
class ExperimentParams(Section):
    """The parameters of the experiment section (the rest of it names the run)."""

    SECTION = "experiment"
    ablation_mode: str = spec("both_lag", "ablation mode: none|baseline, alignment_only|align, retention, both, "
                              "both_lag", choices=ABLATION_CHOICES)
    experiment_suffix: str | None = spec(None, "suffix naming per-seed logs (default: the title)")
    purpose: str = spec("Multi-seed reproducible training run", "free-text purpose of the run")


@dataclass(frozen=True)
class RuntimeParams(Section):
    """Where and how a run executes (not hashed)."""

    SECTION = "runtime"
    devices: list[str] = field(default_factory=lambda: ["auto"],
                               metadata={"help": "GPU indices, 'cpu' or 'auto'"})
    threads: int = spec(8, "CPU threads per worker (capped at the machine's cores)", ge=1, le=RUNTIME_LIMITS["threads"])
    jobs_per_device: int = spec(1, "seeds trained at once on each device (CPU: --threads split between them)", ge=1,
                                le=RUNTIME_LIMITS["jobs_per_device"])
    runtime: str = spec("local", "where training runs", choices=("auto", "local", "docker"))
    image: str | None = spec(None, "container image tag (default: built for this code)")


@dataclass(frozen=True)
class ExperimentSection(Section):
    """config.json's experiment section."""

    SECTION = "experiment"
    id: str | None = None
    short_title: str = ""
    model: str = "gainakt2exp"
    ablation_mode: str = spec("both_lag", "", choices=ABLATION_CHOICES)
    experiment_suffix: str = ""
    purpose: str = ""


_OPTIONAL_TOP = ("reproduction", "missing_params", "config_md5")


@dataclass(frozen=True)
class RunConfig:
    """A whole config.json, typed. `to_dict(from_dict(d)) == d` for every config this code writes."""

    schema_version: int
    experiment: ExperimentSection
    train: TrainConfig
    data_checksum: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Any] = field(default_factory=dict)
    paths: Mapping[str, Any] = field(default_factory=dict)
    reproduction: Mapping[str, Any] | None = None
    missing_params: list[str] | None = None
    config_md5: str | None = None
    # Top-level sections this code does not type (records added by other parts), kept as written.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> RunConfig:
        """Parse and check a config dict; ConfigValueError names the first bad `section.key`."""
        known = {"schema_version", "experiment", "seeds", "data_checksum", "runtime", "paths",
                 *SECTION_TYPES, *_OPTIONAL_TOP}
        for name in ("schema_version", "experiment", "seeds", *SECTION_TYPES):
            if name not in cfg:
                raise ConfigValueError(name, "missing")
        for name in ("data_checksum", "runtime", "paths", "reproduction"):
            if name in cfg and not isinstance(cfg[name], Mapping):
                raise ConfigValueError(name, f"expects a mapping, got {type(cfg[name]).__name__}")
        problem = check_value(int, {}, cfg["schema_version"])
        if problem:
            raise ConfigValueError("schema_version", problem)
        return cls(
            schema_version=cfg["schema_version"],
            experiment=section_from_dict(ExperimentSection, cfg["experiment"], section="experiment"),
            train=TrainConfig.from_dict(cfg),
            data_checksum=dict(cfg.get("data_checksum", {})),
            runtime=dict(cfg.get("runtime", {})),
            paths=dict(cfg.get("paths", {})),
            reproduction=cfg.get("reproduction"),
            missing_params=cfg.get("missing_params"),
            config_md5=cfg.get("config_md5"),
            extra={k: v for k, v in cfg.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The config.json dict (the hashed record); optional top-level keys only when set."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "experiment": self.experiment.to_dict()}
        train = self.train.to_dict()
        train.pop("config_md5", None)
        out.update(train)
        out["data_checksum"] = dict(self.data_checksum)
        out["runtime"] = dict(self.runtime)
        out["paths"] = dict(self.paths)
        for name in _OPTIONAL_TOP:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
        return out

    @property
    def seeds(self) -> SeedsConfig:
        return self.train.seeds

    # The runtime record, typed (the section stays a mapping that other parts extend).
    @property
    def devices(self) -> list[str]:
        """The devices the run was given (host view)."""
        return [str(d) for d in self.runtime.get("devices", ["cpu"])]

    @property
    def threads(self) -> int:
        return int(self.runtime.get("threads", 1))

    @property
    def jobs_per_device(self) -> int:
        """Seeds at once per device (absent in configs written before it existed: 1)."""
        return int(self.runtime.get("jobs_per_device", 1))

    @property
    def where(self) -> str:
        """local or docker."""
        return str(self.runtime.get("runtime", "local"))

    @property
    def command(self) -> str:
        return str(self.runtime.get("command", ""))

    @property
    def experiment_id(self) -> str:
        return self.experiment.id or ""

    def __getattr__(self, name: str) -> Any:
        # The result sections read as on the training config: cfg.training.epochs, cfg.model.d_model.
        if name in SECTION_TYPES:
            return getattr(self.train, name)
        raise AttributeError(name)

