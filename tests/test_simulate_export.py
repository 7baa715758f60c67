"""`harness data simulate`: the simulator's students in pyKT / DKVMN files, their true mastery and a
SIMULATION.json record; read back with --data_dir they are the same data as `--dataset synthetic`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gainakt.data import SequenceSet, build_window_test, build_windows, load_dataset, split_students
from gainakt.simulate import generator_parameters, simulate
from harness.cli.main import main

PARAMS = {"students": 150, "skills": 8, "min_len": 5, "max_len": 30, "forgetting": 0.1, "seed": 11}


def export(tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / fmt
    argv = ["data", "simulate", *[f"--{k}={v}" for k, v in PARAMS.items()], "--format", fmt, "--out", str(out)]
    assert main(argv) == 0
    return out


def builtin():
    p = PARAMS
    return simulate(p["students"], p["skills"], p["min_len"], p["max_len"], p["seed"], p["forgetting"])


def token_checksum(seqs: SequenceSet) -> str:
    """sha256 of the token stream a model sees: interaction tokens, queries, targets and the mask."""
    digest = hashlib.sha256()
    for t in (seqs.q, seqs.r, seqs.qry, seqs.target, seqs.mask):
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("max_len", [200, 7])
def test_pykt_round_trip_gives_the_builtin_windows(tmp_path, max_len):
    ours, back = builtin(), load_dataset(export(tmp_path, "pykt"))
    assert back.num_c == ours.num_c and len(back) == len(ours)
    for fold in range(5):
        for a, b in zip(split_students(ours, fold), split_students(back, fold), strict=True):
            assert len(a) == len(b)
            wa, wb = build_windows(ours, a, max_len), build_windows(back, b, max_len)
            assert token_checksum(wa) == token_checksum(wb)
            for name in ("q", "r", "qry", "target", "mask", "score_mask", "length"):
                assert getattr(wa, name).equal(getattr(wb, name)), name
    _, _, test_a = split_students(ours, 0)
    _, _, test_b = split_students(back, 0)
    assert token_checksum(build_window_test(ours, test_a, max_len)) == \
        token_checksum(build_window_test(back, test_b, max_len))


def test_truth_and_simulation_record(tmp_path):
    out = export(tmp_path, "pykt")
    ours = builtin()
    record = json.loads((out / "SIMULATION.json").read_text())
    p = PARAMS
    assert record["generator_parameters"] == generator_parameters(
        p["students"], p["skills"], p["min_len"], p["max_len"], p["seed"], p["forgetting"])
    for name, digest in record["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert set(record["files"]) == {"train_valid.csv", "test.csv", "keyid2idx.json", "truth.csv",
                                    "train_valid_sequences.csv", "test_sequences.csv", "test_window_sequences.csv",
                                    "pykt_data_config.json"}
    truth = pd.read_csv(out / "truth.csv")
    assert len(truth) == int(ours.lengths.sum()) * ours.num_c
    s = 7
    mine = truth[truth["student_id"] == s]
    matrix = mine.pivot(index="step", columns="skill", values="true_mastery").to_numpy(np.float32)
    assert np.array_equal(matrix, ours.true_mastery[s])
    answered = mine[mine["answered"] == 1].sort_values("step")["skill"].to_numpy()
    assert np.array_equal(answered, ours.concepts[s])


def test_dkvmn_export_reads_back_with_the_truth_ids(tmp_path):
    out = export(tmp_path, "dkvmn")
    ours, back = builtin(), load_dataset(out)
    order = np.concatenate([np.flatnonzero(ours.folds >= 0), np.flatnonzero(ours.folds < 0)])
    for i, s in enumerate(order):
        assert np.array_equal(back.concepts[i], ours.concepts[s])
        assert np.array_equal(back.responses[i], ours.responses[s])
    truth_ids = pd.read_csv(out / "truth.csv", usecols=["student_id"])["student_id"].unique().tolist()
    assert truth_ids == back.uids
    assert (back.folds < 0).sum() == (ours.folds < 0).sum()


def test_simulate_refuses_a_non_empty_folder_and_bad_parameters(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    capsys.readouterr()
    assert main(["data", "simulate", "--out", str(tmp_path / "full")]) == 1
    assert main(["data", "simulate", "--min_len", "9", "--max_len", "4", "--out", str(tmp_path / "new")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not an empty folder" in err[0] and "min_len" in err[1]


TINY = ["--model_preset", "small", "--d_model", "8", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "8",
        "--devices", "cpu", "--no_amp", "--torch_deterministic", "--batch_size", "16", "--epochs", "1",
        "--seeds", "3", "--max_semantic_students", "10", "--alignment_global_students", "20", "--threads", "1"]


@pytest.mark.slow
def test_training_on_the_export_equals_training_on_the_builtin_dataset(tmp_path):
    out = export(tmp_path, "pykt")
    p = PARAMS
    synthetic = ["--synthetic_students", str(p["students"]), "--synthetic_skills", str(p["skills"]),
                 "--synthetic_min_len", str(p["min_len"]), "--synthetic_max_len", str(p["max_len"]),
                 "--synthetic_seed", str(p["seed"]), "--synthetic_forgetting", str(p["forgetting"])]
    base = tmp_path / "runs"
    assert main(["run", "builtin", *TINY, *synthetic, "--output_base", str(base)]) == 0
    assert main(["run", "exported", *TINY, "--data_dir", str(out),
                 "--output_base", str(base)]) == 0
    results = {p.name.rsplit("_", 1)[-1]: json.loads((p / "results.json").read_text())["per_seed"]["3"]
               for p in base.iterdir()}
    a, b = results["builtin"], results["exported"]
    for key in ("best_val_auc", "test_auc", "test_window_auc", "mastery_correlation_val_all", "gain_correlation_val_all"):
        assert a[key] == b[key], key


def test_default_simulation_is_the_builtin_dataset(tmp_path):
    from harness.config.build import default_params
    from harness.run.datasets import load_from_params

    assert main(["data", "simulate", "--out", str(tmp_path / "d")]) == 0
    record = json.loads((tmp_path / "d" / "SIMULATION.json").read_text())
    canonical = json.dumps(record["generator_parameters"], sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == load_from_params(default_params(), None).sha256


def test_pykt_sequence_files_follow_pykts_chunking_and_window_protocol(tmp_path):
    out = tmp_path / "long"
    assert main(["data", "simulate", "--students", "30", "--skills", "6", "--min_len", "150", "--max_len", "450",
                 "--seed", "4", "--out", str(out)]) == 0
    ours = simulate(30, 6, 150, 450, 4, 0.0)
    back = load_dataset(out, "pykt_sequences")
    order = np.concatenate([np.flatnonzero(ours.folds >= 0), np.flatnonzero(ours.folds < 0)])
    for i, s in enumerate(order):
        n = len(ours.concepts[s])
        kept = n - (n % 200 if n % 200 < 3 else 0)  # pyKT drops a remainder shorter than 3
        assert np.array_equal(back.concepts[i], ours.concepts[s][:kept])
        assert back.uids[i] == str(s)
    test = np.flatnonzero(ours.folds < 0)
    windows = pd.read_csv(out / "test_window_sequences.csv")
    protocol = build_window_test(ours, test, 200)
    assert len(windows) == len(protocol)
    ones = sum(m.split(",").count("1") for m in windows["selectmasks"])
    assert ones == protocol.num_targets + len(test)  # pyKT's mask also marks each student's first step
    config = json.loads((out / "pykt_data_config.json").read_text())["gainakt_synthetic"]
    assert config["num_c"] == 6 and config["test_window_file"] == "test_window_sequences.csv"
