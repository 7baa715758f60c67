"""Typed config: round trip and config_md5 against a pre-refactor folder, one validation path for
every source (flags, --set, config files), AMP recorded as run, bugs keep their traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gainakt.config import added_later
from harness.cli.main import main
from harness.config.build import amp_ran, config_md5, config_md5_as_run
from harness.config.launch import LaunchOptions
from harness.config.schema import RunConfig
from harness.run.launcher import prepare_run, resolve_run

FIXTURE = Path(__file__).parent / "fixtures" / "pre_refactor"
PRE_COMMAND = {"epochs": 1, "model_preset": "small"}


def pre_config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


def test_round_trip_of_a_pre_refactor_config_keeps_every_key_and_its_md5():
    cfg = pre_config()
    again = RunConfig.from_dict(cfg).to_dict()
    assert again == cfg
    assert config_md5(again) == cfg["config_md5"] == (FIXTURE / "config_md5.txt").read_text().strip()


def test_the_same_command_builds_the_same_hashed_config():
    """The pre-refactor command hashes as before once the parameters added later (the speed paths that
    became defaults in issue 14) hold the value that reproduces the earlier behaviour."""
    earlier = {name: before for leaves in added_later().values() for name, before in leaves.items()}
    cfg = resolve_run(LaunchOptions(explicit={**PRE_COMMAND, **earlier}, seeds=[21]), "pre").config
    cfg["data_checksum"] = pre_config()["data_checksum"]
    assert config_md5(cfg) == pre_config()["config_md5"]


BAD_FILES = [
    ({"training": {"optimizer": "SGD"}}, "training.optimizer", "is not one of"),
    ({"determinism": {"torch_deterministic": "false"}}, "determinism.torch_deterministic", "true or false"),
    ({"training": {"mixed_precision": "no"}}, "training.mixed_precision", "true or false"),
    ({"training": {"lr_scheduler": "cosine"}}, "training.lr_scheduler", "is not one of"),
    ({"training": {"amp_dtype": "fp8"}}, "training.amp_dtype", "is not one of"),
    ({"training": {"epochs": True}}, "training.epochs", "an integer"),
    ({"training": {"epochs": "1"}}, "training.epochs", "an integer"),
    ({"training": {"epochs": 1.5}}, "training.epochs", "an integer"),
    ({"training": {"learning_rate": "0.001"}}, "training.learning_rate", "a number"),
    ({"seeds": "1,2"}, "seeds", "list of integers"),
    ({"model": {"d_model": 130, "n_heads": 4}}, "model.n_heads", "must divide"),
    ({"data": {"fold": 9}}, "data.fold", "between 0 and 4"),
]


@pytest.mark.parametrize("doc, key, reason", BAD_FILES)
def test_bad_config_files_are_one_line_naming_file_and_key_and_leave_no_folder(tmp_path, capsys, doc, key, reason):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    code = main(["run", "t", "--from_config", str(path), "--output_base", str(out), "--devices", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert str(path) in err and key in err and reason in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message, expected",
    [  # a bad value of one flag is a usage error (2, at parse time); rules between values exit 1
        (["--learning_rate", "nan"], "--learning_rate/--lr: must be a finite number", 2),
        (["--learning_rate", "inf"], "--learning_rate/--lr: must be a finite number", 2),
        (["--n_heads", "0"], "must be a positive integer", 2),
        (["--d_model", "130", "--n_heads", "4"], "must divide model.d_model", 1),
        (["--seeds", "-1"], "--seeds: must be 0 or more", 2),
        (["--seed", "5", "--seeds", "7"], "argument --seeds: not allowed with argument --seed", 2),
        (["--set", "training.learning_rate=-1"], "--set training.learning_rate: must be positive", 1),
    ],
)
def test_bad_flags_fail_before_any_folder(tmp_path, capsys, argv, message, expected):
    out = tmp_path / "out"
    try:
        code = main(["run", "t", "--output_base", str(out), "--devices", "cpu", *argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == expected and len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_none_is_settable_where_it_is_a_documented_choice():
    r = resolve_run(LaunchOptions(sets=("experiment.ablation_mode=none", "training.lr_scheduler=none")), "t")
    assert r.config["experiment"]["ablation_mode"] == "none"
    assert r.config["interpretability"]["enable_alignment_loss"] is False
    assert r.config["training"]["lr_scheduler"] == "none"


@pytest.mark.parametrize("title, message", [("abc\n", "may contain only"), ("x" * 300, "the limit is")])
def test_bad_titles_are_one_line(tmp_path, capsys, title, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:  # a usage error (argparse): exit 2
        main(["run", title, "--output_base", str(out), "--devices", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_amp_is_recorded_as_run_so_cpu_runs_hash_alike(tmp_path):
    md5s = []
    for amp in (True, False):
        opts = LaunchOptions(explicit={**PRE_COMMAND, "devices": ["cpu"], "mixed_precision": amp},
                             output_base=str(tmp_path), experiment_dir=f"amp_{amp}")
        exp = prepare_run(resolve_run(opts, "pre"), opts)
        cfg = json.loads((exp / "config.json").read_text())
        assert cfg["training"]["mixed_precision"] is False
        assert cfg["runtime"]["mixed_precision_requested"] is amp
        md5s.append(cfg["config_md5"])
    assert md5s[0] == md5s[1]


def test_an_older_cpu_folder_counts_as_fp32_and_compares_with_a_new_one():
    old = pre_config()
    assert old["training"]["mixed_precision"] is True and amp_ran(old) is False
    new = json.loads(json.dumps(old))
    new["training"]["mixed_precision"] = False
    assert config_md5(new) != config_md5(old)
    assert config_md5_as_run(new) == config_md5_as_run(old)


def test_a_bug_is_one_line_with_a_hint_and_its_traceback_with_debug(monkeypatch, capsys):
    import sys

    cli = sys.modules["harness.cli.main"]

    def boom(ns):
        raise KeyError("x")

    monkeypatch.setattr(cli, "dispatch", boom)
    assert main(["verify", "nothing"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(KeyError):
        main(["--debug", "verify", "nothing"])


def test_sections_other_parts_add_are_kept_and_bad_values_in_a_folder_config_are_named():
    cfg = pre_config()
    cfg["data_selection"] = {"split": "published"}  # a record this code does not type
    assert RunConfig.from_dict(cfg).to_dict() == cfg
    cfg["training"]["epochs"] = "1"
    with pytest.raises(ValueError, match=r"training\.epochs: expects an integer"):
        RunConfig.from_dict(cfg)


def test_unset_logs_the_value_used_even_when_a_set_follows():
    r = resolve_run(LaunchOptions(explicit={"epochs": 5, "model_preset": "small", "d_model": 64},
                                  unsets=("training.epochs", "model.d_model"), sets=("training.epochs=2",)), "t")
    assert r.overrides == ["training.epochs:5->40 (default, unset)", "model.d_model:64->128 (default, unset)",
                           "training.epochs:40->2"]
