"""Tests of the GainAKT2Exp model: size, head invariants, causality, autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gainakt.model import GainAKT2Exp, accumulate_mastery, dropout, relu_dropout

SMALL = dict(num_c=7, d_model=16, n_heads=2, n_blocks=2, d_ff=24, dropout=0.2, max_len=30)


def _inputs(b: int = 3, t: int = 20, num_c: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, num_c, (b, t), generator=g)
    r = torch.randint(0, 2, (b, t), generator=g)
    qry = torch.randint(0, num_c, (b, t), generator=g)
    return q, r, qry


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_config_parameter_count_with_heads():
    assert _count(GainAKT2Exp(num_c=100)) == 14_658_761


def test_paper_config_parameter_count_without_heads():
    assert _count(GainAKT2Exp(num_c=100, use_gain_head=False)) == 14_556_161
    assert _count(GainAKT2Exp(num_c=100, use_mastery_head=False)) == 14_556_161


def test_head_normalization_adds_two_layernorms():
    plain = GainAKT2Exp(**SMALL)
    normed = GainAKT2Exp(**SMALL, head_normalization=True)
    assert _count(normed) - _count(plain) == 4 * SMALL["d_model"]
    assert isinstance(normed.mastery_norm, nn.LayerNorm) and isinstance(normed.gain_norm, nn.LayerNorm)


def test_output_shapes_and_streams():
    model = GainAKT2Exp(**SMALL).eval()
    q, r, qry = _inputs()
    out = model(q, r, qry, return_streams=True)
    assert out["logits"].shape == (3, 20) and out["predictions"].shape == (3, 20)
    assert out["mastery"].shape == (3, 20, 7) and out["gains"].shape == (3, 20, 7)
    assert out["context"].shape == (3, 20, 16) and out["value"].shape == (3, 20, 16)
    assert torch.allclose(out["predictions"], torch.sigmoid(out["logits"]))
    assert "context" not in model(q, r, qry)


def test_heads_off_give_none():
    model = GainAKT2Exp(**SMALL, use_mastery_head=False).eval()
    out = model(*_inputs())
    assert out["mastery"] is None and out["gains"] is None


@pytest.mark.parametrize("head_normalization", [False, True])
def test_mastery_is_monotone_and_bounded_and_gains_non_negative(head_normalization):
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL, head_normalization=head_normalization, gain_scale=0.5).train()
    out = model(*_inputs(b=4, t=25, seed=1))
    m, g = out["mastery"], out["gains"]
    assert (g >= 0).all()
    assert (m >= 0).all() and (m <= 1).all()
    assert (m[:, 1:] >= m[:, :-1]).all()
    assert (m == 1).any()  # the large gain scale saturates some concepts: the clamp is exercised


def test_vectorised_mastery_equals_stepwise_recurrence():
    torch.manual_seed(0)
    initial = torch.rand(4, 6)
    gains = torch.relu(torch.randn(4, 30, 6)) * 2.0
    fast = accumulate_mastery(initial, gains, 0.1)
    slow = [initial]
    for t in range(1, gains.shape[1]):
        slow.append(torch.clamp(slow[-1] + 0.1 * gains[:, t], 0.0, 1.0))
    slow_t = torch.stack(slow, dim=1)
    assert torch.allclose(fast, slow_t, atol=1e-6)
    assert (slow_t == 1).any()


def test_output_at_t_does_not_depend_on_later_inputs():
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL).eval()
    q, r, qry = _inputs(b=2, t=20)
    cut = 9
    q2, r2, qry2 = q.clone(), r.clone(), qry.clone()
    q2[:, cut + 1 :] = (q2[:, cut + 1 :] + 3) % 7
    r2[:, cut + 1 :] = 1 - r2[:, cut + 1 :]
    qry2[:, cut + 1 :] = (qry2[:, cut + 1 :] + 1) % 7
    a = model(q, r, qry, return_streams=True)
    b = model(q2, r2, qry2, return_streams=True)
    for key in ("logits", "mastery", "gains", "context", "value"):
        assert torch.allclose(a[key][:, : cut + 1], b[key][:, : cut + 1], atol=1e-5), key
        assert not torch.allclose(a[key][:, cut + 1 :], b[key][:, cut + 1 :], atol=1e-5), key


def test_output_at_t_depends_on_input_at_t():
    # position t attends to itself: changing the response at t changes the prediction at t
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL).eval()
    q, r, qry = _inputs(b=1, t=10)
    r2 = r.clone()
    r2[0, 5] = 1 - r2[0, 5]
    a, b = model(q, r, qry)["logits"], model(q, r2, qry)["logits"]
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.isclose(a[0, 5], b[0, 5], atol=1e-6)


def test_prediction_head_equals_plain_concatenation_mlp():
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL).eval()
    q, r, qry = _inputs()
    out = model(q, r, qry, return_streams=True)
    head = model.prediction
    features = torch.cat([out["context"], out["value"], model.concept_embedding(qry)], dim=-1)
    expected = head.fc2(torch.relu(head.fc1(features))).squeeze(-1)
    assert torch.allclose(out["logits"], expected, atol=1e-5)


def test_sequence_longer_than_max_len_is_rejected():
    model = GainAKT2Exp(**SMALL)
    with pytest.raises(ValueError, match="max_len"):
        model(*_inputs(t=31))


def test_cpu_dropout_matches_its_definition():
    torch.manual_seed(0)
    x = torch.randn(200, 500, requires_grad=True)
    y = dropout(x, 0.2, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01
    assert torch.allclose(y[kept], x[kept] / 0.8)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.8)
    assert dropout(x, 0.2, False) is x


def test_cpu_relu_dropout_gradient_is_its_mask():
    torch.manual_seed(0)
    x = torch.randn(200, 500, requires_grad=True)
    y = relu_dropout(x, 0.25, True)
    assert (y >= 0).all()
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert abs(kept.float().mean().item() - 0.75 * (x > 0).float().mean().item()) < 0.01
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)


def test_training_mode_is_stochastic_and_seeded():
    model = GainAKT2Exp(**SMALL).train()
    inputs = _inputs()
    torch.manual_seed(3)
    a = model(*inputs)["logits"]
    b = model(*inputs)["logits"]
    torch.manual_seed(3)
    c = model(*inputs)["logits"]
    assert not torch.allclose(a, b)
    assert torch.equal(a, c)


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL).train()
    out = model(*_inputs())
    (out["logits"].mean() + out["mastery"].mean() + out["gains"].mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_autocast_keeps_heads_in_float32():
    torch.manual_seed(0)
    model = GainAKT2Exp(**SMALL).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*_inputs())
    assert out["mastery"].dtype == torch.float32 and out["gains"].dtype == torch.float32
    m = out["mastery"]
    assert (m[:, 1:] >= m[:, :-1]).all() and (m <= 1).all()
    assert torch.isfinite(out["logits"].float()).all()
