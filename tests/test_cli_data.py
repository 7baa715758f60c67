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
    assert info["students_per_split"] == {"train_valid": 15275, "test": 3818}


def test_describe_gives_the_longest_sequence_beside_the_window_length(shared_datasets, capsys):
    """`max_len 200` read as the longest sequence: the window length and the real lengths are separate."""
    import numpy as np

    from gainakt.data import load_dataset

    ds = load_dataset(shared_datasets / "assist2015")
    assert main(["data", "describe", str(shared_datasets / "assist2015"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "max_len" not in info and info["window_length"] == 200
    lengths = ds.lengths
    assert info["sequence_length"]["max"] == int(lengths.max()) > 200
    assert info["sequence_length"]["min"] == int(lengths.min())
    assert info["sequence_length"]["p50"] == round(float(np.quantile(lengths, 0.5)), 1)
    assert info["sequence_length"]["p99"] == round(float(np.quantile(lengths, 0.99)), 1)
    assert info["students_per_split"] == {"train": 11_123, "valid": 2_812, "test": 5_905}
    assert main(["data", "describe", str(shared_datasets / "assist2015")]) == 0
    text = capsys.readouterr().out
    assert "students_per_split" in text and "train 11123, valid 2812, test 5905" in text
    assert f"max {int(lengths.max())}" in text and "window_length" in text


def test_describe_synthetic_and_bad_path(capsys, tmp_path):
    assert main(["data", "describe", "synthetic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "synthetic"
    assert main(["data", "describe", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and len(err.splitlines()) == 1
