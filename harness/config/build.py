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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.config.params import BY_NAME, MODEL_PRESETS, PARAMS, RESULT_SECTIONS, SECTION_ORDER

SCHEMA_VERSION = 3
KNOWN_SCHEMAS = (2, 3)

# Keys that name or locate a run rather than determine its results.
VOLATILE_SECTIONS = ("runtime", "paths", "reproduction", "config_md5", "missing_params", "schema_version")
VOLATILE_EXPERIMENT_KEYS = ("id", "short_title", "experiment_suffix", "purpose", "created")

# Leaves that are derived at build time and therefore may not be set directly.
DERIVED_LEAVES = {"data_checksum.sha256", "data_checksum.files", "seeds.primary"}


class ConfigError(ValueError):
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
    }


def resolve_ablation(params: Mapping[str, Any]) -> dict[str, bool]:
    """The four enable flags from the ablation mode, each explicit flag winning in both directions."""
    from gainakt.losses import resolve_ablation as _resolve

    overrides = {
        k: params.get(k)
        for k in (
            "enable_alignment_loss",
            "enable_global_alignment_pass",
            "enable_retention_loss",
            "enable_lag_gain_loss",
        )
    }
    try:
        return dict(_resolve(params["ablation_mode"], overrides))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_config(params: Mapping[str, Any], *, title: str, experiment_id: str | None = None) -> dict:
    """The nested config for fully resolved `params` (every registered name present).

    Data checksum and paths are filled in later by the launcher, once the dataset is loaded and
    the folder exists; they are part of the config before hashing.
    """
    params = dict(params)
    validate_params(params)
    params.update(resolve_ablation(params))
    seeds = dedupe_seeds(params.pop("seeds_list", None) or [42])
    cfg: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    cfg["experiment"] = {
        "id": experiment_id,
        "short_title": title,
        "model": "gainakt2exp",
        "ablation_mode": params["ablation_mode"],
        "experiment_suffix": params["experiment_suffix"] or title,
        "purpose": params["purpose"],
    }
    sections: dict[str, dict[str, Any]] = {name: {} for name in RESULT_SECTIONS}
    sections["runtime"] = {}
    for p in PARAMS:
        if p.section in ("experiment", "model"):
            continue
        sections[p.section][p.name] = params[p.name]
    sections["model"] = resolve_model(params)
    sections["data_checksum"] = {"sha256": None, "files": []}
    sections["seeds"] = {"all": seeds, "primary": seeds[0]}
    for name in RESULT_SECTIONS:
        cfg[name] = sections[name]
    cfg["runtime"] = sections["runtime"]
    cfg["paths"] = {"output_dir": None, "data_dir": None}
    return cfg


def dedupe_seeds(seeds: Iterable[int]) -> list[int]:
    """Seeds with duplicates removed, first occurrence kept."""
    out: list[int] = []
    for s in seeds:
        if s not in out:
            out.append(int(s))
    return out


def validate_params(params: Mapping[str, Any]) -> None:
    """Reject values that cannot describe a run (one clear line)."""
    for name in ("epochs", "batch_size", "eval_batch_size", "seq_len", "patience", "monitor_freq", "max_semantic_students",
                 "alignment_global_students", "synthetic_students", "synthetic_skills", "threads"):
        value = params.get(name)
        if isinstance(value, int) and value < (0 if name == "patience" else 1):
            raise ConfigError(f"--{name} must be {'>= 0' if name == 'patience' else 'a positive integer'}, "
                              f"got {value}")
    if params.get("epochs", 1) < 1:
        raise ConfigError(f"--epochs must be a positive integer, got {params['epochs']}")
    if params.get("learning_rate", 1.0) <= 0:
        raise ConfigError(f"--learning_rate must be positive, got {params['learning_rate']}")
    if not 0 <= params.get("fold", 0) <= 4:
        raise ConfigError(f"--fold must be between 0 and 4, got {params['fold']}")
    if not 1 <= params.get("lag_max_lag", 3) <= 3:
        raise ConfigError(f"--lag_max_lag must be 1, 2 or 3, got {params['lag_max_lag']}")
    if params.get("seq_len", 200) < 3:
        raise ConfigError(f"--seq_len must be at least 3, got {params['seq_len']}")
    for name in ("dropout",):
        v = params.get(name)
        if v is not None and not 0 <= v < 1:
            raise ConfigError(f"--{name} must be in [0, 1), got {v}")


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
    return view


def config_md5(cfg: Mapping[str, Any]) -> str:
    """md5 of the canonical JSON of the hashed view."""
    return hashlib.md5(canonical_json(hashed_view(cfg)).encode()).hexdigest()


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
        raise ConfigError(f"--set {path}: {new!r} is not one of {', '.join(map(str, spec.choices))}")
    if expected is None:
        return new
    if expected is bool:
        if isinstance(new, bool):
            return new
        raise ConfigError(f"--set {path}: expects true or false, got {new!r}")
    if expected is float:
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
        raise ConfigError(f"--set {path}: expects a number, got {new!r}")
    if expected is int:
        if isinstance(new, int) and not isinstance(new, bool):
            return new
        raise ConfigError(f"--set {path}: expects an integer, got {new!r}")
    if expected is list:
        items = new if isinstance(new, list) else [new]
        if path == "seeds.all":
            if not items or not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
                raise ConfigError(f"--set {path}: expects a comma-separated list of integers, got {new!r}")
            return dedupe_seeds(items)
        return items
    if expected is str:
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return str(new)
        if isinstance(new, str):
            return new
        raise ConfigError(f"--set {path}: expects text, got {new!r}")
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
                    unsets: Iterable[str]) -> list[str]:
    """Apply `--unset` then `--set` to the flat `params` in place; return lines `key:old->new`.

    Paths are checked against the config built from `params` (`cfg`), so any leaf of a known
    section can be named; the caller rebuilds the config afterwards, which re-derives what depends
    on the changed value (e.g. model dimensions after `model.model_preset`). `--unset key.path`
    returns a leaf to the launcher default.
    """
    log: list[str] = []
    known = settable_paths(cfg)
    for path in unsets:
        path = path.strip()
        if path not in known:
            raise _unknown_key(path, known, "--unset")
        name = _param_name(path)
        old = _get(cfg, path)
        params[name] = copy.deepcopy(BY_NAME[name].default) if name in BY_NAME else [42]
        log.append(f"{path}:{json.dumps(old)}->default (unset)")
    for item in sets:
        path, text = _split_assignment(item)
        if path not in known:
            raise _unknown_key(path, known, "--set")
        old = _get(cfg, path)
        new = _check_type(path, old, coerce(text))
        _validate_leaf(path, new)
        params[_param_name(path)] = new
        log.append(f"{path}:{json.dumps(old)}->{json.dumps(new)}")
    return log


def _param_name(path: str) -> str:
    if path == "seeds.all":
        return "seeds_list"
    return path.rsplit(".", 1)[-1]


def _validate_leaf(path: str, value: Any) -> None:
    leaf = path.rsplit(".", 1)[-1]
    if leaf in BY_NAME and value is not None:
        try:
            validate_params({leaf: value})
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"--{leaf}", f"--set {path}")) from None


# ---------------------------------------------------------------------------------------------
# missing_params


def params_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every registered parameter's value as the config holds it (None where absent)."""
    out: dict[str, Any] = {}
    for p in PARAMS:
        section = cfg.get(p.section, {})
        out[p.name] = section.get(p.name) if isinstance(section, dict) else None
    return out


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
    """A config.json (any schema) or a YAML/JSON parameter file, as a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text()
    try:
        data = yaml.safe_load(text) if p.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(f"{p}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'}"
                          f"{f' (line {line})' if line else ''}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config sections at the top level")
    return data


def params_from_file(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Parameters named in a config or parameter file: nested sections or flat names.

    Unknown names are an error (with close matches); schema-2 configs from the reference launcher
    are accepted (their extra keys such as monitor_freq are registered parameters here).
    """
    out: dict[str, Any] = {}
    known = [p.name for p in PARAMS]

    def take(name: str, value: Any) -> None:
        if name in BY_NAME:
            out[name] = value
        elif name not in _IGNORED_FILE_KEYS:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{source}: unknown parameter {name!r}{hint}")

    for key, value in data.items():
        if key == "seeds":
            if isinstance(value, dict):
                out["seeds_list"] = list(value.get("all") or [value.get("primary", 42)])
            else:
                out["seeds_list"] = list(value) if isinstance(value, list) else [value]
        elif key == "model" and isinstance(value, dict):
            for k, v in value.items():
                take(k, v)
        elif key in _IGNORED_FILE_SECTIONS:
            if key == "experiment" and isinstance(value, dict):
                for k in ("ablation_mode", "experiment_suffix", "purpose"):
                    if k in value:
                        out[k] = value[k]
        elif isinstance(value, dict):
            for k, v in value.items():
                take(k, v)
        else:
            take(key, value)
    return out


_IGNORED_FILE_SECTIONS = {"experiment", "paths", "reproduction", "missing_params", "config_md5",
                          "schema_version", "data_checksum", "hardware", "command", "timestamp",
                          "output_dir"}
_IGNORED_FILE_KEYS = {"timestamp", "command", "resume", "output_dir", "semantic_trajectory_path",
                      "model", "use_wandb", "id", "short_title", "primary", "all", "sha256", "files",
                      "data_dir", "host", "engine", "created", "devices_requested"}


def ordered(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Sections in the documented order (JSON is written with sorted keys anyway)."""
    out = {k: cfg[k] for k in SECTION_ORDER if k in cfg}
    out.update({k: v for k, v in cfg.items() if k not in out})
    return out
