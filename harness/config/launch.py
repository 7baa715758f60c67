"""`LaunchOptions`: what a launch was asked to do, typed, parsed once from the command line.

The engine (harness.run.launcher) and the CLI actions read these fields instead of an
argparse.Namespace; `explicit` holds the registered parameters the user actually typed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from harness.config.build import ConfigError
from harness.config.params import PARAMS


@dataclass(frozen=True)
class LaunchOptions:
    """Flags that steer a launch (not parameters of the run), plus the parameters typed."""

    explicit: Mapping[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None
    seed: int | None = None
    sets: tuple[str, ...] = ()
    unsets: tuple[str, ...] = ()
    from_config: str | None = None
    reference_values: bool = False  # start from gainakt.config.REFERENCE_VALUES (flags and --set still win)
    data_dir: str | None = None
    output_base: str | None = None
    experiment_dir: str | None = None
    force: bool = False
    reproduce_from: str | None = None
    resume: str | None = None
    compare_only: bool = False
    source_exp: str | None = None
    target_exp: str | None = None
    manifest: bool = False
    strict_schema: bool = False
    auc_tolerance: float | None = None
    corr_tolerance: float | None = None
    no_verify: bool = False
    accept_modified: bool = False
    allow_different_data: bool = False
    sign_key: str | None = None
    sign_accepted: bool = False
    container_memory: str | None = None
    container_pids: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None and self.seeds is not None:
            raise ConfigError(f"--seed {self.seed} and --seeds {' '.join(map(str, self.seeds))} both given; "
                              "use --seeds alone (--seed N is the same as --seeds N)")

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace | LaunchOptions) -> LaunchOptions:
        """The options of a parsed command line (flags the subcommand lacks keep their defaults)."""
        if isinstance(ns, LaunchOptions):
            return ns
        values = vars(ns)
        kwargs: dict[str, Any] = {f.name: values[f.name] for f in fields(cls)
                                  if f.name != "explicit" and values.get(f.name) is not None}
        for name in ("sets", "unsets"):
            kwargs[name] = tuple(kwargs.get(name) or ())
        if "seeds" in kwargs:
            kwargs["seeds"] = list(kwargs["seeds"])
        explicit = {p.name: values[p.name] for p in PARAMS if p.name in values}
        return cls(explicit=explicit, **kwargs)

    @property
    def seed_list(self) -> list[int] | None:
        """The seeds typed on the command line (--seeds, or --seed N), None when neither was."""
        if self.seeds is not None:
            return list(self.seeds)
        return None if self.seed is None else [self.seed]
