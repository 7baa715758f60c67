"""Derived files of an experiment folder: pure, byte-deterministic functions of its primary evidence.

Primary evidence is what training produced and no later command changes (DESIGN §8b):

- config.json, overrides_applied.txt;
- environment.txt (with the sections appended by each resume);
- stdout.log (appended; its `outcome:` lines record what became of a seed that did not finish, and of an
  interrupted session);
- the checkpoints: each seed's last checkpoint carries its epoch history and semantic trajectory, and once
  the seed finished, a `result` record with its final evaluation (gainakt.train.outcome_record);
- the attestation, and the records written later (modifications_accepted.txt, verification and
  reproduction reports), which are kept as they are.

Everything else is derived here, one function per file (`DERIVED`), and `derive_folder` returns them all.
`finalise` writes them and then the manifest; it is idempotent, so a crash at any point heals by running it
again (`harness resume`). `harness verify` derives again and compares bytes.
"""

from __future__ import annotations

import csv
import io as _io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness.config.schema import RunConfig
from harness.folder import io
from harness.folder.checkpoints import checkpoint_name, load_checkpoint
from harness.folder.experiment import ATTESTATION, MANIFEST, ExperimentError, write_manifest

FINISHED = ("completed", "early_stopped")
UNFINISHED = ("failed", "not_run", "interrupted")
RUN_STATUS = "run_status.json"
# stdout.log: `<UTC date time,ms> - <LEVEL> - <message>`; the outcome lines the launcher writes.
_STAMPED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - [A-Z]+ - (.*)$")
SESSION_MARK = "session: "  # `session: run` or `session: resume`, the first line of each launcher session
_SEED_OUTCOME = re.compile(r"^outcome: seed (\d+) (failed|not_run|interrupted): (.*)$")
_RUN_OUTCOME = re.compile(r"^outcome: run interrupted \((SIG[A-Z]+)\)$")
SESSION_END = "outcome: session ended"  # logged once every outcome of the session is (before deriving)
_END = re.compile(r"^outcome: session ended$")


class LegacyFolder(ExperimentError):
    """A folder whose checkpoints predate the `result` record: its results cannot be re-derived."""


def outcome_line(seed: int, status: str, reason: str | None) -> str:
    """The stdout.log line recording an unfinished seed's outcome (read back by `read_log_outcomes`)."""
    if status not in UNFINISHED:
        raise ValueError(f"not an unfinished status: {status}")
    return f"outcome: seed {seed} {status}: " + " ".join(str(reason or "no reason given").split())


def run_interrupted_line(signal_name: str) -> str:
    return f"outcome: run interrupted ({signal_name})"


# ---------------------------------------------------------------------------------------------
# Reading the primary evidence


@dataclass
class SeedEvidence:
    """One seed as its checkpoints and stdout.log have it."""

    seed: int
    history: list[dict] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    result: dict | None = None  # the finished seed's record (with history and trajectory added)
    status: str = "not_run"
    reason: str | None = None
    checkpoints: dict[str, tuple[bool, str]] = field(default_factory=dict)  # kind -> (loads, detail)
    legacy: bool = False  # a finished last checkpoint without a result record (written by older code)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def outcome(self) -> dict[str, Any]:
        """What artifacts.build_results expects of one seed."""
        if self.result is not None:
            return {"status": self.status, "result": self.result}
        return {"status": self.status, "reason": self.reason}


@dataclass
class Evidence:
    exp_dir: Path
    cfg: dict[str, Any]
    run: RunConfig
    environment: str
    seeds: dict[int, SeedEvidence]
    interrupted: str | None  # the signal that interrupted the last session, if one did
    sessions: int = 0  # launcher sessions recorded in stdout.log (0: written by a harness before them)
    killed: bool = False  # the last session never logged its end (its launcher was killed)

    @property
    def multi(self) -> bool:
        return len(self.run.seeds.all) > 1


@dataclass
class LogOutcomes:
    """What the last launcher session of stdout.log records (earlier sessions are superseded: a resume
    retries every unfinished seed)."""

    seeds: dict[int, tuple[str, str]] = field(default_factory=dict)  # seed -> (status, reason)
    signal: str | None = None  # the signal that interrupted the session
    sessions: int = 0  # launcher sessions in the log (0: a harness that wrote none)
    ended: bool = True  # the last session logged SESSION_END (False: its launcher was killed)


def read_log_outcomes(log_text: str) -> LogOutcomes:
    """The `session:` and `outcome:` lines of stdout.log (see LogOutcomes)."""
    out = LogOutcomes()
    for line in log_text.splitlines():
        m = _STAMPED.match(line)
        if not m:
            continue
        message = m.group(1)
        if message.startswith(SESSION_MARK):
            out = LogOutcomes(sessions=out.sessions + 1, ended=False)
            continue
        if _END.match(message):
            out.ended = True
            continue
        so = _SEED_OUTCOME.match(message)
        if so:
            out.seeds[int(so.group(1))] = (so.group(2), so.group(3))
            continue
        ro = _RUN_OUTCOME.match(message)
        if ro:
            out.signal = ro.group(1)
    return out


def _checkpoint(path: Path, seed: int) -> tuple[dict | None, tuple[bool, str]]:
    if not io.exists(path):
        return None, (False, "missing")
    try:
        state = load_checkpoint(path)
    except ExperimentError as exc:
        return None, (False, str(exc))
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is a finding, named in one line
        return None, (False, f"does not load ({type(exc).__name__})")
    if not isinstance(state, dict) or state.get("seed") != seed:
        return None, (False, f"holds seed {state.get('seed') if isinstance(state, dict) else '?'}, not {seed}")
    return state, (True, f"epoch {int(state['epoch']) + 1}, loads with weights_only")


def read_seed(exp_dir: Path, seed: int, multi: bool, log_outcome: tuple[str, str] | None,
              killed: bool = False) -> SeedEvidence:
    ev = SeedEvidence(seed=seed)
    last, ev.checkpoints["last"] = _checkpoint(exp_dir / checkpoint_name("last", seed, multi), seed)
    _, ev.checkpoints["best"] = _checkpoint(exp_dir / checkpoint_name("best", seed, multi), seed)
    if last is not None:
        ev.history = [dict(r) for r in last.get("history") or []]
        ev.trajectory = [dict(e) for e in last.get("trajectory") or []]
        record = last.get("result")
        if isinstance(record, dict) and record.get("status") in FINISHED:
            ev.result = {**record, "history": ev.history, "trajectory": ev.trajectory}
            ev.status, ev.reason = str(record["status"]), record.get("reason")
            return ev
    why = "the launcher was killed" if killed else "no outcome recorded in stdout.log"
    if log_outcome is not None:
        ev.status, ev.reason = log_outcome
    elif last is None:
        ev.status, ev.reason = "not_run", f"{why} before this seed saved a checkpoint"
    else:
        ev.status, ev.reason = "interrupted", f"{why} after epoch {len(ev.history)}; resume continues it"
    return ev


def read_evidence(exp_dir: Path) -> Evidence:
    """The primary evidence of a schema-3 folder (ExperimentError, one line, when it cannot be read)."""
    exp_dir = Path(exp_dir)
    cfg = io.read_json(exp_dir / "config.json")
    if not isinstance(cfg, dict):
        raise ExperimentError(f"{exp_dir / 'config.json'}: expected a JSON object")
    from gainakt.config import ConfigValueError

    try:
        run = RunConfig.from_dict(cfg)
    except ConfigValueError as exc:
        raise ExperimentError(f"{exp_dir / 'config.json'}: {exc}") from None
    env = io.read_text(exp_dir / "environment.txt", limit=io.TEXT_LIMIT, errors="replace") \
        if io.exists(exp_dir / "environment.txt") else ""
    log = io.read_text(exp_dir / "stdout.log", limit=io.LOG_LIMIT, errors="replace") \
        if io.exists(exp_dir / "stdout.log") else ""
    logged = read_log_outcomes(log)
    multi = len(run.seeds.all) > 1
    killed = logged.sessions > 0 and not logged.ended
    seeds = {s: read_seed(exp_dir, s, multi, logged.seeds.get(s), killed) for s in run.seeds.all}
    return Evidence(exp_dir=exp_dir, cfg=cfg, run=run, environment=env, seeds=seeds, interrupted=logged.signal,
                    sessions=logged.sessions, killed=killed)


def legacy_seeds(exp_dir: Path, ev: Evidence) -> list[int]:
    """Seeds that finished under older code: the folder's stdout.log has no launcher session line (they
    came with the result records), a seed's last checkpoint has a history but no result record, and
    results.json says it finished. Their results cannot be re-derived."""
    path = exp_dir / "results.json"
    if ev.sessions or not io.is_regular(path):
        return []
    try:
        per_seed = io.read_json(path).get("per_seed") or {}
    except (ExperimentError, AttributeError):
        return []
    return [s for s, e in ev.seeds.items() if e.result is None and e.history
            and (per_seed.get(str(s)) or {}).get("status") in FINISHED]


# ---------------------------------------------------------------------------------------------
# The derived files (one pure function each)


def histories(ev: Evidence) -> dict[int, list[dict]]:
    """Per seed with epochs, its history rows in epoch order merged with its trajectory entries
    (artifacts.histories_of: the schedule's state of each epoch)."""
    from harness.folder import artifacts

    rows = {s: {int(r["epoch"]): r for r in e.history} for s, e in ev.seeds.items() if e.history}
    return artifacts.histories_of(ev.run.seeds.all, rows, {s: e.trajectory for s, e in ev.seeds.items()})


def derive_results(ev: Evidence) -> dict[str, Any]:
    from harness.folder import artifacts

    results = artifacts.build_results(ev.run, {s: e.outcome() for s, e in ev.seeds.items()}, histories(ev))
    if (ev.interrupted or ev.killed) and results["status"] != "completed":
        results["status"] = "interrupted"
    return results


def _json(obj: Any) -> bytes:
    return io.dumps_json(obj).encode()


def metrics_csv(ev: Evidence) -> bytes:
    """The seeds' histories, seeds in config order, epochs ascending. The columns are EPOCH_COLUMNS that
    the rows carry (a folder trained before a column existed keeps the header it was written with)."""
    from gainakt.train import EPOCH_COLUMNS
    from harness.folder import artifacts

    rows = [r for s in ev.run.seeds.all for r in sorted(ev.seeds[s].history, key=lambda r: int(r["epoch"]))]
    present = {k for r in rows for k in r}
    columns = [c for c in EPOCH_COLUMNS if c in present] if rows else list(EPOCH_COLUMNS)
    return artifacts.render_metrics_csv(rows, columns).encode()


def results_json(ev: Evidence, results: dict) -> bytes:
    return _json(results)


def multi_seed_json(ev: Evidence, results: dict) -> bytes:
    from harness.folder import artifacts

    return _json(artifacts.build_multi_seed(results))


def run_status_json(ev: Evidence, results: dict) -> bytes:
    return _json(run_status(results, ev.interrupted))


def run_status(results: dict, signal: str | None) -> dict[str, Any]:
    return {"status": results["status"], "failed_seeds": results["failed_seeds"],
            "unfinished_seeds": results["unfinished_seeds"], "derived_by": derivation_digest()} \
        | ({"signal": signal} if signal else {})


# The code whose output the derived files are: another version of it may write other bytes from the same
# evidence (a new column, a reworded README), so verify compares bytes only with the version that wrote
# them (recorded in run_status.json as `derived_by`) and otherwise says so.
_DERIVATION_MODULES = ("harness.folder.derive", "harness.folder.artifacts", "harness.folder.plots",
                       "harness.audit.checks")


def derivation_digest() -> str:
    """sha256 (first 16 hex digits) of the source of the modules that write derived files, the epoch
    columns and the harness version: equal digests write equal bytes from equal evidence."""
    import hashlib
    import importlib
    import inspect

    from gainakt.train import EPOCH_COLUMNS
    from harness import __version__

    h = hashlib.sha256(f"{__version__}\n{list(EPOCH_COLUMNS)}\n".encode())
    for name in _DERIVATION_MODULES:
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    return "sha256:" + h.hexdigest()[:16]


def recorded_derivation(exp_dir: Path) -> str | None:
    """The `derived_by` digest run_status.json records (None: none recorded, or unreadable)."""
    try:
        value = io.read_json(Path(exp_dir) / RUN_STATUS).get("derived_by")
    except (ExperimentError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def seed_devices(environment: str) -> dict[int, str]:
    """The seed→device map of the last session (environment.txt's `seed_devices`), placements applied."""
    text = "{}"
    for line in environment.splitlines():  # the first session's line, or a resume section's (`#   key: v`)
        key, sep, value = line.lstrip("#").strip().partition(": ")
        if sep and key == "seed_devices":
            text = value
    try:
        return {int(k): str(v) for k, v in json.loads(text).items()}
    except (ValueError, AttributeError):
        return {}


def seed_info_md(ev: Evidence, results: dict) -> bytes:
    from harness.folder import artifacts
    from harness.run.environment import parse

    env = parse(ev.environment)
    gpu_names = {k[3:]: v.split(" | ")[0] for k, v in env.items() if k.startswith("gpu") and k[3:].isdigit()}
    return artifacts.seed_info_md(ev.run, results, seed_devices(ev.environment), gpu_names, histories(ev)).encode()


def readme_md(ev: Evidence, results: dict) -> bytes:
    from harness.folder import artifacts

    return artifacts.readme_md(ev.run, results, checklist(ev, results), ev.run.command, histories(ev)).encode()


def checklist(ev: Evidence, results: dict) -> list[Any]:
    """The README's reproducibility checklist: real checks of the evidence (the Check type verify uses)."""
    from harness.audit.checks import Checks
    from harness.config.build import amp_ran, config_md5
    from harness.run.environment import parse

    run, cfg = ev.run, ev.cfg
    checks = Checks()
    checks.add("schema_version known", run.schema_version in (2, 3), f"{run.schema_version}")
    checks.add("missing_params empty", run.missing_params == [], str(run.missing_params))
    md5 = config_md5(cfg)
    checks.add("config_md5 recomputes", md5 == run.config_md5, md5)
    sha256 = run.data_checksum.get("sha256")
    checks.add("dataset checksum recorded", bool(sha256), str(sha256)[:16] + "…")
    env = parse(ev.environment) if ev.environment else {}
    first_commit = next((line.split(": ", 1)[1] for line in ev.environment.splitlines()
                         if line.startswith("git_commit: ")), "")
    checks.add("git commit recorded", bool(first_commit) and not first_commit.startswith("unknown"),
               first_commit or "missing")
    dirty = next((line.split(": ", 1)[1] for line in ev.environment.splitlines()
                  if line.startswith("git_dirty: ")), env.get("git_dirty", "unknown"))
    checks.add("code tree clean", dirty == "false", f"git_dirty={dirty}")
    for seed in run.seeds.all:
        r = results["per_seed"][str(seed)]
        checks.add(f"seed {seed} finished", r["status"] in FINISHED,
                   r["status"] + (f" ({r.get('reason')})" if r.get("reason") else ""))
        for kind in ("best", "last"):
            ok, detail = ev.seeds[seed].checkpoints[kind]
            checks.add(f"{checkpoint_name(kind, seed, ev.multi)} loads", ok, detail)
    deterministic = run.train.determinism.torch_deterministic
    checks.add("deterministic algorithms", deterministic,
               "on" if deterministic else "off (--torch_deterministic for audits)")
    amp = amp_ran(cfg)  # as run: a CPU run is fp32 whatever was asked
    checks.add("AMP off (bit-level reproducibility)", not amp,
               "AMP on: tolerance-level reproducibility" if amp else "fp32")
    return checks.items


def trajectory_json(ev: Evidence, results: dict, seed: int) -> bytes:
    return _json({"seed": seed, "trajectory": ev.seeds[seed].trajectory})


def head_stats_json(ev: Evidence, results: dict, seed: int) -> bytes:
    rows = [{"epoch": e["epoch"], **e["head_stats"]} for e in ev.seeds[seed].trajectory if "head_stats" in e]
    return _json({"seed": seed, "epochs": rows})


def rng_json(ev: Evidence, results: dict, seed: int) -> bytes:
    result = ev.seeds[seed].result or {}
    return _json({
        "seed": seed,
        "seeded": ["python.random", "numpy.random", "torch (CPU)", "torch.cuda (all devices)",
                   "batch order torch.Generator"],
        "final_state": result.get("rng_final"),
        "determinism": result.get("determinism") or {},
    })


def timings_json(ev: Evidence, results: dict, seed: int) -> bytes:
    """Wall times of a finished seed (kept out of results.json, so identical runs give identical results)."""
    result = ev.seeds[seed].result or {}
    return _json({
        "seed": seed,
        "seconds_per_epoch_mean": result.get("seconds_per_epoch"),
        "epoch_seconds": [row.get("epoch_seconds") for row in ev.seeds[seed].history],
        "final_eval_seconds": result.get("eval_seconds") or {},
        "compile": result.get("compile"),
    })


Deriver = Callable[[Evidence, dict], bytes]


def derivers(ev: Evidence) -> dict[str, Deriver]:
    """{folder-relative name: function} of every derived file of this folder but the plots and the
    manifest, in the order finalise writes them (run_status.json last)."""
    out: dict[str, Deriver] = {
        "metrics_epoch.csv": lambda e, r: metrics_csv(e),
        "results.json": results_json,
    }
    if ev.multi:
        out["results_multi_seed.json"] = multi_seed_json
    out["SEED_INFO.md"] = seed_info_md
    out["README.md"] = readme_md
    for seed, s in ev.seeds.items():
        if s.trajectory:
            out[f"artifacts/semantic_trajectory_seed{seed}.json"] = partial(trajectory_json, seed=seed)
            if any("head_stats" in e for e in s.trajectory):
                out[f"artifacts/head_stats_seed{seed}.json"] = partial(head_stats_json, seed=seed)
        out[f"artifacts/rng_seed{seed}.json"] = partial(rng_json, seed=seed)
        if s.result is not None:
            out[f"artifacts/timings_seed{seed}.json"] = partial(timings_json, seed=seed)
    out[RUN_STATUS] = run_status_json
    return out


def derive_plots(ev: Evidence) -> dict[str, bytes]:
    from harness.folder.plots import render_plots

    examples = {s: (e.result or {}).get("examples") for s, e in ev.seeds.items()}
    majority = next(((e.result or {}).get("final", {}).get("val_majority_rate") for e in ev.seeds.values()
                     if (e.result or {}).get("final", {}).get("val_majority_rate") is not None), None)
    return render_plots(histories(ev), examples, majority_rate=majority)


@dataclass
class Derived:
    """Every derived file of a folder (but the manifest) and the results it was built from."""

    files: dict[str, bytes]
    results: dict[str, Any]
    evidence: Evidence


def derive_folder(exp_dir: Path, *, plots: bool = True, evidence: Evidence | None = None) -> Derived:
    """All derived files of `exp_dir` from its primary evidence alone (nothing derived is read).

    Raises LegacyFolder for a folder written before checkpoints carried their seed's result."""
    ev = evidence or read_evidence(exp_dir)
    legacy = legacy_seeds(Path(exp_dir), ev)
    if legacy:
        raise LegacyFolder(
            f"{exp_dir}: seeds {legacy} finished under an older harness whose checkpoints carry no final "
            "metrics, so the folder's derived files cannot be rebuilt from its evidence")
    results = derive_results(ev)
    files = {name: fn(ev, results) for name, fn in derivers(ev).items()}
    if plots:
        status = files.pop(RUN_STATUS)
        files.update(derive_plots(ev))
        files[RUN_STATUS] = status
    return Derived(files=files, results=results, evidence=ev)


def stale_files(exp_dir: Path, derived: Derived) -> list[str]:
    """Files of the derived kinds that the folder holds but its evidence no longer produces (e.g. a
    timings file of a seed that is not finished): finalise removes them, verify names them."""
    produced = set(derived.files)
    patterns = ("artifacts/semantic_trajectory_seed", "artifacts/head_stats_seed", "artifacts/rng_seed",
                "artifacts/timings_seed")
    names = io.scan(exp_dir).files
    out = [n for n in names if n.startswith(patterns) and n.endswith(".json") and n not in produced]
    if "results_multi_seed.json" in names and "results_multi_seed.json" not in produced:
        out.append("results_multi_seed.json")
    return sorted(out)


def finalise(exp_dir: Path, *, derived: Derived | None = None,
             after_write: Callable[[str], None] | None = None) -> Derived:
    """Write every derived file of `exp_dir` from its primary evidence, then the manifest.

    Idempotent: running it again after a crash at any point writes the same bytes. The caller holds the
    folder's lock. The manifest and attestation are removed first (the folder is being written);
    `derived` is this folder's `derive_folder` when the caller already has it; `after_write(name)` runs
    after each file (the crash-injection tests use it)."""
    exp_dir = Path(exp_dir)
    derived = derived or derive_folder(exp_dir)
    io.remove(exp_dir / MANIFEST)
    io.remove(exp_dir / ATTESTATION)
    for name in stale_files(exp_dir, derived):
        io.remove(exp_dir / name)
    for name, data in derived.files.items():
        io.write_bytes(exp_dir / name, data, root=exp_dir)
        if after_write is not None:
            after_write(name)
    write_manifest(exp_dir)
    if after_write is not None:
        after_write(MANIFEST)
    return derived


def parse_metrics_csv(data: bytes) -> list[dict[str, str]]:
    """metrics_epoch.csv rows as text cells (for readers that need the table, e.g. ls and benchmarks)."""
    return list(csv.DictReader(_io.StringIO(data.decode("utf-8", errors="replace"))))


__all__ = ["Derived", "Evidence", "LegacyFolder", "SeedEvidence", "derive_folder", "finalise", "read_evidence",
           "outcome_line", "run_interrupted_line", "read_log_outcomes", "stale_files"]
