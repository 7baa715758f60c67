"""Split helpers reproduce pyKT's shuffles (pandas sample, scikit-learn KFold)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from gainakt.data import KTDataset, kfold_assign, pykt_split, split_students
from gainakt.data.splits import _pandas_sample_order, kfold_labels


@pytest.mark.parametrize("n", [1, 7, 100, 19_093])
def test_shuffle_equals_pandas_sample(n: int) -> None:
    frame = pd.DataFrame({"i": np.arange(n)})
    assert np.array_equal(
        _pandas_sample_order(n, 1024), frame.sample(frac=1.0, random_state=1024)["i"].to_numpy()
    )


@pytest.mark.parametrize("n", [10, 13, 15_275])
def test_kfold_assign_equals_sklearn_kfold(n: int) -> None:
    folds = kfold_assign(n)
    for fold, (_, valid) in enumerate(KFold(n_splits=5, shuffle=True, random_state=1024).split(np.arange(n))):
        assert np.array_equal(np.flatnonzero(folds == fold), np.sort(valid))


def test_kfold_labels_put_larger_blocks_first() -> None:
    assert np.bincount(kfold_labels(13)).tolist() == [3, 3, 3, 2, 2]


def test_pykt_split_sizes_and_order() -> None:
    order, folds = pykt_split(19_093)
    assert sorted(order.tolist()) == list(range(19_093))
    assert int((folds == -1).sum()) == 3_818
    assert np.bincount(folds[folds >= 0]).tolist() == [3_055] * 5
    assert (folds[-3_818:] == -1).all()  # test students come last, as in pyKT's files


def test_split_students_partitions_by_fold() -> None:
    folds = np.array([0, 1, -1, 2, 0, 1, -1])
    ds = KTDataset(
        "t", "pykt", 1, [np.zeros(3, np.int64)] * 7, [np.zeros(3, np.int64)] * 7, folds, ["u"] * 7, "", ()
    )
    train, valid, test = split_students(ds, 1)
    assert train.tolist() == [0, 3, 4]
    assert valid.tolist() == [1, 5]
    assert test.tolist() == [2, 6]
    with pytest.raises(ValueError, match="fold 4 not in dataset"):
        split_students(ds, 4)
