"""Docker edges (issue 19, item 10) without an engine: an image that cannot be made leaves no folder;
a training container that cannot start leaves a folder that says why (and verify names it); a Docker
reproduction is compared in the verifier container, not on the host."""

from __future__ import annotations

import json
from pathlib import Path

import audit_runs  # tests/fixtures, on sys.path via conftest.py
import pytest

from harness.audit.verify import verify_experiment
from harness.cli.main import main
from harness.docker import containers, image
from harness.docker.containers import ContainerError

QUICK = ["--devices", "cpu", "--epochs", "1", "--model_preset", "small", "--synthetic_students", "60",
         "--seeds", "42", "--threads", "1", "--runtime", "docker"]
RECORD = {"image_id": "sha256:" + "ab" * 32, "tag": "gainakt-harness:test", "image": "gainakt-harness:test"}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def engine(monkeypatch):
    """An engine that answers and has no leftover containers."""
    monkeypatch.setattr(containers, "docker_client", lambda timeout=120: object())
    monkeypatch.setattr(containers, "reap_orphans", lambda client: [])


def test_an_image_that_cannot_be_built_leaves_no_folder(tmp_path, capsys, monkeypatch, engine):
    def no_wheelhouse(**kwargs):
        raise ContainerError("wheelhouse /x/wheelhouse/cpu is missing or empty: run `docker/wheelhouse.sh cpu`")

    monkeypatch.setattr(image, "ensure_image", no_wheelhouse)
    out = tmp_path / "out"
    assert main(["run", "t", *QUICK, "--output_base", str(out)]) == 1
    assert "wheelhouse /x/wheelhouse/cpu is missing" in one_line(capsys)
    assert not out.exists() or list(out.iterdir()) == []


def test_no_engine_leaves_no_folder(tmp_path, capsys, monkeypatch):
    def refused(timeout=120):
        raise ContainerError("cannot reach the Docker engine at unix:///var/run/docker.sock")

    monkeypatch.setattr(containers, "docker_client", refused)
    out = tmp_path / "out"
    assert main(["run", "t", *QUICK, "--output_base", str(out)]) == 1
    assert "cannot reach the Docker engine" in one_line(capsys)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_container_that_cannot_start_leaves_a_folder_that_says_why(tmp_path, capsys, monkeypatch, engine):
    monkeypatch.setattr(image, "ensure_image", lambda **kwargs: dict(RECORD))

    def refused(**kwargs):
        raise ContainerError("the Docker engine refused to create the container: could not select device driver")

    monkeypatch.setattr(containers, "run_training_container", refused)
    out = tmp_path / "out"
    assert main(["run", "t", *QUICK, "--output_base", str(out)]) == 1
    assert "could not select device driver" in one_line(capsys)
    (exp,) = out.glob("*_gainakt2exp_t")
    status = json.loads((exp / "run_status.json").read_text())  # derived from stdout.log's outcome lines
    assert status["status"] == "failed" and status["unfinished_seeds"]
    results = json.loads((exp / "results.json").read_text())
    assert all("the training container did not start" in r["reason"] for r in results["per_seed"].values())
    assert "could not select device driver" in (exp / "stdout.log").read_text()
    report = verify_experiment(exp)
    assert report["verdict"] != "pass"
    completed = next(c for c in report["checks"] if c["name"] == "run completed")
    assert "the training container did not start" in completed["reason"]
    assert "could not select device driver" in completed["reason"]


@pytest.mark.slow
def test_a_docker_reproduction_is_compared_in_the_verifier_container(base_run, tmp_path, capsys, monkeypatch,
                                                                     engine):
    """The training container is played by the local engine in-process and the verifier container by
    `harness verify --against` in-process; the host itself must not compare."""
    from harness.cli import commands
    from harness.run.launcher import execute_experiment

    src = audit_runs.copy_experiment(base_run, tmp_path / "src")
    monkeypatch.setattr(image, "ensure_image", lambda **kwargs: dict(RECORD))
    monkeypatch.setattr(containers, "run_training_container",
                        lambda *, exp_dir, **kw: execute_experiment(exp_dir, quiet=True))
    seen: dict = {}

    def verifier(*, image, exp_dir, against, auc_tolerance=None, corr_tolerance=None, **kw):
        seen.update(against=against, auc_tolerance=auc_tolerance)
        report = verify_experiment(exp_dir, against=against, auc_tolerance=auc_tolerance,
                                   corr_tolerance=corr_tolerance)
        return (0 if report["passed"] else 1), json.loads(json.dumps(report))

    monkeypatch.setattr(containers, "run_verifier_container", verifier)

    def host_compare(*args, **kwargs):
        raise AssertionError("a Docker reproduction must not be compared on the host")

    monkeypatch.setattr(commands, "write_reproduction_outputs", host_compare)
    out = tmp_path / "out"
    out.mkdir()
    code, repro = audit_runs.harness(out, "reproduce", str(src), "--runtime", "docker", "--auc_tolerance", "0.01",
                                     "--manifest", expect=None)
    assert code == 0, capsys.readouterr()
    assert seen["against"] == Path(src.resolve()) and seen["auc_tolerance"] == 0.01
    report = json.loads((repro / "reproduction_report.json").read_text())
    assert report["compared_in"].startswith("verifier container")
    assert report["verdict"] in ("pass", "pass_with_notes") and report["tolerance"]["auc"] == 0.01
    assert report["source"] == src.name and report["target"] == repro.name
    verification = json.loads((repro / "verification_report.json").read_text())
    assert any(c["name"] == "against: verdict" for c in verification["checks"])
    assert (repro / "reproduction_manifest.json").is_file()
    assert verify_experiment(repro)["passed"]
    assert "reproduction verdict: " in capsys.readouterr().out
