"""One name, one number: results.json and metrics_epoch.csv never give two values the same name."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest

from gainakt import train_seed
from gainakt.simulate import simulate
from gainakt.train import EPOCH_COLUMNS, MemorySink
from harness.cli.main import build_parser
from harness.folder import artifacts
from harness.folder.experiment import dumps_json
from harness.run.launcher import resolve_run

TINY = ("--model_preset", "small", "--d_model", "16", "--n_heads", "2", "--n_blocks", "1", "--d_ff", "16",
        "--batch_size", "16", "--max_semantic_students", "5", "--epochs", "2", "--seeds", "5", "6")


@pytest.fixture(scope="module")
def run() -> tuple[dict, dict, dict[int, list[dict]]]:
    ns = build_parser().parse_args(["run", "t", "--devices", "cpu", "--no_amp", *TINY])
    cfg = dict(resolve_run(ns, "t").config, config_md5="0" * 32)
    # Long students (several windows of 20) so the whole-student metrics are defined too.
    data = simulate(num_students=60, num_skills=6, min_len=30, max_len=50, seed=2)
    cfg["data"]["seq_len"] = 20
    outcomes, csv_rows = {}, {}
    for seed in cfg["seeds"]["all"]:
        result = train_seed(cfg, data, "cpu", MemorySink(), seed=seed)
        outcomes[seed] = {"result": result.as_dict()}
        csv_rows[seed] = list(csv.DictReader(io.StringIO(artifacts.render_metrics_csv(result.history))))
    results = json.loads(dumps_json(artifacts.build_results(cfg, outcomes)))
    return cfg, results, csv_rows


def _leaves(obj: Any, out: dict[str, list[Any]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                _leaves(v, out)
            else:
                out.setdefault(k, []).append(v)


def _norm(v: Any) -> Any:
    if v in (None, "nan", "None") or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def test_no_name_holds_two_different_numbers(run) -> None:
    _, results, csv_rows = run
    primary = results["primary_seed"]
    for seed in results["seeds"]:
        block = results["per_seed"][str(seed)]
        names: dict[str, list[Any]] = {}
        _leaves(block, names)
        if seed == primary:  # the top level copies the primary seed
            _leaves({k: v for k, v in results.items() if k != "per_seed"}, names)
        best = next(r for r in csv_rows[seed] if int(r["epoch"]) == block["best_epoch"])
        for k, v in best.items():
            names.setdefault(k, []).append(v)
        clashes = {k: vs for k, vs in names.items()
                   if len({_norm(v) for v in vs}) > 1}
        assert clashes == {}


def test_every_csv_column_is_unique_and_written(run) -> None:
    _, _, csv_rows = run
    assert len(set(EPOCH_COLUMNS)) == len(EPOCH_COLUMNS)
    assert list(csv_rows[5][0]) == list(EPOCH_COLUMNS)


def test_the_sample_and_all_students_values_have_different_names(run) -> None:
    _, results, _ = run
    block = results["per_seed"]["5"]
    assert "mastery_correlation" not in block  # the plain name is the per-epoch sample's (CSV)
    assert block["mastery_correlation_val_all"] == block["final"]["val_mastery_correlation"]
    assert results["best_mastery_corr"] == block["mastery_correlation_val_all"]
    assert block["best_epoch_metrics"]["semantic_students"] == 5
    assert block["final"]["val_semantic_students"] > 5
    assert block["final"]["val_boundaries"] > 0  # students of 30-50 steps in windows of 20


def test_collapsed_predictions_are_a_warning_in_results_and_readme(run) -> None:
    cfg, results, _ = run
    assert results["warnings"] == []
    final = dict(results["per_seed"]["5"]["final"], val_predictions_collapsed=True, val_accuracy=0.7,
                 val_auc=0.52)
    lines = artifacts.model_warnings(5, final)
    assert lines == ["seed 5: predictions collapsed on val: accuracy 0.7000 equals the majority-class rate and "
                     "AUC 0.5200 < 0.6 (the model predicts one class; its interpretability metrics are not "
                     "meaningful)"]
    warned = dict(results, warnings=lines)
    readme = artifacts.readme_md(cfg | {"data_checksum": {"sha256": "0"}}, warned, [], "harness run t")
    assert "## Warnings" in readme and lines[0] in readme
    assert "docs/metrics.md" in readme and "qmastery_partial_correlation" in readme
