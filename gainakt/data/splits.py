"""Student-level splits: pyKT's 80/20 test split and 5 folds, and per-fold index sets."""

from __future__ import annotations

import numpy as np

from gainakt.data.dataset import KTDataset

PYKT_SEED = 1024
PYKT_TEST_RATIO = 0.2
PYKT_FOLDS = 5

# Every split rule a reader may record in KTDataset.split, with the sentence shown to users.
SPLITS: dict[str, str] = {
    "pykt_files": "the files' own split: train/valid folds 0-4 from the fold column, the test file as test",
    "pykt_split_of_file": "pyKT's split of one file: last 20% of a seed-1024 shuffle are test, the rest "
                          "cut into folds 0-4",
    "dkvmn_published": "DKVMN's published split: *_train1.csv trains, *_valid1.csv validates (fold 0 only), "
                       "*_test.csv tests",
    "dkvmn_kfold": "*_test.csv tests; *_train.csv cut into folds 0-4 like pyKT's KFold_split (seed 1024)",
    "simulated": "simulated students split like pyKT (20% test, folds 0-4)",
}


def _pandas_sample_order(n: int, seed: int) -> np.ndarray:
    """Return the row order of ``df.sample(frac=1, random_state=seed)`` for an n-row frame.

    pandas draws ``RandomState(seed).choice(n, n, replace=False)``, which is
    ``RandomState(seed).permutation(n)``; tests check the two agree.
    """
    return np.random.RandomState(seed).permutation(n)


def kfold_labels(n: int, k: int = PYKT_FOLDS) -> np.ndarray:
    """Return fold labels 0..k-1 in contiguous blocks, the first ``n % k`` blocks one longer.

    This is the block layout of pyKT's ``KFold_split`` and of scikit-learn's ``KFold``.
    """
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k, dtype=np.int64), sizes)


def kfold_assign(n: int, *, k: int = PYKT_FOLDS, seed: int = PYKT_SEED) -> np.ndarray:
    """Return a fold label (0..k-1) for each of n students, kept in their given order.

    Students are shuffled like ``df.sample(frac=1, random_state=seed)`` and the shuffled
    list is cut into k contiguous blocks, exactly as pyKT's ``KFold_split``; this equals
    ``sklearn.model_selection.KFold(k, shuffle=True, random_state=seed)`` (tested).
    """
    order = _pandas_sample_order(n, seed)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = kfold_labels(n, k)
    return folds


def pykt_split(
    n: int, *, seed: int = PYKT_SEED, test_ratio: float = PYKT_TEST_RATIO, k: int = PYKT_FOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """Split n students like pyKT; return ``(order, folds)``.

    ``order`` lists student indices as pyKT writes them: the ``train_valid.csv`` rows
    (in ``KFold_split``'s shuffled order) followed by the ``test.csv`` rows (in
    ``train_test_split``'s shuffled order). ``folds[i]`` belongs to ``order[i]``: 0..k-1
    for train/valid, -1 for test. pyKT's rule: shuffle with seed 1024, the *last*
    ``int(n * 0.2)`` students are the test set, then shuffle the rest again with seed
    1024 and cut it into k contiguous folds.
    """
    shuffled = _pandas_sample_order(n, seed)
    test_num = int(n * test_ratio)  # pyKT's own rounding, float product included
    train, test = shuffled[: n - test_num], shuffled[n - test_num :]
    train = train[_pandas_sample_order(len(train), seed)]
    folds = np.concatenate([kfold_labels(len(train), k), np.full(len(test), -1, dtype=np.int64)])
    return np.concatenate([train, test]), folds


def split_students(ds: KTDataset, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(train_idx, valid_idx, test_idx)`` student indices (int64, ascending) for a fold.

    Validation is the students of ``fold``; training every other non-test student;
    test the students with fold -1. A dataset with ``valid_folds`` accepts only those folds.
    """
    folds = np.asarray(ds.folds)
    available = sorted(int(f) for f in np.unique(folds) if f >= 0)
    if ds.valid_folds is not None:
        available = [f for f in available if f in ds.valid_folds]
    if fold not in available:
        raise ValueError(f"fold {fold} not in dataset {ds.name!r} (folds: {available})")
    train = np.flatnonzero((folds != fold) & (folds != -1))
    valid = np.flatnonzero(folds == fold)
    test = np.flatnonzero(folds == -1)
    return train, valid, test
