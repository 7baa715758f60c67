"""Bad command-line values are usage errors: exit 2, one line on stderr, nothing created, in every
subcommand (the README's exit codes). Errors that depend on files or data keep exit 1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.cli.main import main

REPO = Path(__file__).resolve().parent.parent
MISSING = "no_such_experiment"
PRED = ["predict", MISSING, "--data", "synthetic", "--out", "{tmp}/out/p.csv"]
SIM = ["data", "simulate", "--out", "{tmp}/out/sim"]
SWEEP = ["sweep", "t", "--matrix", "guide", "--output_base", "{tmp}/out"]

# (command line, flag under test, bad value); {tmp} is the test's folder, which must stay empty.
CASES = [
    *[(["run", "t", "--output_base", "{tmp}/out"], flag, value) for flag, value in (
        ("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "x"), ("--lr", "nan"), ("--lr", "-1"), ("--fold", "7"),
        ("--jobs_per_device", "0"), ("--threads", "-1"), ("--batch_size", "0"), ("--seq_len", "2"),
        ("--seeds", "-1"), ("--seed", "x"), ("--auc_tolerance", "-1"), ("--corr_tolerance", "nan"),
        ("--container_pids", "0"), ("--container_memory", "banana"), ("--devices", "banana"),
        ("--set", "training.epochs"), ("--synthetic_forgetting", "1"))],
    (["run", "--output_base", "{tmp}/out"], "title", "a/b"),
    (["run", "t", "--output_base", "{tmp}/out", "--seeds", "1"], "--seed", "2"),
    (["run", "t", "--output_base", "{tmp}/out", "--devices", "cpu"], "0", ""),
    (["run", "t", "--output_base", "{tmp}/out", "--devices", "cpu"], "cpu", ""),
    (["run", "t", "--output_base", "{tmp}/out"], "--compare_only", ""),
    (["reproduce", MISSING, "--output_base", "{tmp}/out"], "--epochs", "0"),
    (["reproduce", MISSING, "--output_base", "{tmp}/out"], "--auc_tolerance", "-0.1"),
    *[(SWEEP, flag, value) for flag, value in (
        ("--jobs_per_device", "0"), ("--max_retries", "-1"), ("--max_retries", "x"), ("--threads", "0"),
        ("--runtime", "docker"), ("--ray_address", "auto"), ("--force", ""), ("--auc_tolerance", "0.1"))],
    (["sweep", "t", "--output_base", "{tmp}/out"], "--matrix", "nope"),
    (["sweep", "t", "--output_base", "{tmp}/out"], "--epochs", "3"),  # neither --spec nor --matrix
    (["sweep", "--output_base", "{tmp}/out"], "--matrix", "guide"),  # no title
    *[(PRED, flag, value) for flag, value in (
        ("--chunk_students", "0"), ("--chunk_students", "-1"), ("--chunk_students", "x"), ("--threads", "0"),
        ("--seed", "-5"), ("--device", "toaster"), ("--students", ","), ("--mastery_format", "long"))],
    (PRED[:-1] + ["{tmp}/out/p.parquet"], "--seed", "1"),
    (PRED[:-1] + ["{tmp}/out/p.txt"], "--seed", "1"),
    *[(SIM, flag, value) for flag, value in (
        ("--students", "0"), ("--students", "-3"), ("--students", "x"), ("--skills", "0"), ("--min_len", "1"),
        ("--max_len", "0"), ("--forgetting", "1"), ("--forgetting", "-0.1"), ("--forgetting", "nan"))],
    (["data", "describe", "synthetic"], "--max_len", "0"),
    (["data", "describe", "synthetic"], "--num_concepts", "0"),
    (["verify", MISSING], "--auc_tolerance", "-1"),
    (["verify", MISSING], "--corr_tolerance", "x"),
    (["compare", MISSING, MISSING], "--auc_tolerance", "-1"),
    (["compare", MISSING, MISSING], "--corr_tolerance", "inf"),
]


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


def command(template: list[str], flag: str, value: str, tmp: Path) -> list[str]:
    argv = [a.replace("{tmp}", str(tmp)) for a in template]
    return argv + [a for a in (flag, value) if a]


@pytest.mark.parametrize("template, flag, value", CASES,
                         ids=[f"{t[0]}{'-' + t[1] if t[0] == 'data' else ''} {f} {v}" for t, f, v in CASES])
def test_a_bad_flag_value_exits_2_with_one_line_and_creates_nothing(tmp_path, capsys, template, flag, value):
    argv = command(template, flag, value, tmp_path)
    assert exit_code(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["predict", MISSING, "--data", "synthetic", "--out", "{tmp}/p.csv"],  # no such experiment
    ["sweep", "t", "--spec", "{tmp}/missing.yaml", "--output_base", "{tmp}/out"],  # no such file
    ["data", "simulate", "--min_len", "9", "--max_len", "4", "--out", "{tmp}/sim"],  # two values that conflict
], ids=["predict missing experiment", "sweep missing spec", "simulate min_len > max_len"])
def test_errors_that_depend_on_files_or_data_stay_exit_1(tmp_path, capsys, argv):
    assert exit_code(command(argv, "", "", tmp_path)) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--experiment_title", "a/b"), ("--seeds", "-2")])
def test_the_guide_launcher_script_checks_its_flags_alike(tmp_path, capsys, flag, value):
    spec = importlib.util.spec_from_file_location("repro", REPO / "examples" / "train_gainakt2exp_repro.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.main([flag, value, "--output_base", str(tmp_path / "out")])
    assert exc.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
