"""Every bad input gives one DataError line that names the file and the 1-based line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gainakt.data import DataError, load_dataset

TV_HEADER = "fold,uid,concepts,responses\n"
TEST_OK = 'fold,uid,concepts,responses\n-1,9,"1,2,3","1,0,1"\n'


def pykt_folder(tmp_path: Path, train_valid: str, test: str = TEST_OK) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train_valid.csv").write_text(train_valid)
    (folder / "test.csv").write_text(test)
    return folder


def expect(path: Path, *fragments: str, fmt: str = "auto") -> DataError:
    with pytest.raises(DataError) as info:
        load_dataset(path, fmt)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_missing_column(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, 'fold,uid,concepts\n0,1,"1,2,3"\n')
    err = expect(folder, "train_valid.csv, line 1:", "missing column(s) responses")
    assert err.line == 1 and err.file.endswith("train_valid.csv")


def test_non_integer_concept_id(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, TV_HEADER + '0,1,"1,2,3","1,0,1"\n0,2,"1,x7,3","1,0,1"\n')
    expect(folder, "train_valid.csv, line 3:", "'x7' is not an integer")


def test_fractional_id_is_not_an_integer(tmp_path: Path) -> None:
    folder = pykt_folder(
        tmp_path,
        TV_HEADER + '0,1,"1,2,3","1,0,1"\n',
        test='fold,uid,concepts,responses\n-1,9,"1,2.5","1,0"\n',
    )
    expect(folder, "test.csv, line 2:", "'2.5' is not an integer")


def test_response_not_binary(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, TV_HEADER + '0,1,"1,2,3","1,2,1"\n')
    expect(folder, "train_valid.csv, line 2:", "response 2 is not 0/1")


def test_lengths_differ(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, TV_HEADER + '0,1,"1,2,3","1,0,1"\n\n0,2,"1,2,3","1,0"\n')
    # The blank line still counts: the bad row is line 4.
    expect(folder, "train_valid.csv, line 4:", "concepts has 3 values but responses has 2")


def test_empty_file(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, "")
    expect(folder, "train_valid.csv, line 1:", "file is empty")


def test_header_only_file(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, TV_HEADER)
    expect(folder, "train_valid.csv, line 2:", "no data rows")


def test_negative_fold_in_train_valid(tmp_path: Path) -> None:
    folder = pykt_folder(tmp_path, TV_HEADER + '-1,1,"1,2,3","1,0,1"\n')
    expect(folder, "train_valid.csv, line 2:", "fold -1")


def test_missing_test_file(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "train_valid.csv").write_text(TV_HEADER + '0,1,"1,2,3","1,0,1"\n')
    expect(folder, "test.csv", "file not found")


def test_three_line_truncated_last_student(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("3\n1,2,3\n1,0,1\n2\n4,4\n")
    expect(path, "t.csv, line 5:", "last student (starting at line 4) is truncated")


def test_three_line_count_disagrees(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("3\n1,2,3\n1,0,1\n4\n4,4\n1,1\n")
    expect(path, "t.csv, line 4:", "count line says 4")


def test_three_line_zero_skill_id(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("3\n1,0,3\n1,0,1\n")
    expect(path, "t.csv, line 2:", "1-based")


def test_three_line_bad_response(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("3\n1,2,3\n1,0,1\n2\n4,4\n1,3\n")
    expect(path, "t.csv, line 6:", "response 3 is not 0/1")


def test_three_line_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\n\n")
    expect(path, "t.csv, line 1:", "file is empty", fmt="dkvmn")


def test_raw_non_integer_log_id(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("user_id,log_id,sequence_id,correct\n1,10,5,1\n1,abc,5,1\n")
    expect(path, "raw.csv, line 3:", "column log_id: 'abc' is not an integer")


def test_raw_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("user_id,log_id,correct\n1,10,1\n")
    expect(path, "raw.csv, line 1:", "missing column(s) sequence_id", fmt="raw_assist2015")


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    expect(tmp_path, f"unknown dataset format at {tmp_path}: expected")
    expect(tmp_path / "notes.txt", "unknown dataset format at", "notes.txt")


def test_unknown_format_name(tmp_path: Path) -> None:
    expect(tmp_path, "unknown dataset format 'parquet'", fmt="parquet")


def test_missing_path(tmp_path: Path) -> None:
    expect(tmp_path / "nowhere", "dataset path not found", "nowhere")


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)
    assert str(DataError("plain")) == "plain"
