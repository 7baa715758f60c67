"""--jobs_per_device: several seeds at once per device, the same results whatever N is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.run.workers import assign_seeds, seed_device_map

TINY = ["--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--devices", "cpu", "--no_amp", "--torch_deterministic", "--synthetic_students", "80",
        "--synthetic_max_len", "25", "--synthetic_min_len", "8", "--batch_size", "16",
        "--max_semantic_students", "10", "--alignment_global_students", "20", "--epochs", "2"]


def test_slots_are_device_major_and_cpu_threads_are_split():
    plans = assign_seeds([1, 2, 3, 4, 5], ["cpu"], jobs_per_device=2, threads=5)
    assert [(p.slot, p.seeds, p.threads) for p in plans] == [(0, [1, 3, 5], 2), (1, [2, 4], 2)]
    gpu = assign_seeds([1, 2, 3], ["0", "1"], jobs_per_device=2, threads=4)
    assert [(p.device, p.slot, p.seeds, p.threads) for p in gpu] == [("0", 0, [1], 4), ("0", 1, [2], 4),
                                                                     ("1", 0, [3], 4)]
    assert seed_device_map([1, 2, 3], ["0", "1"]) == {1: "0", 2: "1", 3: "0"}  # one job per device: as before
    assert seed_device_map([1, 2], ["cpu"], 2) == {1: "cpu slot 0/2", 2: "cpu slot 1/2"}
    assert assign_seeds([1], ["cpu"], 3, threads=1)[0].threads == 1  # never below one thread


def _run(base: Path, title: str, *extra: str) -> Path:
    assert main(["run", title, "--output_base", str(base), *TINY, *extra]) == 0
    (folder,) = base.glob(f"*_{title}")
    return folder


def test_results_are_identical_whatever_jobs_per_device(tmp_path):
    """Same threads per seed (CPU results depend on torch's intra-op thread count): 1 job x 1 thread
    against 2 jobs sharing --threads 2."""
    one = _run(tmp_path / "one", "jobs", "--seeds", "5", "6", "--threads", "1", "--jobs_per_device", "1")
    two = _run(tmp_path / "two", "jobs", "--seeds", "5", "6", "--threads", "2", "--jobs_per_device", "2")
    # Every result is identical; the split's launch warning stays with the run that was split (issue 20).
    res1, res2 = (json.loads((p / "results.json").read_text()) for p in (one, two))
    split = [w for w in res2["warnings"] if w.startswith("--jobs_per_device 2 on the CPU splits --threads 2")]
    assert len(split) == 1 and not any("--jobs_per_device" in w for w in res1["warnings"])
    res2["warnings"].remove(split[0])
    assert res1 == res2
    cfg1, cfg2 = (json.loads((p / "config.json").read_text()) for p in (one, two))
    assert cfg1["config_md5"] == cfg2["config_md5"]  # recorded outside the hash
    assert (cfg1["runtime"]["jobs_per_device"], cfg2["runtime"]["jobs_per_device"]) == (1, 2)
    info = (two / "SEED_INFO.md").read_text()
    assert "| 5 | cpu slot 0/2 |" in info and "| 6 | cpu slot 1/2 |" in info
    env = (two / "environment.txt").read_text()
    assert 'seed_devices: {"5": "cpu slot 0/2", "6": "cpu slot 1/2"}' in env
    assert main(["verify", str(two)]) == 0
    # tiny dimensions of the small preset: no measurement applies, and the launch says so
    log = (two / "stdout.log").read_text()
    assert "WARNING - --jobs_per_device 2 on the CPU splits --threads 2 into 2 jobs of 1 thread(s) each. " \
           "Not measured for this model (small preset with other dimensions)" in log
    assert "--jobs_per_device" not in (one / "stdout.log").read_text()


def test_the_cpu_split_warning_gives_the_measured_cost_per_preset():
    from gainakt.config import ModelConfig
    from harness.run.workers import cpu_split_warning

    paper, small = ModelConfig(), ModelConfig(model_preset="small", d_model=128, n_heads=4, num_encoder_blocks=2,
                                               d_ff=256, dropout=0.1)
    assert cpu_split_warning(["cpu"], 1, 2, paper) is None and cpu_split_warning(["0", "1"], 2, 2, paper) is None
    warning = cpu_split_warning(["cpu"], 2, 2, paper)
    assert "into 2 jobs of 1 thread(s) each. Measured: at the paper preset" in warning and "1.4x slower" in warning
    assert cpu_split_warning(["cpu"], 2, 2, small) is None  # measured faster: nothing to pay
    over = cpu_split_warning(["cpu"], 3, 2, small)  # but oversubscribing the threads is said
    assert "3 jobs x 1 thread(s) = 3 threads on --threads 2" in over and "2-3x faster" in over


@pytest.mark.parametrize("args, message", [
    (["--jobs_per_device", "0"], "--jobs_per_device: must be a positive integer, got 0"),
    (["--devices", "cpu", "cpu"], "the CPU is one device; use --jobs_per_device N"),
])
def test_bad_device_settings_are_refused(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:  # a usage error (argparse): exit 2
        main(["run", "bad", "--output_base", str(tmp_path), *TINY, *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*_bad"))
