"""Comparison of two experiment folders: the reproduction report and the reproduction manifest.

`compare_experiments` reads two finished folders (ours, schema 3, or the reference launcher's,
schema 2) and says whether the second reproduces the first: configuration hashes, results hashes,
per-seed metric differences against the guide's tolerances, seeds, schema versions and the
environment, with one verdict and a one-line reason for every criterion that is not met.
Both folders are verified first (`harness verify`, which reads every file and loads the
checkpoints): a folder that fails is no evidence, whatever its numbers say. Nothing here trains.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

from harness.audit.checks import Checks
from harness.config.build import (
    KNOWN_SCHEMAS,
    SCHEMA_VERSION,
    amp_ran,
    config_md5,
    config_md5_as_run,
    hashed_view,
    leaf_paths,
    normalized_config_hash,
)
from harness.folder import io as fio
from harness.folder.experiment import (
    MANIFEST,
    ExperimentError,
    atomic_write_json,
    read_json,
    record_in_manifest,
)
from harness.run.environment import parse as parse_environment

REPORT_NAME = "reproduction_report.json"

# The guide's tolerances (§6.a G, §15.9): AMP on in either run, or both runs in fp32.
AMP_TOLERANCE = {"auc": 0.002, "corr": 0.01}
STRICT_TOLERANCE = {"auc": 0.0002, "corr": 0.0005}

# Compared per seed. Required metrics must exist on both sides; test AUC only where both have it
# (the reference launcher never measured a test split).
METRICS = {
    "best_val_auc": "auc",
    "mastery_correlation": "corr",
    "gain_correlation": "corr",
    "test_auc": "auc",
    # Concept-level (issue 12): compared where both folders have them, else noted as not compared.
    "qmastery_correlation": "corr",
    "qmastery_partial_correlation": "corr",
}
REQUIRED_METRICS = ("best_val_auc", "mastery_correlation", "gain_correlation")

# environment.txt fields whose major.minor agreement is "compatible" when the full value differs.
VERSION_FIELDS = ("python", "torch_version", "numpy_version", "cuda_version", "harness_version",
                  "nvidia_driver")

_VERSION = re.compile(r"(\d+)\.(\d+)")
_ARCH = re.compile(r"(x86_64|amd64|aarch64|arm64|ppc64le|s390x|i[3-6]86)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Reading one side


def md5_bytes(path: Path) -> str | None:
    """md5 of a file's raw bytes, or None when it does not exist."""
    return hashlib.md5(fio.read_bytes(path, limit=fio.JSON_LIMIT)).hexdigest() if fio.is_regular(path) else None


def _read_optional_json(path: Path, problems: list[str], label: str) -> Any:
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ExperimentError as exc:
        problems.append(f"{label}: {exc}")
        return None


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, null, NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def config_seeds(cfg: dict[str, Any], results: dict[str, Any] | None) -> list[int]:
    """The seed list of a run, in order: config seeds.all (any schema), else results.json seeds."""
    seeds = cfg.get("seeds")
    if isinstance(seeds, dict) and seeds.get("all") is not None:
        return [int(s) for s in seeds["all"]]
    if isinstance(seeds, list):
        return [int(s) for s in seeds]
    if isinstance(results, dict) and isinstance(results.get("seeds"), list):
        return [int(s) for s in results["seeds"]]
    return []


def seed_metrics(results: dict[str, Any] | None, multi: dict[str, Any] | None,
                 seeds: list[int]) -> dict[int, dict[str, float | None]]:
    """{seed: {metric: value}} from results.json in our layout or the reference's.

    Ours has `per_seed` (a dict keyed by the seed as text). The reference launcher (schema 2)
    wrote the primary seed's values at the top level (`best_epoch_auc`, `best_mastery_corr`,
    `best_gain_corr`) and the other seeds in results_multi_seed.json's `per_seed` list; the
    training script's legacy results.json had `best_val_auc` and `final_consistency_metrics`.
    A seed that did not finish has no metrics.
    """
    out: dict[int, dict[str, float | None]] = {}
    if not isinstance(results, dict):
        return out
    per_seed = results.get("per_seed")
    if isinstance(per_seed, dict):
        for key, row in per_seed.items():
            if not isinstance(row, dict):
                continue
            try:
                seed = int(row["seed"] if "seed" in row else key)
            except (TypeError, ValueError):
                continue
            if row.get("status") in ("failed", "not_run"):
                out[seed] = {m: None for m in METRICS}
            else:
                # *_val_all: the all-validation-students value (older folders: the plain name).
                out[seed] = {m: _number(row.get(f"{m}_val_all", row.get(m))) for m in METRICS}
        return out
    # Reference layouts.
    if isinstance(multi, dict) and isinstance(multi.get("per_seed"), list):
        for row in multi["per_seed"]:
            if not isinstance(row, dict) or "seed" not in row:
                continue
            final = row.get("final_consistency") or {}
            out[int(row["seed"])] = {
                "best_val_auc": _number(row.get("best_val_auc")),
                "mastery_correlation": _number(row.get("mastery_correlation", final.get("mastery_correlation"))),
                "gain_correlation": _number(row.get("gain_correlation", final.get("gain_correlation"))),
                "test_auc": _number(row.get("test_auc")),
            }
    primary = seeds[0] if seeds else (results.get("seeds") or [None])[0]
    final = results.get("final_consistency") or results.get("final_consistency_metrics") or {}
    top = {
        "best_val_auc": _number(results.get("best_epoch_auc", results.get("best_val_auc"))),
        "mastery_correlation": _number(results.get("best_mastery_corr", final.get("mastery_correlation"))),
        "gain_correlation": _number(results.get("best_gain_corr", final.get("gain_correlation"))),
        "test_auc": _number(results.get("test_auc")),
    }
    if primary is not None and any(v is not None for v in top.values()):
        merged = dict(out.get(int(primary), {}))
        merged.update({k: v for k, v in top.items() if v is not None or k not in merged})
        out[int(primary)] = merged
    return out


def amp_enabled(cfg: dict[str, Any]) -> bool:
    """Whether mixed precision ran (any schema; a CPU run is fp32 whatever it asked for)."""
    return amp_ran(cfg)


def reference_config_md5(cfg: dict[str, Any]) -> str:
    """The reference launcher's rule (schema 1/2): md5 of json.dumps(cfg, sort_keys=True) over the
    config as it was before `config_md5` (and, in reproduce mode, `reproduction`) was added."""
    doc = {k: v for k, v in cfg.items() if k not in ("config_md5", "reproduction")}
    return hashlib.md5(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def recomputed_config_md5(cfg: dict[str, Any]) -> tuple[str | None, str]:
    """(hash, rule) with the rule of the config's own schema: ours for 3, the reference's for 1-2."""
    schema = cfg.get("schema_version")
    if schema == SCHEMA_VERSION:
        return config_md5(cfg), "harness rule: volatile fields excluded"
    try:
        return reference_config_md5(cfg), "reference launcher rule: whole config, timestamp included"
    except (TypeError, ValueError):
        return None, "not computable"


def load_side(exp: Path) -> dict[str, Any]:
    """Everything the comparison needs from one folder; problems are collected, not raised,
    except a missing or corrupt config.json (without it there is nothing to compare)."""
    exp = Path(exp)
    if not (exp / "config.json").is_file():
        raise ExperimentError(f"{exp}: not an experiment folder (no config.json)")
    cfg = read_json(exp / "config.json")
    if not isinstance(cfg, dict):
        raise ExperimentError(f"{exp / 'config.json'}: expected a JSON object")
    problems: list[str] = []
    results = _read_optional_json(exp / "results.json", problems, "results.json")
    multi = _read_optional_json(exp / "results_multi_seed.json", problems, "results_multi_seed.json")
    if results is not None and not isinstance(results, dict):
        problems.append("results.json: expected a JSON object")
        results = None
    env_path = exp / "environment.txt"
    environment = (parse_environment(fio.read_text(env_path, errors="replace")) if fio.is_regular(env_path)
                   else None)
    seeds = config_seeds(cfg, results)
    ours = cfg.get("experiment", {}).get("id") if isinstance(cfg.get("experiment"), dict) else None
    return {
        "path": exp,
        "id": exp.name,
        "config_id": ours,
        "config": cfg,
        "schema": cfg.get("schema_version"),
        "results": results,
        "results_md5": md5_bytes(exp / "results.json"),
        "metrics": seed_metrics(results, multi, seeds),
        "seeds": seeds,
        "environment": environment,
        "amp": amp_enabled(cfg),
        "problems": problems,
    }


# ---------------------------------------------------------------------------------------------
# Environment


def _major_minor(value: str) -> tuple[str, str] | None:
    m = _VERSION.search(value or "")
    return (m.group(1), m.group(2)) if m else None


def _platform_family(value: str) -> tuple[str, str | None]:
    system = (value or "").split("-", 1)[0].lower()
    arch = _ARCH.search(value or "")
    return system, arch.group(1).lower() if arch else None


def compare_environment(src: dict[str, str] | None, tgt: dict[str, str] | None) -> dict[str, Any]:
    """Field by field: identical / compatible / different / missing.

    Compatible: same major.minor of a version (python, torch, numpy, CUDA, driver), same OS and
    architecture (platform), same commit with a different branch name or dirty flag.
    """
    if src is None or tgt is None:
        side = "source" if src is None else "target"
        both = src is None and tgt is None
        return {"available": False, "match": False, "fields": {}, "identical": [], "compatible": [],
                "different": [], "missing": [],
                "note": "neither folder has environment.txt" if both else f"the {side} has no environment.txt"}
    fields: dict[str, dict[str, Any]] = {}
    same_commit = src.get("git_commit") is not None and src.get("git_commit") == tgt.get("git_commit")
    for key in list(dict.fromkeys([*src, *tgt])):
        a, b = src.get(key), tgt.get(key)
        if a is None or b is None:
            status = "missing"
        elif a == b:
            status = "identical"
        elif key in VERSION_FIELDS and _major_minor(a) is not None and _major_minor(a) == _major_minor(b):
            status = "compatible"
        elif key == "platform" and _platform_family(a) == _platform_family(b) and _platform_family(a)[1]:
            status = "compatible"
        elif key in ("git_dirty", "git_branch") and same_commit:
            status = "compatible"
        else:
            status = "different"
        fields[key] = {"source": a, "target": b, "status": status}
    by = {s: [k for k, f in fields.items() if f["status"] == s]
          for s in ("identical", "compatible", "different", "missing")}
    return {"available": True, "match": not by["different"], "fields": fields, **by}


# ---------------------------------------------------------------------------------------------
# Parameters


def parameter_differences(src_cfg: dict[str, Any], tgt_cfg: dict[str, Any]) -> dict[str, Any]:
    """Leaves of the result-determining part of both configs that differ or exist on one side only."""
    a = leaf_paths(hashed_view(src_cfg))
    b = leaf_paths(hashed_view(tgt_cfg))
    changed = {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if a[k] != b[k]}
    # A field added after schema 3 is hashed only away from the value older configs had, so a switch
    # turned on in one run is hashed on that side alone: name it with the other side's recorded value.
    full_a, full_b = leaf_paths(src_cfg), leaf_paths(tgt_cfg)
    for k in sorted(a.keys() ^ b.keys()):
        if k in full_a and k in full_b and full_a[k] != full_b[k]:
            changed[k] = [full_a[k], full_b[k]]
    changed = dict(sorted(changed.items()))
    return {
        "changed": changed,
        "only_in_source": sorted(a.keys() - b.keys()),
        "only_in_target": sorted(b.keys() - a.keys()),
    }


def _describe_changes(changed: dict[str, list[Any]], limit: int = 4) -> str:
    items = [f"{k} {json.dumps(v[0])} -> {json.dumps(v[1])}" for k, v in list(changed.items())[:limit]]
    more = len(changed) - limit
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------------------
# The comparison


def tolerances(src_amp: bool, tgt_amp: bool, auc_tolerance: float | None,
               corr_tolerance: float | None) -> dict[str, Any]:
    """The guide's tolerances for the AMP setting of the two runs, each overridable."""
    base = AMP_TOLERANCE if (src_amp or tgt_amp) else STRICT_TOLERANCE
    return {
        "auc": float(auc_tolerance) if auc_tolerance is not None else base["auc"],
        "corr": float(corr_tolerance) if corr_tolerance is not None else base["corr"],
        "amp_used": bool(src_amp or tgt_amp),
        "basis": ("AMP on in at least one run" if (src_amp or tgt_amp) else "AMP off in both runs (fp32)")
        + ("; overridden by flags" if auc_tolerance is not None or corr_tolerance is not None else ""),
        "auc_overridden": auc_tolerance is not None,
        "corr_overridden": corr_tolerance is not None,
    }


def _metric_diffs(src: dict[str, Any], tgt: dict[str, Any], tol: dict[str, Any]) -> dict[str, Any]:
    """Per-seed and aggregate differences, and the failures among them."""
    per_seed: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    common = [s for s in src["seeds"] if s in tgt["seeds"]]
    for seed in common:
        sm, tm = src["metrics"].get(seed, {}), tgt["metrics"].get(seed, {})
        row: dict[str, Any] = {}
        for metric, kind in METRICS.items():
            a, b = sm.get(metric), tm.get(metric)
            entry: dict[str, Any] = {"source": a, "target": b, "abs_diff": None, "tolerance": tol[kind],
                                     "within": None}
            if a is not None and b is not None:
                diff = abs(a - b)
                entry["abs_diff"] = diff
                entry["within"] = diff <= tol[kind]
                if not entry["within"]:
                    failures.append(f"seed {seed} {metric} differs by {diff:.6g} (source {a:.6f}, target {b:.6f}) "
                                    f"> tolerance {tol[kind]:g}")
            elif (a is None) != (b is None):
                side = "source" if a is None else "target"
                if metric in REQUIRED_METRICS:
                    entry["within"] = False
                    failures.append(f"seed {seed} {metric} is missing in the {side}")
                else:
                    entry["note"] = f"only the {'target' if a is None else 'source'} has it: not compared"
            row[metric] = entry
        per_seed[str(seed)] = row
    aggregate: dict[str, Any] = {}
    for metric in METRICS:
        a_vals = [per_seed[str(s)][metric]["source"] for s in common if per_seed[str(s)][metric]["source"] is not None]
        b_vals = [per_seed[str(s)][metric]["target"] for s in common if per_seed[str(s)][metric]["target"] is not None]
        diffs = [per_seed[str(s)][metric]["abs_diff"] for s in common
                 if per_seed[str(s)][metric]["abs_diff"] is not None]
        aggregate[metric] = {
            "source_mean": sum(a_vals) / len(a_vals) if a_vals else None,
            "target_mean": sum(b_vals) / len(b_vals) if b_vals else None,
            "mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
            "max_abs_diff": max(diffs) if diffs else None,
            "seeds_compared": len(diffs),
        }
        if a_vals and b_vals:
            aggregate[metric]["abs_diff_of_means"] = abs(aggregate[metric]["source_mean"]
                                                         - aggregate[metric]["target_mean"])
    return {"per_seed": per_seed, "aggregate": aggregate, "failures": failures, "common_seeds": common}


def compare_experiments(source: Path, target: Path, *, auc_tolerance: float | None = None,
                        corr_tolerance: float | None = None) -> dict[str, Any]:
    """The reproduction report of `target` against `source` (a JSON-ready dict).

    Guide keys (research notes §7.3): config_md5_match, results_md5_match, best_auc_abs_diff,
    mastery_corr_abs_diff, gain_corr_abs_diff (each the largest difference over the common seeds;
    for one seed the guide's value), within_tolerance. Also: both sides' stored config_md5, each
    recomputed with our rule and with the config's own schema rule (`config_md5_note` says why a
    schema-2 hash cannot match ours), `parameter_differences`, the guide's normalized hash, results
    md5s, per-seed and aggregate metric differences, the `tolerance` used, the `environment`
    comparison, seeds, schema versions, `criteria` (every criterion with status met / info / note /
    failed), `reasons` (one line per failed criterion or note), `notes` (information) and one
    `verdict`: "pass" (every criterion met), "pass_with_notes" (within tolerance with the same
    parameters, but e.g. the environment or the schema differs) or "fail".

    Both folders are verified first (`harness verify`, criterion `integrity`): a schema-3 side whose
    verdict is not `pass` (tampered, unfinished, files missing) fails the comparison, whatever its
    numbers say; a reference (schema 2) folder has no manifest, which is noted as information.

    Raises ExperimentError (one line) when a config.json is missing or corrupt, or when source and
    target are one folder (also through another path or a symlink); a missing or corrupt results
    file is a failed criterion.
    """
    check_distinct(Path(source), Path(target))
    src, tgt = load_side(Path(source)), load_side(Path(target))
    tol = tolerances(src["amp"], tgt["amp"], auc_tolerance, corr_tolerance)
    crit = Checks()
    fields: dict[str, Any] = _check_integrity(crit, src, tgt)
    _check_results(crit, src, tgt)
    fields.update(_check_schema(crit, src, tgt))
    _check_missing_params(crit, src, tgt)
    fields.update(_check_config_md5(crit, src, tgt))
    fields.update(_check_normalized_hash(crit, src, tgt))
    fields.update(_check_seeds(crit, src, tgt))
    fields.update(_check_metrics(crit, src, tgt, tol, seeds_match=fields["seeds_match"]))
    fields.update(_check_results_md5(crit, src, tgt, tol))
    fields.update(_check_environment(crit, src, tgt))
    return _report(crit, src, tgt, tol, fields)


# Each criterion is one small rule: it marks `crit` and returns the report fields it computed.


def same_folder(a: Path, b: Path) -> bool:
    """Whether two paths name one folder (the same file system object: symlinks, `..`, bind mounts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_distinct(source: Path, target: Path) -> None:
    """ExperimentError (one line) when source and target are one folder: a folder compared with
    itself always "reproduces", and its report would be written into the evidence it judges."""
    if same_folder(source, target):
        raise ExperimentError(f"source {source} and target {target} are the same folder "
                              f"({Path(target).resolve()}); compare a reproduction with the run it reproduces")


def _check_integrity(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    """Each side verified as `harness verify` does: numbers from a folder that fails are not evidence."""
    from harness.audit.verify import verify_experiment  # verify imports this module

    integrity: dict[str, Any] = {}
    for side, s in (("source", src), ("target", tgt)):
        if s["schema"] != SCHEMA_VERSION:
            crit.mark("integrity", "info", f"{side} is a schema-{s['schema']} folder (the reference launcher's): "
                      "it has no MANIFEST.sha256, so its files cannot be verified")
            integrity[side] = {"verdict": None, "failed": [], "note": "not verifiable (no manifest)"}
            continue
        report = verify_experiment(s["path"])
        integrity[side] = {"verdict": report["verdict"], "failed": report["failed"], "skipped": report["skipped"]}
        if report["verdict"] != "pass":
            names = report["failed"] or report["skipped"]
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            crit.mark("integrity", "failed", f"{side} fails verify (verdict {report['verdict']}: {shown}); its "
                      f"numbers are not evidence: see harness verify {shlex.quote(str(s['path']))}")
    crit.mark("integrity", "met")
    return {"integrity": integrity}


def _check_results(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> None:
    for side, s in (("source", src), ("target", tgt)):
        for problem in s["problems"]:
            crit.mark("results", "failed", f"{side} {problem}")
        if s["results"] is None and not any(p.startswith("results.json") for p in s["problems"]):
            crit.mark("results", "failed", f"{side} has no results.json (not finished?)")
    crit.mark("results", "met")


def _check_schema(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    schema_match = src["schema"] == tgt["schema"]
    for side, s in (("source", src), ("target", tgt)):
        if s["schema"] not in KNOWN_SCHEMAS:
            crit.mark("schema_version", "failed", f"{side} schema_version {s['schema']!r} is not one this "
                      f"harness reads ({', '.join(map(str, KNOWN_SCHEMAS))})")
    if not schema_match:
        crit.mark("schema_version", "note", f"schema_version differs: source {src['schema']}, target {tgt['schema']}")
    crit.mark("schema_version", "met")
    return {"source_schema_version": src["schema"], "target_schema_version": tgt["schema"],
            "schema_match": schema_match}


def _check_missing_params(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> None:
    """Guide §6 step 2: a non-empty missing_params means the run must not be cited."""
    for side, s in (("source", src), ("target", tgt)):
        mp = s["config"].get("missing_params")
        if mp:
            crit.mark("missing_params", "failed", f"{side} missing_params is not empty: {mp}")
        elif mp is None:
            crit.mark("missing_params", "note", f"{side} config.json has no missing_params field")
    crit.mark("missing_params", "met")


_SCHEMA2_HASH_NOTE = ("a schema-2 (reference launcher) config_md5 hashes the whole config including the "
                      "timestamp, experiment id, output path and command line, so it can never equal a "
                      "schema-3 config_md5, and our rule applied to a schema-2 config differs by "
                      "construction (other sections); parameters are compared leaf by leaf instead")


def _check_config_md5(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    """Each stored hash against its own rule, then source against target."""
    src_stored, tgt_stored = src["config"].get("config_md5"), tgt["config"].get("config_md5")
    src_own, src_rule = recomputed_config_md5(src["config"])
    tgt_own, tgt_rule = recomputed_config_md5(tgt["config"])
    params = parameter_differences(src["config"], tgt["config"])
    for side, s, own, rule in (("source", src, src_own, src_rule), ("target", tgt, tgt_own, tgt_rule)):
        stored = s["config"].get("config_md5")
        if own is not None and stored is not None and own != stored:
            line = f"{side} stored config_md5 {stored} does not recompute ({own}; {rule})"
            if s["schema"] == SCHEMA_VERSION:
                crit.mark("config_md5_recomputes", "failed", line + ": config.json was edited after the run")
            else:
                crit.mark("config_md5_recomputes", "note", line)
    crit.mark("config_md5_recomputes", "met")
    config_match = src_stored is not None and src_stored == tgt_stored
    _mark_config_match(crit, src, tgt, config_match, params["changed"])
    src_ours, tgt_ours = config_md5(src["config"]), config_md5(tgt["config"])
    schema3 = src["schema"] == SCHEMA_VERSION and tgt["schema"] == SCHEMA_VERSION
    return {
        "source_config_md5": src_stored, "target_config_md5": tgt_stored, "config_md5_match": config_match,
        "source_config_md5_recomputed": src_ours, "target_config_md5_recomputed": tgt_ours,
        "recomputed_config_md5_match": src_ours == tgt_ours,
        "source_config_md5_own_rule": src_own, "target_config_md5_own_rule": tgt_own,
        "config_md5_rules": {"source": src_rule, "target": tgt_rule},
        "config_md5_note": None if schema3 else _SCHEMA2_HASH_NOTE,
        "parameter_differences": params,
    }


def _mark_config_match(crit: Checks, src: dict[str, Any], tgt: dict[str, Any], config_match: bool,
                       changed: Any) -> None:
    schema_match = src["schema"] == tgt["schema"]
    equal_as_run = config_md5_as_run(src["config"]) == config_md5_as_run(tgt["config"])
    if not config_match and equal_as_run and schema_match:
        crit.mark("config_md5", "info", "config_md5 differs only in how AMP was recorded (an older folder "
                  "recorded the request; both ran fp32 on CPU): equal as run")
    elif not config_match:
        if schema_match and src["schema"] == SCHEMA_VERSION:
            detail = _describe_changes(changed) if changed else "no leaf differs"
            crit.mark("config_md5", "failed", f"config_md5 differs: source {src['config'].get('config_md5')}, "
                      f"target {tgt['config'].get('config_md5')} ({detail})")
        else:
            crit.mark("config_md5", "note", "config_md5 cannot match across schema versions / the reference's "
                      "hash rule" + (f"; differing parameters: {_describe_changes(changed)}" if changed
                                     else "; no common parameter differs"))
    crit.mark("config_md5", "met")


def _check_normalized_hash(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    """Guide §6.a C. It includes the experiment id and paths, so it is equal only for the same
    folder contents: a mismatch is information, not a failure."""
    src_norm, tgt_norm = normalized_config_hash(src["config"]), normalized_config_hash(tgt["config"])
    if src_norm != tgt_norm:
        crit.mark("normalized_config_hash", "info", "normalized_config_hash differs (expected: the guide's "
                  "recipe keeps the experiment id, paths and command line)")
    crit.mark("normalized_config_hash", "met")
    return {
        "source_normalized_config_hash": src_norm,
        "target_normalized_config_hash": tgt_norm,
        "normalized_config_hash_match": src_norm == tgt_norm,
        "normalized_config_hash_note": "the guide's jq recipe; it keeps the experiment id, paths and command "
                                       "line, so it only matches for the same folder contents",
    }


def _check_seeds(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    seeds_match = src["seeds"] == tgt["seeds"]
    if not seeds_match:
        crit.mark("seeds", "failed", f"seed lists differ: source {src['seeds']}, target {tgt['seeds']}")
    crit.mark("seeds", "met")
    return {"source_seeds": src["seeds"], "target_seeds": tgt["seeds"], "seeds_match": seeds_match}


def _check_metrics(crit: Checks, src: dict[str, Any], tgt: dict[str, Any], tol: dict[str, Any], *,
                   seeds_match: bool) -> dict[str, Any]:
    diffs = _metric_diffs(src, tgt, tol)
    for line in diffs["failures"]:
        crit.mark("metrics", "failed", line)
    if not diffs["common_seeds"]:
        crit.mark("metrics", "failed", "no seed in common: no metric can be compared")
    crit.mark("metrics", "met")
    metric_ok = not diffs["failures"] and bool(diffs["common_seeds"])
    missing_results = src["results"] is None or tgt["results"] is None

    def guide_diff(metric: str) -> float | None:
        return diffs["aggregate"][metric]["max_abs_diff"]

    return {
        "best_auc_abs_diff": guide_diff("best_val_auc"),
        "mastery_corr_abs_diff": guide_diff("mastery_correlation"),
        "gain_corr_abs_diff": guide_diff("gain_correlation"),
        "test_auc_abs_diff": guide_diff("test_auc"),
        "per_seed": diffs["per_seed"],
        "aggregate": diffs["aggregate"],
        "within_tolerance": metric_ok and seeds_match and not missing_results,
    }


def _check_results_md5(crit: Checks, src: dict[str, Any], tgt: dict[str, Any],
                       tol: dict[str, Any]) -> dict[str, Any]:
    results_match = src["results_md5"] is not None and src["results_md5"] == tgt["results_md5"]
    if not results_match and src["results_md5"] and tgt["results_md5"]:
        line = f"results.json md5 differs: source {src['results_md5']}, target {tgt['results_md5']}"
        if src["schema"] != SCHEMA_VERSION:
            crit.mark("results_md5", "info", line + " (a schema-2 results.json holds completed_at, so its md5 "
                      "never matches)")
        elif tol["amp_used"]:
            crit.mark("results_md5", "info", line + " (expected with AMP: tolerance-level reproducibility)")
        else:
            crit.mark("results_md5", "note", line + " (AMP off: bit-identical results were expected)")
    crit.mark("results_md5", "met")
    return {"source_results_md5": src["results_md5"], "target_results_md5": tgt["results_md5"],
            "results_md5_match": results_match}


def _check_environment(crit: Checks, src: dict[str, Any], tgt: dict[str, Any]) -> dict[str, Any]:
    env = compare_environment(src["environment"], tgt["environment"])
    if not env["available"]:
        crit.mark("environment", "note", f"environment not compared: {env['note']}")
    else:
        if env["different"]:
            shown = ", ".join(f"{k} ({env['fields'][k]['source']!s:.40} vs {env['fields'][k]['target']!s:.40})"
                              for k in env["different"][:4])
            more = len(env["different"]) - 4
            crit.mark("environment", "note", f"environment differs in {len(env['different'])} field(s): {shown}"
                      + (f" and {more} more" if more > 0 else ""))
        if env["compatible"]:
            crit.mark("environment", "info", f"environment compatible, not identical: {', '.join(env['compatible'])}")
        if env["missing"]:
            crit.mark("environment", "info", f"environment fields on one side only: {', '.join(env['missing'])}")
    crit.mark("environment", "met")
    return {"environment": env, "environment_match": env["match"]}


def _report(crit: Checks, src: dict[str, Any], tgt: dict[str, Any], tol: dict[str, Any],
            fields: dict[str, Any]) -> dict[str, Any]:
    """The report: identities, every criterion's fields, the guide's metric keys and the verdict."""
    src_res, tgt_res = src["results"] or {}, tgt["results"] or {}
    failed, noted = crit.lines("failed"), crit.lines("note")
    verdict = "fail" if failed or not fields["within_tolerance"] else ("pass_with_notes" if noted else "pass")
    return {
        "source": src["id"],
        "target": tgt["id"],
        "source_path": str(src["path"].resolve()),
        "target_path": str(tgt["path"].resolve()),
        "exists_source": True,
        "exists_target": True,
        **fields,
        "source_best_epoch_auc": _number(src_res.get("best_epoch_auc", src_res.get("best_val_auc"))),
        "target_best_epoch_auc": _number(tgt_res.get("best_epoch_auc", tgt_res.get("best_val_auc"))),
        "source_mastery_corr": _number(src_res.get("best_mastery_corr")),
        "target_mastery_corr": _number(tgt_res.get("best_mastery_corr")),
        "source_gain_corr": _number(src_res.get("best_gain_corr")),
        "target_gain_corr": _number(tgt_res.get("best_gain_corr")),
        "tolerance": tol,
        "amp_used": tol["amp_used"],
        "verdict": verdict,
        "reasons": failed + noted,
        "notes": crit.lines("info"),
        "criteria": crit.as_criteria(),
    }


# ---------------------------------------------------------------------------------------------
# Writing


def write_report(target: Path, report: dict[str, Any]) -> Path:
    """Write reproduction_report.json into `target` atomically and record it in the folder's
    MANIFEST.sha256 (when it has one), so the folder still verifies afterwards."""
    target = Path(target)
    path = target / REPORT_NAME
    try:
        atomic_write_json(path, report)
        if (target / MANIFEST).is_file():
            record_in_manifest(target, [REPORT_NAME])
    except OSError as exc:
        raise ExperimentError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _override_count(exp_dir: Path, cfg: dict[str, Any]) -> int:
    """Overrides applied to this run: the count in overrides_applied.txt (ours: `override_count: N`;
    the reference's: one `key:old->new` line each), else the reproduction block's."""
    path = exp_dir / "overrides_applied.txt"
    if fio.is_regular(path):
        lines = [ln for ln in fio.read_text(path, errors="replace").splitlines() if ln.strip()]
        for line in lines:
            if line.startswith("override_count:"):
                try:
                    return int(line.split(":", 1)[1])
                except ValueError:
                    break
        return len([ln for ln in lines if "->" in ln])
    repro = cfg.get("reproduction") or {}
    return int(repro.get("override_count") or len(repro.get("applied_overrides") or []))


def _stdout_ends(exp_dir: Path, n: int = 5) -> tuple[list[str], list[str]]:
    path = exp_dir / "stdout.log"
    if not fio.is_regular(path):
        return [], []
    lines = fio.read_text(path, limit=fio.LOG_LIMIT, errors="replace").splitlines()
    return lines[:n], lines[-n:]


def _source_folder(exp_dir: Path, reproduction: dict[str, Any]) -> Path | None:
    for candidate in (reproduction.get("source_path"), reproduction.get("source_experiment")):
        if not candidate:
            continue
        p = Path(candidate)
        if not p.is_absolute():
            p = exp_dir.parent / p
        if (p / "config.json").is_file():
            return p
    return None


def reproduction_manifest(exp_dir: Path, reproduction: dict[str, Any] | None) -> dict[str, Any]:
    """reproduction_manifest.json: the guide's §15.8 fields and, for a reproduction, the §6.a J
    template fields (from a fresh comparison with the source). Also the optional audit anchors of
    §6 step 9: normalized hash, environment.txt md5, first and last five lines of stdout.log."""
    exp_dir = Path(exp_dir)
    cfg = read_json(exp_dir / "config.json")
    results = _read_optional_json(exp_dir / "results.json", [], "results.json")
    head, tail = _stdout_ends(exp_dir)
    manifest: dict[str, Any] = {
        "experiment_id": exp_dir.name,
        "schema_version": cfg.get("schema_version"),
        "config_md5": cfg.get("config_md5"),
        "seeds": config_seeds(cfg, results if isinstance(results, dict) else None),
        "reproduction_mode": reproduction is not None,
        "override_count": _override_count(exp_dir, cfg),
        "results_md5": md5_bytes(exp_dir / "results.json"),
        "normalized_config_hash": normalized_config_hash(cfg),
        "environment_md5": md5_bytes(exp_dir / "environment.txt"),
        "stdout_head": head,
        "stdout_tail": tail,
    }
    if reproduction is None:
        return manifest
    source = _source_folder(exp_dir, reproduction)
    manifest.update({
        "source_experiment": reproduction.get("source_experiment"),
        "reproduction_experiment": exp_dir.name,
        "config_md5_source": reproduction.get("source_config_md5"),
        "config_md5_repro": cfg.get("config_md5"),
        "amp_used": amp_enabled(cfg),
    })
    if source is None:
        manifest.update({"normalized_config_hash_source": None, "normalized_config_hash_repro":
                         normalized_config_hash(cfg), "environment_match": None, "auc_diff": None,
                         "mastery_corr_diff": None, "gain_corr_diff": None, "within_tolerance": False,
                         "notes": "source experiment folder not found; nothing compared"})
        return manifest
    report = None
    existing = exp_dir / REPORT_NAME
    if existing.is_file():  # the report the run just wrote (it may use tolerance flags)
        try:
            report = read_json(existing)
        except ExperimentError:
            report = None
        if not isinstance(report, dict) or report.get("source") != source.name or "verdict" not in report:
            report = None
    if report is None:
        report = compare_experiments(source, exp_dir)
    manifest.update({
        "config_md5_source": report["source_config_md5"],
        "normalized_config_hash_source": report["source_normalized_config_hash"],
        "normalized_config_hash_repro": report["target_normalized_config_hash"],
        "environment_match": report["environment_match"],
        "auc_diff": report["best_auc_abs_diff"],
        "mastery_corr_diff": report["mastery_corr_abs_diff"],
        "gain_corr_diff": report["gain_corr_abs_diff"],
        "within_tolerance": report["within_tolerance"],
        "amp_used": report["amp_used"],
        "verdict": report["verdict"],
        "notes": "; ".join(report["reasons"]) or "All criteria satisfied: same config_md5, same results md5, "
                                                 "metrics within tolerance, same seeds and environment.",
    })
    return manifest
