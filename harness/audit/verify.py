"""`harness verify`: check an experiment folder and say, check by check, whether it can be trusted.

The verifier only reads. It writes nothing (the caller stores its JSON output), so it runs on a
read-only mount inside the verifier container. Every check has a name, passed (bool) and a
one-line reason; a folder passes only when every check passes.

A run that did not finish (interrupted, a failed or never-run seed, killed) is recognised from
results.json and run_status.json: every integrity check still runs, the checks that need finished
results are skipped with the reason, and the verdict is `incomplete` (never `pass`).
"""

from __future__ import annotations

import csv
import io as _stdio
import math
import re
import shlex
from functools import partial
from pathlib import Path
from typing import Any

from harness.audit.checks import Checks
from harness.audit.compare import compare_experiments, config_seeds, recomputed_config_md5
from harness.config.build import KNOWN_SCHEMAS, SCHEMA_VERSION
from harness.folder import io
from harness.folder.checkpoints import checkpoint_name
from harness.folder.experiment import (
    ATTESTATION,
    MANIFEST,
    ExperimentError,
    folder_files,
    folder_links,
    read_manifest,
    sha256_file,
    signed_problems,
    unsafe_manifest_name,
)
from harness.run.environment import parse as parse_environment

# stdout.log lines: `<UTC date time,ms> - <LEVEL> - <message>` (the reference's logging format).
_STAMPED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - [A-Z]+ - ")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The reference launcher's metrics_epoch.csv header (schema 2; research notes §8.4).
REFERENCE_CSV_HEADER = (
    "seed", "epoch", "train_loss", "train_auc", "val_auc", "val_accuracy", "monotonicity_violation_rate",
    "negative_gain_rate", "bounds_violation_rate", "mastery_correlation", "mastery_ci_low", "mastery_ci_high",
    "gain_correlation", "gain_ci_low", "gain_ci_high", "main_loss_share", "constraint_loss_share",
    "alignment_loss_share", "lag_loss_share", "retention_loss_share",
)
# Our schema-3 header before issue 12 added the concept-level and loss columns: such folders verify.
SCHEMA3_CSV_HEADER_BEFORE_ISSUE12 = (
    "seed", "epoch", "train_loss", "train_auc", "val_loss", "val_auc", "val_accuracy",
    "monotonicity_violation_rate", "negative_gain_rate", "bounds_violation_rate",
    "mastery_correlation", "mastery_ci_low", "mastery_ci_high", "mastery_n",
    "gain_correlation", "gain_ci_low", "gain_ci_high", "gain_n",
    "main_loss_share", "constraint_loss_share", "alignment_loss_share", "lag_loss_share",
    "retention_loss_share", "learning_rate", "epoch_seconds",
)
PLOTS = ("learning_curves.png", "interpretability.png", "mastery_trajectories.png")
FINISHED = ("completed", "early_stopped")
RUN_STATUS = "run_status.json"
# The one check that reports an unfinished run; with it the only failure, the verdict is `incomplete`.
COMPLETED_CHECK = "run completed"
NOT_APPLICABLE = f"not applicable until the run finishes (see '{COMPLETED_CHECK}')"


def csv_header_before_issue21() -> tuple[str, ...]:
    """Our schema-3 header before issue 21 added the saturation and student-view columns: such folders verify."""
    from gainakt.evaluate import ADDED_IN_ISSUE21
    from gainakt.train import EPOCH_COLUMNS

    return tuple(c for c in EPOCH_COLUMNS if c not in ADDED_IN_ISSUE21)


def expected_csv_header(schema: Any) -> tuple[str, ...]:
    """The metrics_epoch.csv header our trainer writes (schema 3), or the reference's (schema 2)."""
    if schema == SCHEMA_VERSION:
        from gainakt.train import EPOCH_COLUMNS

        return tuple(EPOCH_COLUMNS)
    return REFERENCE_CSV_HEADER


# ---------------------------------------------------------------------------------------------
# Reading (nothing here writes)


def _load_json(path: Path) -> tuple[Any, str | None]:
    """(data, None) or (None, why) for a missing, symlinked (never read) or corrupt file."""
    text, why = _text(path)
    if text is None:
        return None, why
    try:
        return io.loads_json(text), None
    except ValueError as exc:  # JSONDecodeError or a duplicate key
        return None, f"{path.name}: corrupt JSON ({exc})"
    except RecursionError:
        return None, f"{path.name}: JSON nested too deeply to read"


def _text(path: Path, limit: int = io.TEXT_LIMIT) -> tuple[str | None, str]:
    """(text, "") of a regular file inside the folder, or (None, why) for a missing, symlinked or refused
    one; a refused file's content is never read, so no report can show it."""
    if path.is_symlink():
        return None, f"{path.name} is a symlink (not read)"
    if not io.exists(path):
        return None, f"{path.name} is missing"
    try:
        return io.read_text(path, limit=limit, errors="replace"), ""
    except ExperimentError as exc:
        return None, str(exc)


def read_metrics_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of metrics_epoch.csv (cells as text)."""
    text = io.read_text(path, errors="replace")
    reader = csv.reader(_stdio.StringIO(text))
    rows = list(reader)
    if not rows:
        return [], []
    header = rows[0]
    out = []
    for n, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise ValueError(f"line {n} has {len(cells)} cells, the header {len(header)}")
        out.append(dict(zip(header, cells, strict=True)))
    return header, out


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def best_row(rows: list[dict[str, str]]) -> tuple[int | None, float | None]:
    """(epoch, val_auc) of the row with the highest val_auc, the earliest epoch on ties."""
    best_epoch, best_auc = None, None
    for row in sorted(rows, key=lambda r: int(r["epoch"])):
        auc = _float(row.get("val_auc"))
        if math.isnan(auc):
            continue
        if best_auc is None or auc > best_auc:
            best_epoch, best_auc = int(row["epoch"]), auc
    return best_epoch, best_auc


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-12)
    return a == b


# ---------------------------------------------------------------------------------------------
# The checks


def verify_experiment(exp: Path, *, against: Path | None = None, auc_tolerance: float | None = None,
                      corr_tolerance: float | None = None, trusted_key: Path | str | None = None) -> dict[str, Any]:
    """{"experiment", "path", "passed", "checks": [{"name", "passed", "reason"}, ...]} for one folder.

    With `against` (the source experiment) the reproduction criteria of `compare_experiments`
    become checks too, named `against: <criterion>`. With `trusted_key` (an Ed25519 public key) the
    folder's signed attestation must verify with it and cover the current files.
    """
    exp = Path(exp)
    checks = Checks()
    cfg, why = _load_json(exp / "config.json")
    if not isinstance(cfg, dict):
        checks.add("artifact config.json", False, why or "config.json: expected a JSON object")
        checks.run("no symlinks", lambda: _check_no_symlinks(exp))  # what else is wrong stays visible
        checks.run("manifest", lambda: _check_manifest(exp))
        return _report(exp, checks, None)
    checks.add("artifact config.json", True, "parses")
    schema = cfg.get("schema_version")
    results, results_why = _load_json(exp / "results.json")
    if results is not None and not isinstance(results, dict):
        results, results_why = None, "results.json: expected a JSON object"
    seeds = config_seeds(cfg, results)
    multi = len(seeds) > 1
    ctx = {"exp": exp, "cfg": cfg, "schema": schema, "results": results, "results_why": results_why,
           "seeds": seeds, "multi": multi, "checkpoint_seeds": {}}
    ctx["derived"], ctx["derive_why"] = _rederive(exp, schema)
    ctx["finalised"] = io.exists(exp / MANIFEST)
    ctx["unfinished"] = unfinished_run(ctx)
    if _unfinalised(ctx):  # its derived files are stale or absent: checked against the evidence instead
        ctx["results"], ctx["results_why"] = ctx["derived"].results, None

    checks.run("schema_version", lambda: _check_schema(schema))
    checks.run("missing_params", lambda: _check_missing_params(cfg))
    checks.run("config_md5", lambda: _check_config_md5(cfg))
    if schema == SCHEMA_VERSION and not ctx["finalised"] and not (exp / MANIFEST).is_symlink():
        checks.run(FINALISED_CHECK, lambda: _check_finalised(ctx))
        for name in ("manifest", "manifest paths inside the folder"):
            checks.skip(name, f"the folder has no {MANIFEST} (tampering cannot be detected): {_not_yet(ctx)}")
    else:
        checks.run("manifest", lambda: _check_manifest(exp))
        checks.run("manifest paths inside the folder", lambda: _check_manifest_paths(exp))
    checks.run("no symlinks", lambda: _check_no_symlinks(exp))
    checks.run("no hard links", lambda: _check_no_hardlinks(exp))
    if trusted_key is not None:
        checks.run("signed attestation", lambda: _check_attestation(exp, Path(trusted_key)))
    elif (exp / ATTESTATION).is_symlink() or io.exists(exp / ATTESTATION):
        # Without a key the signature cannot be checked, but what it signed can: a folder changed and
        # re-manifested after signing still carries an attestation that no longer covers it.
        checks.run("attestation covers the current files", lambda: _check_signed_unchanged(exp))
    if schema == SCHEMA_VERSION:
        for name, check in ((DERIVED_CHECK, _check_derived), (PLOTS_CHECK, _check_plots)):
            passed, reason = _or_other_version(ctx, check)
            if passed == "note":
                checks.mark(name, "note", reason)
            elif passed is None:
                checks.skip(name, reason)
            else:
                checks.add(name, bool(passed), reason)
        accepted = _check_accepted(exp)
        if accepted:
            checks.mark(ACCEPTED_CHECK, "note", accepted)
    _artifact_checks(checks, ctx)
    checks.run("results config_md5", lambda: _check_results_md5(ctx))
    checks.run("results.json top level", lambda: _check_results_top(ctx))
    checks.run(COMPLETED_CHECK, lambda: _check_completed(ctx))
    checks.run("metrics_epoch.csv vs results.json", lambda: _check_metrics_vs_results(ctx))
    for seed in seeds:
        for kind in ("best", "last"):
            name = _checkpoint_file(schema, kind, seed, multi)
            checks.run(f"checkpoint {name}", partial(_check_checkpoint, ctx, seed, kind, name))
    checks.run("seeds agree", lambda: _check_seeds(ctx))
    checks.run("dataset checksum", lambda: _check_dataset(ctx))
    comparison = None
    if against is not None and ctx["unfinished"]:
        checks.skip("against: comparison", f"the comparison needs finished results; {NOT_APPLICABLE}")
    elif against is not None:
        comparison = _against_checks(checks, Path(against), exp, auc_tolerance, corr_tolerance)
    report = _report(exp, checks, ctx["unfinished"])
    if comparison is not None:  # the whole reproduction report (the verifier container's host stores it)
        report["comparison"] = comparison
    return report


# Derived files ----------------------------------------------------------------------------------

DERIVED_CHECK = "derived files equal their re-derivation"
PLOTS_CHECK = "plots draw the evidence"
FINALISED_CHECK = "folder finalised"
ACCEPTED_CHECK = "modifications accepted"
# Failing checks that `harness resume` heals (it finishes the seeds and rebuilds every derived file):
# with no other failure, the verdict is `incomplete`.
HEALED_BY_RESUME = (COMPLETED_CHECK, FINALISED_CHECK)


def _rederive(exp: Path, schema: Any) -> tuple[Any, str]:
    """(Derived, "") from the folder's primary evidence, or (None, why not)."""
    if schema != SCHEMA_VERSION:
        return None, "a reference (schema 2) folder keeps no evidence to re-derive its files from"
    from harness.folder.derive import LegacyFolder, derive_folder

    try:
        return derive_folder(exp), ""
    except LegacyFolder as exc:
        return None, f"legacy: {exc}"
    except ExperimentError as exc:
        return None, f"the primary evidence does not read: {exc}"


def _differences(exp: Path, derived: Any, *, plots: bool) -> list[str]:
    """Derived files (plots or the others) that the folder lacks or holds with other bytes, and files of
    the derived kinds the evidence no longer produces."""
    from harness.folder.derive import stale_files
    from harness.folder.plots import png_problem

    out = []
    for name, data in derived.files.items():
        if name.endswith(".png") != plots:
            continue
        path = exp / name
        if path.is_symlink():
            out.append(f"{name} is a symlink (not read)")
            continue
        if not io.exists(path):
            out.append(f"{name} is missing")
            continue
        try:
            found = io.read_bytes(path, limit=max(io.TEXT_LIMIT, 2 * len(data)))
        except ExperimentError as exc:
            out.append(str(exc))
            continue
        if found == data:
            continue
        if plots:
            why = png_problem(found, data)
            if why:
                out.append(f"{name}: {why}")
        else:
            out.append(f"{name} {_first_difference(name, found, data)}")
    if not plots:
        out += [f"{name} is not produced by the evidence" for name in stale_files(exp, derived)]
    return out


def _first_difference(name: str, found: bytes, expected: bytes) -> str:
    """Where a derived file first differs from its re-derivation: a JSON key path or a line number."""
    if name.endswith(".json"):
        try:
            path = _json_diff(io.loads_json(found.decode()), io.loads_json(expected.decode()), "")
        except (ValueError, UnicodeDecodeError):
            path = None
        if path is not None:
            return f"differs at {path or 'the top level'} (edited after it was derived, or derived by other code)"
    a, b = found.decode(errors="replace").splitlines(), expected.decode(errors="replace").splitlines()
    line = next((i for i, (x, y) in enumerate(zip(a, b, strict=False), 1) if x != y), min(len(a), len(b)) + 1)
    return f"differs from line {line} (edited after it was derived, or derived by other code)"


def _json_diff(a: Any, b: Any, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}.{key}".lstrip(".")
            sub = _json_diff(a[key], b[key], f"{where}.{key}")
            if sub is not None:
                return sub
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length)".lstrip(".")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            sub = _json_diff(x, y, f"{where}[{i}]")
            if sub is not None:
                return sub
        return None
    return None if a == b and type(a) is type(b) else (where.lstrip(".") or "the top level")


def _check_derived(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    derived = ctx["derived"]
    if derived is None:
        if ctx["derive_why"].startswith("legacy: "):
            return None, ("written by an older harness (" + ctx["derive_why"][8:] + "); its derived files are "
                          "checked by the consistency checks below")
        return False, ctx["derive_why"]
    diffs = _differences(ctx["exp"], derived, plots=False)
    if not ctx["finalised"]:
        return None, _not_yet(ctx)
    if diffs:
        return False, "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    n = sum(1 for n in derived.files if not n.endswith(".png"))
    return True, f"{n} files rebuilt from config, environment, stdout.log and checkpoints: byte-identical"


def _check_plots(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    derived = ctx["derived"]
    if derived is None:
        return None, "not applicable: " + (ctx["derive_why"][8:] if ctx["derive_why"].startswith("legacy: ")
                                           else "the evidence does not re-derive")
    if not ctx["finalised"]:
        return None, _not_yet(ctx)
    diffs = _differences(ctx["exp"], derived, plots=True)
    if diffs:
        return False, "; ".join(diffs)
    n = sum(1 for n in derived.files if n.endswith(".png"))
    return True, f"{n} plots draw what the evidence gives"


def _or_other_version(ctx: dict[str, Any], check: Any) -> tuple[Any, str]:
    """A derived-file check's (passed, reason); where files differ but another version of the derivation
    code wrote them (run_status.json's `derived_by`), ("note", why): their bytes cannot be compared here,
    the consistency checks still apply, and a resume re-derives them with this version."""
    from harness.folder.derive import derivation_digest, recorded_derivation

    try:
        passed, reason = check(ctx)
    except Exception as exc:  # noqa: BLE001 - a broken file must not crash the verifier
        return False, f"check could not run: {type(exc).__name__}: {exc}"
    recorded, ours = recorded_derivation(ctx["exp"]), derivation_digest()
    if passed is False and ctx["derived"] is not None and recorded != ours:
        return "note", (f"written by another version of the harness's derivation code (derived_by "
                        f"{recorded or 'not recorded'}, this code {ours}), so their bytes are not compared: "
                        f"{reason}; the consistency checks below still apply; `harness resume "
                        f"{shlex.quote(str(ctx['exp']))}` re-derives them with this version")
    return passed, reason


def _check_finalised(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    """A folder without a manifest was not finalised: its run or the finalisation after it stopped early
    (or the manifest was removed). Named as such, never healed by verify; a resume rebuilds it. A run
    whose seeds did not finish is reported by `run completed` (the same resume finishes both)."""
    unfinished = ctx["unfinished"]
    if unfinished is not None and unfinished["seeds"]:
        return None, f"no {MANIFEST} (tampering cannot be detected); {NOT_APPLICABLE}"
    why = (f"no {MANIFEST}: the folder was not finalised (its run, or the finalisation after it, stopped "
           "before the end, or the manifest was removed)")
    derived = ctx["derived"]
    if derived is not None:
        diffs = _differences(ctx["exp"], derived, plots=False) + _differences(ctx["exp"], derived, plots=True)
        if diffs:
            why += f"; {len(diffs)} derived files differ from what its evidence gives ({', '.join(d.split(' ')[0].rstrip(':') for d in diffs[:5])}{' …' if len(diffs) > 5 else ''})"
        why += f"; `harness resume {shlex.quote(str(ctx['exp']))}` rebuilds them from the evidence"
    return False, why


def _check_accepted(exp: Path) -> str | None:
    """The record of modifications a command accepted (`--accept_modified`), or None."""
    from harness.folder.experiment import ACCEPTED

    path = exp / ACCEPTED
    if not io.exists(path):
        return None
    text, why = _text(path)
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    return (f"{ACCEPTED} records {len(lines)} accepted modification(s), the last: "
            f"{lines[-1][:200] if lines else why}: this folder is not what its run wrote")


def _check_no_hardlinks(exp: Path) -> tuple[bool, str]:
    scan = io.scan(exp)
    problems = [f"hard-linked: {', '.join(scan.hardlinked[:6])}"] if scan.hardlinked else []
    problems += [f"not regular files: {', '.join(scan.special[:6])}"] if scan.special else []
    if problems:
        return False, "; ".join(problems) + " (a change through another link would change this evidence)"
    return True, "every file has one link"


def _report(exp: Path, checks: Checks, unfinished: dict[str, Any] | None) -> dict[str, Any]:
    """The report. `passed`, `failed` and `checks` as before; `verdict`, `skipped` and `unfinished`
    were added with the incomplete verdict (a skipped check has passed False and is not in `failed`)."""
    items = checks.as_results()
    failed = checks.names("failed")
    notes = checks.names("note")
    if unfinished is not None and set(failed) <= set(HEALED_BY_RESUME):
        verdict = "incomplete"
    elif failed or not items or unfinished is not None:
        verdict = "fail"
    elif notes:
        verdict = "pass_with_notes"  # e.g. accepted modifications: every check holds, but not a plain pass
    else:
        verdict = "pass"
    return {
        "experiment": exp.name,
        "path": str(exp.resolve()),
        "passed": verdict == "pass",
        "verdict": verdict,
        "failed": failed,
        "notes": notes,
        "skipped": checks.names("skipped"),
        "unfinished": unfinished,
        "checks": items,
    }


# An unfinished run ------------------------------------------------------------------------------


def unfinished_run(ctx: dict[str, Any]) -> dict[str, Any] | None:
    """Why a schema-3 run did not finish, from results.json (or, when the run was killed before
    writing it, run_status.json): {"status", "seeds": {seed: status}, "source", "resume"}; None
    when it finished (or for a reference folder, which has no such records)."""
    if ctx["schema"] != SCHEMA_VERSION:
        return None
    exp, res = ctx["exp"], ctx["results"]
    derived = ctx.get("derived")
    if derived is not None:  # what the evidence says, not what a (possibly stale or edited) results.json says
        res = derived.results
        seeds = {s: str(r["status"]) for s, r in ((int(k), v) for k, v in res["per_seed"].items())
                 if r["status"] not in FINISHED}
        failed = {str(s): str(res["per_seed"][str(s)].get("reason") or "no reason recorded")
                  for s in seeds if seeds[s] == "failed"}
        if not seeds and ctx["finalised"]:
            return None
        status = str(res["status"]) if seeds else "not finalised"
        reasons = {str(s): str(res["per_seed"][str(s)].get("reason") or "") for s in seeds}
        return {"status": status, "seeds": {str(s): st for s, st in seeds.items()}, "source": "the evidence",
                "resume": f"harness resume {shlex.quote(str(exp))}", "failed": failed, "reasons": reasons}
    if res is not None:
        rows = _seed_rows(ctx)
        seeds = {s: str(rows.get(s, {}).get("status", "absent")) for s in ctx["seeds"]
                 if rows.get(s, {}).get("status") not in FINISHED}
        if not seeds and res.get("status") == "completed":
            return None
        failed = {str(s): str(rows[s].get("reason") or "no reason recorded") for s in seeds if seeds[s] == "failed"}
        status, source = str(res.get("status")), "results.json"
    else:
        run_status = _run_status(exp)
        if (exp / "results.json").exists() or run_status is None or run_status.get("status") in FINISHED:
            return None  # a missing or corrupt results.json of a finished run is a finding, not a state
        status, source = str(run_status.get("status")), RUN_STATUS
        seeds = {s: "unknown (results.json not written)" for s in ctx["seeds"]}
        failed = {}
    out = {"status": status, "seeds": {str(s): st for s, st in seeds.items()}, "source": source,
           "resume": f"harness resume {shlex.quote(str(exp))}", "failed": failed}
    error = (_run_status(exp) or {}).get("error") if res is None else None
    if error:  # why the run stopped, as its launcher recorded it (e.g. a training container that never started)
        out["error"] = str(error)[:300]
    return out


def next_step(unfinished: dict[str, Any]) -> str:
    """What to do about an unfinished run: resume it, unless every unfinished seed failed, which a
    resume would only repeat."""
    failed = unfinished.get("failed") or {}
    if failed and len(failed) == len(unfinished.get("seeds", {})):
        reasons = "; ".join(f"seed {s}: {r}" for s, r in failed.items())
        return (f"its seeds failed ({reasons}); a resume repeats that unless the cause changes, so fix it "
                "(see stdout.log) and start a new run")
    return f"finish it with: {unfinished['resume']}"


def _run_status(exp: Path) -> dict[str, Any] | None:
    path = exp / RUN_STATUS
    if path.is_symlink() or not path.is_file():
        return None
    data, _ = _load_json(path)
    return data if isinstance(data, dict) else None


def _killed_without_manifest(ctx: dict[str, Any]) -> bool:
    """No manifest because the launcher was killed while it wrote the folder (run_status.json still
    "running", or "crashed"): the launcher removes the manifest while it writes and adds it at the end."""
    exp = ctx["exp"]
    if ctx["unfinished"] is None or (exp / MANIFEST).exists() or (exp / MANIFEST).is_symlink():
        return False
    return (_run_status(exp) or {}).get("status") in ("running", "crashed")


def _not_finished(ctx: dict[str, Any]) -> str:
    """'the run did not finish (status interrupted: seed 1 interrupted, seed 2 not_run)'."""
    u = ctx["unfinished"]
    why = u.get("reasons") or {}
    seeds = ", ".join(f"seed {s} {st}" + (f" ({why[s][:160]})" if why.get(s) and st != "failed" else "")
                      for s, st in u["seeds"].items())
    error = f"; {u['error']}" if u.get("error") else ""
    return f"the run did not finish (status {u['status']}{': ' + seeds if seeds else ''}{error})"


def _unfinished_seed(ctx: dict[str, Any], seed: int) -> bool:
    return ctx["unfinished"] is not None and str(seed) in ctx["unfinished"]["seeds"]


def _check_schema(schema: Any) -> tuple[bool, str]:
    if schema in KNOWN_SCHEMAS:
        origin = "this harness" if schema == SCHEMA_VERSION else "the reference launcher"
        return True, f"schema_version {schema} ({origin})"
    return False, f"schema_version {schema!r} is not one of {list(KNOWN_SCHEMAS)}"


def _check_missing_params(cfg: dict) -> tuple[bool, str]:
    mp = cfg.get("missing_params")
    if mp == []:
        return True, "empty"
    if mp is None:
        return False, "config.json has no missing_params field"
    return False, f"not empty: {mp} (the config lost parameters; do not cite this run)"


def _check_config_md5(cfg: dict) -> tuple[bool, str]:
    stored = cfg.get("config_md5")
    own, rule = recomputed_config_md5(cfg)
    if stored is None:
        return False, "config.json has no config_md5"
    if own == stored:
        return True, f"{stored} recomputes ({rule})"
    return False, f"stored {stored}, recomputed {own} ({rule}): config.json changed after the run"


def _check_manifest(exp: Path) -> tuple[bool, str]:
    if not (exp / MANIFEST).is_file():
        return False, f"{MANIFEST} is missing (tampering cannot be detected)"
    try:
        entries = read_manifest(exp)
    except ExperimentError as exc:
        return False, str(exc)
    problems = []
    for name in sorted(entries):
        path = exp / name
        if unsafe_manifest_name(name) or path.is_symlink():
            problems.append(f"{name!r} is not a file inside the folder")  # never opened
        elif not path.is_file():
            problems.append(f"{name} is listed but missing")
        elif sha256_file(path) != entries[name]:
            problems.append(f"{name} does not match its sha256")
    unlisted = [n for n in folder_files(exp) if n not in entries]
    problems += [f"{name} is not listed" for name in unlisted]
    if problems:
        return False, "; ".join(problems)
    return True, f"{len(entries)} files match, no unlisted file"


# Artifacts ------------------------------------------------------------------------------------


def _artifact_checks(checks: Checks, ctx: dict[str, Any]) -> None:
    exp, seeds, schema = ctx["exp"], ctx["seeds"], ctx["schema"]
    run = partial(_run_artifact, checks, ctx)
    run("environment.txt", lambda: _art_environment(exp / "environment.txt"))
    run("stdout.log", lambda: _art_stdout(exp / "stdout.log"))
    run("metrics_epoch.csv", lambda: _art_metrics(exp / "metrics_epoch.csv", schema, ctx["unfinished"] is not None))
    run("results.json", lambda: _art_results(ctx))
    if ctx["multi"] or (exp / "results_multi_seed.json").exists():
        run("results_multi_seed.json", lambda: _art_multi(exp / "results_multi_seed.json", ctx))
    run("SEED_INFO.md", lambda: _art_seed_info(exp / "SEED_INFO.md", ctx))
    run("README.md", lambda: _art_readme(exp / "README.md", ctx))
    run("overrides_applied.txt", lambda: _art_overrides(exp / "overrides_applied.txt", schema))
    for seed in seeds:
        rng = f"artifacts/rng_seed{seed}.json"
        traj = f"artifacts/semantic_trajectory_seed{seed}.json"
        run(rng, partial(_art_rng, exp / rng, seed))
        run(traj, partial(_art_trajectory, exp / traj))
    for png in PLOTS:
        path = exp / "artifacts" / png
        if png == "mastery_trajectories.png" and not path.exists() and not _heads_on(ctx["cfg"]):
            checks.add(f"artifact artifacts/{png}", True, "not expected: a head is off, so no mastery is plotted")
            continue
        run(f"artifacts/{png}", partial(_art_png, path))


def _run_artifact(checks: Checks, ctx: dict[str, Any], name: str, fn: Any) -> None:
    """One artifact check; a file an unfinished run has not written (yet) is not applicable.
    (Files deleted from a folder that has a manifest still fail the `manifest` check.)"""
    path = ctx["exp"] / name
    if _unfinalised(ctx) and name in ctx["derived"].files:
        checks.skip(f"artifact {name}", f"derived: {_not_yet(ctx)}")
        return
    if ctx["unfinished"] is not None and not path.exists() and not path.is_symlink():
        checks.skip(f"artifact {name}", f"{name} is not written yet; {NOT_APPLICABLE}")
        return
    checks.run(f"artifact {name}", fn)


def _not_yet(ctx: dict[str, Any]) -> str:
    """Why a check of derived files does not apply to a folder that was not finalised."""
    unfinished = ctx["unfinished"]
    if unfinished is not None and unfinished["seeds"]:
        return NOT_APPLICABLE
    return f"not applicable until the folder is finalised (see '{FINALISED_CHECK}')"


def _unfinalised(ctx: dict[str, Any]) -> bool:
    """A schema-3 folder without a manifest whose evidence re-derives: its derived files are not final."""
    return ctx["derived"] is not None and not ctx["finalised"]


def _heads_on(cfg: dict[str, Any]) -> bool:
    """Both the mastery and the gain head on (the model then outputs mastery to plot)."""
    heads = cfg.get("heads")
    if not isinstance(heads, dict):
        return True
    return heads.get("use_mastery_head", True) is not False and heads.get("use_gain_head", True) is not False


def _missing(path: Path) -> tuple[bool, str]:
    return False, f"{path.name} is missing"


def _symlinked(path: Path) -> tuple[bool, str]:
    """A symlink is never read (its target may be outside the folder) and never trusted."""
    return False, f"{path.name} is a symlink (not read)"


def _check_no_symlinks(exp: Path) -> tuple[bool, str]:
    links = folder_links(exp)
    if (exp / MANIFEST).is_symlink():
        links.append(MANIFEST)
    if links:
        return False, f"symlinks inside the folder (never followed): {', '.join(links)}"
    return True, "no symlink in the folder"


def _check_manifest_paths(exp: Path) -> tuple[bool, str]:
    if not (exp / MANIFEST).is_file() or (exp / MANIFEST).is_symlink():
        return False, f"{MANIFEST} is missing or a symlink"
    bad = [why for name in read_manifest(exp) if (why := unsafe_manifest_name(name))]
    if bad:
        return False, "; ".join(bad)
    return True, "every entry is a plain relative path"


def _check_signed_unchanged(exp: Path) -> tuple[bool, str]:
    problems = signed_problems(exp)
    if problems:
        return False, "; ".join(problems)
    return True, (f"{MANIFEST} and results.json are the signed ones (the signature itself is checked with "
                  "--trusted_key)")


def _check_attestation(exp: Path, trusted_key: Path) -> tuple[bool, str]:
    from harness.audit.attest import check_attestation

    return check_attestation(exp, trusted_key)


def _art_environment(path: Path) -> tuple[bool, str]:
    text, why = _text(path)
    if text is None:
        return False, why
    env = parse_environment(text)
    absent = [k for k in ("python", "torch_version", "git_commit") if k not in env]
    if absent:
        return False, f"environment.txt lacks {', '.join(absent)}"
    return True, f"{len(env)} fields (torch {env['torch_version']}, commit {env['git_commit'][:12]})"


def _art_stdout(path: Path) -> tuple[bool, str]:
    text, why = _text(path, io.LOG_LIMIT)
    if text is None:
        return False, why
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return False, "stdout.log is empty"
    for n, line in enumerate(lines, 1):
        if line.strip() and not _STAMPED.match(line):
            return False, f"stdout.log line {n} is not timestamped: {line[:60]!r}"
    return True, f"{len(lines)} timestamped lines"


def _art_metrics(path: Path, schema: Any, unfinished: bool = False) -> tuple[bool, str]:
    if path.is_symlink() or not io.is_regular(path):
        return False, _text(path)[1]  # missing or a symlink: never read
    try:
        header, rows = read_metrics_csv(path)
    except (ValueError, csv.Error) as exc:
        return False, f"metrics_epoch.csv: {exc}"
    expected = list(expected_csv_header(schema))
    if schema == SCHEMA_VERSION and tuple(header) in (SCHEMA3_CSV_HEADER_BEFORE_ISSUE12, csv_header_before_issue21()):
        expected = list(header)  # an older folder of ours: its own complete header
    if header != expected:
        extra = [c for c in header if c not in expected]
        lacking = [c for c in expected if c not in header]
        return False, (f"metrics_epoch.csv header differs from the expected one"
                       f"{f'; missing {lacking}' if lacking else ''}{f'; unexpected {extra}' if extra else ''}"
                       f"{'; order differs' if not extra and not lacking else ''}")
    for n, row in enumerate(rows, start=2):
        try:
            int(row["seed"])
            int(row["epoch"])
            float(row["val_auc"])
        except (TypeError, ValueError):
            return False, f"metrics_epoch.csv line {n}: seed/epoch/val_auc do not parse"
    if not rows and unfinished:
        return True, "expected header, no rows: no epoch finished before the run stopped"
    if not rows:
        return False, "metrics_epoch.csv has no rows"
    return True, f"{len(rows)} rows, expected header"


def _art_results(ctx: dict[str, Any]) -> tuple[bool, str]:
    res = ctx["results"]
    if res is None:
        return False, ctx["results_why"] or "results.json is missing"
    if ctx["schema"] == SCHEMA_VERSION:
        per_seed = res.get("per_seed")
        if not isinstance(per_seed, dict):
            return False, "results.json has no per_seed table"
        absent = [s for s in ctx["seeds"] if str(s) not in per_seed]
        if absent:
            return False, f"results.json per_seed lacks seeds {absent}"
        return True, f"per_seed for {len(per_seed)} seed(s), status {res.get('status')}"
    if "best_epoch_auc" not in res and "best_val_auc" not in res:
        return False, "results.json has neither best_epoch_auc nor best_val_auc"
    return True, "reference layout (best_epoch_auc, best_mastery_corr, best_gain_corr)"


def _art_multi(path: Path, ctx: dict[str, Any]) -> tuple[bool, str]:
    data, why = _load_json(path)
    if data is None:
        return False, why or "missing"
    if not isinstance(data, dict) or not isinstance(data.get("per_seed"), list) or "stats" not in data:
        return False, "results_multi_seed.json lacks per_seed or stats"
    if "config_md5" in data and data["config_md5"] != ctx["cfg"].get("config_md5"):
        return False, f"results_multi_seed.json config_md5 {data['config_md5']} differs from config.json's"
    return True, f"{len(data['per_seed'])} per-seed rows"


def _art_seed_info(path: Path, ctx: dict[str, Any]) -> tuple[bool, str]:
    text, why = _text(path)
    if text is None:
        extra = " (the reference launcher never wrote one)" if ctx["schema"] != SCHEMA_VERSION else ""
        return False, why + (extra if why.endswith("missing") else "")
    if "Primary seed:" not in text:
        return False, "SEED_INFO.md has no 'Primary seed:' line"
    absent = [s for s in ctx["seeds"] if str(s) not in text]
    if absent:
        return False, f"SEED_INFO.md does not mention seeds {absent}"
    return True, "lists every seed"


def _art_readme(path: Path, ctx: dict[str, Any]) -> tuple[bool, str]:
    text, why = _text(path)
    if text is None:
        return False, why
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first.startswith("# Experiment"):
        return False, f"README.md does not start with '# Experiment <id>': {first[:60]!r}"
    exp_id = (ctx["cfg"].get("experiment") or {}).get("id")
    if exp_id and exp_id not in first:
        return False, f"README.md names another experiment: {first[:80]!r}"
    return True, first[:80]


def _art_overrides(path: Path, schema: Any) -> tuple[bool, str]:
    text, why = _text(path)
    if text is None:
        return False, why
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if schema != SCHEMA_VERSION:
        return True, f"{len(lines)} line(s)"
    count = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("override_count:")), None)
    listed = [ln for ln in lines if ln.startswith("override: ")]
    if count is None or not count.isdigit():
        return False, "overrides_applied.txt has no 'override_count: N' line"
    if int(count) != len(listed):
        return False, f"overrides_applied.txt says {count} override(s) but lists {len(listed)}"
    return True, f"{count} override(s)"


def _art_rng(path: Path, seed: int) -> tuple[bool, str]:
    data, why = _load_json(path)
    if data is None:
        return False, why or "missing"
    if not isinstance(data, dict) or data.get("seed") != seed:
        return False, f"{path.name} is not seed {seed}'s RNG record"
    return True, "parses"


def _art_trajectory(path: Path) -> tuple[bool, str]:
    data, why = _load_json(path)
    if data is None:
        return False, why or "missing"
    if not isinstance(data, dict) or not isinstance(data.get("trajectory"), list):
        return False, f"{path.name} has no trajectory list"
    return True, f"{len(data['trajectory'])} epoch entries"


def _art_png(path: Path) -> tuple[bool, str]:
    if path.is_symlink():
        return _symlinked(path)
    if not io.exists(path):
        return _missing(path)
    try:
        data = io.read_bytes(path, limit=io.TEXT_LIMIT)
    except ExperimentError as exc:
        return False, str(exc)
    if not data.startswith(_PNG_MAGIC) or len(data) <= len(_PNG_MAGIC):
        return False, f"{path.name} is not a PNG image"
    return True, f"{len(data)} bytes"


# Consistency ----------------------------------------------------------------------------------


def _results_absent(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    """A results.json a killed run never wrote is not applicable; otherwise missing or corrupt fails."""
    if ctx["unfinished"] is not None:
        return None, f"results.json is not written yet; {NOT_APPLICABLE}"
    return False, ctx["results_why"] or "results.json is missing"


def _check_results_md5(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    res = ctx["results"]
    if res is None:
        return _results_absent(ctx)
    stored = ctx["cfg"].get("config_md5")
    if res.get("config_md5") is None:
        return False, "results.json has no config_md5"
    if res["config_md5"] != stored:
        return False, f"results.json config_md5 {res['config_md5']} differs from config.json's {stored}"
    return True, f"results.json and config.json both {stored}"


# results.json top-level guide key -> the primary seed's per_seed key it copies.
TOP_LEVEL_KEYS = {"best_epoch": "best_epoch", "best_epoch_auc": "best_val_auc", "best_mastery_corr":
                  "mastery_correlation", "best_gain_corr": "gain_correlation", "test_auc": "test_auc",
                  "test_window_auc": "test_window_auc"}


def _check_results_top(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    res = ctx["results"]
    if res is None:
        return _results_absent(ctx)
    if ctx["schema"] != SCHEMA_VERSION:
        return True, "reference layout: the top level is the only copy"
    seeds = ctx["seeds"]
    problems = []
    if res.get("primary_seed") != (seeds[0] if seeds else None):
        problems.append(f"primary_seed {res.get('primary_seed')} is not the first seed {seeds[:1]}")
    primary = (res.get("per_seed") or {}).get(str(seeds[0])) if seeds else None
    if not isinstance(primary, dict):
        return False, "results.json has no per_seed entry for the primary seed"
    for top, key in TOP_LEVEL_KEYS.items():
        if f"{key}_val_all" in primary:  # the correlations' name since issue 12 (older folders: plain)
            key = f"{key}_val_all"
        if not _same(res.get(top), primary.get(key)):
            problems.append(f"results.json {top} {res.get(top)} but per_seed[{seeds[0]}].{key} {primary.get(key)}")
    if res.get("multi_seed") != (len(seeds) > 1):
        problems.append(f"multi_seed is {res.get('multi_seed')} with {len(seeds)} seed(s)")
    if problems:
        return False, "; ".join(problems)
    return True, f"guide keys equal seed {seeds[0]}'s values"


def _seed_rows(ctx: dict[str, Any]) -> dict[int, dict[str, Any]]:
    res = ctx["results"] or {}
    per_seed = res.get("per_seed")
    if isinstance(per_seed, dict):
        return {int(k): v for k, v in per_seed.items() if isinstance(v, dict)}
    # Reference layout: the primary seed's best val AUC at the top level.
    if ctx["seeds"] and ("best_epoch_auc" in res or "best_val_auc" in res):
        return {ctx["seeds"][0]: {"status": "completed",
                                  "best_val_auc": res.get("best_epoch_auc", res.get("best_val_auc"))}}
    return {}


def _check_completed(ctx: dict[str, Any]) -> tuple[bool, str]:
    """Every seed finished; for an unfinished run, the one place that says which seeds and how to go on."""
    res, unfinished = ctx["results"], ctx["unfinished"]
    if unfinished is not None and not unfinished["seeds"]:
        return True, f"every seed finished, says the evidence (the folder is not finalised: see '{FINALISED_CHECK}')"
    if unfinished is not None:
        return False, f"{_not_finished(ctx)}, says {unfinished['source']}; {next_step(unfinished)}"
    if res is None:
        return False, ctx["results_why"] or "results.json is missing"
    if ctx["schema"] != SCHEMA_VERSION:
        return True, "reference results.json (written only when the run finished)"
    rows = _seed_rows(ctx)
    run_status = _run_status(ctx["exp"])
    if run_status is not None and run_status.get("status") != res.get("status"):
        return False, (f"results.json says {res.get('status')} but {RUN_STATUS} says {run_status.get('status')} "
                       "(the folder was written after its run finished)")
    return True, f"every seed finished ({', '.join(str(rows[s]['status']) for s in ctx['seeds'])})"


def _check_metrics_vs_results(ctx: dict[str, Any]) -> tuple[bool | None, str]:
    path = ctx["exp"] / "metrics_epoch.csv"
    if _unfinalised(ctx):
        return None, f"metrics_epoch.csv is derived: {_not_yet(ctx)}"
    if ctx["results"] is None:
        return _results_absent(ctx)
    if not io.is_regular(path):
        return (None, f"metrics_epoch.csv is not written yet; {NOT_APPLICABLE}") \
            if ctx["unfinished"] and not io.exists(path) else (False, _text(path)[1] or "metrics_epoch.csv is missing")
    _, rows = read_metrics_csv(path)
    by_seed: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_seed.setdefault(int(row["seed"]), []).append(row)
    problems, compared = [], 0
    for seed, entry in _seed_rows(ctx).items():
        if entry.get("status") not in FINISHED:
            continue
        seed_rows = by_seed.get(seed, [])
        if not seed_rows:
            problems.append(f"metrics_epoch.csv has no rows for seed {seed}")
            continue
        epoch, auc = best_row(seed_rows)
        want_epoch, want_auc = entry.get("best_epoch"), entry.get("best_val_auc")
        if want_epoch is not None and epoch != want_epoch:
            problems.append(f"seed {seed}: metrics_epoch.csv best epoch {epoch} but results.json says {want_epoch}")
        if not _same(auc, want_auc):
            problems.append(f"seed {seed}: metrics_epoch.csv best val_auc {auc} but results.json says {want_auc}")
        runs = entry.get("epochs_run")
        epochs = sorted(int(r["epoch"]) for r in seed_rows)
        if runs is not None and epochs != list(range(1, int(runs) + 1)):
            problems.append(f"seed {seed}: metrics_epoch.csv has epochs {epochs}, results.json {runs} epochs run")
        compared += 1
    if problems:
        return False, "; ".join(problems)
    if not compared and ctx["unfinished"] is not None:
        return None, f"no seed finished; {NOT_APPLICABLE}"
    if not compared:
        return False, "no finished seed to compare"
    return True, f"best epoch and best val AUC agree for {compared} seed(s)"


def _checkpoint_file(schema: Any, kind: str, seed: int, multi: bool) -> str:
    if schema == SCHEMA_VERSION:
        return checkpoint_name(kind, seed, multi)
    return f"model_{kind}_seed{seed}.pth"  # the reference always used the seed suffix


def _check_checkpoint(ctx: dict[str, Any], seed: int, kind: str, name: str) -> tuple[bool | None, str]:
    path = ctx["exp"] / name
    unfinished = _unfinished_seed(ctx, seed)
    if not path.is_file() and unfinished and not path.is_symlink():
        return None, f"seed {seed} wrote no {kind} checkpoint; {NOT_APPLICABLE}"
    if not path.is_file():
        return False, f"{name} is missing"
    from harness.folder.checkpoints import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load safely is the finding
        return False, f"{name} does not load with weights_only=True: {type(exc).__name__}: {str(exc)[:120]}"
    if not isinstance(state, dict):
        return False, f"{name} is not a checkpoint dict"
    if ctx["schema"] != SCHEMA_VERSION:
        return True, f"{name} loads with weights_only=True"
    ctx["checkpoint_seeds"][name] = state.get("seed")
    problems = []
    if state.get("seed") != seed:
        problems.append(f"records seed {state.get('seed')}")
    if "model" not in state:
        problems.append("has no model weights")
    if state.get("config_md5") is not None and state["config_md5"] != ctx["cfg"].get("config_md5"):
        problems.append(f"was written for config_md5 {state['config_md5']}")
    problems += _checkpoint_vs_results(state, _seed_rows(ctx).get(seed, {}), kind, unfinished)
    epoch = state.get("epoch")
    saved_at = epoch + 1 if isinstance(epoch, int) else None
    if problems:
        return False, f"{name} " + "; ".join(problems)
    note = f"; seed {seed} did not finish: compared with what results.json records of it" if unfinished else ""
    return True, f"loads with weights_only=True; epoch {saved_at}, best_val_auc {state.get('best_val_auc')}{note}"


def _checkpoint_vs_results(state: dict[str, Any], entry: dict[str, Any], kind: str, unfinished: bool) -> list[str]:
    """Where a checkpoint disagrees with its seed's results.json entry. An unfinished seed's entry
    may record nothing (interrupted) or its epochs so far (failed): only what it records is compared."""
    epoch = state.get("epoch")
    saved_at = epoch + 1 if isinstance(epoch, int) else None
    want = entry.get("best_epoch") if kind == "best" else entry.get("epochs_run")
    pairs = [("best_val_auc", state.get("best_val_auc"), entry.get("best_val_auc")),
             ("best_epoch", state.get("best_epoch"), entry.get("best_epoch")),
             ("saved after epoch", saved_at, want)]
    problems = []
    for what, found, recorded in pairs:
        if unfinished and recorded is None:
            continue
        if not _same(found, recorded):
            said = "implies" if what == "saved after epoch" else "says"
            problems.append(f"{what} {found} but results.json {said} {recorded}")
    return problems


def _check_seeds(ctx: dict[str, Any]) -> tuple[bool, str]:
    cfg_seeds, exp = ctx["seeds"], ctx["exp"]
    problems = []
    res = ctx["results"]
    if res is not None:
        if [int(s) for s in res.get("seeds", [])] != cfg_seeds:
            problems.append(f"results.json seeds {res.get('seeds')} vs config {cfg_seeds}")
        per_seed = res.get("per_seed")
        if isinstance(per_seed, dict) and sorted(int(k) for k in per_seed) != sorted(cfg_seeds):
            problems.append(f"results.json per_seed has seeds {sorted(int(k) for k in per_seed)}")
    for name, seed in ctx["checkpoint_seeds"].items():
        expected = next((s for s in cfg_seeds if name == _checkpoint_file(ctx["schema"], "best", s, ctx["multi"])
                         or name == _checkpoint_file(ctx["schema"], "last", s, ctx["multi"])), None)
        if seed != expected:
            problems.append(f"{name} holds seed {seed}")
    expected_ckpts = {_checkpoint_file(ctx["schema"], k, s, ctx["multi"]) for s in cfg_seeds for k in ("best", "last")}
    stray = sorted(p.name for p in exp.glob("model_*.pth") if p.name not in expected_ckpts)
    if stray:
        problems.append(f"checkpoints of other seeds: {', '.join(stray)}")
    csv_path = exp / "metrics_epoch.csv"
    if io.is_regular(csv_path) and not _unfinalised(ctx):
        try:
            _, rows = read_metrics_csv(csv_path)
            other = sorted({int(r["seed"]) for r in rows} - set(cfg_seeds))
        except (ValueError, KeyError, csv.Error):
            other = []
        if other:
            problems.append(f"metrics_epoch.csv has rows for seeds {other}")
    for pattern in ("rng_seed*.json", "semantic_trajectory_seed*.json"):
        for p in (exp / "artifacts").glob(pattern):
            digits = re.sub(r"\D", "", p.stem.rsplit("seed", 1)[-1])
            if digits and int(digits) not in cfg_seeds:
                problems.append(f"artifacts/{p.name} is for a seed not in the config")
    if problems:
        return False, "; ".join(problems)
    return True, f"seeds {cfg_seeds} in config, results, checkpoints and artifacts"


def _check_dataset(ctx: dict[str, Any]) -> tuple[bool, str]:
    section = ctx["cfg"].get("data_checksum")
    if not isinstance(section, dict) or not section.get("sha256"):
        return False, "config.json records no dataset checksum (data_checksum.sha256)"
    env_text, _ = _text(ctx["exp"] / "environment.txt")
    if env_text is not None:
        env = parse_environment(env_text)
        if env.get("dataset_sha256") not in (None, section["sha256"]):
            return False, (f"environment.txt dataset_sha256 {env['dataset_sha256'][:16]}… differs from "
                           f"config.json's {section['sha256'][:16]}…")
    return True, f"{section.get('name', 'dataset')} sha256 {section['sha256'][:16]}…"


# Against a source ------------------------------------------------------------------------------


def _against_checks(checks: Checks, source: Path, exp: Path, auc_tolerance: float | None,
                    corr_tolerance: float | None) -> dict[str, Any] | None:
    try:
        report = compare_experiments(source, exp, auc_tolerance=auc_tolerance, corr_tolerance=corr_tolerance)
    except ExperimentError as exc:
        checks.add("against: comparison", False, str(exc))
        return None
    for item in report["criteria"]:
        reason = f"{item['status']}: " + "; ".join(item["reasons"]) if item["reasons"] else item["status"]
        checks.add(f"against: {item['name']}", item["status"] != "failed", reason)
    tol = report["tolerance"]
    checks.add("against: within_tolerance", report["within_tolerance"],
               f"max |ΔAUC| {report['best_auc_abs_diff']}, |Δmastery| {report['mastery_corr_abs_diff']}, "
               f"|Δgain| {report['gain_corr_abs_diff']} (tolerance AUC {tol['auc']:g}, corr {tol['corr']:g}; "
               f"{tol['basis']})")
    checks.add("against: verdict", report["verdict"] != "fail",
               f"{report['verdict']} against {report['source']}")
    return report


# ---------------------------------------------------------------------------------------------
# Output


def print_report(report: dict[str, Any], console: Any = None) -> None:
    """A table of the checks for humans (rich), with the verdict last."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.errors import printable

    console = console or Console()
    table = Table(title=Text(f"verify {printable(report['experiment'])}"), show_lines=False)
    table.add_column("check", overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("reason", overflow="fold")
    skipped = set(report.get("skipped", []))
    for c in report["checks"]:
        result = ("[yellow]note[/yellow]" if c.get("status") == "note" else "[green]pass[/green]" if c["passed"]
                  else "[yellow]n/a[/yellow]" if c["name"] in skipped else "[red]FAIL[/red]")
        table.add_row(Text(printable(c["name"])), result, Text(printable(c["reason"])))  # never markup
    console.print(table)
    failed = [c["name"] for c in report["checks"] if not c["passed"] and c["name"] not in skipped]
    total = len(report["checks"])
    if report["passed"]:
        console.print(f"[green]PASSED[/green]: all {total} checks", soft_wrap=True)
    elif report.get("verdict") == "pass_with_notes":
        console.print(f"[yellow]PASSED WITH NOTES[/yellow]: no check failed, but {', '.join(report['notes'])} "
                      "(not a plain pass: exit 1)", soft_wrap=True)
    elif report.get("verdict") == "incomplete":
        unfinished = report["unfinished"]
        left = ((f"unfinished seeds {', '.join(unfinished['seeds'])}" if unfinished["seeds"] else "not finalised")
                if "seeds" in unfinished else f"{len(unfinished['jobs'])} jobs left")  # an experiment's, a sweep's
        state = unfinished["status"] if left == unfinished["status"] else f"{unfinished['status']}; {left}"
        console.print(f"[yellow]INCOMPLETE[/yellow]: the run did not finish (status {state}); "
                      f"{total - len(failed) - len(skipped)} "
                      f"of {total} checks passed, {len(skipped)} not applicable until it finishes; "
                      f"{next_step(unfinished)}", soft_wrap=True)  # the command stays one copyable line
    else:
        console.print(f"[red]FAILED[/red]: {len(failed)} of {total} checks: {', '.join(failed)}"
                      + (f" ({len(skipped)} not applicable: the run did not finish)" if skipped else ""), soft_wrap=True)
