"""Window tensors (pyKT chunking and window protocol) and deterministic batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gainakt.data import KTDataset, build_window_test, build_windows, describe, iterate_batches
from gainakt.simulate import simulate


def toy(lengths: list[int], folds: list[int] | None = None) -> KTDataset:
    """Student i has concepts 100*i + t (t = 0..L-1, so ids tell position) and responses t % 2."""
    concepts = [np.arange(n, dtype=np.int64) + 100 * i for i, n in enumerate(lengths)]
    responses = [np.arange(n, dtype=np.int64) % 2 for n in lengths]
    folds_arr = np.array(folds if folds is not None else [0] * len(lengths), dtype=np.int64)
    return KTDataset(
        "toy",
        "pykt",
        100 * len(lengths),
        concepts,
        responses,
        folds_arr,
        [str(i) for i in range(len(lengths))],
        "",
        (),
    )


def test_build_windows_chunks_and_drops_short_remainders() -> None:
    ds = toy([7, 9, 2, 4])
    s = build_windows(ds, np.arange(4), max_len=4)
    # 7 -> 4 + 3; 9 -> 4 + 4 (+1 dropped); 2 -> dropped; 4 -> 4.
    assert s.student.tolist() == [0, 0, 1, 1, 3]
    assert s.length.tolist() == [4, 3, 4, 4, 4]
    assert s.q.shape == (5, 3) and s.q.dtype == torch.long and s.target.dtype == torch.float32
    # Second chunk of student 0 holds interactions 4..6; interaction 6 has no successor,
    # so its position is padding (0) like pyKT's masked sequences.
    assert s.q[1].tolist() == [4, 5, 0]
    assert s.qry[1].tolist() == [5, 6, 0]
    assert s.r[1].tolist() == [0, 1, 0]
    assert s.target[1].tolist() == [1.0, 0.0, 0.0]
    assert s.mask[1].tolist() == [True, True, False]
    assert torch.equal(s.score_mask, s.mask)
    assert s.true_mastery is None


def test_window_protocol_scores_every_later_interaction_once() -> None:
    ds = toy([6, 3, 1])
    s = build_window_test(ds, np.arange(3), max_len=4)
    assert s.student.tolist() == [0, 0, 0, 1]  # the single-interaction student has no target
    assert s.q[0].tolist() == [0, 1, 2] and s.score_mask[0].tolist() == [True, True, True]
    # Interaction 4 is predicted from interactions 1..3, interaction 5 from 2..4.
    assert s.q[1].tolist() == [1, 2, 3] and s.qry[1, -1] == 4
    assert s.q[2].tolist() == [2, 3, 4] and s.qry[2, -1] == 5
    assert s.score_mask[1].tolist() == [False, False, True]
    assert s.mask[1].all()
    assert s.length[3] == 3 and s.score_mask[3].tolist() == [True, True, False]
    scored = s.qry[s.score_mask]
    assert sorted(scored.tolist()) == [1, 2, 3, 4, 5, 101, 102]
    info = describe(KTDataset(**{**ds.__dict__, "folds": np.array([-1, -1, -1])}), max_len=4)
    assert info["test_window_protocol"] == {"rows": len(s), "scored_targets": s.num_targets}


def test_describe_counts_equal_built_tensors() -> None:
    ds = toy([1, 2, 3, 5, 8, 13, 21, 34], folds=[0, 1, 2, 3, 4, -1, -1, -1])
    info = describe(ds, max_len=6)
    tv = np.flatnonzero(ds.folds >= 0)
    te = np.flatnonzero(ds.folds == -1)
    assert info["train_valid_windows"]["rows"] == len(build_windows(ds, tv, 6))
    assert info["train_valid_windows"]["scored_targets"] == build_windows(ds, tv, 6).num_targets
    assert info["test_windows"] == {
        "rows": len(build_windows(ds, te, 6)),
        "scored_targets": build_windows(ds, te, 6).num_targets,
    }
    window = build_window_test(ds, te, 6)
    assert info["test_window_protocol"] == {"rows": len(window), "scored_targets": window.num_targets}


def test_true_mastery_is_the_queried_concepts_mastery_after_t() -> None:
    ds = simulate(num_students=30, num_skills=5, min_len=10, max_len=30, seed=3)
    s = build_windows(ds, np.arange(30), max_len=8)
    assert s.true_mastery is not None and s.true_mastery.shape == s.q.shape
    starts = {}
    for n in range(len(s)):
        student = int(s.student[n])
        start = starts.get(student, 0)
        starts[student] = start + 8
        for t in range(int(s.length[n]) - 1):
            expected = ds.true_mastery[student][start + t, int(s.qry[n, t])]
            assert s.true_mastery[n, t].item() == pytest.approx(float(expected))
    assert (s.true_mastery[~s.mask] == 0).all()


def test_sequence_set_to_and_len() -> None:
    s = build_windows(toy([5, 7]), np.arange(2), max_len=4)
    moved = s.to("cpu")
    assert len(moved) == len(s) == 3
    assert torch.equal(moved.q, s.q)


def _orders(seqs, seed: int, **kw) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [b.student.tolist() for b in iterate_batches(seqs, 3, generator=g, **kw)]


def test_batches_same_seed_same_order_and_full_coverage() -> None:
    ds = toy([3 + (i * 7) % 11 for i in range(20)])
    seqs = build_windows(ds, np.arange(20), max_len=16)
    a, b, c = _orders(seqs, 5, shuffle=True), _orders(seqs, 5, shuffle=True), _orders(seqs, 6, shuffle=True)
    assert a == b != c
    assert sorted(sum(a, [])) == list(range(20))
    assert sum(_orders(seqs, 0), []) == list(range(20))  # no shuffle: file order


def test_batches_are_trimmed_to_their_longest_row() -> None:
    ds = toy([3, 4, 10, 5])
    seqs = build_windows(ds, np.arange(4), max_len=16)
    widths = [b.q.shape[1] for b in iterate_batches(seqs, 2)]
    assert widths == [3, 9]  # lengths (3, 4) -> 3 positions; (10, 5) -> 9
    for batch in iterate_batches(seqs, 2):
        assert batch.mask[:, -1].any()
        assert batch.true_mastery is None


def test_bucketing_groups_similar_lengths_and_is_deterministic() -> None:
    lengths = [3 + (i * 5) % 13 for i in range(24)]
    seqs = build_windows(toy(lengths), np.arange(24), max_len=16)
    g = torch.Generator().manual_seed(1)
    batches = list(iterate_batches(seqs, 4, generator=g, shuffle=True, bucket_by_length=True))
    spans = [int(b.length.max() - b.length.min()) for b in batches]
    assert max(spans) <= 3
    assert sorted(sum((b.student.tolist() for b in batches), [])) == list(range(24))
    again = [
        b.student.tolist()
        for b in iterate_batches(
            seqs, 4, generator=torch.Generator().manual_seed(1), shuffle=True, bucket_by_length=True
        )
    ]
    assert again == [b.student.tolist() for b in batches]
    plain = [b.length.tolist() for b in iterate_batches(seqs, 4, bucket_by_length=True)]
    assert sum(plain, []) == sorted(sum(plain, []))  # without shuffle: ascending lengths


def test_bad_batch_size() -> None:
    seqs = build_windows(toy([5]), np.arange(1), max_len=4)
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(seqs, 0))


def test_no_students_gives_empty_tensors_of_the_right_width() -> None:
    ds = simulate(num_students=10, num_skills=4, seed=0)
    for build in (build_windows, build_window_test):
        s = build(ds, np.zeros(0, dtype=np.int64), max_len=5)
        assert len(s) == 0 and s.q.shape == (0, 4) and s.true_mastery is not None
        assert list(iterate_batches(s, 8)) == []
