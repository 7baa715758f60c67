"""Issue 22: the reference's training order as a switch, and the claim that a shorter run is the
first epochs of a longer one (the CPU ablation reuses the paper table's first epochs for `ours`)."""

from __future__ import annotations

import pytest
import torch

import gainakt.train as train_mod
from gainakt import train_seed
from gainakt.config import DataConfig, TrainConfig
from gainakt.data import build_windows, split_students
from gainakt.data.batching import batch_order
from gainakt.simulate import simulate
from gainakt.train import MemorySink
from harness.cli.main import build_parser
from harness.config.build import config_md5, hashed_view
from harness.run.launcher import resolve_run

TINY = ("--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--batch_size", "16", "--max_semantic_students", "10", "--alignment_global_students", "20",
        "--warmup_constraint_epochs", "1", "--alignment_warmup_epochs", "1")


def config(*argv: str) -> dict:
    ns = build_parser().parse_args(["run", "t", "--devices", "cpu", *argv])
    return resolve_run(ns, "t").config


@pytest.fixture(scope="module")
def data():
    return simulate(num_students=90, num_skills=8, min_len=8, max_len=24, seed=3)


def _served(monkeypatch) -> list[list[int]]:
    """Spy on the training batches: the window indices of every batch served, in order."""
    served: list[list[int]] = []
    real = train_mod.device_batches

    def spy(seqs, device, batch_size, **kw):
        lengths = seqs.length.cpu()
        for index in batch_order(lengths, batch_size, generator=torch.Generator().set_state(
                kw["generator"].get_state()), shuffle=kw["shuffle"], bucket_by_length=kw["bucket_by_length"]):
            served.append(index.tolist())
        yield from real(seqs, device, batch_size, **kw)

    monkeypatch.setattr(train_mod, "device_batches", spy)
    return served


def test_train_shuffle_is_on_by_default_and_out_of_config_md5():
    assert DataConfig().train_shuffle is True
    base = config(*TINY)
    assert base["data"]["train_shuffle"] is True and "train_shuffle" not in hashed_view(base)["data"]
    off = config(*TINY, "--no_train_shuffle")
    assert off["data"]["train_shuffle"] is False and hashed_view(off)["data"]["train_shuffle"] is False
    assert config_md5(off) != config_md5(base)
    # an older config.json without the key reads as shuffled (the behaviour before the switch existed)
    older = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    del older["data"]["train_shuffle"]
    assert TrainConfig.from_dict(older).data.train_shuffle is True


def test_default_serves_the_seeded_shuffle_of_before_every_epoch(data, monkeypatch):
    """With the switch at its default the batches are exactly those of the code before it: a
    permutation drawn from the seed's generator each epoch, so the epochs differ."""
    served = _served(monkeypatch)
    train_seed(config(*TINY, "--epochs", "2"), data, "cpu", MemorySink(), seed=5)
    cfg = TrainConfig.from_dict(config(*TINY))
    train_idx, _, _ = split_students(data, cfg.data.fold)
    lengths = build_windows(data, train_idx, cfg.data.seq_len).length
    gen = torch.Generator().manual_seed(5)  # the run's order generator, as before the switch
    expected = [b.tolist() for _ in range(2) for b in batch_order(lengths, 16, generator=gen, shuffle=True)]
    assert served == expected
    per_epoch = len(served) // 2
    assert served[:per_epoch] != served[per_epoch:]


def test_no_train_shuffle_serves_data_order_and_the_same_batches_every_epoch(data, monkeypatch):
    served = _served(monkeypatch)
    result = train_seed(config(*TINY, "--epochs", "2", "--no_train_shuffle"), data, "cpu", MemorySink(), seed=5)
    per_epoch = len(served) // 2
    first = served[:per_epoch]
    assert served[per_epoch:] == first  # the same batches in the same order
    assert [i for b in first for i in b] == list(range(sum(len(b) for b in first)))  # data order
    # and it changes training: another model than the shuffled run of the same seed
    shuffled = train_seed(config(*TINY, "--epochs", "2"), data, "cpu", MemorySink(), seed=5)
    assert result.history[0]["train_loss"] != shuffled.history[0]["train_loss"]


def test_a_shorter_run_is_the_first_epochs_of_a_longer_one(data):
    """The schedule depends on --epochs only through the cosine warm-up (off by default), so a
    2-epoch run equals the first 2 epochs of a 4-epoch run with early stopping (patience 2); on the
    CPU `mixed_precision` does not act, so the paper table's fp32 point and an AMP-on config agree too."""
    drop = ("epoch_seconds",)
    short = train_seed(config(*TINY, "--epochs", "2", "--torch_deterministic"), data, "cpu", MemorySink(), seed=9)
    long = train_seed(config(*TINY, "--epochs", "4", "--patience", "2", "--no_amp", "--torch_deterministic"),
                      data, "cpu", MemorySink(), seed=9)
    assert len(long.history) >= 2
    strip = [[{k: v for k, v in row.items() if k not in drop} for row in r.history[:2]] for r in (short, long)]
    assert strip[0] == strip[1]
    # the cosine warm-up is the exception: there the epoch count changes the weights from epoch 1
    cos_short = train_seed(config(*TINY, "--epochs", "2", "--enable_cosine_perf_schedule"), data, "cpu",
                           MemorySink(), seed=9)
    cos_long = train_seed(config(*TINY, "--epochs", "4", "--enable_cosine_perf_schedule"), data, "cpu",
                          MemorySink(), seed=9)
    assert cos_short.history[0]["train_loss"] != cos_long.history[0]["train_loss"]
