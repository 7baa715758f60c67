"""Paths and trust (issue 19, item 8): an explicit --output_base bounds where a command looks; a
comparison verifies both folders first and fails on one that does not verify; a folder is never
compared with itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.compare import compare_experiments
from harness.cli.main import main
from harness.folder.experiment import ExperimentError

REPORT = "reproduction_report.json"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry below `folder` (links not followed) with its bytes and mtime."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            out[str(p.relative_to(folder))] = (p.read_bytes() if p.is_file() and not p.is_symlink() else b"",
                                               st.st_mtime_ns)
    return out


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def layout(base_run, tmp_path, monkeypatch):
    """tmp/exp (the output base, holding one copy), tmp/t/copy1 (outside it), cwd tmp/work."""
    (tmp_path / "work").mkdir()
    inside = audit_runs.copy_experiment(base_run, tmp_path / "exp")
    outside = audit_runs.copy_experiment(base_run, tmp_path / "t", "copy1")
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path, inside, outside


# 1. An explicit --output_base bounds where a command looks ------------------------------------


@pytest.mark.parametrize("argv", [
    ["verify", "../t/copy1"],
    ["verify", "{inside}", "--against", "../t/copy1"],
    ["compare", "../t/copy1", "{inside}"],
    ["compare", "{inside}", "../t/copy1"],
    ["resume", "../t/copy1"],
    ["keys", "sign", "../t/copy1", "--sign_key", "nokey"],
    ["show", "../t/copy1"],
    ["predict", "../t/copy1", "--data", "../nodata", "--out", "../p.csv"],
])
def test_a_folder_outside_an_explicit_output_base_is_refused_in_one_line(layout, capsys, argv):
    tmp, inside, outside = layout
    before = snapshot(tmp)
    argv = [a.replace("{inside}", inside.name) for a in argv]
    assert main([*argv, "--output_base", "../exp"]) == 1
    line = one_line(capsys)
    assert "outside --output_base ../exp" in line and str(outside.resolve()) in line
    assert snapshot(tmp) == before


def test_a_symlink_inside_the_output_base_to_a_folder_outside_is_refused(layout, capsys):
    tmp, _, outside = layout
    (tmp / "exp" / "link").symlink_to(outside)
    assert main(["verify", "link", "--output_base", "../exp"]) == 1  # an id: refused before this issue too
    assert "outside the output base" in one_line(capsys)
    assert main(["verify", "../exp/link", "--output_base", "../exp"]) == 1  # a path through the link
    assert "outside --output_base" in one_line(capsys)


def test_without_output_base_a_path_still_names_any_folder_and_inside_ones_pass(layout, capsys):
    tmp, inside, _ = layout
    assert main(["verify", "../t/copy1"]) == 0
    assert main(["verify", f"../exp/{inside.name}", "--output_base", "../exp"]) == 0
    assert main(["verify", inside.name, "--output_base", str(tmp / "exp")]) == 0
    capsys.readouterr()


def test_a_sweep_folder_outside_an_explicit_output_base_is_refused(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "t" / "20250101_000000_sweep_x"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    (tmp_path / "exp").mkdir()
    assert main(["verify", str(sweep), "--output_base", str(tmp_path / "exp")]) == 1
    assert "outside --output_base" in one_line(capsys)


# 2. A comparison verifies both folders first ---------------------------------------------------


@pytest.fixture
def pair(base_run, reproduction, tmp_path):
    """Copies of the base run and its (passing) reproduction, free to modify."""
    return (audit_runs.copy_experiment(base_run, tmp_path / "src"),
            audit_runs.copy_experiment(reproduction, tmp_path / "tgt"))


def test_an_untouched_pair_passes_with_both_sides_verified(pair):
    report = compare_experiments(*pair)
    assert report["verdict"] != "fail", report["reasons"]
    assert report["integrity"]["source"]["verdict"] == report["integrity"]["target"]["verdict"] == "pass"
    assert {"name": "integrity", "status": "met", "reasons": []} in report["criteria"]


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_side_that_fails_verify_fails_the_comparison(pair, capsys, side):
    src, tgt = pair
    tampered = src if side == "source" else tgt
    with (tampered / "stdout.log").open("a") as fh:  # the numbers stay, the evidence does not
        fh.write("an edit after the run\n")
    assert main(["compare", str(src), str(tgt), "--accept_modified"]) == 1
    report = json.loads((tgt / REPORT).read_text())
    assert report["verdict"] == "fail" and report["within_tolerance"]
    reason = next(r for r in report["reasons"] if r.startswith(f"{side} fails verify"))
    assert "manifest" in reason and "harness verify" in reason
    assert report["integrity"][side]["verdict"] == "fail"
    assert "verdict: fail" in capsys.readouterr().out


def test_an_unfinished_source_fails_the_comparison_through_its_integrity(pair):
    src, tgt = pair
    results = json.loads((src / "results.json").read_text())
    results["status"] = "interrupted"
    (src / "results.json").write_text(json.dumps(results))
    report = compare_experiments(src, tgt)
    assert report["verdict"] == "fail"
    assert any(r.startswith("source fails verify") for r in report["reasons"]), report["reasons"]


def test_a_reference_folder_is_noted_as_unverifiable_not_failed(tmp_path):
    a = audit_runs.reference_copy(tmp_path)
    b = audit_runs.copy_experiment(a, tmp_path, "20251029_093312_gainakt2exp_repro_reproduce")
    report = compare_experiments(a, b)
    assert report["verdict"] == "pass", report["reasons"]
    assert report["integrity"]["source"]["verdict"] is None
    assert any("cannot be verified" in n for n in report["notes"])


@pytest.mark.slow
def test_a_reproduction_of_a_tampered_source_gets_a_failing_verdict(base_run, tmp_path, capsys):
    src = audit_runs.copy_experiment(base_run, tmp_path / "src")
    with (src / "stdout.log").open("a") as fh:
        fh.write("an edit after the run\n")
    out = tmp_path / "out"
    out.mkdir()
    code, repro = audit_runs.harness(out, "reproduce", str(src), expect=None)
    assert code == 1
    report = json.loads((repro / REPORT).read_text())
    assert report["verdict"] == "fail" and report["within_tolerance"]
    assert any(r.startswith("source fails verify") for r in report["reasons"])
    assert "reproduction verdict: fail" in capsys.readouterr().out


# 3. A folder is never compared with itself -----------------------------------------------------


@pytest.mark.parametrize("how", ["same path", "another path", "a symlink"])
def test_compare_a_with_a_is_refused_before_anything_is_written(layout, capsys, how):
    tmp, inside, _ = layout
    other = {"same path": str(inside), "another path": f"../exp/../exp/{inside.name}/",
             "a symlink": str(tmp / "alias")}[how]
    (tmp / "alias").symlink_to(inside)
    before = snapshot(tmp)
    assert main(["compare", str(inside), other]) == 1
    line = one_line(capsys)
    assert "are the same folder" in line
    assert snapshot(tmp) == before and not (inside / REPORT).exists()
    assert main(["verify", str(inside), "--against", other]) == 1
    assert "are the same folder" in one_line(capsys)
    with pytest.raises(ExperimentError, match="same folder"):
        compare_experiments(inside, Path(other))
