"""Sweeps under the evidence model (issue 19): a job is completed only once its point folder is finalised,
a crash in a point's finalisation heals with `sweep --resume`, and a guide-matrix sweep verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.folder import derive
from harness.folder.experiment import MANIFEST, FolderLock, read_json
from harness.sweep.summary import sweep_md
from harness.sweep.verify import verify_sweep

pytestmark = pytest.mark.slow

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--synthetic_students", "80", "--synthetic_max_len", "25", "--synthetic_min_len", "8",
        "--batch_size", "16", "--max_semantic_students", "10", "--alignment_global_students", "20",
        "--epochs", "1", "--threads", "1"]
SPEC = """
points:
  ref: {}
  sparse: {flags: {sparsity_loss_weight: 0.35, gain_scale: 0.2}}
base_point: ref
seeds: [5]
"""


class Crash(Exception):
    pass


def test_a_guide_matrix_sweep_verifies(tmp_path):
    """Item 3: SWEEP.md once listed a point's overrides in the order given, its recomputation sorted."""
    code = main(["sweep", "demo", "--matrix", "guide", "--seeds", "21", "--output_base", str(tmp_path), *TINY])
    assert code == 0
    (folder,) = tmp_path.glob("*_sweep_demo")
    report = verify_sweep(folder)
    assert report["verdict"] == "pass", report["failed"]


def test_overrides_are_listed_in_one_canonical_order():
    state = {"sweep_id": "s", "source": "x", "spec_md5": "m", "seeds": [1], "base_point": "a", "status": "completed",
             "launch": {"backend": "local", "devices": ["cpu"], "jobs_per_device": 1}, "jobs": [],
             "points": [{"name": "a", "experiment_id": "e", "config_md5": "c", "set": [],
                         "flags": {"retention_weight": 0.18, "alignment_weight": 0.45}}]}
    rows = [{"point": "a", "metric": k, "n": 0, "mean": None, "std": None, "ci95_low": None, "ci95_high": None,
             "diff_vs_base": None, "paired_n": 0, "paired_p": None}
            for k in ("best_val_auc", "test_auc", "test_window_auc", "test_accuracy", "val_accuracy",
                      "mastery_correlation_val_all", "gain_correlation_val_all", "qmastery_correlation_val_all",
                      "true_mastery_correlation_val_all", "epochs_run", "wall_seconds")]
    text = sweep_md(state, rows)
    swapped = json.loads(json.dumps(state))
    swapped["points"][0]["flags"] = {"alignment_weight": 0.45, "retention_weight": 0.18}
    assert sweep_md(swapped, rows) == text and "alignment_weight=0.45 retention_weight=0.18" in text


@pytest.fixture(scope="module")
def crashed_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """A sweep whose first point's finalisation crashed after results.json (launcher.finalise patched)."""
    base = tmp_path_factory.mktemp("crash")
    (base / "spec.yaml").write_text(SPEC)
    mp = pytest.MonkeyPatch()
    from harness.run import launcher

    real = launcher.finalise
    calls = {"n": 0}

    def crashing(exp_dir, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            def hook(name: str) -> None:
                if name == "results.json":
                    raise Crash(name)
            return real(exp_dir, after_write=hook, **kw)
        return real(exp_dir, **kw)

    mp.setattr(launcher, "finalise", crashing)
    try:
        main(["sweep", "crash", "--spec", str(base / "spec.yaml"), "--output_base", str(base / "out"), *TINY])
    finally:
        mp.undo()
    (folder,) = (base / "out").glob("*_sweep_crash")
    return base, folder


def test_a_job_is_not_completed_before_its_point_folder_is_finalised(crashed_sweep):
    _, folder = crashed_sweep
    state = read_json(folder / "sweep.json")
    unfinalised = [p for p in state["points"] if not (folder / p["experiment_id"] / MANIFEST).is_file()]
    assert len(unfinalised) == 1
    job = next(j for j in state["jobs"] if j["point"] == unfinalised[0]["name"])
    assert job["status"] != "completed"
    assert verify_sweep(folder)["verdict"] != "pass"


def test_sweep_resume_heals_a_crashed_point_finalisation(crashed_sweep, tmp_path):
    _, folder = crashed_sweep
    copy = Path(shutil.copytree(folder, tmp_path / folder.name))
    assert main(["sweep", "--resume", str(copy)]) == 0
    report = verify_sweep(copy)
    assert report["verdict"] == "pass", report["failed"]


def test_a_crash_after_each_derived_file_of_a_point_heals_with_sweep_resume(crashed_sweep, tmp_path):
    _, folder = crashed_sweep
    healed = Path(shutil.copytree(folder, tmp_path / "healed"))
    assert main(["sweep", "--resume", str(healed)]) == 0
    state = read_json(healed / "sweep.json")
    point = state["points"][0]
    truth = (healed / point["experiment_id"] / "results.json").read_bytes()
    for name in [*derive.derive_folder(healed / point["experiment_id"]).files, MANIFEST]:
        copy = Path(shutil.copytree(healed, tmp_path / name.replace("/", "_")))
        exp = copy / point["experiment_id"]
        cstate = read_json(copy / "sweep.json")
        for j in cstate["jobs"]:  # what the sweep records while the point is being finalised
            if j["point"] == point["name"]:
                j["status"] = "finalising"
        cstate["status"] = "running"
        (copy / "sweep.json").write_text(json.dumps(cstate))

        def hook(written: str, name: str = name) -> None:
            if written == name:
                raise Crash(written)

        with FolderLock(exp), pytest.raises(Crash):
            derive.finalise(exp, after_write=hook)
        assert main(["sweep", "--resume", str(copy)]) == 0, name
        assert (exp / "results.json").read_bytes() == truth, name
        assert verify_sweep(copy)["verdict"] == "pass", name
