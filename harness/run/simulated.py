"""`harness data simulate` (the simulator's students and truth, exported for any model) and `harness data
score-truth` (predicted mastery scored against that truth). Neither touches an experiment folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.run.predict import PredictError


def simulate_export(ns: argparse.Namespace) -> None:
    from gainakt.simulate import export, generator_parameters, simulate

    out = Path(ns.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PredictError(f"--out {out} exists and is not an empty folder")
    try:
        ds = simulate(ns.students, ns.skills, ns.min_len, ns.max_len, ns.seed, ns.forgetting)
    except ValueError as exc:
        raise PredictError(f"simulate: {exc}") from None
    empty = [name for name, fold in (("test", -1), *((f"fold {k}", k) for k in range(5))) if not (ds.folds == fold).any()]
    if empty:
        raise PredictError(f"--students {ns.students} is too few for the pyKT split (20% test, folds 0-4): "
                           f"no student in {', '.join(empty)}; the exported data could not be trained on")
    params = generator_parameters(ns.students, ns.skills, ns.min_len, ns.max_len, ns.seed, ns.forgetting)
    try:
        record = export(ds, out, ns.format, params)
    except OSError as exc:
        raise PredictError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    print(f"wrote {record['students']} students, {record['skills']} skills ({ns.format}) and truth.csv to {out}")


def _read_table(path: str, what: str) -> Any:
    import pandas as pd

    if not Path(path).is_file():
        raise PredictError(f"{what} file not found: {path}")
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PredictError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def score_truth_files(ns: argparse.Namespace) -> None:
    import pandas as pd

    from gainakt.predict import score_truth, truth_pairs

    truth = _read_table(ns.truth, "--truth")
    preds = _read_table(ns.predictions, "--predictions")
    _require(truth, ("student_id", "step", "skill", "true_mastery", "answered"), ns.truth)
    long = "mastery_next" not in preds.columns
    _require(preds, ("student_id", "step", "concept", "mastery") if long else ("student_id", "step", "next_concept"),
             ns.predictions)
    column = "mastery" if long else "mastery_next"
    values = pd.to_numeric(preds[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        first = preds[bad].iloc[0]
        raise PredictError(f"{ns.predictions}: {int(bad.sum())} row(s) have no finite {column} value (first: "
                           f"student {first['student_id']}, step {first['step']}); score-truth needs a number "
                           "in every row")
    parts = preds.groupby("seed", sort=True) if "seed" in preds.columns else [(None, preds)]
    scores = {}
    for seed, part in parts:
        pairs = truth_pairs(truth, part)
        if pairs.empty:
            raise PredictError(f"no prediction in {ns.predictions} matches a (student_id, step, concept) of "
                               f"{ns.truth}: predictions of another dataset?")
        s = score_truth(pairs)
        if s.n == 0:
            raise PredictError(f"no student of {ns.predictions}{'' if seed is None else f' (seed {seed})'} can be "
                               "scored: a correlation needs 3 or more steps whose predicted and true mastery both vary")
        scores["all" if seed is None else str(seed)] = {
            "true_mastery_correlation": s.mean, "students": s.n, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "pairs": len(pairs)}
    if ns.json:
        print(json.dumps(scores, indent=2, sort_keys=True))
        return
    for seed, row in scores.items():
        print(f"seed {seed}: mean per-student Pearson r of predicted vs true mastery of the concept asked next "
              f"= {row['true_mastery_correlation']:.4f} over {row['students']} students ({row['pairs']} steps) "
              f"(95% CI {row['ci_low']:.4f} to {row['ci_high']:.4f})")


def _require(table: Any, columns: tuple[str, ...], path: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PredictError(f"{path}: missing column(s) {', '.join(missing)}")
