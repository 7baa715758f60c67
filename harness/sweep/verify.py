"""`harness verify <sweep folder>`: every point verifies alone, and the sweep's own files are what the
points give (summary recomputed from the points' results, manifest, point ids and hashes)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from harness.folder import io as fio
from harness.folder.experiment import ExperimentError, read_json, read_manifest
from harness.sweep.runner import SWEEP_JSON, resolve_sweep
from harness.sweep.spec import SweepError
from harness.sweep.summary import FINISHED, derive_summary, manifest_entries

NOT_YET = "not applicable until the sweep finishes"


def is_sweep(ref: str, base_arg: str | None) -> bool:
    try:
        resolve_sweep(ref, base_arg)
    except SweepError:
        return False
    return True


def _check(name: str, passed: bool, reason: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "reason": reason}


def _same_bytes(path: Path, expected: bytes) -> tuple[bool, str]:
    """Whether a derived file of the sweep holds what its recomputation gives (read through the I/O layer)."""
    from harness.folder.plots import png_problem

    if path.is_symlink():
        return False, "a symlink (not read)"
    if not fio.exists(path):
        return False, "missing"
    try:
        found = fio.read_bytes(path, limit=max(fio.TEXT_LIMIT, 2 * len(expected)))
    except ExperimentError as exc:
        return False, str(exc)
    if found == expected:
        return True, "recomputed from the points: identical"
    if path.suffix == ".png":
        why = png_problem(found, expected)
        return (True, "same data drawn (another renderer)") if why is None else (False, why)
    return False, "differs from a recomputation"


def _manifest_check(folder: Path, state: dict[str, Any]) -> dict[str, Any]:
    recorded = read_manifest(folder)
    if not recorded:
        return _check("sweep manifest", False, "MANIFEST.sha256 is missing or empty")
    expected = manifest_entries(folder, state)
    wrong = sorted(n for n in expected if recorded.get(n) != expected[n])
    extra = sorted(set(recorded) - set(expected))
    if wrong or extra:
        return _check("sweep manifest", False, f"differs for {(wrong + extra)[0]} ({len(wrong + extra)} entries)")
    return _check("sweep manifest", True, f"{len(expected)} entries match")


def _point_checks(folder: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    from harness.audit.verify import verify_experiment

    checks = []
    for p in state["points"]:
        exp = folder / p["experiment_id"]
        if not (exp / "config.json").is_file():
            checks.append(_check(f"point {p['name']}", False, f"{p['experiment_id']}/config.json is missing"))
            continue
        report = verify_experiment(exp)
        reason = ("all checks pass" if report["passed"] else f"{NOT_YET}: the point did not finish; its "
                  "integrity checks pass" if report.get("verdict") == "incomplete"
                  else f"fails {', '.join(report['failed'])}")
        checks.append(_check(f"point {p['name']}", report["passed"], reason))
        md5 = read_json(exp / "config.json").get("config_md5")
        checks.append(_check(f"point {p['name']} config_md5", md5 == p["config_md5"],
                             f"{md5} (sweep.json {p['config_md5']})"))
        results = read_json(exp / "results.json") if (exp / "results.json").is_file() else {"per_seed": {}}
        bad = [j["seed"] for j in state["jobs"] if j["point"] == p["name"]
               and (j["status"] in FINISHED) != (results["per_seed"].get(str(j["seed"]), {}).get("status")
                                                  in FINISHED)]
        checks.append(_check(f"point {p['name']} job statuses", not bad,
                             "agree with results.json" if not bad else f"disagree for seeds {bad}"))
    return checks


def _unfinished(folder: Path, state: dict[str, Any]) -> dict[str, Any] | None:
    """A sweep stopped before its end (killed or interrupted: sweep.json still says running); None when it
    finished ("completed", or "partial": every job ran and some failed, a finding, not a state)."""
    if state.get("status") in ("completed", "partial"):
        return None
    pending = [f"{j['point']}/seed {j['seed']}" for j in state["jobs"] if j["status"] not in FINISHED]
    return {"status": str(state.get("status")), "jobs": pending,
            "resume": f"harness sweep --resume {shlex.quote(str(folder))}"}


def _skip_until_finished(checks: list[dict[str, Any]], unfinished: dict[str, Any] | None) -> list[str]:
    """For an unfinished sweep: the checks that need its end (summaries, manifest, job statuses, points that
    only did not finish) are not applicable, with the reason; a check that fails otherwise still fails."""
    if unfinished is None:
        return []
    skipped = []
    for c in checks:
        if c["passed"]:
            continue
        later = (c["reason"].startswith(NOT_YET) or c["name"].endswith(" job statuses")
                 or c["name"].startswith(("sweep_summary.csv ", "SWEEP.md ", "plots/")) or c["name"] == "sweep manifest")
        if later:
            skipped.append(c["name"])
            if not c["reason"].startswith(NOT_YET):
                c["reason"] = f"{NOT_YET}: written when the sweep ends ({c['reason']})"
    return skipped


def verify_sweep(folder: Path) -> dict[str, Any]:
    """Every check of the sweep folder, with a verdict: pass, fail, or incomplete (the sweep did not finish
    and nothing else failed: `sweep completed` says which jobs are left and how to resume)."""
    try:
        state = read_json(folder / SWEEP_JSON)
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        checks = [_check("sweep.json", False, f"does not parse: {exc}")]
        return {"experiment": folder.name, "path": str(folder.resolve()), "passed": False,
                "failed": ["sweep.json"], "checks": checks, "verdict": "fail", "skipped": [], "unfinished": None}
    unfinished = _unfinished(folder, state)
    checks = [_check("sweep.json", True, f"{len(state['points'])} points x {len(state['seeds'])} seeds")]
    if unfinished is not None:
        left = unfinished["jobs"]
        checks.append(_check("sweep completed", False, f"the sweep did not finish (status {unfinished['status']}; "
                             f"{len(left)} jobs left: {', '.join(left[:4])}{' …' if len(left) > 4 else ''}); "
                             f"finish it with: {unfinished['resume']}"))
    checks += _point_checks(folder, state)
    derived = derive_summary(folder, state)
    for name, expected in derived.items():
        label = f"{name} equals the points' results" if not name.endswith(".png") else f"{name} draws the points' results"
        checks.append(_check(label, *_same_bytes(folder / name, expected)))
    checks.append(_manifest_check(folder, state))
    skipped = _skip_until_finished(checks, unfinished)
    failed = [c["name"] for c in checks if not c["passed"] and c["name"] not in skipped]
    verdict = "pass" if not failed else "incomplete" if failed == ["sweep completed"] else "fail"
    return {"experiment": folder.name, "path": str(folder.resolve()), "passed": not failed, "failed": failed,
            "checks": checks, "verdict": verdict, "skipped": skipped, "unfinished": unfinished}


def verify_sweep_command(ns: argparse.Namespace) -> int:
    if ns.against:
        raise SweepError("--against compares two experiments; verify a sweep without it")
    if getattr(ns, "write_report", False):
        raise SweepError("--write_report stores an experiment's report in its folder; for a sweep use "
                         "--report_file PATH")
    folder = resolve_sweep(ns.experiment, ns.output_base)
    from harness.cli.commands import checked_report_file, show_report

    report_file = checked_report_file(getattr(ns, "report_file", None), folder)
    report = verify_sweep(folder)
    show_report(report, ns, report_file)
    return 0 if report["passed"] else 1


__all__ = ["is_sweep", "verify_sweep", "verify_sweep_command"]
