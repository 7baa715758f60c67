"""The synthetic simulator: determinism, shapes, monotone truth, pyKT-like folds, learnable signal."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gainakt.metrics import auc_accuracy
from gainakt.simulate import GUESS, SLIP, simulate


def test_same_seed_same_data_and_checksum() -> None:
    a, b = simulate(num_students=50, seed=4), simulate(num_students=50, seed=4)
    assert a.sha256 == b.sha256
    assert all(np.array_equal(x, y) for x, y in zip(a.concepts, b.concepts, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.responses, b.responses, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.true_mastery, b.true_mastery, strict=True))


def test_different_seed_different_data() -> None:
    a, b = simulate(num_students=50, seed=4), simulate(num_students=50, seed=5)
    assert a.sha256 != b.sha256
    assert not all(
        len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a.concepts, b.concepts, strict=True)
    )


def test_checksum_names_every_parameter() -> None:
    base = simulate(num_students=20, seed=0).sha256
    assert simulate(num_students=20, seed=0, forgetting=0.1).sha256 != base
    assert simulate(num_students=20, seed=0, num_skills=7).sha256 != base
    assert simulate(num_students=21, seed=0).sha256 != base


def test_shapes_types_and_fields() -> None:
    ds = simulate(num_students=40, num_skills=6, min_len=5, max_len=9, seed=1)
    assert (ds.name, ds.fmt, ds.num_c, ds.source_files) == ("synthetic", "synthetic", 6, ())
    assert len(ds.concepts) == len(ds.responses) == len(ds.true_mastery) == len(ds.uids) == 40
    for c, r, m in zip(ds.concepts, ds.responses, ds.true_mastery, strict=True):
        assert 5 <= len(c) <= 9 and len(r) == len(c)
        assert c.dtype == np.int64 and r.dtype == np.int64
        assert c.min() >= 0 and c.max() < 6 and set(np.unique(r)) <= {0, 1}
        assert m.shape == (len(c), 6) and m.dtype == np.float32
        assert (m >= 0).all() and (m <= 1).all()


def test_mastery_never_decreases_without_forgetting() -> None:
    ds = simulate(num_students=100, seed=2)
    for m in ds.true_mastery:
        assert (np.diff(m, axis=0) >= 0).all()


def test_forgetting_lowers_unpractised_skills() -> None:
    ds = simulate(num_students=100, seed=2, forgetting=0.2)
    drops = sum(int((np.diff(m, axis=0) < -1e-6).any()) for m in ds.true_mastery)
    assert drops > 50


def test_practised_skill_gains_and_others_stay_without_forgetting() -> None:
    ds = simulate(num_students=20, seed=3)
    for c, m in zip(ds.concepts, ds.true_mastery, strict=True):
        step = np.diff(m, axis=0)
        others = np.ones_like(step, dtype=bool)
        others[np.arange(len(step)), c[1:]] = False
        assert (step[np.arange(len(step)), c[1:]] > 0).all()
        assert (step[others] == 0).all()


def test_folds_follow_pykt_split() -> None:
    ds = simulate(num_students=600)
    assert int((ds.folds == -1).sum()) == 120
    assert np.bincount(ds.folds[ds.folds >= 0]).tolist() == [96] * 5


def test_responses_depend_on_true_mastery() -> None:
    """The true probability (from mastery before each answer) separates right from wrong answers."""
    ds = simulate(seed=0)
    ys, ps = [], []
    for c, r, m in zip(ds.concepts, ds.responses, ds.true_mastery, strict=True):
        before = m[np.arange(len(c) - 1), c[1:]]
        ps.append(GUESS + (1 - GUESS - SLIP) * before)
        ys.append(r[1:])
    auc, _ = auc_accuracy(np.concatenate(ys), np.concatenate(ps))
    assert 0.75 < auc < 0.9


def test_default_generation_is_fast() -> None:
    start = time.perf_counter()
    simulate()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "kwargs", [{"num_students": 0}, {"min_len": 1}, {"min_len": 10, "max_len": 5}, {"forgetting": 1.0}]
)
def test_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError):
        simulate(**kwargs)
