"""The harness reads config.json through the typed config (issue 9): the readers give the same
files from a dict or a RunConfig, and a folder whose config.json does not parse is one line
naming the key, for predict and resume alike, never an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import build_parser, main
from harness.config.build import config_md5, ordered
from harness.config.schema import RunConfig
from harness.folder import artifacts
from harness.run.launcher import resolve_run


@pytest.fixture()
def config() -> dict:
    ns = build_parser().parse_args(["run", "typed", "--model_preset", "small", "--epochs", "3", "--seeds", "7", "8"])
    cfg = resolve_run(ns, "typed").config
    cfg["experiment"]["id"] = "20260101_000000_gainakt2exp_typed"
    cfg["data_checksum"] = {"sha256": "ab" * 32, "num_concepts": 20}
    cfg["runtime"].update({"devices": ["cpu"], "threads": 2, "runtime": "local", "command": "harness run typed"})
    cfg["missing_params"] = []
    cfg["config_md5"] = config_md5(cfg)
    return cfg


def test_readers_write_the_same_from_a_dict_or_the_typed_config(config):
    run = RunConfig.from_dict(config)
    outcomes = {7: {"status": "failed", "reason": "boom"}}
    results = artifacts.build_results(config, outcomes)
    assert artifacts.build_results(run, outcomes) == results
    assert results["seeds"] == [7, 8] and results["config_md5"] == config["config_md5"]
    assert artifacts.readme_md(run, results, [], "cmd") == artifacts.readme_md(config, results, [], "cmd")
    assert "- Dataset: synthetic (sha256 `" + "ab" * 32 + "`)" in artifacts.readme_md(run, results, [], "cmd")
    assert artifacts.seed_info_md(run, results, {}, {}) == artifacts.seed_info_md(config, results, {}, {})
    assert artifacts.launch_warnings(run) == artifacts.launch_warnings(config)


def _broken_folder(tmp_path: Path, config: dict) -> Path:
    """A schema-3 folder whose config.json lacks data.seq_len (its config_md5 recomputes)."""
    del config["data"]["seq_len"]
    config["config_md5"] = config_md5(config)
    folder = tmp_path / config["experiment"]["id"]
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(ordered(config), indent=2))
    return folder


def test_predict_names_the_key_of_a_config_that_does_not_parse(tmp_path, config, capsys):
    folder = _broken_folder(tmp_path, config)
    data = tmp_path / "data.csv"
    data.write_text("student_id,concept_id,correct\ns1,1,1\n")
    code = main(["predict", str(folder), "--data", str(data), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("harness: error: ") and "data.seq_len" in err and "internal error" not in err
    assert "\n" not in err


def test_resume_names_the_key_of_a_config_that_does_not_parse(tmp_path, config, capsys):
    folder = _broken_folder(tmp_path, config)
    code = main(["resume", str(folder)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("harness: error: ") and "data.seq_len" in err and "internal error" not in err
    assert not (folder / "stdout.log").exists()  # refused before anything was written
