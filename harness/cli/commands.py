"""What each `harness` command (and the guide's launcher script) does, on parsed arguments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.audit.attest import check_signing_key, sign_if_configured
from harness.config.build import SCHEMA_VERSION, ConfigError, config_md5, params_from_file
from harness.config.launch import LaunchOptions
from harness.config.schema import RunConfig
from harness.folder.experiment import (
    ACCEPTED,
    ExperimentError,
    FolderLock,
    check_before_write,
    find_experiment,
    output_base,
    read_json,
    record_in_manifest,
    resolve_experiment,
    title_of,
)
from harness.run.datasets import dataset_name, describe_read
from harness.run.launcher import (
    LaunchError,
    ResolvedRun,
    execute_experiment,
    prepare_run,
    release_folder,
    resolve_run,
)


def run(ns: argparse.Namespace | LaunchOptions, title: str | None) -> int:
    """A new experiment, or --compare_only / --reproduce_from / --resume when given."""
    opts = LaunchOptions.from_namespace(ns)
    if opts.compare_only:
        if not opts.source_exp or not opts.target_exp:
            from harness.errors import UsageError

            raise UsageError("--compare_only needs both --source_exp and --target_exp")
        return compare(opts.source_exp, opts.target_exp, opts)
    if opts.resume:
        return resume(opts.resume, opts)
    reproduction = None
    base_params = None
    base_source = "source config"
    if opts.reproduce_from:
        source = resolve_experiment(opts.reproduce_from, output_base(opts.output_base))
        base_params, reproduction, title = reproduction_source(source, opts)
        base_source = str(source / "config.json")
    if not title:
        raise LaunchError("an experiment title is required (--experiment_title)")
    resolved = resolve_run(opts, title, base_params=base_params, base_source=base_source)
    if reproduction is not None:
        reproduction["applied_overrides"] = resolved.overrides
        reproduction["override_count"] = len(resolved.overrides)
        if opts.data_dir is None and resolved.run_config().train.data.dataset != "synthetic":
            opts = dataclasses.replace(opts, data_dir=reproduction.pop("_source_data_dir", None))
        reproduction.pop("_source_data_dir", None)
    if reproduction is None:  # a reproduction's data is checked by its sha256 instead of its name
        select_dataset(resolved, opts)
    else:
        check_reproduction_data(resolved, opts, reproduction)
    base = Path(opts.output_base or "examples/experiments")
    check_output_base(base)
    check_signing_key(opts.sign_key)  # a bad key is said before the folder exists, not after training
    runtime = pick_runtime(resolved.params["runtime"])
    image_record: dict[str, Any] = {}

    def docker_ready() -> None:  # after the data and devices are checked, before the folder exists
        from harness.docker.run import prepare_docker

        image_record.update(prepare_docker(resolved.params.get("image"), base, opts.data_dir))

    exp_dir = prepare_run(resolved, opts, reproduction=reproduction, runtime=runtime,
                          before_folder=docker_ready if runtime == "docker" else None)
    for note in resolved.notes:
        print(f"note: {note}")
    print(f"experiment folder: {exp_dir}")
    print(describe_read(resolved.run_config().data_checksum))
    try:  # prepare_run took the folder's lock before writing config.json; it is held until here
        if runtime == "docker":
            from harness.docker.run import run_in_docker

            against = Path(reproduction["source_path"]) if reproduction is not None else None
            code = run_in_docker(exp_dir, resolved.config, opts, image_record,  # type: ignore[arg-type]
                                 against=against)
            if reproduction is not None:  # the verifier container compared it with its source
                code = max(code, docker_reproduction_outputs(exp_dir, opts, reproduction))
        else:
            code = execute_experiment(exp_dir, data_dir=opts.data_dir)
            if reproduction is not None:
                code = max(code, write_reproduction_outputs(exp_dir, opts, reproduction))
        if reproduction is None and opts.manifest:
            write_manifest_file(exp_dir, None)
        sign_if_configured(exp_dir, opts.sign_key, allow_accepted=opts.sign_accepted)
    finally:
        release_folder(exp_dir)
    return code


def check_reproduction_data(resolved: ResolvedRun, opts: LaunchOptions, reproduction: dict[str, Any]) -> None:
    """Refuse, before any folder exists, to reproduce on data whose sha256 differs from the source's.

    `--allow_different_data` lets it run; the reproduction block then records both checksums.
    """
    from harness.run.datasets import load_from_params

    expected = reproduction.get("source_data_sha256")
    allowed = opts.allow_different_data
    reproduction["allow_different_data"] = allowed
    if not expected:
        return
    found = load_from_params(resolved.run_config().train.data.to_dict(), opts.data_dir).sha256
    reproduction["data_sha256"] = found
    if found != expected and not allowed:
        raise LaunchError(f"the data to reproduce on (sha256 {found[:12]}…) differs from the source's "
                          f"({expected[:12]}…); pass --allow_different_data to run on it anyway")


def check_output_base(base: Path) -> None:
    """Refuse an output base that is a file or where no folder can be created (read-only, no permission).

    Nothing is left behind: the probe is a temporary folder in the base, or in its nearest existing
    parent when the base does not exist yet (the run creates it with its experiment folder, so a run
    refused later, e.g. for its data, leaves no empty base)."""
    existing = base
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LaunchError(f"--output_base {base}: {existing} is not a folder")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".harness_probe_").cleanup()
    except OSError as exc:
        raise LaunchError(f"--output_base {base}: cannot create folders there ({exc.strerror or exc})") from None


def select_dataset(resolved: ResolvedRun, opts: LaunchOptions) -> None:
    """Name the run's dataset from --data_dir when none was given, or check the given name against it."""
    requested = resolved.params["dataset"]
    name = dataset_name(requested, opts.data_dir, typed="dataset" in opts.explicit)
    if name != requested:
        resolved.params["dataset"] = name
        resolved.config["data"]["dataset"] = name
        resolved.notes.append(f"dataset named {name!r} after --data_dir")


def pick_runtime(requested: str) -> str:
    if requested != "auto":
        return requested
    from harness.docker.containers import engine_available

    return "docker" if engine_available() else "local"


def read_config(folder: Path) -> dict[str, Any]:
    """An experiment's config.json as a dict, or ExperimentError (one line) when it is not one."""
    cfg = read_json(folder / "config.json")
    if not isinstance(cfg, dict):
        raise ExperimentError(f"{folder / 'config.json'}: expected a JSON object, found {type(cfg).__name__}")
    return cfg


def reproduction_source(source: Path, ns: argparse.Namespace | LaunchOptions) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Parameters of the source config, the `reproduction` block and the new title."""
    cfg = read_config(source)
    schema = cfg.get("schema_version")
    if schema not in (2, 3):
        raise ConfigError(f"{source / 'config.json'}: unknown schema_version {schema!r}")
    if schema != SCHEMA_VERSION and getattr(ns, "strict_schema", False):
        raise ConfigError(f"--strict_schema: source schema_version {schema} differs from ours ({SCHEMA_VERSION})")
    if schema == SCHEMA_VERSION:  # ours: the whole record must parse before anything is reproduced from it
        from gainakt.config import ConfigValueError
        from harness.config.schema import RunConfig

        try:
            RunConfig.from_dict(cfg)
        except ConfigValueError as exc:
            raise ConfigError(f"{source / 'config.json'}: {exc}") from None
    params = params_from_file(cfg, str(source / "config.json"))
    exp = cfg.get("experiment", {})
    title = f"{exp.get('short_title') or title_of(source.name)}_reproduce"
    block = {
        "mode": "reproduce",
        "source_experiment": source.name,
        "source_path": str(source.resolve()),
        "source_config_md5": cfg.get("config_md5"),
        "source_schema_version": schema,
        "schema_match": schema == SCHEMA_VERSION,
        "_source_data_dir": (cfg.get("paths") or {}).get("data_dir"),
        "source_data_sha256": (cfg.get("data_checksum") or {}).get("sha256"),
    }
    if schema != SCHEMA_VERSION:
        print(f"note: source schema_version {schema} differs from ours ({SCHEMA_VERSION}); "
              "reported in reproduction_report.json", file=sys.stderr)
    return params, block, title


def write_reproduction_outputs(exp_dir: Path, ns: argparse.Namespace | LaunchOptions, reproduction: dict) -> int:
    from harness.audit.compare import compare_experiments, write_report

    source = Path(reproduction["source_path"])
    report = compare_experiments(source, exp_dir, auc_tolerance=ns.auc_tolerance,
                                 corr_tolerance=ns.corr_tolerance)
    report["mode"] = "reproduce"
    report["source_experiment"] = reproduction["source_experiment"]
    write_report(exp_dir, report)
    if getattr(ns, "manifest", False):
        write_manifest_file(exp_dir, reproduction)
    print(f"reproduction verdict: {report['verdict']}")
    return verdict_exit_code(report)


def docker_reproduction_outputs(exp_dir: Path, ns: argparse.Namespace | LaunchOptions, reproduction: dict) -> int:
    """A Docker reproduction: the verifier container compared it with its source (`run_in_docker`
    stored reproduction_report.json); this prints its verdict and adds `--manifest`'s file. A
    report that is missing (the training failed before the folder could be compared) is a failure."""
    from harness.audit.compare import REPORT_NAME

    path = exp_dir / REPORT_NAME
    if not path.is_file():
        print("reproduction verdict: fail (the verifier container wrote no comparison)")
        return EXIT_VERDICT_FAIL
    report = read_json(path)
    if getattr(ns, "manifest", False):
        write_manifest_file(exp_dir, reproduction)
    print(f"reproduction verdict: {report['verdict']} (compared in the verifier container)")
    return verdict_exit_code(report)


def write_manifest_file(exp_dir: Path, reproduction: dict | None) -> None:
    from harness.audit.compare import reproduction_manifest
    from harness.folder.experiment import atomic_write_json, record_in_manifest

    atomic_write_json(exp_dir / "reproduction_manifest.json", reproduction_manifest(exp_dir, reproduction))
    record_in_manifest(exp_dir, ["reproduction_manifest.json"])


def compare(source_ref: str, target_ref: str, ns: argparse.Namespace | LaunchOptions) -> int:
    from harness.audit.compare import check_distinct, compare_experiments, write_report

    base_arg = getattr(ns, "output_base", None)
    source = find_experiment(source_ref, base_arg)
    target = find_experiment(target_ref, base_arg)
    check_distinct(source, target)  # before anything is read or written
    if getattr(ns, "strict_schema", False):
        check_strict_schema(source, target)
    check_manifest_readable(target)
    report = compare_experiments(source, target, auc_tolerance=ns.auc_tolerance, corr_tolerance=ns.corr_tolerance)
    with FolderLock(target):  # the report goes into the target: only if it is what its manifest says
        accepted = check_before_write(target, "write reproduction_report.json into it",
                                      accept_modified=getattr(ns, "accept_modified", False),
                                      require_manifest=False)
        write_report(target, report)
        if accepted:
            record_in_manifest(target, [ACCEPTED])
        if getattr(ns, "manifest", False):  # guide §6 step 9 / §15.8: the audit manifest of the comparison
            write_compare_manifest(source, target)
    if getattr(ns, "json", False):
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"verdict: {report['verdict']}")
        for reason in report.get("reasons", []):
            print(f"  - {reason}")
        print(f"report: {target / 'reproduction_report.json'}")
    return verdict_exit_code(report)


def check_strict_schema(source: Path, target: Path) -> None:
    """--strict_schema with a comparison: both folders must have our schema_version (refused before
    anything is written, as `reproduce --strict_schema` refuses a source of another schema)."""
    for role, folder in (("source", source), ("target", target)):
        schema = read_config(folder).get("schema_version")
        if schema != SCHEMA_VERSION:
            raise ConfigError(f"--strict_schema: {role} {folder.name} has schema_version {schema!r}, ours is "
                              f"{SCHEMA_VERSION}; nothing compared or written (drop --strict_schema to compare "
                              "across schemas; the report then names the difference)")


def write_compare_manifest(source: Path, target: Path) -> None:
    """reproduction_manifest.json in the target of `compare --manifest`: the guide's §15.8 fields, the
    §6.a J comparison fields (from the report just written) and §6 step 9's audit anchors; recorded in
    the target's manifest when it has one."""
    from harness.audit.compare import reproduction_manifest
    from harness.folder.experiment import MANIFEST, atomic_write_json

    cfg = read_config(source)
    manifest = reproduction_manifest(target, {"source_experiment": source.name, "source_path": str(source.resolve()),
                                              "source_config_md5": cfg.get("config_md5")})
    manifest["reproduction_mode"] = False  # a comparison of two finished runs, not --reproduce_from
    manifest["mode"] = "compare"
    atomic_write_json(target / "reproduction_manifest.json", manifest)
    if (target / MANIFEST).is_file():
        record_in_manifest(target, ["reproduction_manifest.json"])
    print(f"manifest: {target / 'reproduction_manifest.json'}")


EXIT_VERDICT_FAIL = 1


def verdict_exit_code(report: dict[str, Any]) -> int:
    """0 for a `pass` or `pass_with_notes` verdict, EXIT_VERDICT_FAIL for `fail` (whatever the metrics)."""
    return 0 if report["verdict"] != "fail" and report["within_tolerance"] else EXIT_VERDICT_FAIL


def check_manifest_readable(folder: Path) -> None:
    """Refuse (before writing anything) a folder whose MANIFEST.sha256 a report could not be added to."""
    from harness.folder.experiment import MANIFEST, read_manifest

    if not (folder / MANIFEST).is_file():
        return
    try:
        read_manifest(folder)
    except ExperimentError as exc:
        raise ExperimentError(f"{exc}; nothing written") from None


def verify(ns: argparse.Namespace) -> int:
    from harness.audit.verify import verify_experiment

    exp = find_experiment(ns.experiment, ns.output_base)
    against = find_experiment(ns.against, ns.output_base) if ns.against else None
    if against is not None:
        from harness.audit.compare import check_distinct

        check_distinct(against, exp)
    report_file = checked_report_file(getattr(ns, "report_file", None), exp)
    trusted_key = getattr(ns, "trusted_key", None)
    if trusted_key:  # a key that cannot be read is the user's error (one line), not a failed check
        from harness.audit.attest import load_public_key

        load_public_key(Path(trusted_key))
    report = verify_experiment(exp, against=against, auc_tolerance=ns.auc_tolerance,
                               corr_tolerance=ns.corr_tolerance, trusted_key=trusted_key)
    show_report(report, ns, report_file)
    if getattr(ns, "write_report", False):  # after the report is shown: a refusal is one line after it
        write_verification_report(exp, report)
    return 0 if report["passed"] else 1


def checked_report_file(name: str | None, exp: Path) -> Path | None:
    """--report_file: a file outside the verified folder, in a folder that exists (checked before verifying)."""
    if name is None:
        return None
    path = Path(name)
    folder = exp.resolve()
    if path.resolve() == folder or folder in path.resolve().parents:
        raise ExperimentError(f"--report_file {name} is inside the verified folder {exp}; verify writes into it "
                              "only with --write_report (and only when every check of the folder passes)")
    if path.is_dir():
        raise ExperimentError(f"--report_file {name} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ExperimentError(f"--report_file {name}: folder {path.parent} does not exist")
    return path


def show_report(report: dict[str, Any], ns: argparse.Namespace, report_file: Path | None) -> None:
    """A verify report (an experiment's or a sweep's): to --report_file if given, then as JSON or a table."""
    from harness.audit.verify import print_report

    if report_file is not None:
        write_report_file(report_file, report)
    if ns.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)


def write_report_file(path: Path, report: dict[str, Any]) -> None:
    from harness.folder.experiment import atomic_write_json

    try:
        atomic_write_json(path, report)
    except OSError as exc:
        raise ExperimentError(f"cannot write --report_file {path}: {exc.strerror or exc}") from None
    print(f"report written: {path}", file=sys.stderr)  # stderr: --json keeps stdout one JSON document


def write_verification_report(exp: Path, report: dict[str, Any]) -> None:
    """Store the verdict as <exp>/verification_report.json and record it in the folder's manifest
    (the Compose verifier uses this), only when every check of the folder itself passes: a folder
    that differs from its manifest, fails a check or did not finish is evidence and is never
    modified (one line, nothing written; --report_file PATH stores the report elsewhere). Failed
    `against:` checks (the reproduction is outside tolerance) are the report's subject: it is stored."""
    from harness.folder.experiment import MANIFEST, atomic_write_json

    own = [name for name in report["failed"] if not name.startswith("against: ")]
    skipped = [name for name in report.get("skipped", []) if not name.startswith("against: ")]
    if own or skipped or not (exp / MANIFEST).is_file():
        why = (f"verdict {report.get('verdict', 'fail')}: {', '.join(own)} did not pass" if own
               else f"verdict {report.get('verdict')}: {len(skipped)} checks not applicable until the run finishes"
               if skipped else f"it has no {MANIFEST} to record the report in")
        raise ExperimentError(f"{exp}: refusing to write verification_report.json into it ({why}); the folder "
                              "is left as it is: store the report elsewhere with --report_file PATH")
    check_manifest_readable(exp)
    with FolderLock(exp):  # the manifest could have changed since it was verified: checked again
        check_before_write(exp, "write verification_report.json into it",
                           remedy="it changed since it was verified: verify it again, or store the report elsewhere "
                           "with --report_file PATH; `harness resume --accept_modified` records a change")
        try:
            atomic_write_json(exp / "verification_report.json", report)
            record_in_manifest(exp, ["verification_report.json"])
        except OSError as exc:
            raise ExperimentError(f"cannot write {exp / 'verification_report.json'}: {exc.strerror or exc}") from None
    print(f"report written: {exp / 'verification_report.json'} (recorded in {MANIFEST})", file=sys.stderr)


def _parsed(exp_dir: Path, cfg: dict[str, Any]) -> RunConfig:
    """A schema-3 folder's config, typed; a config that does not parse is one line naming the key."""
    from gainakt.config import ConfigValueError

    try:
        return RunConfig.from_dict(cfg)
    except ConfigValueError as exc:
        raise ExperimentError(f"{exp_dir / 'config.json'}: {exc}") from None


def resume(ref: str, ns: argparse.Namespace | LaunchOptions) -> int:
    exp_dir = find_experiment(ref, getattr(ns, "output_base", None))
    cfg = read_config(exp_dir)
    if cfg.get("schema_version") != SCHEMA_VERSION:
        raise ExperimentError(f"{exp_dir}: only schema {SCHEMA_VERSION} experiments can be resumed")
    if cfg.get("config_md5") != config_md5(cfg):
        raise ExperimentError(f"{exp_dir / 'config.json'}: config_md5 does not recompute (edited or damaged); "
                              "it cannot be resumed")
    check_signing_key(getattr(ns, "sign_key", None))
    if _parsed(exp_dir, cfg).where == "docker":
        from harness.docker.run import reap_before_writing

        reap_before_writing(exp_dir)
    with FolderLock(exp_dir):
        code = execute_experiment(exp_dir, data_dir=getattr(ns, "data_dir", None), resume=True,
                                  accept_modified=getattr(ns, "accept_modified", False))
        sign_if_configured(exp_dir, getattr(ns, "sign_key", None), allow_accepted=getattr(ns, "sign_accepted", False))
    return code
