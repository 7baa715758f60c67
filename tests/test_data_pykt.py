"""pyKT-format readers: real-data counts (pyKT's published numbers) and the sequence-file rebuild."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from gainakt.data import (
    build_window_test,
    build_windows,
    describe,
    load_dataset,
    sha256_files,
    split_students,
)


def _join(values) -> str:
    return ",".join(map(str, np.asarray(values, dtype=np.int64).tolist()))


def write_pykt(folder: Path, students: list[tuple[int, str, list[int], list[int]]]) -> Path:
    """Write train_valid.csv / test.csv (fold -1 rows go to test.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    tv = ["fold,uid,concepts,responses"]
    te = ["fold,uid,concepts,responses,cidxs"]
    for fold, uid, c, r in students:
        row = f'{fold},{uid},"{_join(c)}","{_join(r)}"'
        if fold >= 0:
            tv.append(row)
        else:
            te.append(row + f',"{_join(range(len(c)))}"')
    (folder / "train_valid.csv").write_text("\n".join(tv) + "\n")
    (folder / "test.csv").write_text("\n".join(te) + "\n")
    return folder


def write_pykt_sequences(folder: Path, ds, max_len: int = 200) -> Path:
    """Write pyKT's chunked files for a dataset, following pyKT's generate_sequences."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train_valid_sequences.csv": [], "test_sequences.csv": []}
    for c, r, fold, uid in zip(ds.concepts, ds.responses, ds.folds.tolist(), ds.uids, strict=True):
        out = files["test_sequences.csv" if fold < 0 else "train_valid_sequences.csv"]
        c_text, r_text = c.astype(str).tolist(), r.astype(str).tolist()
        for start in range(0, len(c), max_len):
            piece = len(c_text[start : start + max_len])
            if piece < max_len and piece < 3:
                continue
            pad = ["-1"] * (max_len - piece)
            out.append(
                f'{fold},{uid},"{",".join(c_text[start : start + max_len] + pad)}",'
                f'"{",".join(r_text[start : start + max_len] + pad)}","{",".join(["1"] * piece + pad)}"'
            )
    for name, rows in files.items():
        (folder / name).write_text("fold,uid,concepts,responses,selectmasks\n" + "\n".join(rows) + "\n")
    return folder


def test_small_pykt_folder_reads_students_in_file_order(tmp_path: Path) -> None:
    folder = write_pykt(
        tmp_path / "tiny",
        [
            (1, "7", [3, 1, 2], [1, 0, 1]),
            (0, "8", [0, 0, 4, 4], [0, 0, 1, 1]),
            (-1, "9", [2, 2, 2], [1, 1, 0]),
        ],
    )
    ds = load_dataset(folder)
    assert (ds.name, ds.fmt, ds.num_c) == ("tiny", "pykt", 5)
    assert ds.uids == ["7", "8", "9"]
    assert ds.folds.tolist() == [1, 0, -1]
    assert ds.concepts[1].tolist() == [0, 0, 4, 4] and ds.concepts[1].dtype == np.int64
    assert ds.responses[2].tolist() == [1, 1, 0]
    assert ds.source_files == ("test.csv", "train_valid.csv")
    assert ds.sha256 == sha256_files([folder / "train_valid.csv", folder / "test.csv"])[0]


def test_keyid2idx_sets_the_number_of_concepts(tmp_path: Path) -> None:
    folder = write_pykt(tmp_path / "k", [(0, "1", [0, 1, 1], [1, 0, 1]), (-1, "2", [1, 1, 0], [1, 1, 0])])
    (folder / "keyid2idx.json").write_text(json.dumps({"concepts": {str(i): i for i in range(7)}}))
    ds = load_dataset(folder)
    assert ds.num_c == 7
    assert "keyid2idx.json" in ds.source_files


def test_checksum_changes_with_content_not_location(tmp_path: Path) -> None:
    rows = [(0, "1", [0, 1, 1], [1, 0, 1]), (-1, "2", [1, 1, 0], [1, 1, 0])]
    a = load_dataset(write_pykt(tmp_path / "a", rows))
    b = load_dataset(write_pykt(tmp_path / "b", rows))
    c = load_dataset(write_pykt(tmp_path / "c", [(0, "1", [0, 1, 1], [1, 1, 1]), rows[1]]))
    assert a.sha256 == b.sha256 != c.sha256


def test_pykt_sequences_rebuild_students_from_chunks(tmp_path: Path) -> None:
    rows = [(0, "a", list(range(5)) * 2, [1, 0] * 5), (-1, "b", [1, 2, 3, 4], [0, 1, 1, 0])]
    ds = load_dataset(write_pykt(tmp_path / "full", rows))
    folder = write_pykt_sequences(tmp_path / "seq", ds, max_len=4)
    rebuilt = load_dataset(folder)
    assert rebuilt.fmt == "pykt_sequences"
    assert rebuilt.uids == ["a", "b"]
    assert rebuilt.folds.tolist() == [0, -1]
    # 10 = 4 + 4 + 2: the remainder of 2 (< 3) is dropped by pyKT's chunking.
    assert rebuilt.concepts[0].tolist() == list(range(5)) + [0, 1, 2]
    assert rebuilt.responses[1].tolist() == [0, 1, 1, 0]
    assert rebuilt.source_files == ("test_sequences.csv", "train_valid_sequences.csv")


def test_pykt_format_wins_when_both_file_kinds_are_present(tmp_path: Path) -> None:
    rows = [(0, "a", [1, 2, 3], [1, 0, 1]), (-1, "b", [1, 2, 3], [0, 1, 1])]
    folder = write_pykt(tmp_path / "both", rows)
    write_pykt_sequences(folder, load_dataset(folder))
    assert load_dataset(folder).fmt == "pykt"
    assert load_dataset(folder, fmt="pykt_sequences").fmt == "pykt_sequences"


# ---- real data: /work/shared/datasets/assist2015_pykt --------------------------------


def test_assist2015_pykt_matches_pykt_split_counts(assist2015_pykt) -> None:
    ds = assist2015_pykt
    folds = ds.folds
    assert ds.num_c == 100
    assert int((folds >= 0).sum()) == 15_275
    assert [int((folds == f).sum()) for f in range(5)] == [3_055] * 5
    assert int((folds == -1).sum()) == 3_818
    assert int(ds.lengths.sum()) == 682_797
    assert int(ds.lengths.min()) >= 3


def test_assist2015_pykt_window_protocol_matches_pykt(assist2015_pykt) -> None:
    ds = assist2015_pykt
    _, _, test = split_students(ds, 0)
    window = build_window_test(ds, test)
    assert len(window) == 6_102
    assert window.num_targets == 134_640
    chunks = build_windows(ds, test)
    assert len(chunks) == 3_866
    assert chunks.num_targets == 134_592


def test_assist2015_pykt_fold0_windows_match_pykt(assist2015_pykt) -> None:
    ds = assist2015_pykt
    train, valid, _ = split_students(ds, 0)
    tr, va = build_windows(ds, train), build_windows(ds, valid)
    assert len(tr) == 12_344 and int(tr.length.sum()) == 438_500
    assert len(va) == 3_082 and va.num_targets == 102_749


def test_describe_reports_pykt_numbers(assist2015_pykt) -> None:
    info = describe(assist2015_pykt)
    json.dumps(info)  # JSON-ready
    assert info["students_per_fold"] == {str(f): 3_055 for f in range(5)}
    assert info["test_students"] == 3_818
    assert info["num_concepts"] == 100
    assert info["interactions"]["train_valid"] + info["interactions"]["test"] == 682_797
    assert info["train_valid_windows"]["rows"] == 15_426
    assert info["test_windows"] == {"rows": 3_866, "scored_targets": 134_592}
    assert info["test_window_protocol"] == {"rows": 6_102, "scored_targets": 134_640}


def test_assist2015_pykt_loads_and_builds_tensors_quickly(shared_datasets: Path) -> None:
    start = time.perf_counter()
    ds = load_dataset(shared_datasets / "assist2015_pykt")
    train, valid, test = split_students(ds, 0)
    for build, idx in (
        (build_windows, train),
        (build_windows, valid),
        (build_windows, test),
        (build_window_test, test),
    ):
        build(ds, idx)
    assert time.perf_counter() - start < 5.0


def test_assist2015_pykt_sequences_rebuild_matches_pykt_chunk_counts(assist2015_pykt, tmp_path: Path) -> None:
    folder = write_pykt_sequences(tmp_path / "seq", assist2015_pykt)
    rebuilt = load_dataset(folder)
    info = describe(rebuilt)
    assert rebuilt.num_c == 100
    assert info["train_valid_windows"]["rows"] == 15_426
    # pyKT's sequence files drop 8 interactions (chunk remainders shorter than 3).
    assert int(rebuilt.lengths.sum()) == 682_789
    assert rebuilt.uids == assist2015_pykt.uids
    assert np.array_equal(rebuilt.folds, assist2015_pykt.folds)


@pytest.mark.parametrize("fmt", ["auto", "pykt"])
def test_name_override(assist2015_pykt, shared_datasets: Path, fmt: str) -> None:
    ds = load_dataset(shared_datasets / "assist2015_pykt", fmt, name="a15")
    assert ds.name == "a15"
    assert ds.sha256 == assist2015_pykt.sha256
