"""`harness export mlflow` against a real local MLflow store (sqlite), read back through MlflowClient,
and through a real `mlflow server` on 127.0.0.1 (its REST API). Needs the [mlflow] extra: without it these
tests skip, except under CI (which installs it), where that is a failure."""

from __future__ import annotations

import csv
import io as stdio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import benchmark_scripts  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.cli.main import main
from harness.export.mlflow import RUN_KEY, flatten

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def mlflow():
    try:
        import mlflow
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"MLflow tests under CI without MLflow: {exc} (install the [mlflow] extra)")
        pytest.skip(f"MLflow is not installed: {exc}")
    return mlflow


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """A sqlite store keeps artifacts in ./mlruns (MLflow's default artifact root): not in the checkout."""
    monkeypatch.chdir(tmp_path)


def _generator():
    return benchmark_scripts.load("ls_folders")


def _complete(folder: Path, epochs: int = 3) -> None:
    """What a finished run adds to the generated records: metrics_epoch.csv, environment.txt, README, a plot."""
    from harness.folder import artifacts
    from harness.folder.plots import LEARNING_CURVES, plot_data, render_png

    seeds = json.loads((folder / "config.json").read_text())["seeds"]["all"]
    rows = [{"seed": s, "epoch": e, "val_auc": 0.6 + 0.01 * e + 0.001 * s, "train_loss": 0.9 - 0.05 * e,
             "val_accuracy": 0.7, "mastery_correlation": float("nan")} for s in seeds for e in range(1, epochs + 1)]
    (folder / "metrics_epoch.csv").write_text(artifacts.render_metrics_csv(rows))
    (folder / "environment.txt").write_text("python: 3.11\ngit_commit: " + "c0ffee" * 6 + "abcd\ngit_dirty: false\n")
    (folder / "README.md").write_text("# run\n")
    (folder / "artifacts").mkdir(exist_ok=True)
    hist = {s: [r for r in rows if r["seed"] == s] for s in seeds}
    (folder / "artifacts" / LEARNING_CURVES).write_bytes(
        render_png(LEARNING_CURVES, plot_data(hist, {})[LEARNING_CURVES]))


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A finished two-seed experiment folder (generated: no training, so it does not verify)."""
    base = tmp_path / "experiments"
    (folder,) = _generator().make_folders(base, 2)[1:]  # the second: seeds 21 and 42, completed
    _complete(folder)
    return folder


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(mlflow, uri: str, name: str = "gainakt-harness") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], max_results=100))


def test_an_experiment_becomes_a_parent_run_with_a_child_per_seed(mlflow, experiment, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = _store(tmp_path)
    assert main(["export", "mlflow", str(experiment), "--tracking_uri", uri, "--allow_unverified"]) == 0
    assert "(created)" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=uri)
    runs = _runs(mlflow, uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["seed"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    (parent,) = parents
    assert sorted(children) == ["21", "42"]
    cfg = json.loads((experiment / "config.json").read_text())
    results = json.loads((experiment / "results.json").read_text())
    tags = parent.data.tags
    assert tags["experiment_id"] == experiment.name and tags[RUN_KEY] == experiment.name
    assert tags["config_md5"] == cfg["config_md5"] and tags["dataset_sha256"] == cfg["data_checksum"]["sha256"]
    assert tags["git_commit"] == "c0ffee" * 6 + "abcd" and tags["image_id"].startswith("none")
    assert tags["verify_verdict"].endswith("(exported with --allow_unverified)")
    assert parent.data.params == {k: v for k, v in flatten(cfg).items() if k != "config_md5"}
    assert parent.data.params["training.learning_rate"] == str(cfg["training"]["learning_rate"])
    assert parent.data.metrics["test_auc"] == pytest.approx(results["test_auc"])
    assert parent.info.status == "FINISHED"
    for seed, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags[RUN_KEY] == f"{experiment.name}/seed{seed}"
        history = client.get_metric_history(child.info.run_id, "val_auc")
        assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == \
            [(e, round(0.6 + 0.01 * e + 0.001 * int(seed), 6)) for e in (1, 2, 3)]
        assert "mastery_correlation" not in child.data.metrics  # NaN is not a measurement
        block = results["per_seed"][seed]
        assert child.data.metrics["best_val_auc"] == pytest.approx(block["best_val_auc"])
        assert child.data.metrics["final.test_auc"] == pytest.approx(block["final"]["test_auc"])
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"README.md", "config.json", "results.json", "plots"} <= names
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == ["plots/learning_curves.png"]
    assert client.list_artifacts(children["21"].info.run_id) == []  # checkpoints only with --with_checkpoints


def test_re_exporting_updates_the_runs_and_never_duplicates_them(mlflow, experiment, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = _store(tmp_path)
    argv = ["export", "mlflow", str(experiment), "--tracking_uri", uri, "--allow_unverified"]
    assert main(argv) == 0
    ids = sorted(r.info.run_id for r in _runs(mlflow, uri))
    capsys.readouterr()
    assert main(argv) == 0  # the same folder again: nothing to log
    assert capsys.readouterr().out.count("(unchanged)") == 3
    assert sorted(r.info.run_id for r in _runs(mlflow, uri)) == ids
    _complete(experiment, epochs=4)  # the run was resumed for one more epoch
    assert main(argv) == 0
    runs = _runs(mlflow, uri)
    assert sorted(r.info.run_id for r in runs) == ids
    client = MlflowClient(tracking_uri=uri)
    child = next(r for r in runs if r.data.tags.get("seed") == "21")
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_auc")]
    assert sorted(steps) == [1, 2, 3, 4]  # the new epoch added, the others not repeated


def test_an_unverified_folder_is_refused_before_anything_is_logged(mlflow, experiment, tmp_path, capsys):
    uri = _store(tmp_path)
    assert main(["export", "mlflow", str(experiment), "--tracking_uri", uri]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not verify" in err and "--allow_unverified" in err
    assert _runs(mlflow, uri) == []


def test_a_config_that_is_not_an_object_is_one_line_and_nothing_is_logged(mlflow, experiment, tmp_path, capsys):
    uri = _store(tmp_path)
    (experiment / "config.json").write_text("[1, 2]\n")
    assert main(["export", "mlflow", str(experiment), "--tracking_uri", uri, "--allow_unverified"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json: not a JSON object" in err and "internal error" not in err
    assert _runs(mlflow, uri) == []


def test_a_sweep_exports_each_point_with_its_seeds(mlflow, tmp_path, capsys):
    base = tmp_path / "experiments"
    (sweep,) = _generator().make_folders(base, 0, sweeps=1, points=2)
    for point in sweep.iterdir():
        if point.is_dir():
            _complete(point)
    uri = _store(tmp_path)
    assert main(["export", "mlflow", sweep.name, "--output_base", str(base), "--tracking_uri", uri,
                 "--experiment_name", "grid", "--allow_unverified"]) == 0
    runs = _runs(mlflow, uri, "grid")
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.data.tags["sweep_point"])
    assert [p.data.tags["sweep_point"] for p in parents] == ["p0", "p1"]
    assert all(p.data.tags["sweep_id"] == sweep.name and p.data.tags["sweep_base_point"] == "p0" for p in parents)
    assert len(runs) == 2 + 4  # two seeds per point


def test_without_mlflow_the_export_is_one_line(experiment, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    assert main(["export", "mlflow", str(experiment), "--tracking_uri", _store(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'gainakt-harness[mlflow]'" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow  # a real server: about a minute to start on this machine
def test_mlflow_server_finds_the_exported_run_through_its_rest_api(mlflow, experiment, tmp_path, capsys):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", _store(tmp_path), "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not answer within 180 s"
            time.sleep(1)
        assert main(["export", "mlflow", str(experiment), "--tracking_uri", url, "--allow_unverified",
                     "--experiment_name", "served"]) == 0
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served",
                                    timeout=30) as resp:
            exp = json.loads(resp.read())["experiment"]
        found = _post(f"{url}/api/2.0/mlflow/runs/search", {
            "experiment_ids": [exp["experiment_id"]],
            "filter": f"tags.experiment_id = '{experiment.name}' and tags.seed = '42'"})["runs"]
        assert len(found) == 1
        tags = {t["key"]: t["value"] for t in found[0]["data"]["tags"]}
        assert tags["seed"] == "42" and tags[RUN_KEY] == f"{experiment.name}/seed42"
        metrics = {m["key"]: m["value"] for m in found[0]["data"]["metrics"]}
        rows = list(csv.DictReader(stdio.StringIO((experiment / "metrics_epoch.csv").read_text())))
        last = [r for r in rows if r["seed"] == "42"][-1]
        assert metrics["val_auc"] == pytest.approx(float(last["val_auc"]))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow
def test_a_verified_run_exports_with_its_checkpoints(mlflow, base_run, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = _store(tmp_path)
    assert main(["export", "mlflow", str(base_run), "--tracking_uri", uri, "--with_checkpoints"]) == 0
    runs = _runs(mlflow, uri)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert parent.data.tags["verify_verdict"] == "pass"
    client = MlflowClient(tracking_uri=uri)
    assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"model_best.pth", "model_last.pth"}
    assert {"README.md", "plots"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "val_auc" in child.data.metrics and "final.test_window_auc" in child.data.metrics
