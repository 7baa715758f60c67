"""A sweep spec: the base every point starts from, the points (named override sets and/or a grid) and seeds.

YAML (or the same structure from a built-in matrix)::

    base:                       # optional
      from_config: cfg.json     # a config.json or YAML/JSON parameter file
      flags: {model_preset: small, epochs: 5}
      set: ["alignment.adaptive_alignment=false"]   # or a mapping {key.path: value}
    points:                     # optional if grid is given; name -> override set
      baseline: {}
      perf_only: {flags: {ablation_mode: none}}
    grid:                       # optional; product of values, combined with every point
      learning_rate: [0.0001, 0.0003]
    base_point: baseline        # the point others are compared with (default: the first)
    seeds: [21, 42, 63]         # --seeds on the command line replaces them

Everything is checked here, before any folder exists: unknown keys, unknown parameters, values of
the wrong type, empty grids, duplicate or unusable point names.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gainakt.config import LIMITS, seed_problem, shown
from harness.config.build import field_problem
from harness.config.params import BY_NAME
from harness.errors import HarnessError

# Flags of `harness run` that make no sense for a sweep; refused rather than ignored. Kept here, not in
# the runner, so that building the CLI's parser does not import the training engine (and torch).
REFUSED_FLAGS = ("experiment_dir", "reproduce_from", "compare_only", "source_exp", "target_exp", "manifest",
                 "strict_schema", "force", "auc_tolerance", "corr_tolerance", "no_verify", "accept_modified",
                 "sign_key", "sign_accepted", "reference_values")

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SPEC_KEYS = {"base", "points", "grid", "seeds", "base_point", "description"}
_BASE_KEYS = {"flags", "set", "from_config"}
_POINT_KEYS = {"flags", "set", "description"}
# Launch settings belong to the command line, not to points (they do not change results).
_NOT_POINT_FLAGS = {"devices", "threads", "jobs_per_device", "runtime", "image"}


class SweepError(HarnessError, RuntimeError):
    """A sweep that cannot start or continue; one line for the user."""


@dataclass
class Overrides:
    flags: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)


@dataclass
class Point:
    name: str
    overrides: Overrides
    description: str = ""


@dataclass
class SweepSpec:
    base: Overrides
    from_config: str | None
    points: list[Point]
    base_point: str
    seeds: list[int]
    document: dict[str, Any]  # the spec as given (recorded in sweep.json)

    @property
    def md5(self) -> str:
        return spec_md5(self.document)


def spec_md5(document: dict[str, Any]) -> str:
    return hashlib.md5(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def load_spec_file(path: str) -> dict[str, Any]:
    from harness.config.files import DocumentError, load_document

    p = Path(path)
    if not p.is_file():
        raise SweepError(f"--spec {path}: no such file")
    try:
        doc = load_document(p, yaml_format=True)  # no anchors/aliases, no repeated keys, at most 1 MiB
    except DocumentError as exc:
        raise SweepError(f"--spec {path}: {exc}") from None
    except OSError as exc:
        raise SweepError(f"--spec {path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(doc, dict):
        raise SweepError(f"--spec {path}: expected a mapping with base/points/grid/seeds at the top")
    return doc


def _unknown(where: str, keys: Any, allowed: set[str]) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise SweepError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def coerce_flag(where: str, name: str, value: Any) -> Any:
    """A parameter value from YAML, checked against the parameter registry."""
    param = BY_NAME.get(name)
    if param is None:
        canonical = next((p.name for p in BY_NAME.values() if f"--{name}" in p.flags), None)
        if canonical is not None:
            raise SweepError(f"{where}: {name!r} is a command-line spelling; a spec names the parameter "
                             f"{canonical!r}")
        raise SweepError(f"{where}: unknown parameter {name!r} (see `harness run --help`)")
    if value is None and param.nullable:
        return None
    if param.type is list:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if param.type is bool:
        if not isinstance(value, bool):
            raise SweepError(f"{where}: {name} expects true or false, got {shown(value)}")
        return value
    if param.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    elif param.type is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, param.type) or isinstance(value, bool):
        raise SweepError(f"{where}: {name} expects {param.type.__name__}, got {shown(value)}")
    if param.choices and value not in param.choices:
        raise SweepError(f"{where}: {name} must be one of {', '.join(map(str, param.choices))}, got {shown(value)}")
    problem = field_problem(name, value)  # the field's own rule (range, limits), as flags and --set have it
    if problem:
        raise SweepError(f"{where}: {name} {problem}")
    return value


def _overrides(where: str, block: Any, allowed: set[str]) -> Overrides:
    if block is None:
        return Overrides()
    if not isinstance(block, dict):
        raise SweepError(f"{where}: expected a mapping with {' and/or '.join(sorted(allowed & {'flags', 'set'}))}")
    _unknown(where, block, allowed)
    flags = block.get("flags") or {}
    if not isinstance(flags, dict):
        raise SweepError(f"{where}.flags: expected a mapping of parameter: value")
    sets = block.get("set") or []
    if isinstance(sets, dict):
        sets = [f"{k}={_set_text(v)}" for k, v in sets.items()]
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise SweepError(f"{where}.set: expected a list of 'key.path=value' or a mapping key.path: value")
    return Overrides(flags={k: coerce_flag(f"{where}.flags", k, v) for k, v in flags.items()}, sets=list(sets))


def _set_text(value: Any) -> str:
    """A YAML value as --set text (JSON for booleans, null and lists, as --set parses it)."""
    return value if isinstance(value, str) else json.dumps(value)


def _grid(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    grid = doc.get("grid")
    if grid is None:
        return []
    if not isinstance(grid, dict) or not grid:
        raise SweepError("grid: expected a non-empty mapping of parameter: [values]")
    axes = []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid.{name}: empty grid (give a non-empty list of values)")
        axes.append([(name, coerce_flag("grid", name, v)) for v in values])
    combos = []
    for combo in itertools.product(*axes):
        label = "__".join(f"{n}-{_label(v)}" for n, v in combo)
        combos.append((label, dict(combo)))
    return combos


def _label(value: Any) -> str:
    text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _points(doc: dict[str, Any]) -> list[Point]:
    raw = doc.get("points")
    if raw is not None and (not isinstance(raw, dict) or not raw):
        raise SweepError("points: expected a non-empty mapping of name: {flags: ..., set: ...}")
    named = [Point(str(name), _overrides(f"points.{name}", block, _POINT_KEYS),
                   str((block or {}).get("description", "")))
             for name, block in (raw or {}).items()]
    combos = _grid(doc)
    if not named and not combos:
        raise SweepError("the spec has neither points nor a grid: nothing to run")
    if not combos:
        return named
    if not named:
        return [Point(label, Overrides(flags=dict(flags))) for label, flags in combos]
    return [Point(f"{p.name}__{label}", Overrides({**p.overrides.flags, **flags}, list(p.overrides.sets)),
                  p.description) for p in named for label, flags in combos]


def _check_names(points: list[Point]) -> None:
    seen: set[str] = set()
    for p in points:
        if not _NAME.match(p.name):
            raise SweepError(f"point name {p.name!r}: use letters, digits, '_', '-' or '.'")
        if p.name.lower() in seen:
            raise SweepError(f"duplicate point name {p.name!r}")
        seen.add(p.name.lower())
        launch = sorted(set(p.overrides.flags) & _NOT_POINT_FLAGS)
        if launch:
            raise SweepError(f"point {p.name}: {launch[0]} is a launch setting; give it on the command line")


def _seeds(doc: dict[str, Any], cli_seeds: list[int] | None) -> list[int]:
    seeds = cli_seeds if cli_seeds is not None else doc.get("seeds")
    if seeds is None:
        raise SweepError("no seeds: give `seeds:` in the spec or --seeds on the command line")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds):
        raise SweepError(f"seeds: expected a non-empty list of integers, got {shown(seeds)}")
    if len(seeds) > LIMITS["seeds"]:
        raise SweepError(f"seeds: at most {LIMITS['seeds']:,} seeds, got {len(seeds):,}")
    problem = next((seed_problem(s) for s in seeds if seed_problem(s)), None)
    if problem:
        raise SweepError(f"seeds: {problem}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds: duplicate seeds in {shown(seeds)}")
    return list(seeds)


def parse_spec(doc: dict[str, Any], cli_seeds: list[int] | None = None) -> SweepSpec:
    """Check a spec document and turn it into points; every problem is one SweepError line."""
    _unknown("spec", doc, _SPEC_KEYS)
    base_block = doc.get("base")
    base = _overrides("base", base_block, _BASE_KEYS)
    launch = sorted(set(base.flags) & _NOT_POINT_FLAGS)
    if launch:
        raise SweepError(f"base: {launch[0]} is a launch setting; give it on the command line")
    from_config = (base_block or {}).get("from_config")
    if from_config is not None and not isinstance(from_config, str):
        raise SweepError("base.from_config: expected a file path")
    points = _points(doc)
    _check_names(points)
    base_point = doc.get("base_point", points[0].name)
    if base_point not in {p.name for p in points}:
        raise SweepError(f"base_point {base_point!r} is not one of the points ({', '.join(p.name for p in points)})")
    return SweepSpec(base=base, from_config=from_config, points=points, base_point=str(base_point),
                     seeds=_seeds(doc, cli_seeds), document=doc)
