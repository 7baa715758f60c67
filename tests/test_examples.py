"""The guide's launcher script: every §4 launch pattern parses, quick ones run; the deprecated stub."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run.launcher import resolve_run

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "train_gainakt2exp_repro.py"

PATTERNS = {
    "4.1": "--experiment_title baseline --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode both_lag",
    "4.2": "--experiment_title quickcheck --seeds 21 --devices 0 --ablation_mode both_lag --epochs 3",
    "4.3": "--experiment_title perf_only --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode none",
    "4.4": "--experiment_title align_only --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode alignment_only",
    "4.5": "--experiment_title no_amp_ref --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode both_lag --no_amp",
    "4.6": "--experiment_title warmup12 --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode both_lag "
           "--warmup_constraint_epochs 12",
    "4.7": "--experiment_title high_sparsity --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode both_lag "
           "--sparsity_loss_weight 0.35",
    "6.a.D": "--experiment_title remediate --seeds 21 42 63 --devices 0 1 2 3 4 --ablation_mode both_lag "
             "--learning_rate 0.00016 --batch_size 64 --epochs 40 --weight_decay 1.7571e-05",
}


def load_script():
    spec = importlib.util.spec_from_file_location("train_gainakt2exp_repro", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(argv: list[str]):
    import argparse

    from harness.cli.flags import OneLineParser
    from harness.cli.main import add_run_arguments

    parser = OneLineParser()
    parser.add_argument("--experiment_title", "--short-title", dest="experiment_title", default="baseline")
    add_run_arguments(parser)
    ns = parser.parse_args(argv)
    assert isinstance(ns, argparse.Namespace)
    return ns


@pytest.mark.parametrize("section", sorted(PATTERNS))
def test_every_guide_pattern_parses_and_resolves(section):
    ns = parse(shlex.split(PATTERNS[section]))
    cfg = resolve_run(ns, ns.experiment_title).config
    assert cfg["runtime"]["devices"] in (["0", "1", "2", "3", "4"], ["0"])
    if section == "4.3":
        assert not any(cfg["interpretability"][k] for k in ("enable_alignment_loss", "enable_retention_loss",
                                                            "enable_lag_gain_loss"))
    if section == "4.5":
        assert cfg["training"]["mixed_precision"] is False
    if section == "4.6":
        assert cfg["interpretability"]["warmup_constraint_epochs"] == 12
    if section == "4.7":
        assert cfg["interpretability"]["sparsity_loss_weight"] == 0.35


def test_quick_pattern_runs_as_written_with_cpu_devices(tmp_path):
    """§4.2 with `--devices cpu` (this machine has no GPU) and a tiny model to keep the test fast."""
    argv = shlex.split(PATTERNS["4.2"].replace("--devices 0", "--devices cpu").replace("--epochs 3", "--epochs 1"))
    argv += ["--output_base", str(tmp_path), "--model_preset", "small", "--d_model", "16", "--n_heads", "2",
             "--n_blocks", "1", "--d_ff", "16", "--synthetic_students", "60", "--synthetic_max_len", "20"]
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (exp,) = list(tmp_path.iterdir())
    assert exp.name.endswith("_gainakt2exp_quickcheck")
    cfg = json.loads((exp / "config.json").read_text())
    assert cfg["seeds"]["all"] == [21] and cfg["experiment"]["ablation_mode"] == "both_lag"


def test_deprecated_stub_points_to_the_unified_launcher():
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "repro_train_gainakt2exp.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "deprecated" in proc.stderr and "train_gainakt2exp_repro.py" in proc.stderr


def test_compare_only_requires_both_experiments(tmp_path, capsys):
    module = load_script()
    assert module.main(["--compare_only", "--source_exp", "x", "--output_base", str(tmp_path)]) == 2  # usage
    err = capsys.readouterr().err.strip()
    assert "needs both --source_exp and --target_exp" in err and len(err.splitlines()) == 1
