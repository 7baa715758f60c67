"""Issue 11: every input validated once, every outcome told truthfully (items 2-5 and 8-11).

Data selection (--data_dir naming, DKVMN published split, lone files, --num_concepts), strict
ids, verdict exit codes, one-line errors for damaged folders and inputs, heads-off verification,
and what --help, the final table and environment.txt show.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import numpy as np
import pytest
from rich.console import Console

from gainakt.data import DataError, describe, load_dataset
from harness.cli.main import build_parser, main
from harness.run.datasets import DatasetError, load_from_params

QUICK = [*audit_runs.QUICK, "--epochs", "1", "--seeds", "21"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def folders(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


# ---------------------------------------------------------------------------------------------
# Small datasets written on the fly


def write_pykt(folder: Path, *, students: int = 60, concepts: int = 5, length: int = 12,
               bad_row: str | None = None) -> Path:
    """A pyKT folder: train_valid.csv (folds 0-4) and test.csv, ids 0..concepts-1."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(students):
        c = ",".join(map(str, rng.integers(0, concepts, length)))
        r = ",".join(map(str, rng.integers(0, 2, length)))
        rows.append(f"{i % 5},u{i},\"{c}\",\"{r}\"")
    if bad_row is not None:
        rows[3] = bad_row
    (folder / "train_valid.csv").write_text("fold,uid,concepts,responses\n" + "\n".join(rows) + "\n")
    test = [f"-1,t{i},\"{','.join(['1'] * length)}\",\"{','.join(['0', '1'] * (length // 2))}\"" for i in range(10)]
    (folder / "test.csv").write_text("fold,uid,concepts,responses\n" + "\n".join(test) + "\n")
    return folder


def three_line(students: list[tuple[list[int], list[int]]]) -> str:
    return "".join(f"{len(s)}\n{','.join(map(str, s))}\n{','.join(map(str, r))}\n" for s, r in students)


def write_dkvmn(folder: Path, *, published: bool) -> Path:
    """A DKVMN folder: x_train.csv + x_test.csv (+ x_train1.csv/x_valid1.csv, the published split).
    The largest skill id (9) is only in the test file."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [([1, 2, 3, 2], [1, 0, 1, 1])] * 8 + [([4, 5, 4], [0, 1, 1])] * 2
    (folder / "x_train.csv").write_text(three_line(train))
    (folder / "x_test.csv").write_text(three_line([([9, 1, 2], [1, 1, 0])] * 3))
    if published:
        (folder / "x_train1.csv").write_text(three_line(train[:7]))
        (folder / "x_valid1.csv").write_text(three_line(train[7:]))
    return folder


def data_params(**over) -> dict:
    data = {"dataset": "x", "data_format": "auto", "fold": 0, "num_concepts": None, "single_file_split": False}
    return {**data, **over}


# ---------------------------------------------------------------------------------------------
# Item 2: --data_dir without --dataset; --dataset must match the data


def test_data_dir_alone_trains_on_that_data_named_after_the_folder(tmp_path, capsys):
    data = write_pykt(tmp_path / "mydata_pykt")
    base = tmp_path / "out"
    assert main(["run", "real", *QUICK, "--data_dir", str(data), "--output_base", str(base)]) == 0
    (folder,) = folders(base)
    cfg = json.loads((base / folder / "config.json").read_text())
    assert cfg["data"]["dataset"] == "mydata_pykt"
    read = cfg["data_checksum"]
    assert read["format"] == "pykt" and read["files"] == ["test.csv", "train_valid.csv"]
    assert read["split"] == "pykt_files" and read["num_concepts"] == 5 and read["students"] == 70
    assert "largest concept id + 1" in read["num_concepts_source"]
    out = capsys.readouterr().out
    assert "data: mydata_pykt (pykt; test.csv, train_valid.csv); 70 students, 5 concepts" in out


@pytest.mark.parametrize("name, refused", [
    ("statics", True), ("synthetic", True), ("mydata", False), ("MYDATA_PYKT", False), ("mydat", True),
])
def test_dataset_name_must_match_the_data(tmp_path, capsys, name, refused):
    data = write_pykt(tmp_path / "mydata_pykt")
    base = tmp_path / "out"
    argv = ["run", "named", *QUICK, "--dataset", name, "--data_dir", str(data), "--output_base", str(base),
            "--devices", "97"]  # an accepted name fails later, at GPU 97 (none has it), before any folder
    assert main(argv) == 1
    err = one_line_error(capsys)
    assert (("does not match" in err or "built-in simulator" in err) if refused else "--devices" in err), err
    assert folders(base) == []


def test_name_matching_rule():
    from harness.run.datasets import name_matches

    assert name_matches("assist2015", "assist2015_pykt") and name_matches("assist2015", "assist2015")
    assert not name_matches("assist2015", "STATICS") and not name_matches("assist", "assist2015")


# ---------------------------------------------------------------------------------------------
# Item 3: DKVMN published split, lone files, --num_concepts


def test_dkvmn_folder_uses_the_published_train1_valid1_split(tmp_path):
    ds = load_dataset(write_dkvmn(tmp_path / "x", published=True))
    assert ds.split == "dkvmn_published" and ds.valid_folds == (0,)
    assert ds.source_files == ("x_test.csv", "x_train1.csv", "x_valid1.csv")
    assert np.bincount(ds.folds + 1).tolist() == [3, 3, 7]  # test, valid1 (fold 0), train1 (fold 1)
    assert ds.num_c == 9  # largest skill id over every file read, the test file's included
    info = describe(ds)
    assert info["split"] == "dkvmn_published" and "published" in info["split_rule"]
    with pytest.raises(DatasetError, match="usable validation fold"):
        load_from_params(data_params(fold=2), str(tmp_path / "x"))


def test_dkvmn_folder_without_published_split_makes_folds(tmp_path):
    ds = load_dataset(write_dkvmn(tmp_path / "x", published=False))
    assert ds.split == "dkvmn_kfold" and ds.valid_folds is None
    assert sorted(set(ds.folds.tolist())) == [-1, 0, 1, 2, 3, 4]


def test_a_lone_three_line_file_is_refused_for_run_unless_split_is_asked(tmp_path, capsys):
    folder = write_dkvmn(tmp_path / "x", published=True)
    lone = str(folder / "x_train.csv")
    base = tmp_path / "out"
    assert main(["run", "lone", *QUICK, "--data_dir", lone, "--output_base", str(base)]) == 1
    assert "single three-line file" in one_line_error(capsys) and folders(base) == []
    ds = load_from_params(data_params(single_file_split=True), lone)
    assert ds.split == "pykt_split_of_file" and (ds.folds == -1).sum() == 2
    assert main(["data", "describe", lone, "--json"]) == 0  # describe says what it did
    assert "pyKT's split of one file" in json.loads(capsys.readouterr().out)["split_rule"]


def test_num_concepts_can_be_given_and_is_checked(tmp_path, capsys):
    folder = str(write_dkvmn(tmp_path / "x", published=True))
    ds = load_from_params(data_params(num_concepts=20), folder)
    assert ds.num_c == 20 and ds.num_c_source == "given (num_concepts)"
    with pytest.raises(DatasetError, match="num_concepts 5 is too small.*concept id 8"):
        load_from_params(data_params(num_concepts=5), folder)
    ns = build_parser().parse_args(["run", "t", "--num_concepts", "20"])
    assert ns.num_concepts == 20


# ---------------------------------------------------------------------------------------------
# Item 4: ids parsed strictly, bounded; folds 0-4


@pytest.mark.parametrize("row, message", [
    ('0,u,"1_000,2","1,0"', "'1_000' is not an integer"),
    ('0,u,"99999999999999999999,2","1,0"', "is out of range"),
    ('0,u,"2000000,2","1,0"', "concept id 2000000 is above 1,000,000"),
    ('0,u,"50000,2","1,0"', "concept id 50000 is at least 100 times"),
    ('0,u,"1.0,2","1,0"', "'1.0' is not an integer"),
    ('9,u,"1,2","1,0"', "fold 9 in a train/valid file (expected 0-4)"),
])
def test_pykt_ids_and_folds_are_parsed_strictly(tmp_path, row, message):
    folder = write_pykt(tmp_path / "d", bad_row=row)
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    text = str(info.value)
    assert message in text and "train_valid.csv, line 5" in text and "\n" not in text


def test_three_line_ids_are_parsed_strictly(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("2\n1_000,2\n1,0\n")
    with pytest.raises(DataError, match=r"t.csv, line 2: column skill ids: '1_000' is not an integer"):
        load_dataset(path, fmt="dkvmn")


# ---------------------------------------------------------------------------------------------
# Item 5: verdict exit codes; reproduce refuses different data


# `base_run`: the session fixture of tests/conftest.py (one finished tiny run shared by the suite).


def test_compare_exits_non_zero_on_a_fail_verdict_within_tolerance(base_run, tmp_path, capsys):
    edited = audit_runs.copy_experiment(base_run, tmp_path, "edited")
    cfg = json.loads((edited / "config.json").read_text())
    cfg["training"]["patience"] += 1  # a result parameter edited after the run; metrics identical
    (edited / "config.json").write_text(json.dumps(cfg))
    # The target no longer matches its manifest: compare writes its report only when told (recorded).
    code = main(["compare", str(base_run), str(edited), "--json", "--accept_modified"])
    report = json.loads(capsys.readouterr().out)
    assert report["within_tolerance"] is True and report["verdict"] == "fail"
    assert code == 1


def test_reproduce_refuses_different_data_unless_allowed(base_run, tmp_path, capsys):
    base = tmp_path / "out"
    argv = ["reproduce", str(base_run), "--synthetic_seed", "7", "--output_base", str(base)]
    assert main(argv) == 1
    assert "differs from the source's" in one_line_error(capsys) and folders(base) == []
    assert main([*argv, "--allow_different_data"]) == 1  # runs; the verdict fails (other data)
    (folder,) = folders(base)
    rep = json.loads((base / folder / "config.json").read_text())["reproduction"]
    assert rep["allow_different_data"] is True and rep["data_sha256"] != rep["source_data_sha256"]


# ---------------------------------------------------------------------------------------------
# Item 8: one line instead of tracebacks


def _damage(folder: Path, kind: str) -> None:
    path = folder / "config.json"
    if kind == "non-utf8":
        path.write_bytes(b"\xff\xfe{}")
    elif kind == "list":
        path.write_text("[1, 2]")
    elif kind == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "edited":
        path.write_text(json.dumps({"schema_version": 3}))


@pytest.mark.parametrize("kind", ["non-utf8", "list", "nested", "edited"])
@pytest.mark.parametrize("command", ["verify", "compare", "reproduce", "resume"])
def test_damaged_config_json_is_one_line(base_run, tmp_path, capsys, kind, command):
    if command in ("verify", "compare") and kind == "edited":
        pytest.skip("a readable config.json: verify/compare report it check by check")
    damaged = audit_runs.copy_experiment(base_run, tmp_path, "damaged")
    _damage(damaged, kind)
    argv = {"verify": ["verify", str(damaged)], "compare": ["compare", str(base_run), str(damaged)],
            "reproduce": ["reproduce", str(damaged)], "resume": ["resume", str(damaged)]}[command]
    code = main([*argv, "--output_base", str(tmp_path / "out")])
    assert code != 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if command != "verify":  # verify reports the file as a failed check instead
        assert captured.err.startswith("harness: error:") and len(captured.err.strip().splitlines()) == 1
    assert folders(tmp_path / "out") == []


def test_deeply_nested_from_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["run", "t", "--from_config", str(path), "--output_base", str(tmp_path / "out")]) == 1
    assert "nested too deeply" in one_line_error(capsys)


@pytest.mark.parametrize("base", ["file", "/sys/harness_inputs_test"])
def test_unusable_output_base_is_one_line(tmp_path, capsys, base):
    if base == "file":
        (tmp_path / "f").write_text("")
        base = str(tmp_path / "f" / "sub")
    elif not Path("/sys").is_dir():
        pytest.skip("no /sys")
    assert main(["run", "t", *QUICK, "--output_base", base]) == 1
    assert "--output_base" in one_line_error(capsys)


def test_compare_against_a_binary_manifest_refuses_before_writing(base_run, tmp_path, capsys):
    target = audit_runs.copy_experiment(base_run, tmp_path, "binary")
    (target / "MANIFEST.sha256").write_bytes(b"\x00\xff\xfe\x80" * 10)
    assert main(["compare", str(base_run), str(target)]) == 1
    assert "not a sha256sum manifest" in one_line_error(capsys)
    assert not (target / "reproduction_report.json").exists()


# ---------------------------------------------------------------------------------------------
# Item 9: heads-off runs pass their own verification


@pytest.mark.parametrize("flag", ["--no-use_gain_head", "--no-use_mastery_head"])
def test_heads_off_run_passes_its_own_verification(tmp_path, capsys, flag):
    base = tmp_path / "out"
    assert main(["run", "heads", *QUICK, flag, "--output_base", str(base)]) == 0
    (folder,) = folders(base)
    assert not (base / folder / "artifacts" / "mastery_trajectories.png").exists()
    capsys.readouterr()
    assert main(["verify", str(base / folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    check = next(c for c in report["checks"] if c["name"] == "artifact artifacts/mastery_trajectories.png")
    assert check["passed"] and "head is off" in check["reason"]


# ---------------------------------------------------------------------------------------------
# Item 11: what --help, the final table and environment.txt show


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_help_shows_off_switches_and_each_default_once(capsys):
    text = _help(capsys, "run")
    assert "--no_amp, --no-amp" in text and "--no_torch_deterministic" in text
    assert "(default: None)" not in text
    flat = " ".join(text.split())
    assert not re.search(r"\(default: [^)]*\)[^-]*\(default:", flat)


def test_reproduce_help_lists_only_meaningful_flags(capsys):
    text = _help(capsys, "reproduce")
    for flag in ("--from_config", "--compare_only", "--source_exp", "--target_exp", "--reproduce_from", "--resume "):
        assert flag not in text, flag
    assert "--allow_different_data" in text and "--data_dir" in text


@pytest.mark.parametrize("argv", [["compare"], ["data", "describe"], ["verify"]])
def test_every_option_has_help(argv):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[argv[0]]
    if len(argv) > 1:
        sub = sub._subparsers._group_actions[0].choices[argv[1]]
    for action in sub._actions:
        assert action.help, action.option_strings or action.dest


def test_final_table_keeps_headers_at_80_columns():
    from harness.folder.summary import print_summary

    results = {"status": "completed", "seeds": [21], "per_seed": {"21": {
        "status": "early_stopped", "best_epoch": 3, "best_val_auc": 0.7, "test_auc": 0.71,
        "test_window_auc": 0.72, "mastery_correlation": 0.1, "gain_correlation": 0.2}}}
    out = io.StringIO()
    print_summary(results, "20260101_000000_gainakt2exp_x", Console(file=out, width=80))
    text = out.getvalue()
    for header in ("mastery_correlation", "gain_correlation", "test_window_auc", "early_stopped"):
        assert header in text, header
    assert "…" not in text


def test_single_seed_summaries_say_n_1_not_std_zero(base_run):
    text = (base_run / "SEED_INFO.md").read_text() + (base_run / "README.md").read_text()
    assert "n/a (n=1)" in text
    assert not re.search(r"\| 0\.000000 \| [-0-9.]+ \| [-0-9.]+ \| 1 \|", text)  # no "Std 0.000000" for n=1


def test_environment_records_libraries_and_cpu(base_run):
    from harness.run.environment import parse

    env = parse((base_run / "environment.txt").read_text())
    for key in ("numpy_version", "scikit_learn_version", "pandas_version", "matplotlib_version", "scipy_version",
                "cpu", "cpu_arch", "cpu_count", "cpu_usable"):
        assert env.get(key) and env[key] != "not installed", key


# ---------------------------------------------------------------------------------------------
# Item 10: Compose records the image and stores the verdict; the GPU workflow fails on a failed verify


ROOT = Path(__file__).resolve().parent.parent


def test_compose_reproduce_records_image_and_stores_the_verdict():
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    env = services["reproduce-run"]["environment"]
    assert env["HARNESS_IMAGE_RECORD_FILE"] == "/experiments/image_record.json"
    assert "unknown" not in str(env.get("HARNESS_IMAGE_ID"))
    verifier = services["reproduce"]
    assert "--write_report" in " ".join(verifier["command"])
    writable = [v for v in verifier["volumes"] if not v.get("read_only")]
    assert [v["target"] for v in writable] == ["/experiments/${REPRO_EXP:-${SOURCE_EXP:-none}_reproduce}"]


def test_image_identity_comes_from_the_build_record(tmp_path, monkeypatch):
    from harness.run.environment import capture, parse, render

    record = tmp_path / "image_record.json"
    record.write_text(json.dumps({"image_id": "sha256:" + "a" * 64, "tag": "gainakt-harness:latest"}))
    monkeypatch.delenv("HARNESS_IMAGE_ID", raising=False)
    monkeypatch.delenv("HARNESS_IMAGE_RECORD", raising=False)
    monkeypatch.setenv("HARNESS_IMAGE_RECORD_FILE", str(record))
    env = parse(render(capture(runtime="docker", dataset={})))
    assert env["image_id"] == "sha256:" + "a" * 64
    assert json.loads(env["image_record"])["tag"] == "gainakt-harness:latest"


def test_verify_write_report_stores_the_verdict_in_the_manifest(base_run, tmp_path):
    folder = audit_runs.copy_experiment(base_run, tmp_path, "verified")
    assert main(["verify", str(folder), "--write_report"]) == 0
    assert json.loads((folder / "verification_report.json").read_text())["passed"] is True
    assert "verification_report.json" in (folder / "MANIFEST.sha256").read_text()
    assert main(["verify", str(folder)]) == 0  # the folder still verifies


def test_gpu_audit_uses_pipefail_and_one_device_id_per_gpu(tmp_path):
    import subprocess

    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "gpu-audit.yml").read_text())
    steps = {s["name"]: s.get("run", "") for s in next(iter(wf["jobs"].values()))["steps"]}
    tee = next(run for run in steps.values() if "| tee" in run)
    assert tee.lstrip().startswith("set -o pipefail")
    compose = next(run for name, run in steps.items() if name.startswith("Reproduce with Docker Compose"))
    snippet = compose[compose.index("ids=$("):compose.index("# `compose run`")]
    out = subprocess.run(["bash", "-c", snippet], env={"DEVICES": "0 1", "RUNNER_TEMP": str(tmp_path),
                                                        "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node, deep=True))
    override = yaml.load((tmp_path / "compose.gpus.yaml").read_text(), Loader=Loader)  # noqa: S506
    (device,) = override["services"]["reproduce-run"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["device_ids"] == ["0", "1"]
    assert "compose.gpus.yaml" in compose and shutil.which("bash")
