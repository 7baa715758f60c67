"""Config resolution, overrides, hashing and missing-params (no training)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from harness.cli.main import build_parser
from harness.config.build import (
    ConfigError,
    coerce,
    config_md5,
    missing_params,
    normalized_config_hash,
)
from harness.run.launcher import resolve_run


def resolve(*argv: str, title: str = "t"):
    ns = build_parser().parse_args(["run", title, *argv])
    return resolve_run(ns, title)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("true", True), ("FALSE", False), ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-4", 1e-4),
        ("2E3", 2000.0), ("1.5e-05", 1.5e-05), ("21,42,63", [21, 42, 63]), ("0.1,true,x", [0.1, True, "x"]),
        ("plateau", "plateau"), ("null", None),
    ],
)
def test_set_coercion_follows_the_guide_plus_scientific_notation(text, expected):
    assert coerce(text) == expected


def test_defaults_are_the_guides():
    t = resolve().config["training"]
    assert (t["epochs"], t["batch_size"], t["learning_rate"], t["weight_decay"]) == (40, 64, 0.00016, 1.7571e-05)
    assert (t["optimizer"], t["gradient_clip"], t["mixed_precision"], t["patience"]) == ("Adam", 1.0, True, 10)
    cfg = resolve().config
    assert cfg["interpretability"]["alignment_weight"] == 0.30
    assert cfg["interpretability"]["retention_weight"] == 0.12
    assert cfg["interpretability"]["lag_gain_weight"] == 0.05
    assert cfg["interpretability"]["warmup_constraint_epochs"] == 8
    assert cfg["alignment"]["alignment_global_students"] == 600
    assert cfg["sampling"]["max_semantic_students"] == 50
    assert cfg["alignment"]["alignment_share_cap"] == 0.10
    assert cfg["alignment"]["alignment_share_decay_factor"] == 0.75
    assert cfg["model"] == {"model_preset": "paper", "d_model": 512, "n_heads": 8, "num_encoder_blocks": 6,
                            "d_ff": 1024, "dropout": 0.2, "gain_scale": 0.1, "enable_head_normalization": False,
                            "mastery_accumulation": "clamp"}
    assert cfg["schema_version"] == 3


def test_set_changes_any_leaf_and_logs_old_and_new():
    r = resolve("--set", "training.epochs=3", "--set", "alignment.adaptive_alignment=false",
                "--set", "scheduling.consistency_rebalance_epoch=4", "--set", "training.learning_rate=2e-4")
    cfg = r.config
    assert cfg["training"]["epochs"] == 3
    assert cfg["alignment"]["adaptive_alignment"] is False
    assert cfg["scheduling"]["consistency_rebalance_epoch"] == 4
    assert cfg["training"]["learning_rate"] == 2e-4
    assert r.overrides == [
        "training.epochs:40->3", "alignment.adaptive_alignment:true->false",
        "scheduling.consistency_rebalance_epoch:8->4", "training.learning_rate:0.00016->0.0002",
    ]


def test_set_model_preset_rederives_dimensions_but_keeps_explicit_ones():
    cfg = resolve("--d_model", "64", "--set", "model.model_preset=small").config
    assert cfg["model"]["d_model"] == 64
    assert cfg["model"]["num_encoder_blocks"] == 2


def test_set_integer_into_float_leaf_is_promoted():
    assert resolve("--set", "training.gradient_clip=2").config["training"]["gradient_clip"] == 2.0


@pytest.mark.parametrize("item, message", [("training.epochs", "malformed --set"), ("epochs=3", "dotted path")])
def test_malformed_set_is_a_usage_error(item, message, capsys):
    with pytest.raises(SystemExit) as exc:  # the flag's text alone is wrong: argparse, exit 2
        resolve("--set", item)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "item, message",
    [
        ("training.epoch=3", "did you mean training.epochs"),
        ("training.epochs=abc", "expects an integer"),
        ("training.mixed_precision=1", "expects true or false"),
        ("training.epochs=-1", "positive integer"),
        ("training.optimizer=SGD", "is not one of"),
        ("seeds.all=a,b", "list of integers"),
    ],
)
def test_bad_set_is_one_clear_error(item, message):
    with pytest.raises(ConfigError, match=message):
        resolve("--set", item)


def test_unset_returns_a_leaf_to_the_default():
    r = resolve("--epochs", "5", "--unset", "training.epochs")
    assert r.config["training"]["epochs"] == 40
    assert r.overrides == ["training.epochs:5->40 (default, unset)"]  # the value used (issue 11 item 7)
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve("--unset", "training.nope")


def test_seeds_set_and_dedupe():
    r = resolve("--seeds", "21", "42", "21", "63")
    assert r.config["seeds"] == {"all": [21, 42, 63], "primary": 21}
    assert r.notes and "duplicate seeds removed" in r.notes[0]
    assert resolve("--set", "seeds.all=7,8").config["seeds"] == {"all": [7, 8], "primary": 7}


def test_ablation_modes_and_flags_override_both_ways():
    cfg = resolve("--ablation_mode", "none", "--enable_lag_gain_loss").config
    assert cfg["interpretability"]["enable_alignment_loss"] is False
    assert cfg["interpretability"]["enable_lag_gain_loss"] is True
    cfg = resolve("--ablation_mode", "both_lag", "--no_enable_retention_loss").config
    assert cfg["interpretability"]["enable_retention_loss"] is False
    assert cfg["interpretability"]["enable_alignment_loss"] is True
    assert cfg["alignment"]["enable_global_alignment_pass"] is True


def test_boolean_flags_turn_on_and_off():
    assert resolve("--no_amp").config["training"]["mixed_precision"] is False
    assert resolve("--no_amp", "--amp").config["training"]["mixed_precision"] is True
    assert resolve("--no-use_gain_head").config["heads"]["use_gain_head"] is False
    assert resolve("--no_adaptive_alignment").config["alignment"]["adaptive_alignment"] is False


def test_md5_ignores_title_and_devices_but_not_parameters():
    base = resolve("--seeds", "21", title="a").config
    other_title = resolve("--seeds", "21", "--devices", "cpu", "--threads", "1", title="b").config
    assert config_md5(base) == config_md5(other_title)
    base["experiment"]["id"] = "20250101_000000_gainakt2exp_a"
    base["runtime"]["timestamp"] = "2025-01-01T00:00:00Z"
    assert config_md5(base) == config_md5(other_title)
    assert config_md5(resolve("--seeds", "21", "--lr", "0.001").config) != config_md5(other_title)
    assert config_md5(resolve("--seeds", "22").config) != config_md5(other_title)


def test_missing_params_is_a_real_comparison():
    r = resolve()
    assert missing_params(r.params, r.config) == []
    del r.config["training"]["patience"]
    r.config["alignment"]["alignment_share_cap"] = 0.5
    assert missing_params(r.params, r.config) == ["alignment_share_cap", "patience"]


def test_from_config_json_and_yaml_equal_the_same_flags(tmp_path):
    flags = resolve("--epochs", "3", "--lr", "0.001", "--seeds", "5", "6", "--ablation_mode", "none",
                    "--no_amp", "--model_preset", "small").config
    (tmp_path / "c.json").write_text(json.dumps(flags))
    from_json = resolve("--from_config", str(tmp_path / "c.json")).config
    doc = {"training": {"epochs": 3, "learning_rate": 0.001, "mixed_precision": False},
           "seeds": [5, 6], "experiment": {"ablation_mode": "none"}, "model": {"model_preset": "small"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    from_yaml = resolve("--from_config", str(tmp_path / "c.yaml")).config
    assert config_md5(from_json) == config_md5(flags) == config_md5(from_yaml)
    # A flag on the command line wins over the file.
    assert resolve("--from_config", str(tmp_path / "c.yaml"), "--epochs", "9").config["training"]["epochs"] == 9


def test_from_config_rejects_unknown_names(tmp_path):
    (tmp_path / "bad.yaml").write_text("training:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown parameter 'epoch'.*epochs"):
        resolve("--from_config", str(tmp_path / "bad.yaml"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve("--from_config", str(tmp_path / "broken.json"))


def test_normalized_hash_equals_the_jq_recipe(tmp_path):
    cfg = resolve("--seeds", "21", "42").config
    cfg["runtime"]["timestamp"] = "2025-10-27T18:02:38.123456Z"
    cfg["config_md5"] = config_md5(cfg)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    ours = normalized_config_hash(cfg)
    if shutil.which("jq") is None:
        pytest.skip("jq not installed; the Python recipe is still exercised above")
    jq = subprocess.run(f"jq 'del(.runtime.timestamp, .config_md5)' {path} | jq -S '.' | md5sum",
                        shell=True, capture_output=True, text=True, check=True)
    assert jq.stdout.split()[0] == ours
    # Only the timestamp differs between the two: the recipe says "same".
    cfg2 = json.loads(path.read_text())
    cfg2["runtime"]["timestamp"] = "2026-01-01T00:00:00Z"
    assert normalized_config_hash(cfg2) == ours


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "-1"], "positive integer"),
        (["--epochs", "x"], "expects an integer"),
        (["--fold", "7"], "between 0 and 4"),
        (["--lag_max_lag", "5"], "1, 2 or 3"),
    ],
)
def test_bad_values_are_refused(argv, message):
    try:
        with pytest.raises(ConfigError, match=message):
            resolve(*argv)
    except SystemExit as exc:  # argparse type errors exit 2 with one line
        assert exc.code == 2
