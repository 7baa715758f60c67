"""DKVMN three-line reader: small files and the shared assist2015 split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gainakt.data import describe, kfold_assign, load_dataset


def write_three_line(path: Path, students: list[tuple[list[int], list[int]]]) -> Path:
    lines = []
    for skills, answers in students:
        lines += [str(len(skills)), ",".join(map(str, skills)), ",".join(map(str, answers))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_with_train_and_test_files(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    train = [([1, 1, 2], [0, 1, 1]), ([3, 3, 3, 3], [1, 1, 0, 1]), ([2], [1])] * 4
    write_three_line(folder / "toy_train.csv", train)
    write_three_line(folder / "toy_test.csv", [([5, 4], [1, 0])])
    write_three_line(folder / "toy_train1.csv", [([9, 9, 9], [1, 1, 1])])  # ignored: not *_train.csv
    ds = load_dataset(folder)
    assert (ds.fmt, ds.name, ds.num_c) == ("dkvmn", "toy", 5)
    assert len(ds) == 13
    assert ds.concepts[0].tolist() == [0, 0, 1]  # 1-based ids become 0-based
    assert ds.concepts[-1].tolist() == [4, 3]
    assert ds.folds[-1] == -1
    assert sorted(np.bincount(ds.folds[:12])) == [2, 2, 2, 3, 3]
    assert np.array_equal(ds.folds[:12], kfold_assign(12))
    assert ds.source_files == ("toy_test.csv", "toy_train.csv")
    assert ds.uids[0] == "toy_train:0" and ds.uids[-1] == "toy_test:0"


def test_single_file_is_split_like_pykt(tmp_path: Path) -> None:
    path = write_three_line(tmp_path / "one.txt", [([1, 2, 3], [1, 0, 1])] * 10)
    ds = load_dataset(path)
    assert ds.name == "one" and ds.fmt == "dkvmn"
    assert int((ds.folds == -1).sum()) == 2
    assert sorted(np.bincount(ds.folds[ds.folds >= 0])) == [1, 1, 2, 2, 2]


def test_trailing_commas_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("3\n1,2,3,\n1,0,1,\n\n2\n4,4\n0,1\n\n\n")
    ds = load_dataset(path, fmt="dkvmn")
    assert [c.tolist() for c in ds.concepts] == [[0, 1, 2], [3, 3]]


def test_shared_assist2015_matches_published_counts(shared_datasets: Path) -> None:
    ds = load_dataset(shared_datasets / "assist2015")
    train, test = ds.folds >= 0, ds.folds == -1
    assert int(train.sum()) == 13_935 and int(ds.lengths[train].sum()) == 484_040
    assert int(test.sum()) == 5_905 and int(ds.lengths[test].sum()) == 199_761
    assert ds.num_c == 100
    assert int(ds.concepts[0][0]) == 27  # first skill id of assist2015_train1.csv is 28 (1-based)
    info = describe(ds)
    # The folder ships DKVMN's published split: train1 trains, valid1 validates, named so (fold
    # numbers are internal there: train1 is not "fold 1" of a k-fold split).
    assert info["students_per_split"] == {"train": 11_123, "valid": 2_812, "test": 5_905}
    assert "students_per_fold" not in info
    assert info["split"] == "dkvmn_published" and info["valid_folds"] == [0]
    assert ds.source_files == ("assist2015_test.csv", "assist2015_train1.csv", "assist2015_valid1.csv")
