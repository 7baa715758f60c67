"""Hostile configuration values (issue 19, item 9): integers beyond what any run or library takes,
YAML alias bombs and repeated keys are refused where they are parsed, in one short line, before a
folder exists; whichever source they come from (flags, --set, --from_config, a sweep spec, a
reproduced source config)."""

from __future__ import annotations

import dataclasses
import json
import time
import typing

import pytest

from gainakt.config import LIMITS, SECTION_TYPES, SEED_MAX, SeedsConfig, check_value
from harness.cli.main import main
from harness.config.schema import ExperimentParams, RuntimeParams

HUGE = "9" * 5000  # longer than Python converts to an int (4300 digits)
BASE = ["--devices", "cpu", "--epochs", "1", "--model_preset", "small", "--synthetic_students", "40"]


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


def one_line(capsys, limit: int = 300) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert len(err[0]) < limit, f"{len(err[0])} characters: {err[0][:200]}"
    return err[0]


# ---------------------------------------------------------------------------------------------
# Flags: exit 2 at parse time


@pytest.mark.parametrize("flag, value, message", [
    ("--seed", "99999999999999999999999", "must fit in 64 bits"),
    ("--seed", str(SEED_MAX + 1), "at most 4,294,967,295"),
    ("--seeds", str(2**40), "at most 4,294,967,295"),
    ("--d_model", "4611686018427387904", "must be at most 65,536"),
    ("--synthetic_students", "99999999999999999999", "must fit in 64 bits"),
    ("--synthetic_students", "1000001", "must be at most 1,000,000"),
    ("--synthetic_seed", str(2**32), "must be between 0 and 4,294,967,295"),
    ("--synthetic_seed", "-1", "must be between 0 and 4,294,967,295"),
    ("--epochs", "100001", "must be at most 100,000"),
    ("--epochs", HUGE, "an integer of 5,000 digits"),
    ("--batch_size", str(2**62), "must be at most 1,000,000"),
    ("--n_heads", "1025", "must be at most 1,024"),
    ("--threads", str(2**40), "must be at most 4,096"),
    ("--container_pids", str(2**70), "must fit in 64 bits"),
    ("--lr", "1e999", "must be a finite number"),
])
def test_a_flag_beyond_its_limit_exits_2_in_one_line_and_creates_nothing(tmp_path, capsys, flag, value, message):
    out = tmp_path / "out"
    assert exit_code(["run", "t", *BASE, "--output_base", str(out), flag, value]) == 2
    line = one_line(capsys)
    assert message in line and flag.split("_")[0] in line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# --set and files: exit 1 when the config is built (README), still before any folder


@pytest.mark.parametrize("assignment, message", [
    ("training.epochs=1e23", "expects an integer"),
    ("training.epochs=100000000000000000000000", "must fit in 64 bits"),
    ("training.epochs=1000000", "must be at most 100,000"),
    (f"training.epochs={HUGE}", "too large"),
    ("model.d_model=4611686018427387904", "must be at most 65,536"),
    ("data.synthetic_students=99999999999999999999", "must fit in 64 bits"),
    ("seeds.all=1,99999999999999999999", "at most 4,294,967,295"),
    ("data.synthetic_seed=-1", "must be between 0 and 4,294,967,295"),
])
def test_a_set_value_beyond_its_limit_exits_1_in_one_line_and_creates_nothing(tmp_path, capsys, assignment,
                                                                              message):
    out = tmp_path / "out"
    assert exit_code(["run", "t", *BASE, "--output_base", str(out), "--set", assignment]) == 1
    line = one_line(capsys)
    assert message in line and f"--set {assignment.split('=')[0]}" in line
    assert not out.exists()


@pytest.mark.parametrize("suffix, text, message", [
    (".json", '{"model": {"d_model": 4611686018427387904}}', "must be at most 65,536"),
    (".json", '{"training": {"epochs": 1e23}}', "expects an integer"),
    (".json", f'{{"training": {{"epochs": {HUGE}}}}}', "a number too long"),
    (".json", '{"seeds": [1, 18446744073709551616]}', "at most 4,294,967,295"),
    (".yaml", "data:\n  synthetic_students: 99999999999999999999\n", "must fit in 64 bits"),
    (".yaml", f"training:\n  epochs: {HUGE}\n", "a number too long"),
    (".yaml", "seeds: [" + ", ".join(str(i) for i in range(1001)) + "]\n", "at most 1,000 seeds"),
])
def test_a_config_file_value_beyond_its_limit_exits_1_naming_the_file(tmp_path, capsys, suffix, text, message):
    cfg = tmp_path / f"c{suffix}"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert exit_code(["run", "t", *BASE, "--output_base", str(out), "--from_config", str(cfg)]) == 1
    line = one_line(capsys)
    assert message in line and str(cfg) in line
    assert not out.exists()


BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "seeds: *i\n"


def test_a_yaml_alias_bomb_is_refused_fast_in_a_short_line(tmp_path, capsys):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(BOMB)  # seeds: 10^9 items once expanded
    out = tmp_path / "out"
    started = time.monotonic()
    assert exit_code(["run", "t", *BASE, "--output_base", str(out), "--from_config", str(cfg)]) == 1
    assert time.monotonic() - started < 10
    line = one_line(capsys, limit=200)
    assert str(cfg) in line and "anchors and aliases are not accepted" in line and "line 1" in line
    assert not out.exists()


def test_a_plain_anchor_and_a_merge_key_are_refused_too(tmp_path, capsys):
    for name, text in (("anchor.yaml", "training: &t {epochs: 2}\n"),
                       ("merge.yaml", "x: &x {epochs: 2}\ntraining:\n  <<: *x\n")):
        cfg = tmp_path / name
        cfg.write_text(text)
        assert exit_code(["run", "t", *BASE, "--output_base", str(tmp_path / "out"), "--from_config", str(cfg)]) == 1
        assert "anchors and aliases are not accepted" in one_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, text, where", [
    ("dup.yaml", "training:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n", "line 4: duplicate key 'epochs'"),
    ("dup_top.yaml", "training: {epochs: 2}\ntraining: {epochs: 3}\n", "line 2: duplicate key 'training'"),
    ("dup.json", '{"training": {"epochs": 2, "epochs": 3}}', "duplicate key 'epochs'"),
])
def test_a_repeated_key_in_a_config_file_is_refused_naming_key_and_file(tmp_path, capsys, name, text, where):
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "out"
    assert exit_code(["run", "t", *BASE, "--output_base", str(out), "--from_config", str(cfg)]) == 1
    line = one_line(capsys)
    assert str(cfg) in line and where in line
    assert not out.exists()


def test_an_oversized_config_file_is_refused_without_reading_it_all(tmp_path, capsys):
    cfg = tmp_path / "big.json"
    cfg.write_text('{"purpose": "' + "x" * (2 << 20) + '"}')
    assert exit_code(["run", "t", *BASE, "--output_base", str(tmp_path / "out"), "--from_config", str(cfg)]) == 1
    assert "larger than 1024 KiB" in one_line(capsys)


# ---------------------------------------------------------------------------------------------
# Sweep specs


@pytest.mark.parametrize("text, message", [
    (BOMB.replace("seeds: *i\n", "points: {a: {}}\nseeds: *i\n"), "anchors and aliases are not accepted"),
    ("points: {a: {}}\nseeds: [1]\npoints: {b: {}}\n", "line 3: duplicate key 'points'"),
    ("points:\n  a: {flags: {epochs: 2, epochs: 3}}\nseeds: [1]\n", "line 2: duplicate key 'epochs'"),
    ("points:\n  a: {flags: {epochs: 1.0e+23}}\nseeds: [1]\n", "epochs must fit in 64 bits"),
    ("points:\n  a: {flags: {epochs: 1.0e+6}}\nseeds: [1]\n", "epochs must be at most 100,000"),
    ("points:\n  a: {flags: {d_model: 4611686018427387904}}\nseeds: [1]\n", "d_model must be at most 65,536"),
    ("points: {a: {}}\nseeds: [99999999999999999999999]\n", "seeds: seeds must be at most 4,294,967,295"),
    ("grid: {synthetic_students: [40, 99999999999999999999]}\nseeds: [1]\n", "must fit in 64 bits"),
])
def test_a_hostile_sweep_spec_is_one_short_line_and_creates_nothing(tmp_path, capsys, text, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert exit_code(["sweep", "t", "--spec", str(spec), "--output_base", str(out), *BASE]) == 1
    line = one_line(capsys)
    assert message in line, line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# A reproduced source config


def test_a_source_config_with_a_repeated_key_is_not_reproduced(tmp_path, capsys):
    src = tmp_path / "exps" / "20250101_000000_gainakt2exp_src"
    src.mkdir(parents=True)
    (src / "config.json").write_text('{"schema_version": 3, "schema_version": 2}')
    out = tmp_path / "out"
    assert exit_code(["reproduce", str(src), "--output_base", str(out), "--devices", "cpu"]) == 1
    line = one_line(capsys)
    assert "config.json" in line and "duplicate key 'schema_version'" in line
    assert not out.exists()


def test_a_source_config_beyond_a_limit_is_not_reproduced(tmp_path, capsys):
    from harness.config.build import build_config, config_md5, default_params

    cfg = build_config(default_params(), title="src", experiment_id="20250101_000000_gainakt2exp_src")
    cfg["model"]["d_model"] = 2**62
    cfg["config_md5"] = config_md5(cfg)
    src = tmp_path / "exps" / "20250101_000000_gainakt2exp_src"
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    assert exit_code(["reproduce", str(src), "--output_base", str(out), "--devices", "cpu"]) == 1
    line = one_line(capsys)
    assert "model.d_model" in line and "must be at most 65,536" in line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# The rules themselves


def test_every_integer_field_of_a_config_has_an_upper_limit():
    """A new integer field without a ceiling would let a value through that no run can take."""
    unbounded = []
    for cls in (*SECTION_TYPES.values(), ExperimentParams, RuntimeParams):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = {hints[f.name], *typing.get_args(hints[f.name])}
            if int in kinds and f.metadata.get("le") is None and f.metadata.get("lt") is None:
                unbounded.append(f"{cls.SECTION}.{f.name}")
    assert unbounded == []


def test_each_default_lies_within_its_limits():
    for cls in SECTION_TYPES.values():
        cls()  # constructing checks every field
    assert SeedsConfig(all=[0, SEED_MAX], primary=0).all == [0, SEED_MAX]
    assert LIMITS["seeds"] >= 5 and LIMITS["epochs"] >= 200


def test_an_integer_past_64_bits_is_refused_even_without_a_declared_limit():
    assert "must fit in 64 bits" in check_value(int, {}, 2**63)
    assert "must fit in 64 bits" in check_value(int, {}, -(2**63) - 1)
    assert check_value(int, {}, 2**63 - 1) is None


def test_a_huge_value_is_never_echoed_whole():
    problem = check_value(int, {"ge": 0}, "x" * 100_000)
    assert problem is not None and len(problem) < 200
    with pytest.raises(Exception) as exc:
        SeedsConfig(all=[1] * 900 + [1], primary=1)
    assert len(str(exc.value)) < 300
