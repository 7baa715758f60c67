"""Raw ASSISTments 2015 CSV: pyKT's preprocessing rules, checked on small files and on the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gainakt.data import load_dataset, pykt_split

HEADER = "user_id,log_id,sequence_id,correct,original\n"


def test_rows_are_filtered_sorted_and_mapped(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text(
        HEADER
        + "\n".join(
            [
                "50,10,700,1,1",
                "50,12,700,0.5,1",  # partial credit: dropped
                "50,11,800,0,1",
                "50,,800,1,1",  # missing log_id: dropped
                "60,1,900,1,1",  # user 60 keeps only 2 usable rows: dropped
                "60,2,900,1,1",
                "60,3,900,0.25,1",
                "70,5,800,1,0",
                "70,4,700,1,0",
                "70,6,700,0,0",
                "50,13,800,1.0,1",
            ]
        )
        + "\n"
    )
    ds = load_dataset(path)
    assert (ds.fmt, ds.name) == ("raw_assist2015", "raw")
    assert ds.num_c == 2  # concept 900 belonged only to the dropped user
    by_uid = {u: (c.tolist(), r.tolist()) for u, c, r in zip(ds.uids, ds.concepts, ds.responses, strict=True)}
    # user 50 appears first (uid 0), ordered by log_id 10, 11, 13; concept 700 -> 0, 800 -> 1.
    assert by_uid["0"] == ([0, 1, 1], [1, 0, 1])
    # user 70 (uid 1) ordered by log_id 4, 5, 6.
    assert by_uid["1"] == ([0, 1, 0], [1, 1, 0])
    assert ds.source_files == ("raw.csv",)


def test_split_follows_pykt_order_and_folds(tmp_path: Path) -> None:
    rows = [f"{u},{u * 10 + t},{t % 2},{(u + t) % 2}" for u in range(12) for t in range(3)]
    path = tmp_path / "r.csv"
    path.write_text("user_id,log_id,sequence_id,correct\n" + "\n".join(rows) + "\n")
    ds = load_dataset(path)
    order, folds = pykt_split(12)
    assert ds.uids == [str(i) for i in order]
    assert ds.folds.tolist() == folds.tolist()
    assert int((ds.folds == -1).sum()) == 2  # int(12 * 0.2)


def test_rebuilt_raw_file_reproduces_the_pykt_folder(
    assist2015_pykt, shared_datasets: Path, tmp_path: Path
) -> None:
    """Recreate a raw file from assist2015_pykt and its keyid2idx.json; the reader must give the folder back."""
    ds = assist2015_pykt
    keys = json.loads((shared_datasets / "assist2015_pykt" / "keyid2idx.json").read_text())
    raw_uid = np.array(list(keys["uid"]), dtype=np.int64)  # index = pyKT's uid number
    raw_concept = np.array(list(keys["concepts"]), dtype=np.int64)
    student_of_uid = np.empty(len(ds), dtype=np.int64)
    student_of_uid[np.array(ds.uids, dtype=np.int64)] = np.arange(len(ds))
    lengths = ds.lengths[student_of_uid]
    user = np.repeat(raw_uid, lengths)
    concepts = np.concatenate([ds.concepts[i] for i in student_of_uid])
    correct = np.concatenate([ds.responses[i] for i in student_of_uid])
    log_id = np.arange(len(user)) * 3 + 7
    # Scramble rows inside each user (users stay in first-appearance order): log_id restores the order.
    rows = np.lexsort(
        (np.random.default_rng(0).random(len(user)), np.repeat(np.arange(len(lengths)), lengths))
    )
    columns = (
        user[rows].tolist(),
        log_id[rows].tolist(),
        raw_concept[concepts][rows].tolist(),
        correct[rows].tolist(),
    )
    body = "\n".join(f"{u},{g},{c},{r}" for u, g, c, r in zip(*columns, strict=True))
    # Rows pyKT drops: partial credit, a missing field, a user with only 2 interactions.
    noise = f"{raw_uid[0]},1,1,0.5\n{raw_uid[1]},2,,1\n1,3,3,1\n1,4,4,0\n"
    path = tmp_path / "assist2015_raw.csv"
    path.write_text("user_id,log_id,sequence_id,correct\n" + noise + body + "\n")
    rebuilt = load_dataset(path)
    assert rebuilt.uids == ds.uids
    assert np.array_equal(rebuilt.folds, ds.folds)
    assert rebuilt.num_c == ds.num_c
    assert np.array_equal(rebuilt.lengths, ds.lengths)
    assert np.array_equal(np.concatenate(rebuilt.concepts), np.concatenate(ds.concepts))
    assert np.array_equal(np.concatenate(rebuilt.responses), np.concatenate(ds.responses))
