"""Self-describing checkpoints, `gainakt.load_model`, resume's config check, `harness predict` and
`harness data score-truth` on one tiny trained run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gainakt
from gainakt.checkpoint import CheckpointError, model_args
from gainakt.data import build_windows, load_dataset, split_students
from gainakt.evaluate import evaluate
from gainakt.metrics import auc_accuracy
from gainakt.model import GainAKT2Exp
from harness.cli.main import main
from harness.folder.experiment import write_manifest

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--torch_deterministic", "--synthetic_students", "200",
        "--synthetic_min_len", "8", "--synthetic_max_len", "25", "--batch_size", "16",
        "--max_semantic_students", "10", "--alignment_global_students", "20", "--threads", "1"]
SIM = ["--students", "200", "--min_len", "8", "--max_len", "25"]  # the same students as TINY's dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A finished 2-epoch run, the same students exported by `harness data simulate`, and its results."""
    base = tmp_path_factory.mktemp("predict_runs")
    assert main(["run", "tiny", *TINY, "--epochs", "2", "--seeds", "21", "--output_base", str(base)]) == 0
    exp = next(p for p in base.iterdir() if p.is_dir())
    data = tmp_path_factory.mktemp("predict_data") / "sim"
    assert main(["data", "simulate", *SIM, "--out", str(data)]) == 0
    final = json.loads((exp / "results.json").read_text())["per_seed"]["21"]["final"]
    test_ids = pd.read_csv(data / "test.csv")["uid"].astype(str).tolist()
    return {"base": base, "exp": exp, "data": data, "final": final, "test_ids": test_ids}


def predict(trained: dict, out: Path, *extra: str, exp: Path | None = None) -> int:
    return main(["predict", str(exp or trained["exp"]), "--data", str(trained["data"]), "--out", str(out), *extra])


def copy_run(trained: dict, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / trained["exp"].name
    shutil.copytree(trained["exp"], target)
    return target


def rewrite_checkpoint(path: Path, **changes) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    torch.save(state, path)


# ---------------------------------------------------------------------------------------------
# Checkpoints and load_model


def test_checkpoint_carries_model_args_config_and_md5(trained):
    state = torch.load(trained["exp"] / "model_best.pth", map_location="cpu", weights_only=True)
    cfg = json.loads((trained["exp"] / "config.json").read_text())
    assert state["model_args"]["num_c"] == 20 and state["model_args"]["d_model"] == 16
    assert state["config"] == cfg
    assert state["config_md5"] == cfg["config_md5"]


def test_load_model_from_the_file_alone_reproduces_the_run(trained, tmp_path):
    alone = tmp_path / "elsewhere.pth"  # no config.json, no dataset next to it
    shutil.copy(trained["exp"] / "model_best.pth", alone)
    model = gainakt.load_model(alone)
    assert not model.training
    ds = load_dataset(trained["data"])
    _, _, test_idx = split_students(ds, 0)
    cfg = json.loads((trained["exp"] / "config.json").read_text())
    # Evaluated as the run's final evaluation was: its batch size and packing (a packed batch of other
    # rows rounds differently at the float level).
    result = evaluate(model, build_windows(ds, test_idx, 200), batch_size=cfg["training"]["eval_batch_size"],
                      device=torch.device("cpu"), pack=cfg["data"]["pack_windows"])
    assert result.auc == trained["final"]["test_auc"]
    assert result.n_scored == trained["final"]["test_n_scored"]


@pytest.mark.parametrize("kwargs", [
    {"num_c": 7, "d_model": 12, "n_heads": 3, "n_blocks": 2, "d_ff": 10, "dropout": 0.3, "max_len": 9,
     "gain_scale": 0.25, "head_normalization": True},
    {"num_c": 5, "d_model": 8, "n_heads": 2, "n_blocks": 1, "d_ff": 4, "use_gain_head": False},
])
def test_model_args_rebuild_the_same_model(kwargs):
    torch.manual_seed(0)
    model = GainAKT2Exp(**kwargs).eval()
    twin = GainAKT2Exp(**model_args(model)).eval()
    twin.load_state_dict(model.state_dict())
    q = torch.randint(0, kwargs["num_c"], (2, 6))
    r = torch.randint(0, 2, (2, 6))
    a, b = model(q, r, q.roll(-1, 1)), twin(q, r, q.roll(-1, 1))
    assert torch.equal(a["logits"], b["logits"])
    assert (a["mastery"] is None) == (b["mastery"] is None)


def test_load_model_refuses_an_old_checkpoint_and_a_non_checkpoint(trained, tmp_path):
    old = tmp_path / "old.pth"
    shutil.copy(trained["exp"] / "model_best.pth", old)
    rewrite_checkpoint(old, model_args=None, config=None)
    with pytest.raises(CheckpointError, match="no model_args"):
        gainakt.load_model(old)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        gainakt.load_model(junk)


# ---------------------------------------------------------------------------------------------
# Resume


def unfinish(exp: Path) -> None:
    """Make the seed look unfinished: resume then starts from model_last.pth (its last epoch). A seed is
    finished when its last checkpoint carries its result record (the primary evidence, issue 19)."""
    (exp / "results.json").unlink()
    rewrite_checkpoint(exp / "model_last.pth", result=None)


def remanifest(exp: Path) -> None:
    """The folder as its (honest) writer left it: the manifest lists what is there now, so resume's
    check-before-write admits it and the config check is what decides."""
    write_manifest(exp)


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_config(trained, tmp_path, capsys):
    exp = copy_run(trained, tmp_path)
    unfinish(exp)
    rewrite_checkpoint(exp / "model_last.pth", config_md5="0" * 32)
    remanifest(exp)
    before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "stdout.log"}
    assert main(["resume", str(exp)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_last.pth was written by another configuration" in err[0]
    after = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "stdout.log"}
    assert after == before


@pytest.mark.slow
def test_an_old_style_checkpoint_still_resumes(trained, tmp_path):
    exp = copy_run(trained, tmp_path)
    unfinish(exp)
    for name in ("model_last.pth", "model_best.pth"):
        rewrite_checkpoint(exp / name, model_args=None, config=None, config_md5=None)
    remanifest(exp)
    assert main(["resume", str(exp)]) == 0
    final = json.loads((exp / "results.json").read_text())["per_seed"]["21"]["final"]
    assert final["test_auc"] == trained["final"]["test_auc"]


# ---------------------------------------------------------------------------------------------
# harness predict and score-truth


@pytest.fixture(scope="module")
def test_predictions(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict_out") / "test.csv"
    assert predict(trained, out, "--students", ",".join(trained["test_ids"]), "--full_mastery",
                   "--mastery_format", "long", "--plot", trained["test_ids"][0]) == 0
    return out


def test_predict_reproduces_the_runs_test_predictions(trained, test_predictions):
    rows = pd.read_csv(test_predictions)
    auc, acc = auc_accuracy(rows["next_response"], rows["probability"])
    assert auc == trained["final"]["test_auc"]
    assert acc == trained["final"]["test_accuracy"]
    assert len(rows) == trained["final"]["test_n_scored"]
    assert set(rows["seed"]) == {21}
    assert rows.groupby("student_id")["step"].apply(lambda s: s.is_monotonic_increasing).all()


def test_predict_writes_metadata_long_mastery_and_plot(trained, test_predictions):
    meta = json.loads(Path(str(test_predictions) + ".meta.json").read_text())
    assert meta["verify"] == {"passed": True, "failed": [], "overridden": False}
    assert "non-overlapping windows" in meta["long_sequences"]["rule"]
    assert meta["long_sequences"]["max_len"] == 200
    assert meta["checkpoints"]["21"]["file"] == "model_best.pth"
    assert meta["rows"] == trained["final"]["test_n_scored"]
    long = pd.read_csv(test_predictions.with_name("test_mastery_long.csv"))
    assert len(long) == 20 * meta["rows"]
    rows = pd.read_csv(test_predictions)
    asked = rows.merge(long, left_on=["student_id", "step", "next_concept"], right_on=["student_id", "step", "concept"])
    assert np.array_equal(asked["mastery"].to_numpy(), asked["mastery_next"].to_numpy())
    assert (test_predictions.parent / meta["files"]["plot"]).stat().st_size > 1000


@pytest.mark.parametrize("which", ["predict rows", "long mastery"])
def test_score_truth_equals_the_runs_true_mastery_metric(trained, test_predictions, capsys, which):
    preds = test_predictions if which == "predict rows" else test_predictions.with_name("test_mastery_long.csv")
    capsys.readouterr()
    assert main(["data", "score-truth", "--truth", str(trained["data"] / "truth.csv"),
                 "--predictions", str(preds), "--json"]) == 0
    score = json.loads(capsys.readouterr().out)["21"]
    assert score["true_mastery_correlation"] == pytest.approx(trained["final"]["test_true_mastery_correlation"],
                                                              abs=1e-12)
    assert score["students"] == trained["final"]["test_true_mastery_n"]


def test_full_mastery_wide_has_one_column_per_concept(trained, tmp_path):
    out = tmp_path / "wide.csv"
    assert predict(trained, out, "--students", trained["test_ids"][0], "--full_mastery") == 0
    rows = pd.read_csv(out)
    assert [c for c in rows.columns if c.startswith("mastery_c")] == [f"mastery_c{k}" for k in range(20)]


def test_predict_refuses_a_folder_that_does_not_verify(trained, tmp_path, capsys):
    exp = copy_run(trained, tmp_path)
    results = exp / "results.json"
    results.write_text(results.read_text().replace('"status": "completed"', '"status": "completed" ', 1))
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert predict(trained, out, exp=exp) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not verify" in err[0] and "--allow_unverified" in err[0]
    assert not out.exists()
    assert predict(trained, out, "--students", trained["test_ids"][0], "--allow_unverified", exp=exp) == 0
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["verify"]["passed"] is False and meta["verify"]["overridden"] is True
    assert "manifest" in meta["verify"]["failed"]


def test_predict_refuses_a_checkpoint_of_another_config(trained, tmp_path, capsys):
    exp = copy_run(trained, tmp_path)
    rewrite_checkpoint(exp / "model_best.pth", config_md5="f" * 32)
    capsys.readouterr()
    assert predict(trained, tmp_path / "p.csv", "--allow_unverified", exp=exp) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by another configuration" in err[0]


def interactions_csv(path: Path, concept: int) -> Path:
    pd.DataFrame({"student_id": ["a", "a", "b", "a", "b", "b"], "concept_id": [1, 2, 3, 2, concept, 4],
                  "response": [1, 0, 1, 1, 0, 1]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, extra, message", [
    ("unknown students", ["--students", "5,nobody,ghost"], "unknown student id(s) nobody, ghost"),
    ("concept beyond num_c", ["--format", "csv"], "concept id 57 is beyond the model's 20 concepts"),
    ("seed", ["--seed", "3"], "seed 3 is not a seed of this experiment"),
])  # bad flag values (parquet --out, --device toaster, ...) exit 2: tests/test_qa_exit_codes.py
def test_bad_inputs_give_one_clear_line(trained, tmp_path, capsys, case, extra, message):
    out = tmp_path / "p.csv"
    args = ["predict", str(trained["exp"]), "--data", str(trained["data"]), "--out", str(out)]
    if case == "concept beyond num_c":
        args[3] = str(interactions_csv(tmp_path / "logs.csv", 57))
    capsys.readouterr()
    assert main([*args, *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_predict_on_interaction_logs_in_csv(trained, tmp_path):
    out = tmp_path / "logs_pred.csv"
    logs = interactions_csv(tmp_path / "logs.csv", 5)
    assert main(["predict", str(trained["exp"]), "--data", str(logs), "--format", "csv", "--out", str(out)]) == 0
    rows = pd.read_csv(out)
    assert rows[["student_id", "step", "concept", "next_concept"]].values.tolist() == [
        ["a", 0, 1, 2, ], ["a", 1, 2, 2], ["b", 0, 3, 5], ["b", 1, 5, 4]]
    assert rows["probability"].between(0, 1).all()


def test_streaming_in_small_chunks_writes_the_same_rows(trained, tmp_path, test_predictions):
    out = tmp_path / "chunked.csv"
    assert predict(trained, out, "--students", ",".join(trained["test_ids"]), "--chunk_students", "3") == 0
    assert out.read_bytes() == test_predictions.read_bytes()


def test_predict_with_an_old_checkpoint_rebuilds_the_model_from_config_json(trained, tmp_path, test_predictions):
    exp = copy_run(trained, tmp_path)
    rewrite_checkpoint(exp / "model_best.pth", model_args=None, config=None, config_md5=None)
    out = tmp_path / "old.csv"
    assert predict(trained, out, "--students", ",".join(trained["test_ids"]), "--allow_unverified", exp=exp) == 0
    assert out.read_bytes() == test_predictions.read_bytes()
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["checkpoints"]["21"]["model_args"].startswith("rebuilt from config.json")


@pytest.mark.slow
def test_every_seed_with_a_seed_column_or_one_seed(trained, tmp_path):
    base = tmp_path / "runs"
    assert main(["run", "two", *TINY, "--epochs", "1", "--seeds", "4", "5", "--output_base", str(base)]) == 0
    exp = next(base.iterdir())
    both, one = tmp_path / "both.csv", tmp_path / "one.csv"
    ids = ",".join(trained["test_ids"][:5])
    assert predict(trained, both, "--students", ids, exp=exp) == 0
    assert predict(trained, one, "--students", ids, "--seed", "5", exp=exp) == 0
    rows, five = pd.read_csv(both), pd.read_csv(one)
    assert rows["seed"].tolist() == [4] * (len(rows) // 2) + [5] * (len(rows) // 2)
    assert five.equals(rows[rows["seed"] == 5].reset_index(drop=True))
    meta = json.loads(Path(str(both) + ".meta.json").read_text())
    assert {v["file"] for v in meta["checkpoints"].values()} == {"model_best_seed4.pth", "model_best_seed5.pth"}


def test_score_truth_refuses_predictions_of_other_data(trained, tmp_path, capsys):
    other = tmp_path / "other.csv"
    pd.DataFrame({"student_id": ["x"] * 3, "step": [0, 1, 2], "concept": [1, 1, 1],
                  "mastery": [0.1, 0.2, 0.3]}).to_csv(other, index=False)
    capsys.readouterr()
    assert main(["data", "score-truth", "--truth", str(trained["data"] / "truth.csv"), "--predictions", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no prediction" in err[0]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_predict_never_writes_over_its_input(trained, tmp_path, capsys):
    logs = tmp_path / "logs.csv"
    logs.write_text("student_id,concept_id,response\na,1,0\na,2,1\na,3,1\n")
    before = logs.read_bytes()
    capsys.readouterr()
    assert main(["predict", str(trained["exp"]), "--data", str(logs), "--format", "csv", "--out", str(logs)]) == 1
    assert "would overwrite the input --data" in _one_error(capsys)
    assert logs.read_bytes() == before
    assert predict(trained, trained["data"] / "p.csv") == 1  # a file inside the --data folder
    assert "would overwrite the input --data" in _one_error(capsys)
    assert not (trained["data"] / "p.csv").exists()


def test_simulate_refuses_too_few_students_and_unwritable_folders(tmp_path, capsys):
    capsys.readouterr()
    assert main(["data", "simulate", "--students", "3", "--out", str(tmp_path / "few")]) == 1
    assert "too few for the pyKT split" in _one_error(capsys) and not (tmp_path / "few").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["data", "simulate", "--students", "50", "--out", str(blocker / "sub")]) == 1
    assert "cannot write --out" in _one_error(capsys)


def test_score_truth_refuses_non_finite_mastery_and_unscorable_predictions(trained, test_predictions, tmp_path,
                                                                           capsys):
    truth = str(trained["data"] / "truth.csv")
    rows = pd.read_csv(test_predictions.with_name("test_mastery_long.csv"))
    nan_rows = rows.copy()
    nan_rows.loc[nan_rows.index[3], "mastery"] = float("nan")
    bad = tmp_path / "nan.csv"
    nan_rows.to_csv(bad, index=False)
    capsys.readouterr()
    assert main(["data", "score-truth", "--truth", truth, "--predictions", str(bad)]) == 1
    assert "1 row(s) have no finite mastery value" in _one_error(capsys)
    const = rows[rows["student_id"] == rows["student_id"].iloc[0]].assign(mastery=0.5)
    flat = tmp_path / "flat.csv"
    const.to_csv(flat, index=False)
    assert main(["data", "score-truth", "--truth", truth, "--predictions", str(flat)]) == 1
    assert "can be scored" in _one_error(capsys)


# ---------------------------------------------------------------------------------------------
# Where predict writes (issue 19 item 4): never through a symlink, never into evidence, never over a file


def _victim(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / "outside" / name
    victim.parent.mkdir(exist_ok=True)
    victim.write_text("VICTIM: must stay as it is\n")
    return victim


def test_predict_never_writes_through_a_symlinked_metadata_or_plot_file(trained, tmp_path, capsys):
    student = trained["test_ids"][0]
    out = tmp_path / "p.csv"
    meta_victim, png_victim = _victim(tmp_path, "meta"), _victim(tmp_path, "png")
    (tmp_path / "p.csv.meta.json").symlink_to(meta_victim)
    (tmp_path / f"p_student_{student}.png").symlink_to(png_victim)
    capsys.readouterr()
    assert predict(trained, out, "--students", student, "--plot", student) == 1
    err = _one_error(capsys)
    assert "p.csv.meta.json" in err and "--overwrite" in err
    assert not out.exists()
    assert predict(trained, out, "--students", student, "--plot", student, "--overwrite") == 0
    for link, victim in (("p.csv.meta.json", meta_victim), (f"p_student_{student}.png", png_victim)):
        assert victim.read_text() == "VICTIM: must stay as it is\n"
        assert not (tmp_path / link).is_symlink() and (tmp_path / link).stat().st_size > 100


@pytest.mark.parametrize("name", ["metrics_epoch.csv", "predictions.csv", "artifacts/p.csv"])
def test_predict_never_writes_into_an_experiment_folder(trained, tmp_path, capsys, name):
    exp = copy_run(trained, tmp_path)
    before = {p.relative_to(exp): p.read_bytes() for p in exp.rglob("*") if p.is_file()}
    args = ["predict", str(exp), "--data", str(trained["data"]), "--out", str(exp / name),
            "--students", trained["test_ids"][0]]
    capsys.readouterr()
    assert main(args) == 1
    err = _one_error(capsys)
    assert "inside the experiment folder" in err and exp.name in err
    assert main([*args, "--overwrite"]) == 1  # --overwrite never reaches into evidence
    assert "inside the experiment folder" in _one_error(capsys)
    assert {p.relative_to(exp): p.read_bytes() for p in exp.rglob("*") if p.is_file()} == before
    assert main(["verify", str(exp)]) == 0


def test_predict_never_writes_into_a_sweep_folder(trained, tmp_path, capsys):
    sweep = tmp_path / "20260101_000000_sweep_x"
    (sweep / "notes").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}\n")
    capsys.readouterr()
    assert predict(trained, sweep / "notes" / "p.csv", "--students", trained["test_ids"][0]) == 1
    assert "inside the sweep folder" in _one_error(capsys)
    assert sorted(p.name for p in sweep.rglob("*")) == ["notes", "sweep.json"]


def test_overwrite_never_replaces_a_fifo_or_device(trained, tmp_path, capsys):
    """--overwrite replaces an earlier result file, never a FIFO or a device node (e.g. --out /dev/null)."""
    import stat

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    capsys.readouterr()
    assert predict(trained, fifo, "--students", trained["test_ids"][0], "--overwrite") == 1
    assert "is not a regular file" in _one_error(capsys)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_predict_refuses_to_overwrite_an_output_unless_told(trained, tmp_path, capsys):
    student = trained["test_ids"][0]
    out = tmp_path / "p.csv"
    out.write_text("an earlier result\n")
    capsys.readouterr()
    assert predict(trained, out, "--students", student) == 1
    err = _one_error(capsys)
    assert "already exist" in err and "p.csv" in err and "--overwrite" in err
    assert out.read_text() == "an earlier result\n" and not Path(str(out) + ".meta.json").exists()
    assert predict(trained, out, "--students", student, "--overwrite") == 0
    assert out.read_text().startswith("seed,student_id,step")
    # the long mastery file counts too
    out.unlink()
    Path(str(out) + ".meta.json").unlink()
    (tmp_path / "p_mastery_long.csv").write_text("kept\n")
    assert predict(trained, out, "--students", student, "--full_mastery", "--mastery_format", "long") == 1
    assert "p_mastery_long.csv" in _one_error(capsys) and not out.exists()
    assert (tmp_path / "p_mastery_long.csv").read_text() == "kept\n"


def test_metadata_counts_students_with_rows_and_skipped_ones_with_the_reason(trained, tmp_path):
    logs = tmp_path / "logs.csv"
    pd.DataFrame({"student_id": ["a", "a", "a", "b", "b", "c", "c", "c", "c"],
                  "concept_id": [1, 2, 3, 4, 5, 1, 1, 2, 2],
                  "response": [1, 0, 1, 1, 0, 1, 1, 0, 1]}).to_csv(logs, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained["exp"]), "--data", str(logs), "--format", "csv", "--out", str(out)]) == 0
    data = json.loads(Path(str(out) + ".meta.json").read_text())["data"]
    assert data["students_in_data"] == 3 and data["students_selected"] == 3
    assert data["students_with_rows"] == 2 == pd.read_csv(out)["student_id"].nunique()
    assert data["students_skipped"] == {"fewer than 3 interactions": 1}
    assert "students_predicted" not in data


# ---------------------------------------------------------------------------------------------
# --mastery_view: the window view (the model's output) and the student view (carried across windows)


@pytest.fixture(scope="module")
def long_logs(tmp_path_factory) -> Path:
    """Interaction logs of 3 students longer than one 200-step window (2 to 3 windows each)."""
    rng = np.random.default_rng(5)
    rows = [(f"s{i}", int(c), int(r)) for i, n in enumerate((430, 260, 401))
            for c, r in zip(rng.integers(0, 20, n), rng.integers(0, 2, n), strict=True)]
    path = tmp_path_factory.mktemp("long_logs") / "logs.csv"
    pd.DataFrame(rows, columns=["student_id", "concept_id", "response"]).to_csv(path, index=False)
    return path


def _reference_student_view(model: GainAKT2Exp, logs: pd.DataFrame, max_len: int = 200) -> list[float]:
    """mastery_next of every row of every student under the student view, one step at a time."""
    out = []
    for _, g in logs.groupby("student_id", sort=False):
        c, r = torch.tensor(g["concept_id"].to_numpy()), torch.tensor(g["response"].to_numpy())
        carried = None
        for start in range(0, len(c), max_len):
            q, resp = c[start:start + max_len], r[start:start + max_len]
            if len(q) < 3:
                break
            with torch.no_grad():
                res = model(q[:-1].unsqueeze(0), resp[:-1].unsqueeze(0), q[1:].unsqueeze(0))
            m = res["mastery"][0, 0].double() if carried is None else carried
            out.append(float(m[int(q[1])]))
            for t in range(1, len(q) - 1):
                m = torch.clamp(m + model.gain_scale * res["gains"][0, t].double(), max=1.0)
                out.append(float(m[int(q[t + 1])]))
            carried = m
    return out


def test_predict_mastery_views(trained, tmp_path, long_logs):
    window, student = tmp_path / "window.csv", tmp_path / "student.csv"
    base = ["predict", str(trained["exp"]), "--data", str(long_logs), "--format", "csv"]
    assert main([*base, "--out", str(window)]) == 0  # the default: the window view
    assert main([*base, "--out", str(student), "--mastery_view", "student", "--full_mastery"]) == 0
    w, s = pd.read_csv(window), pd.read_csv(student)
    assert w["probability"].equals(s["probability"])  # the predictions do not depend on the view
    first = (w["step"] < 199).to_numpy()  # window 0: both views are the model's output
    assert np.array_equal(w["mastery_next"][first], s["mastery_next"][first])
    model = gainakt.load_model(trained["exp"] / "model_best.pth")
    np.testing.assert_allclose(s["mastery_next"], _reference_student_view(model, pd.read_csv(long_logs)),
                               atol=2e-6)
    later = ~first
    assert (s["mastery_next"][later] != w["mastery_next"][later]).any()  # window 1+ start where window 0 ended
    full = s[[f"mastery_c{k}" for k in range(20)]].to_numpy()
    assert np.array_equal(full[np.arange(len(s)), s["next_concept"]], s["mastery_next"].to_numpy())
    meta = json.loads(Path(str(student) + ".meta.json").read_text())
    assert meta["mastery_view"]["view"] == "student" and "carried" in meta["mastery_view"]["rule"]
    assert json.loads(Path(str(window) + ".meta.json").read_text())["mastery_view"]["view"] == "window"


def test_an_output_folder_reached_through_a_symlink_is_checked_as_the_folder_it_is(trained, tmp_path, capsys):
    exp = copy_run(trained, tmp_path)
    (tmp_path / "into_exp").symlink_to(exp / "artifacts")
    student = trained["test_ids"][0]
    capsys.readouterr()
    assert predict(trained, tmp_path / "into_exp" / "p.csv", "--students", student) == 1
    assert "inside the experiment folder" in _one_error(capsys)
    assert not (exp / "artifacts" / "p.csv").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "elsewhere").symlink_to(tmp_path / "real")
    assert predict(trained, tmp_path / "elsewhere" / "p.csv", "--students", student) == 0
    assert (tmp_path / "real" / "p.csv").is_file() and (tmp_path / "real" / "p.csv.meta.json").is_file()
