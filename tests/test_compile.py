"""training.compile: the padded shapes equal the unpadded computation, the compiled step equals the
eager one, the fields stay out of the default config_md5, CUDA graphs are refused on CPU, and a
deterministic compiled run reruns bit-identically.

Tests that call torch.compile are marked ``slow`` (CPU inductor: tens of seconds per shape here).
"""

from __future__ import annotations

import copy

import pytest
import torch

from gainakt import train_seed
from gainakt.compile import CompiledForward, compile_problem, pad_batch, round_up
from gainakt.data.batching import plan_packing
from gainakt.losses import LossSchedule, compute_losses
from gainakt.model import GainAKT2Exp
from gainakt.simulate import simulate
from gainakt.train import MemorySink, loss_settings
from harness.cli.main import build_parser, main
from harness.config.build import config_md5
from harness.run.launcher import resolve_run

TINY = ("--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--batch_size", "16", "--max_semantic_students", "10", "--alignment_global_students", "20",
        "--warmup_constraint_epochs", "1", "--alignment_warmup_epochs", "1")
COMPILE_KEYS = ("compile", "compile_width_multiple", "compile_rows_multiple")


def config(*argv: str) -> dict:
    ns = build_parser().parse_args(["run", "t", "--devices", "cpu", "--no_amp", *argv])
    return resolve_run(ns, "t").config


def tiny_model(dropout: float = 0.0) -> GainAKT2Exp:
    torch.manual_seed(0)
    return GainAKT2Exp(num_c=7, d_model=16, n_heads=2, n_blocks=1, d_ff=16, dropout=dropout, max_len=30)


def tiny_batch() -> dict:
    """Five rows of width 13 with 13, 4, 9, 1 and 7 valid positions (targets and masks as windows have)."""
    g = torch.Generator().manual_seed(1)
    b, t = 5, 13
    valid = torch.tensor([13, 4, 9, 1, 7])
    mask = torch.arange(t).unsqueeze(0) < valid.unsqueeze(1)
    return {"q": torch.randint(0, 7, (b, t), generator=g), "r": torch.randint(0, 2, (b, t), generator=g),
            "qry": torch.randint(0, 7, (b, t), generator=g), "target": torch.randint(0, 2, (b, t), generator=g).float(),
            "mask": mask, "valid": valid}


def loss_weights(cfg: dict):
    schedule = LossSchedule(loss_settings(cfg), 4, gain_scale=0.1)
    schedule.begin_epoch(0)
    schedule.end_epoch(0, mastery_corr_reference=0.1)
    return schedule.begin_epoch(1)


# --- configuration -----------------------------------------------------------------------------

def test_compile_fields_stay_out_of_the_default_md5_and_enter_it_when_used():
    base = config(*TINY)
    assert [base["training"][k] for k in COMPILE_KEYS] == ["none", 64, 4]
    stripped = copy.deepcopy(base)
    for key in COMPILE_KEYS:
        del stripped["training"][key]
    assert config_md5(stripped) == config_md5(base)  # configs written before the fields keep their md5
    compiled = config(*TINY, "--compile", "default")
    assert config_md5(compiled) != config_md5(base)
    assert config_md5(config(*TINY, "--compile", "default", "--compile_width_multiple", "8")) != config_md5(compiled)


def test_rounding_fields_without_compile_are_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "t", "--output_base", str(out), "--devices", "cpu", "--compile_width_multiple", "8"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "compile_width_multiple" in err and "training.compile is none" in err
    assert not out.exists()


def test_reduce_overhead_is_refused_on_cpu_in_one_line(tmp_path, capsys):
    assert compile_problem("default", "cpu") is None and compile_problem("reduce-overhead", "cuda:0") is None
    problem = compile_problem("reduce-overhead", "cpu")
    assert problem is not None and "CUDA" in problem
    code = main(["run", "t", "--output_base", str(tmp_path), "--devices", "cpu", "--compile", "reduce-overhead",
                 *TINY, "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "reduce-overhead" in err and "CUDA" in err
    assert list(tmp_path.iterdir()) == []  # refused before any experiment folder
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train_seed(config(*TINY, "--compile", "reduce-overhead", "--epochs", "1"), simulate(num_students=20), "cpu",
                   MemorySink())


def test_round_up_and_the_shape_bound():
    assert [round_up(n, 16, 30) for n in (1, 16, 17, 29, 30)] == [16, 16, 30, 30, 30]
    assert round_up(13, 4) == 16 and round_up(12, 4) == 12
    forward = CompiledForward(tiny_model(), "default", rows=16, width_multiple=8, rows_multiple=4)
    assert forward.padded_shape(5, 13, None) == (16, 16, None)
    assert forward.padded_shape(16, 29, plan_packing(torch.full((16,), 2), 29)) == (16, 30, 4)
    # widths 8, 16, 24, 30; packed rows 4, 8, 12, 16 or unpacked
    assert forward.shape_bound() == 4 * 5
    with pytest.raises(ValueError, match="larger than the compiled batch size"):
        forward.padded_shape(17, 3, None)
    with pytest.raises(ValueError, match="default or reduce-overhead"):
        CompiledForward(tiny_model(), "none", rows=16, width_multiple=8, rows_multiple=4)


# --- padding is exact (eager, no compile) -------------------------------------------------------

@pytest.mark.parametrize("packed", [False, True])
def test_padded_batch_gives_the_unpadded_outputs_losses_and_gradients(packed):
    batch = tiny_batch()
    b, t = batch["q"].shape
    plan = plan_packing(batch["valid"], t) if packed else None
    weights = loss_weights(config(*TINY))
    grads, outs, losses = [], [], []
    for padded in (False, True):
        model = tiny_model()
        if padded:
            q, r, qry, pack = pad_batch(batch["q"], batch["r"], batch["qry"], plan, 8, 16, 4)
            full = model(q, r, qry, pack=pack)
            assert all(torch.isfinite(v).all() for v in full.values() if v is not None)  # no NaN in padding
            out = {k: None if v is None else v[:b, :t] for k, v in full.items()}
        else:
            out = model(batch["q"], batch["r"], batch["qry"], pack=plan)
        terms = compute_losses(out, batch, weights)
        terms["total"].backward()
        outs.append(out)
        losses.append({k: float(v) for k, v in terms.items()})
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    valid = batch["mask"]
    for key in ("logits", "mastery", "gains"):
        torch.testing.assert_close(outs[1][key][valid], outs[0][key][valid], rtol=1e-5, atol=1e-6)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5, abs=1e-6, nan_ok=True)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_plan_keeps_every_window_and_adds_only_empty_slots():
    batch = tiny_batch()
    plan = plan_packing(batch["valid"], 13)
    _, _, _, pack = pad_batch(batch["q"], batch["r"], batch["qry"], plan, 8, 16, 4)
    assert pack is not None and (pack.rows, pack.width) == (4, 16)
    seg = pack.segment
    assert sorted(int((seg == i).sum()) for i in range(5)) == sorted(batch["valid"].tolist())
    assert int((seg >= 0).sum()) == int(batch["valid"].sum())
    mask = pack.attention_mask()[:, 0]
    assert mask.any(-1).all()  # every slot sees at least itself: no fully masked attention row
    dest = pack.dest.view(8, 16)
    assert (dest[5:] == 4 * 16).all() and (dest[:, 13:] == 4 * 16).all()


# --- compiled path (torch.compile, inductor on CPU) ---------------------------------------------

@pytest.mark.slow
def test_compiled_step_equals_eager_forward_losses_and_one_adam_step():
    batch = tiny_batch()
    plan = plan_packing(batch["valid"], 13)
    weights = loss_weights(config(*TINY))
    eager, twin = tiny_model(), tiny_model()
    compiled = CompiledForward(twin, "default", rows=8, width_multiple=16, rows_multiple=4)
    results = []
    for model, forward in ((eager, eager), (twin, compiled)):
        # eps 1e-3: k_proj.bias has an exactly zero gradient in exact arithmetic (softmax ignores a
        # per-query constant), and Adam with a tiny eps turns its rounding noise into +-lr steps
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-3)
        out = forward(batch["q"], batch["r"], batch["qry"], pack=plan)
        terms = compute_losses(out, batch, weights)
        terms["total"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        optimizer.step()
        results.append((out, {k: float(v) for k, v in terms.items()}, grads,
                        {n: p.detach().clone() for n, p in model.named_parameters()}))
    (out_e, loss_e, grad_e, par_e), (out_c, loss_c, grad_c, par_c) = results
    valid = batch["mask"]
    for key in ("logits", "mastery", "gains"):
        assert out_c[key].shape == out_e[key].shape
        torch.testing.assert_close(out_c[key][valid], out_e[key][valid], rtol=1e-5, atol=1e-5)
    assert loss_c == pytest.approx(loss_e, rel=1e-5, abs=1e-6, nan_ok=True)
    for name, value in grad_e.items():
        torch.testing.assert_close(grad_c[name], value, rtol=1e-4, atol=1e-6, msg=name)
    for name, value in par_e.items():
        torch.testing.assert_close(par_c[name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert compiled.record()["shapes_compiled"] == 1


@pytest.mark.slow
def test_compiled_training_equals_eager_and_records_its_shapes():
    data = simulate(num_students=40, num_skills=6, min_len=5, max_len=40, seed=5)
    runs = {}
    for mode in ("none", "default"):
        # one padded shape (width 30, 16 packed rows): one compile keeps the test short
        rounding = ("--compile_width_multiple", "30", "--compile_rows_multiple", "16") if mode != "none" else ()
        cfg = config(*TINY, "--dropout", "0", "--epochs", "1", "--max_len", "30", "--compile", mode, *rounding)
        sink = MemorySink()
        runs[mode] = (train_seed(cfg, data, "cpu", sink, seed=3), sink)
    (compiled, sink), (eager, _) = runs["default"], runs["none"]
    assert compiled.status == eager.status == "completed" and eager.compile is None
    for a, b in zip(compiled.history, eager.history, strict=True):
        for key in ("train_loss", "train_auc", "val_loss", "val_auc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    assert compiled.final["test_auc"] == pytest.approx(eager.final["test_auc"], abs=1e-4)
    record = compiled.compile
    assert record is not None and record["mode"] == "default" and record["evaluation"] == "eager"
    assert record["shapes_compiled"] == 1 and record["shape_bound"] == 1 * (1 + 1)
    assert any("distinct padded shapes" in m for m in sink.messages)


@pytest.mark.slow
def test_deterministic_compiled_training_reruns_bit_identically():
    data = simulate(num_students=30, num_skills=6, min_len=5, max_len=30, seed=7)
    cfg = config(*TINY, "--dropout", "0.1", "--epochs", "1", "--max_len", "24", "--compile", "default",
                 "--compile_width_multiple", "24", "--compile_rows_multiple", "16", "--torch_deterministic")
    first = train_seed(cfg, data, "cpu", MemorySink(), seed=5)
    torch._dynamo.reset()  # the rerun compiles again, as a new process would
    again = train_seed(cfg, data, "cpu", MemorySink(), seed=5)
    assert first.compile is not None and first.compile["deterministic"] is True
    for a, b in zip(first.history, again.history, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == \
               {k: v for k, v in b.items() if k != "epoch_seconds"}
    assert first.final == again.final


def test_a_compile_mode_the_device_cannot_run_fails_its_seed_as_a_user_error(tmp_path):
    # A folder configured for a GPU and resumed where there is none reaches train_seed with reduce-overhead
    # on the CPU: the seed fails with the one-line reason, and no bug traceback is sent.
    from harness.config.launch import LaunchOptions
    from harness.run.launcher import resolve_run
    from harness.run.workers import train_one_seed

    cfg = resolve_run(LaunchOptions(explicit={"compile": "reduce-overhead", "devices": ["0"], "epochs": 1,
                                              "model_preset": "small"}), "g").config
    events: list = []

    class Events:
        put = events.append

    data = simulate(num_students=20, num_skills=4, min_len=5, max_len=9, seed=1)
    kind, seed, reason = train_one_seed(cfg, data, "cpu", tmp_path, 42, False, Events())
    assert kind == "failed" and seed == 42 and "needs a CUDA device" in reason
    assert not [e for e in events if e[0] == "traceback"]
