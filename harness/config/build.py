"""Resolved experiment configuration: building, overrides, hashing and the missing-params check.

The config is plain data (nested dicts) in the reference's section layout plus our own sections
(model, determinism, data_checksum). `config_md5` hashes only the sections that determine results,
so an identical re-run has an identical hash (the reference hashed its timestamp and never matched).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from gainakt.config import (
    SECTION_TYPES,
    ConfigValueError,
    SeedsConfig,
    TrainConfig,
    added_later,
    check_value,
    shown,
)
from harness.config.params import BY_NAME, MODEL_PRESETS, PARAMS, SECTION_ORDER
from harness.config.schema import (
    ExperimentParams,
    ExperimentSection,
    RunConfig,
    RuntimeParams,
    check_title,
)
from harness.errors import HarnessError

SCHEMA_VERSION = 3
KNOWN_SCHEMAS = (2, 3)

# Keys that name or locate a run rather than determine its results.
VOLATILE_SECTIONS = ("runtime", "paths", "reproduction", "config_md5", "missing_params", "schema_version")
VOLATILE_EXPERIMENT_KEYS = ("id", "short_title", "experiment_suffix", "purpose", "created")

# Descriptions of what was read, derived from the hashed files (data_checksum.sha256) by the code.
DESCRIPTIVE_LEAVES: dict[str, tuple[str, ...]] = {
    "data_checksum": ("split", "split_rule", "num_concepts_source"),
}

# Leaves that are derived at build time and therefore may not be set directly.
DERIVED_LEAVES = {"data_checksum.sha256", "data_checksum.files", "seeds.primary"}


class ConfigError(HarnessError, ValueError):
    """A bad parameter, override or config file; the message is one line for the user."""


# ---------------------------------------------------------------------------------------------
# Building


def default_params() -> dict[str, Any]:
    """Every registered parameter at its default value."""
    return {p.name: copy.deepcopy(p.default) for p in PARAMS}


def resolve_model(params: Mapping[str, Any]) -> dict[str, Any]:
    """The model section: preset values, each overridden by an explicit per-dimension value."""
    preset = params["model_preset"]
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {', '.join(MODEL_PRESETS)}")
    dims = dict(MODEL_PRESETS[preset])
    for key in dims:
        if params.get(key) is not None:
            dims[key] = params[key]
    return {
        "model_preset": preset,
        **dims,
        "gain_scale": params["gain_scale"],
        "enable_head_normalization": params["enable_head_normalization"],
        "mastery_accumulation": params["mastery_accumulation"],
    }


def resolve_ablation(params: Mapping[str, Any]) -> dict[str, bool]:
    """The four enable flags from the ablation mode, each explicit flag winning in both directions."""
    from gainakt.config import ABLATION_FLAGS
    from gainakt.config import resolve_ablation as _resolve

    overrides = {k: params.get(k) for k in ABLATION_FLAGS}
    try:
        return dict(_resolve(params["ablation_mode"], overrides))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Sources(dict):
    """Where each parameter's value came from ("--epochs", "c.yaml: training.epochs", ...)."""

    def label(self, key: str) -> str:
        name = "seeds_list" if key.startswith("seeds") else key.rsplit(".", 1)[-1]
        where = self.get(name)
        if where is None:
            return key
        return where if where.startswith("--") or where.endswith(key) else f"{where} ({key})"


@contextmanager
def named_errors(sources: Mapping[str, str] | None) -> Iterator[None]:
    """Turn a section's ConfigValueError into one ConfigError line naming where the value came from."""
    try:
        yield
    except ConfigValueError as exc:
        label = Sources(sources or {}).label(exc.key)
        raise ConfigError(f"{label}: {exc.reason}") from None


def build_config(params: Mapping[str, Any], *, title: str, experiment_id: str | None = None,
                 sources: Mapping[str, str] | None = None) -> dict:
    """The nested config for fully resolved `params` (every registered name present).

    Every value is checked by its typed section (types, ranges, choices, cross-field rules); the
    first problem is a ConfigError naming the flag, `--set` key or file key it came from. Data
    checksum and paths are filled in later by the launcher, once the dataset is loaded and the
    folder exists; they are part of the config before hashing.
    """
    problem = check_title(title)
    if problem:
        raise ConfigError(f"invalid experiment title: {problem}")
    params = dict(params)
    with named_errors(sources):
        ExperimentParams(**{f.name: params[f.name] for f in fields(ExperimentParams)})
        RuntimeParams(**{f.name: params[f.name] for f in fields(RuntimeParams)})
        params.update(resolve_ablation(params))
        values = {name: {f.name: params[f.name] for f in fields(cls)} for name, cls in SECTION_TYPES.items()}
        values["model"] = resolve_model(params)
        seeds = list(params.pop("seeds_list", None) or [42])
        train = TrainConfig(**{name: cls(**values[name]) for name, cls in SECTION_TYPES.items()},
                            seeds=SeedsConfig(all=seeds, primary=seeds[0]))
    experiment = ExperimentSection(id=experiment_id, short_title=title, model="gainakt2exp",
                                   ablation_mode=params["ablation_mode"],
                                   experiment_suffix=params["experiment_suffix"] or title,
                                   purpose=params["purpose"])
    runtime = {p.name: params[p.name] for p in PARAMS if p.section == "runtime"}
    run = RunConfig(schema_version=SCHEMA_VERSION, experiment=experiment, train=train,
                    data_checksum={"sha256": None, "files": []}, runtime=runtime,
                    paths={"output_dir": None, "data_dir": None})
    return run.to_dict()


def dedupe_seeds(seeds: Iterable[int]) -> list[int]:
    """Seeds with duplicates removed, first occurrence kept."""
    out: list[int] = []
    for s in seeds:
        if s not in out:
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Hashing


def canonical_json(obj: Any) -> str:
    """Sorted keys, compact separators: the bytes that are hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def hashed_view(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The result-determining part of a config: no ids, titles, paths, devices or hashes."""
    view = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in VOLATILE_SECTIONS}
    if isinstance(view.get("experiment"), dict):
        for key in VOLATILE_EXPERIMENT_KEYS:
            view["experiment"].pop(key, None)
    # Fields added after schema 3 (declared with `before`) stay out of the hash while they hold the
    # value that reproduces earlier configs, so those keep the md5 they always had.
    for section, defaults in added_later().items():
        part = view.get(section)
        if isinstance(part, dict):
            for key, default in defaults.items():
                if key in part and part[key] == default and type(part[key]) is type(default):
                    del part[key]
    for section, keys in DESCRIPTIVE_LEAVES.items():
        part = view.get(section)
        if isinstance(part, dict):
            for key in keys:
                part.pop(key, None)
    return view


def config_md5(cfg: Mapping[str, Any]) -> str:
    """md5 of the canonical JSON of the hashed view."""
    return hashlib.md5(canonical_json(hashed_view(cfg)).encode()).hexdigest()


def amp_ran(cfg: Mapping[str, Any]) -> bool:
    """Whether mixed precision actually ran in a folder of any age.

    This code records `training.mixed_precision` as run; older folders recorded the request, so a
    request on a CPU-only run counts as fp32 (AMP never runs on CPU).
    """
    training = cfg.get("training")
    if not isinstance(training, Mapping) or "mixed_precision" not in training:
        return bool(cfg.get("use_amp", False))
    runtime = cfg.get("runtime")
    devices = runtime.get("devices") if isinstance(runtime, Mapping) else None
    return bool(training["mixed_precision"]) and devices != ["cpu"]


def config_md5_as_run(cfg: Mapping[str, Any]) -> str:
    """config_md5 with `training.mixed_precision` as run (equal for an old and a new fp32 CPU run)."""
    doc = copy.deepcopy(dict(cfg))
    if isinstance(doc.get("training"), dict) and "mixed_precision" in doc["training"]:
        doc["training"]["mixed_precision"] = amp_ran(cfg)
    return config_md5(doc)


def normalized_config_hash(cfg: Mapping[str, Any]) -> str:
    """The guide's recipe, `jq 'del(.runtime.timestamp, .config_md5)' | jq -S . | md5sum`, in Python.

    jq -S prints sorted keys with two-space indentation and a trailing newline; this reproduces
    those bytes for the values our configs hold.
    """
    doc = copy.deepcopy(dict(cfg))
    doc.pop("config_md5", None)
    if isinstance(doc.get("runtime"), dict):
        doc["runtime"].pop("timestamp", None)
    text = json.dumps(_jq_numbers(doc), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return hashlib.md5(text.encode()).hexdigest()


def _jq_numbers(obj: Any) -> Any:
    """jq prints integral floats without a fraction (1.0 -> 1); other floats as Python's repr does."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 1e17:
        return int(obj)
    if isinstance(obj, dict):
        return {k: _jq_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jq_numbers(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Overrides (--set / --unset)

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def coerce(text: str) -> Any:
    """The guide's coercion: true/false, numbers with '.' (or an exponent) as float, integers,
    comma lists coerced element-wise, 'null'/'none' as None, anything else a string."""
    s = text.strip()
    if "," in s:
        return [coerce(part) for part in s.split(",") if part.strip() != ""]
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    return s


def leaf_paths(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested dict as {"a.b": value}; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(leaf_paths(value, path + "."))
        else:
            out[path] = value
    return out


def settable_paths(cfg: Mapping[str, Any]) -> list[str]:
    """Leaf paths that `--set` may change (results-determining and experiment leaves)."""
    skip = ("config_md5", "missing_params", "schema_version", "reproduction", "paths", "data_checksum")
    leaves = leaf_paths({k: v for k, v in cfg.items() if k not in skip})
    return sorted(p for p in leaves if p not in DERIVED_LEAVES
                  and p not in ("experiment.id", "experiment.short_title", "experiment.model"))


def _check_type(path: str, old: Any, new: Any) -> Any:
    """`new` converted to the type of the current value, or ConfigError."""
    leaf = path.rsplit(".", 1)[-1]
    spec = BY_NAME.get(leaf)
    expected = spec.type if spec else (type(old) if old is not None else None)
    if new is None:
        if spec is None or spec.nullable:
            return None
        raise ConfigError(f"--set {path}: value may not be null")
    if spec is not None and spec.choices and new not in spec.choices:
        raise ConfigError(f"--set {path}: {shown(new)} is not one of {', '.join(map(str, spec.choices))}")
    if expected is None:
        return new
    if expected is bool:
        if isinstance(new, bool):
            return new
        raise ConfigError(f"--set {path}: expects true or false, got {shown(new)}")
    if expected is float:
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
        raise ConfigError(f"--set {path}: expects a number, got {shown(new)}")
    if expected is int:
        if isinstance(new, int) and not isinstance(new, bool):
            return new
        raise ConfigError(f"--set {path}: expects an integer, got {shown(new)}")
    if expected is list:
        items = new if isinstance(new, list) else [new]
        if path == "seeds.all":
            if not items or not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
                raise ConfigError(f"--set {path}: expects a comma-separated list of integers, got {shown(new)}")
            return dedupe_seeds(items)
        return items
    if expected is str:
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return str(new)
        if isinstance(new, str):
            return new
        raise ConfigError(f"--set {path}: expects text, got {shown(new)}")
    return new


def _split_assignment(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"malformed --set {item!r}: expected key.path=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or "." not in key:
        raise ConfigError(f"malformed --set {item!r}: the key must be a dotted path such as training.epochs")
    return key, value


def _unknown_key(path: str, known: list[str], verb: str) -> ConfigError:
    close = difflib.get_close_matches(path, known, n=3, cutoff=0.6)
    if not close:
        leaf = path.rsplit(".", 1)[-1]
        close = [k for k in known if k.endswith("." + leaf)][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{verb} {path}: unknown config key{hint}")


def _get(cfg: Mapping[str, Any], path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    return node


def apply_overrides(params: dict[str, Any], cfg: Mapping[str, Any], sets: Iterable[str],
                    unsets: Iterable[str], sources: dict[str, str] | None = None) -> list[str]:
    """Apply `--unset` then `--set` to the flat `params` in place; return lines `key:old->new`.

    Paths are checked against the config built from `params` (`cfg`), so any leaf of a known
    section can be named; the caller rebuilds the config afterwards, which re-derives what depends
    on the changed value (e.g. model dimensions after `model.model_preset`). `--unset key.path`
    returns a leaf to the launcher default.
    """
    log: list[str] = []
    current: dict[str, Any] = {}  # values after --unset, before --set
    known = settable_paths(cfg)
    for path in unsets:
        path = path.strip()
        if path not in known:
            raise _unknown_key(path, known, "--unset")
        name = _param_name(path)
        old = _get(cfg, path)
        params[name] = copy.deepcopy(BY_NAME[name].default) if name in BY_NAME else [42]
        current[path] = _value_used(params, name)
        log.append(f"{path}:{json.dumps(old)}->{json.dumps(current[path])} (default, unset)")
    for item in sets:
        path, text = _split_assignment(item)
        if path not in known:
            raise _unknown_key(path, known, "--set")
        old = current[path] if path in current else _get(cfg, path)
        new = _check_type(path, old, _coerce_for(path, text))
        params[_param_name(path)] = new
        if sources is not None:
            sources[_param_name(path)] = f"--set {path}"
        log.append(f"{path}:{json.dumps(old)}->{json.dumps(new)}")
    return log


def _value_used(params: Mapping[str, Any], name: str) -> Any:
    """The value a parameter takes in the run (model dimensions from the preset, objective flags
    from the ablation mode), for the `--unset` log line."""
    if name in MODEL_PRESETS["paper"]:
        return resolve_model(params)[name]
    if BY_NAME.get(name) is not None and BY_NAME[name].nullable and name.startswith("enable_"):
        return resolve_ablation(params)[name]
    return params[name]


def _coerce_for(path: str, text: str) -> Any:
    """The guide's coercion, except that 'none' stays text where it is a documented choice."""
    spec = BY_NAME.get(path.rsplit(".", 1)[-1])
    if spec is not None and spec.choices and text.strip() in spec.choices:
        return text.strip()
    try:
        return coerce(text)
    except ValueError:  # int() refuses more than 4300 digits
        raise ConfigError(f"--set {path}: a number of {len(text.strip()):,} characters is too large") from None


def _param_name(path: str) -> str:
    if path == "seeds.all":
        return "seeds_list"
    return path.rsplit(".", 1)[-1]


# ---------------------------------------------------------------------------------------------
# missing_params


def missing_params(resolved: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """Resolved parameters the written config does not hold with the same value.

    A real comparison: each parameter is looked up at its own section and compared by value,
    not just by name. Model dimensions are compared after preset resolution.
    """
    missing = []
    model = resolve_model(resolved)
    for p in PARAMS:
        section = cfg.get(p.section)
        if not isinstance(section, dict) or p.name not in section:
            missing.append(p.name)
            continue
        expected = model[p.name] if p.section == "model" else resolved.get(p.name)
        if p.name.startswith("enable_") and expected is None:
            continue  # decided by the ablation mode; the config holds the decision
        if section[p.name] != expected:
            missing.append(p.name)
    return sorted(missing)


# ---------------------------------------------------------------------------------------------
# Files


def load_config_file(path: str | Path) -> dict:
    """A config.json (any schema) or a YAML/JSON parameter file, as a dict.

    Read strictly (harness.config.files): no YAML anchors or aliases, no repeated keys, at most
    1 MiB; every problem is one ConfigError line naming the file.
    """
    from harness.config.files import DocumentError, load_document

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = load_document(p)
    except DocumentError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config sections at the top level")
    return data


_RUNTIME_NAMES = frozenset(f.name for f in fields(RuntimeParams))


@cache
def field_rules() -> Mapping[str, tuple[Any, Mapping[str, Any]]]:
    """{parameter name: (type hint, field metadata)} of every config field behind a parameter."""
    import typing

    rules: dict[str, tuple[Any, Mapping[str, Any]]] = {}
    for cls in (ExperimentParams, *SECTION_TYPES.values(), RuntimeParams):
        hints = typing.get_type_hints(cls)
        rules.update({f.name: (hints[f.name], f.metadata) for f in fields(cls)})
    return rules


def field_problem(name: str, value: Any) -> str | None:
    """Why `value` breaks the own rule (type, range, choices) of parameter `name`'s field; None if it
    does not, or if no field stands behind the parameter."""
    rule = field_rules().get(name)
    return None if rule is None else check_value(rule[0], rule[1], value)


def params_from_file(data: Mapping[str, Any], source: str,
                     sources: dict[str, str] | None = None, *, check_values: bool = False) -> dict[str, Any]:
    """Parameters named in a config or parameter file: nested sections or flat names.

    Unknown names are an error (with close matches); schema-2 configs from the reference launcher
    are accepted (their extra keys such as monitor_freq are registered parameters here). Values are
    taken as written: the typed sections check them later, and `sources` records where each came
    from (`file: section.key`) so that the error names the file and the key.
    """
    out: dict[str, Any] = {}
    known = [p.name for p in PARAMS]
    where = sources if sources is not None else {}

    def take(name: str, value: Any, section: str | None) -> None:
        if name in BY_NAME:
            # With `check_values` (a --from_config file) each result-determining value is checked against
            # its own field's rule here, whatever later layers (flags, --set) put over it: a file with a
            # bad value is refused even where a flag overrides it. Runtime values (devices, threads, ...)
            # are the launcher's to resolve, and a reproduced source keeps the reference's spellings.
            problem = field_problem(name, value) if check_values and name not in _RUNTIME_NAMES else None
            if problem:
                raise ConfigError(f"{source}: {name} ({section + '.' if section else ''}{name}): {problem}")
            out[name] = value
            where[name] = f"{source}: {section + '.' if section else ''}{name}"
        elif name not in _IGNORED_FILE_KEYS:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown parameter {name!r}{hint}")

    for key, value in data.items():
        if key == "seeds":
            out["seeds_list"] = _seeds_from_file(value)
            where["seeds_list"] = f"{source}: seeds"
        elif key in _IGNORED_FILE_SECTIONS:
            if key == "experiment" and isinstance(value, dict):
                for k in ("ablation_mode", "experiment_suffix", "purpose"):
                    if k in value:
                        take(k, value[k], key)
        elif isinstance(value, dict):
            for k, v in value.items():
                take(k, v, key)
        else:
            take(key, value, None)
    if "schema_version" in data:  # a run's config.json: parameters it predates keep their earlier value
        for section, leaves in added_later().items():
            for name, before in leaves.items():
                if name not in out:
                    out[name] = before
                    where[name] = f"{source}: {section}.{name} (absent: the value before it existed)"
    return out


def _seeds_from_file(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("all") if "all" in value else [value.get("primary", 42)]
    return value if isinstance(value, list) else [value]


_IGNORED_FILE_SECTIONS = {"experiment", "paths", "reproduction", "missing_params", "config_md5",
                          "schema_version", "data_checksum", "hardware", "command", "timestamp",
                          "output_dir"}
_IGNORED_FILE_KEYS = {"mixed_precision_requested", "timestamp", "command", "resume", "output_dir", "semantic_trajectory_path",
                      "model", "use_wandb", "id", "short_title", "primary", "all", "sha256", "files",
                      "data_dir", "host", "engine", "created", "devices_requested"}


def ordered(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Sections in the documented order (JSON is written with sorted keys anyway)."""
    out = {k: cfg[k] for k in SECTION_ORDER if k in cfg}
    out.update({k: v for k, v in cfg.items() if k not in out})
    return out
