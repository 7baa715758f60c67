"""`harness data describe` on the real pyKT data and the built-in synthetic set."""

from __future__ import annotations

import json

from harness.cli.main import main


def test_describe_reproduces_pykt_numbers(shared_datasets, capsys):
    assert main(["data", "describe", str(shared_datasets / "assist2015_pykt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_concepts"] == 100
    assert info["students_per_fold"] == {str(f): 3055 for f in range(5)}
    assert sum(info["students_per_fold"].values()) == 15275
    assert info["test_students"] == 3818
    assert info["test_window_protocol"] == {"rows": 6102, "scored_targets": 134640}


def test_describe_synthetic_and_bad_path(capsys, tmp_path):
    assert main(["data", "describe", "synthetic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "synthetic"
    assert main(["data", "describe", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and len(err.splitlines()) == 1
