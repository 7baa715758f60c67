"""A --from_config file is checked value by value, whatever the later layers put over it."""

from __future__ import annotations

import pytest

from harness.cli.main import main


@pytest.mark.parametrize("line, message", [
    ('training: {epochs: "3"}', "epochs (training.epochs): expects an integer, got '3'"),
    ("training: {learning_rate: -1.0}", "learning_rate (training.learning_rate): must be positive"),
    ("model: {model_preset: huge}", "'huge' is not one of"),
])
def test_a_bad_file_value_is_refused_even_where_a_flag_overrides_it(tmp_path, capsys, line, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(line + "\n")
    name = line.split("{")[1].split(":")[0]
    out = tmp_path / "out"
    override = {"epochs": "1", "learning_rate": "0.002", "model_preset": "small"}[name]
    code = main(["run", "x", "--devices", "cpu", "--output_base", str(out), "--from_config", str(cfg),
                 f"--{name}", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and str(cfg) in err[0] and message in err[0]
    assert not out.exists()


def test_a_reference_config_with_its_own_runtime_spellings_is_still_a_starting_point(tmp_path):
    import audit_runs  # tests/fixtures, on sys.path via conftest.py

    from harness.config.launch import LaunchOptions
    from harness.run.launcher import resolve_run

    ref = audit_runs.reference_copy(tmp_path) / "config.json"
    assert '"devices": [\n' in ref.read_text() or '"devices": [0' in ref.read_text()  # integers, not texts
    resolved = resolve_run(LaunchOptions(from_config=str(ref), explicit={"devices": ["cpu"]}), "r")
    assert resolved.config["runtime"]["devices"] == ["cpu"]
