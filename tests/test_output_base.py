"""A run refused after the output-base check leaves no empty --output_base behind."""

from __future__ import annotations

from harness.cli.main import main


def test_a_refused_run_creates_no_output_base(tmp_path, capsys):
    base = tmp_path / "new" / "base"
    code = main(["run", "t", "--devices", "cpu", "--compile", "reduce-overhead", "--output_base", str(base)])
    assert code == 1 and "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_an_output_base_below_a_file_is_still_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code = main(["run", "t", "--devices", "cpu", "--output_base", str(tmp_path / "f" / "base")])
    assert code == 1 and "is not a folder" in capsys.readouterr().err
