"""`harness ls` / `harness show`: what an output base holds, from small records only, nothing followed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import benchmark_scripts  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.cli.main import main
from harness.folder import io


def _generator():
    return benchmark_scripts.load("ls_folders")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Six experiments (statuses completed, completed, completed, partial, failed, interrupted; 1-3 seeds;
    some signed, some with a stored verdict) and one sweep of 2 points, as benchmarks/ls_folders.py makes them."""
    out = tmp_path_factory.mktemp("ls") / "experiments"
    _generator().make_folders(out, 6, sweeps=1, points=2, checkpoint_bytes=1 << 20)
    return out


def ls_json(capsys, *args: str) -> list[dict]:
    assert main(["ls", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_lists_every_experiment_and_sweep_with_its_numbers(base, capsys):
    rows = ls_json(capsys, str(base))
    assert [r["kind"] for r in rows] == ["experiment"] * 6 + ["sweep"]
    by_id = {r["id"]: r for r in rows}
    for folder in sorted(base.iterdir())[:6]:
        row = by_id[folder.name]
        cfg = json.loads((folder / "config.json").read_text())
        results = json.loads((folder / "results.json").read_text())
        done = [r for r in results["per_seed"].values() if r["status"] == "completed"]
        assert row["status"] == json.loads((folder / "run_status.json").read_text())["status"]
        assert (row["seeds_finished"], row["seeds_total"]) == (len(done), len(cfg["seeds"]["all"]))
        if done:
            assert row["best_val_auc"] == pytest.approx(sum(r["best_val_auc"] for r in done) / len(done))
            assert row["test_auc"] == pytest.approx(sum(r["test_auc"] for r in done) / len(done))
        else:
            assert row["best_val_auc"] is None and row["test_auc"] is None
        assert row["config_md5"] == cfg["config_md5"] and row["dataset"] == "synthetic"
        assert row["signed"] == (folder / "ATTESTATION.intoto.json").is_file()
        report = folder / "verification_report.json"
        assert row["verify"] == (json.loads(report.read_text())["verdict"] if report.is_file() else None)
    sweep = rows[-1]
    assert sweep["title"] == "grid0" and sweep["status"] == "completed" and sweep["seeds_finished"] == 4
    assert [p["point"] for p in sweep["points"]] == ["p0", "p1"]
    assert all(p["seeds_finished"] == 2 and p["best_val_auc"] is not None for p in sweep["points"])


def test_ls_reads_only_the_small_records(base, capsys, monkeypatch):
    read = []
    original = io.read_bytes

    def spy(path, **kwargs):
        read.append(Path(path).name)
        return original(path, **kwargs)

    monkeypatch.setattr(io, "read_bytes", spy)
    assert main(["ls", str(base)]) == 0
    assert set(read) <= {"config.json", "results.json", "run_status.json", "verification_report.json", "sweep.json"}
    assert "model_best.pth" not in read and "ATTESTATION.intoto.json" not in read


def test_filters_and_sort(base, capsys):
    completed = ls_json(capsys, str(base), "--status", "completed")
    assert completed and all(r["status"] == "completed" for r in completed)
    aucs = [r["best_val_auc"] for r in ls_json(capsys, str(base), "--sort", "auc") if r["kind"] == "experiment"]
    known = [a for a in aucs if a is not None]
    assert known == sorted(known, reverse=True) and aucs[len(known):] == [None] * (len(aucs) - len(known))
    titled = ls_json(capsys, str(base), "--title", "p1")  # a sweep is kept with its matching points only
    assert [r["kind"] for r in titled] == ["sweep"] and [p["point"] for p in titled[0]["points"]] == ["p1"]
    assert ls_json(capsys, str(base), "--title", "no_such_*") == []
    with pytest.raises(SystemExit) as exc:
        main(["ls", str(base), "--sort", "nope"])
    assert exc.value.code == 2  # a usage error


def test_ls_text_says_what_each_number_is(base, capsys):
    assert main(["ls", str(base)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "TITLE", "STATUS", "SEEDS", "VAL", "AUC", "TEST", "AUC", "CONFIG", "DATASET",
                              "SIGNED", "VERIFY"]
    assert any(line.startswith("  └ 20261202_000000_gainakt2exp_p0") for line in out)
    assert "mean over the finished seeds of the best validation AUC" in out[-1]
    assert "6 experiment(s), 1 sweep(s)" in out[-1]


def test_symlinks_are_not_followed_and_damaged_folders_are_still_listed(tmp_path, capsys):
    out = tmp_path / "base"
    (first,) = _generator().make_folders(out, 1)
    (tmp_path / "elsewhere").mkdir()
    _generator().make_folders(tmp_path / "elsewhere", 1)
    os.symlink(next((tmp_path / "elsewhere").iterdir()), out / "20261203_000000_gainakt2exp_linked")
    damaged = out / "20261204_000000_gainakt2exp_damaged"
    damaged.mkdir()
    os.symlink(first / "config.json", damaged / "config.json")
    (damaged / "results.json").write_text("{not json")
    rows = ls_json(capsys, str(out))
    assert [r["id"] for r in rows] == [first.name, damaged.name]  # the symlinked folder is not listed
    row = rows[1]
    assert row["status"] == "unreadable" and row["config_md5"] is None
    assert any("config.json" in e and "symlink" in e for e in row["errors"])
    assert any("results.json" in e and "corrupt JSON" in e for e in row["errors"])
    assert main(["ls", str(out)]) == 0  # the text says why too, not only `-` in the columns
    lines = capsys.readouterr().out.splitlines()
    why = [line for line in lines if line.startswith(f"unreadable: {damaged.name}: ")]
    assert any("config.json" in line and "symlink" in line for line in why), lines
    assert any("results.json" in line and "corrupt JSON" in line for line in why), lines


def test_show_does_not_follow_a_symlinked_artifacts_folder(tmp_path, capsys):
    (first,) = _generator().make_folders(tmp_path / "base", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "learning_curves.png").write_bytes(b"\x89PNG not this folder's")
    if (first / "artifacts").exists():
        import shutil
        shutil.rmtree(first / "artifacts")
    os.symlink(elsewhere, first / "artifacts")
    assert main(["show", str(first), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plots"] == []


def test_a_missing_output_base_is_one_line(tmp_path, capsys):
    assert main(["ls", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and "no such folder" in err and len(err.splitlines()) == 1


def test_show_prints_one_experiment_and_a_sweep(base, capsys):
    folder = sorted(base.iterdir())[4]  # the failed one: two seeds with their reason
    assert main(["show", folder.name, "--output_base", str(base)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Experiment {folder.name}") and "status      failed" in text
    assert "Seeds (best validation AUC" in text and "synthetic fixture" in text
    assert main(["show", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in data["seeds"]] == ["failed", "failed"]
    assert data["parameters"]["experiment.ablation_mode"] == "both_lag"
    sweep = sorted(base.iterdir())[-1]
    assert main(["show", sweep.name, "--output_base", str(base)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Sweep {sweep.name}") and "p0" in text and "p1" in text
    assert main(["show", "nope", "--output_base", str(base)]) == 1
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_ls_starts_without_the_training_stack(base):
    """`harness ls` builds the whole CLI: no torch (or matplotlib) import on the way (it took 15 s under load)."""
    code = ("import sys; from harness.cli.main import main; main(['ls', sys.argv[1]]); "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(base)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
