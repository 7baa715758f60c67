"""Synthetic students with known mastery: the built-in default dataset.

Generative model (all draws from ``numpy.random.default_rng(seed)``):

* Skill difficulty ``b_k ~ N(0, 1)``; student ability ``theta_s ~ N(0, 1)``.
* Initial mastery ``m0[s, k] = sigmoid(INIT_OFFSET + ABILITY_WEIGHT * theta_s -
  DIFFICULTY_WEIGHT * b_k)`` (low on average: ``INIT_OFFSET = -2``, weights 2 and 1).
* Learning rate per student and skill
  ``eta[s, k] = sigmoid(logit(BASE_LEARN_RATE) + 0.5 * theta_s + LEARN_RATE_SD * z)``,
  ``z ~ N(0, 1)``.
* Practice of skill k at step t answers correctly with
  ``P = GUESS + (1 - GUESS - SLIP) * m[k]`` where ``m`` is the mastery *before* step t,
  then raises that skill's mastery by a gain that shrinks as it approaches 1:
  ``m[k] += eta[s, k] * (1 - m[k]) * (1 if correct else WRONG_GAIN_FACTOR)``.
* Forgetting (``forgetting`` = f in [0, 1)): every skill not practised at step t
  decays towards its start, ``m[j] = m0[j] + (1 - f) * (m[j] - m0[j])``. With f = 0
  mastery never decreases.
* Practice order mimics skill-builder sets: a student works on one skill for a block
  that ends after ``STREAK`` correct answers in a row or ``MAX_BLOCK`` items; the next
  skill is a new one (easiest first, with noise) with probability ``NEW_SKILL_PROB``
  while unseen skills remain, otherwise a revisit of a seen skill, weighted by
  how far it is from mastery.
* Sequence length ``L_s ~ Uniform{min_len, ..., max_len}``.

With the defaults about 64% of answers are correct; predicting with the true
probabilities gives an AUC of about 0.80 and a logistic regression on simple count
features about 0.74, so a sequence model should land near 0.75-0.80.

``true_mastery[s][t, k]`` is the mastery of skill k *after* interaction t, so
``true_mastery[s][t, q_{t+1}]`` (before forgetting at t+1) drives the next response.
Folds follow pyKT's split (seed 1024): 20% test (fold -1), the rest folds 0..4.
The checksum is the sha256 of the canonical JSON of every generator parameter
(``generator_parameters``), so the same call always has the same checksum.

``export`` writes simulated students as a pyKT folder or DKVMN files with ``truth.csv`` (the true
mastery of every skill after every step) and ``SIMULATION.json`` (``harness data simulate``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from gainakt.data.dataset import KTDataset
from gainakt.data.splits import pykt_split

GENERATOR_VERSION = "gainakt.simulate/1"
INIT_OFFSET = -2.0
BASE_LEARN_RATE = 0.3
LEARN_RATE_SD = 0.5
GUESS = 0.1
SLIP = 0.05
WRONG_GAIN_FACTOR = 0.5
STREAK = 3
MAX_BLOCK = 8
NEW_SKILL_PROB = 0.7
ABILITY_WEIGHT = 2.0
DIFFICULTY_WEIGHT = 1.0


def generator_parameters(
    num_students: int, num_skills: int, min_len: int, max_len: int, seed: int, forgetting: float
) -> dict:
    """Return every parameter that determines the simulated data, as a JSON-ready dict."""
    return {
        "generator": GENERATOR_VERSION,
        "num_students": int(num_students),
        "num_skills": int(num_skills),
        "min_len": int(min_len),
        "max_len": int(max_len),
        "seed": int(seed),
        "forgetting": float(forgetting),
        "init_offset": INIT_OFFSET,
        "ability_weight": ABILITY_WEIGHT,
        "difficulty_weight": DIFFICULTY_WEIGHT,
        "base_learn_rate": BASE_LEARN_RATE,
        "learn_rate_sd": LEARN_RATE_SD,
        "guess": GUESS,
        "slip": SLIP,
        "wrong_gain_factor": WRONG_GAIN_FACTOR,
        "streak": STREAK,
        "max_block": MAX_BLOCK,
        "new_skill_prob": NEW_SKILL_PROB,
        "split": {"scheme": "pykt", "seed": 1024, "test_ratio": 0.2, "folds": 5},
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _student(
    rng: np.random.Generator,
    length: int,
    m0: np.ndarray,
    eta: np.ndarray,
    difficulty: np.ndarray,
    forgetting: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (concepts, responses, mastery after each step) for one student."""
    num_skills = len(m0)
    curriculum = list(np.argsort(difficulty + rng.normal(0.0, 0.7, num_skills)))
    seen: list[int] = []
    concepts = np.empty(length, dtype=np.int64)
    responses = np.empty(length, dtype=np.int64)
    mastery = np.empty((length, num_skills), dtype=np.float32)
    uniforms = rng.random(length)
    m = m0.copy()
    t = 0
    while t < length:
        if curriculum and (not seen or rng.random() < NEW_SKILL_PROB):
            skill = int(curriculum.pop(0))
            seen.append(skill)
        else:
            weights = 1.0 - m[seen] + 1e-3
            skill = int(seen[rng.choice(len(seen), p=weights / weights.sum())])
        streak = 0
        for _ in range(MAX_BLOCK):
            if t >= length or streak >= STREAK:
                break
            correct = int(uniforms[t] < GUESS + (1.0 - GUESS - SLIP) * m[skill])
            if forgetting > 0.0:
                practised = m[skill]
                m = m0 + (1.0 - forgetting) * (m - m0)
                m[skill] = practised
            m[skill] += eta[skill] * (1.0 - m[skill]) * (1.0 if correct else WRONG_GAIN_FACTOR)
            concepts[t], responses[t], mastery[t] = skill, correct, m
            streak = streak + 1 if correct else 0
            t += 1
    return concepts, responses, mastery


def simulate(
    num_students: int = 600,
    num_skills: int = 20,
    min_len: int = 20,
    max_len: int = 60,
    seed: int = 0,
    forgetting: float = 0.0,
) -> KTDataset:
    """Return a synthetic KTDataset (name and fmt "synthetic") with ``true_mastery`` filled.

    Deterministic in its arguments; see the module docstring for the generative model.
    """
    if num_students < 1 or num_skills < 1:
        raise ValueError("num_students and num_skills must be >= 1")
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if not 0.0 <= forgetting < 1.0:
        raise ValueError(f"forgetting must be in [0, 1), got {forgetting}")
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 1.0, num_skills)
    ability = rng.normal(0.0, 1.0, num_students)
    m0 = _sigmoid(INIT_OFFSET + ABILITY_WEIGHT * ability[:, None] - DIFFICULTY_WEIGHT * difficulty[None, :])
    base = np.log(BASE_LEARN_RATE / (1.0 - BASE_LEARN_RATE))
    eta = _sigmoid(
        base + 0.5 * ability[:, None] + LEARN_RATE_SD * rng.normal(0.0, 1.0, (num_students, num_skills))
    )
    lengths = rng.integers(min_len, max_len + 1, num_students)

    concepts, responses, mastery = [], [], []
    for s in range(num_students):
        c, r, m = _student(rng, int(lengths[s]), m0[s], eta[s], difficulty, forgetting)
        concepts.append(c)
        responses.append(r)
        mastery.append(m)

    folds = np.empty(num_students, dtype=np.int64)
    order, split = pykt_split(num_students)
    folds[order] = split
    params = generator_parameters(num_students, num_skills, min_len, max_len, seed, forgetting)
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return KTDataset(
        name="synthetic",
        fmt="synthetic",
        num_c=num_skills,
        concepts=concepts,
        responses=responses,
        folds=folds,
        uids=[f"synthetic:{s}" for s in range(num_students)],
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        source_files=(),
        true_mastery=mastery,
        split="simulated",
        num_c_source="number of simulated skills",
    )


# ---------------------------------------------------------------------------------------------
# Export: the simulated students in a standard format, with their true mastery

EXPORT_FORMATS = ("pykt", "dkvmn")
TRUTH_FILE = "truth.csv"
SIMULATION_FILE = "SIMULATION.json"
DKVMN_STEM = "synthetic"
PYKT_NAME = "gainakt_synthetic"  # the dataset's key in pykt_data_config.json (pyKT's configs/data_config.json)
PYKT_MAXLEN = 200  # pyKT's sequence length
MIN_SEQ_LEN = 3  # pyKT drops a chunk remainder shorter than this


def _joined(arrays: list[np.ndarray]) -> list[str]:
    return [",".join(map(str, a.tolist())) for a in arrays]


def _write_pykt(ds: KTDataset, out: Path, groups: tuple[np.ndarray, np.ndarray]) -> tuple[list[Path], list[str]]:
    """train_valid.csv (folds 0..4) + test.csv (fold -1) in student order, and keyid2idx.json."""
    paths, ids = [], []
    for name, idx in zip(("train_valid.csv", "test.csv"), groups, strict=True):
        table = pd.DataFrame({
            "fold": ds.folds[idx],
            "uid": [str(int(s)) for s in idx],
            "concepts": _joined([ds.concepts[s] for s in idx]),
            "responses": _joined([ds.responses[s] for s in idx]),
        })
        table.to_csv(out / name, index=False)
        paths.append(out / name)
        ids += table["uid"].tolist()
    keyid = {"concepts": {str(k): k for k in range(ds.num_c)}, "uid": {u: i for i, u in enumerate(ids)}}
    (out / "keyid2idx.json").write_text(json.dumps(keyid, sort_keys=True) + "\n", encoding="utf-8")
    sequences = _write_pykt_sequences(ds, out, groups)
    config = {PYKT_NAME: {
        "dpath": f"../data/{PYKT_NAME}", "num_q": 0, "num_c": ds.num_c, "input_type": ["concepts"],
        "max_concepts": 1, "min_seq_len": MIN_SEQ_LEN, "maxlen": PYKT_MAXLEN, "emb_path": "",
        "train_valid_original_file": "train_valid.csv", "train_valid_file": "train_valid_sequences.csv",
        "folds": [0, 1, 2, 3, 4], "test_original_file": "test.csv", "test_file": "test_sequences.csv",
        "test_window_file": "test_window_sequences.csv"}}
    (out / "pykt_data_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [*paths, out / "keyid2idx.json", *sequences, out / "pykt_data_config.json"], ids


def _padded(values: list[np.ndarray], width: int) -> list[str]:
    return [",".join(map(str, np.concatenate([v, np.full(width - len(v), -1, np.int64)]).tolist())) for v in values]


def _sequence_rows(ds: KTDataset, idx: np.ndarray, window: bool) -> pd.DataFrame:
    """pyKT's chunked rows (generate_sequences) or window rows (generate_window_sequences) of students."""
    width = PYKT_MAXLEN
    rows: dict[str, list] = {"fold": [], "uid": [], "concepts": [], "responses": [], "selectmasks": []}
    for s in idx:
        c, r, n = ds.concepts[s], ds.responses[s], len(ds.concepts[s])
        if window and n > width:  # the first maxlen, then one row per later interaction, last position scored
            spans = [(0, width, np.ones(width, np.int64))]
            spans += [(j - width, j, np.r_[np.full(width - 1, -1), 1]) for j in range(width + 1, n + 1)]
        elif window:
            spans = [(0, n, np.ones(n, np.int64))]
        else:  # non-overlapping chunks; a last piece shorter than min_seq_len is dropped
            starts = range(0, n, width)
            spans = [(a, min(a + width, n), np.ones(min(width, n - a), np.int64)) for a in starts
                     if min(width, n - a) >= MIN_SEQ_LEN or n - a >= width]
        for a, b, mask in spans:
            rows["fold"].append(int(ds.folds[s]))
            rows["uid"].append(str(int(s)))
            rows["concepts"] += _padded([c[a:b]], width)
            rows["responses"] += _padded([r[a:b]], width)
            rows["selectmasks"] += _padded([mask], width)
    return pd.DataFrame(rows)


def _write_pykt_sequences(ds: KTDataset, out: Path, groups: tuple[np.ndarray, np.ndarray]) -> list[Path]:
    """pyKT's training and test inputs: train_valid_sequences.csv, test_sequences.csv, test_window_sequences.csv."""
    files = (("train_valid_sequences.csv", groups[0], False), ("test_sequences.csv", groups[1], False),
             ("test_window_sequences.csv", groups[1], True))
    for name, idx, window in files:
        _sequence_rows(ds, idx, window).to_csv(out / name, index=False)
    return [out / name for name, _, _ in files]


def _write_dkvmn(ds: KTDataset, out: Path, groups: tuple[np.ndarray, np.ndarray]) -> tuple[list[Path], list[str]]:
    """<stem>_train.csv (every non-test student) + <stem>_test.csv, three lines each, 1-based skill ids."""
    paths, ids = [], []
    for part, idx in zip(("train", "test"), groups, strict=True):
        path = out / f"{DKVMN_STEM}_{part}.csv"
        lines = []
        for s in idx:
            lines += [str(len(ds.concepts[s])), ",".join(map(str, (ds.concepts[s] + 1).tolist())),
                      ",".join(map(str, ds.responses[s].tolist()))]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
        ids += [f"{path.stem}:{i}" for i in range(len(idx))]  # the ids gainakt's dkvmn reader gives them
    return paths, ids


def truth_table(ds: KTDataset, student_ids: list[str], order: np.ndarray) -> pd.DataFrame:
    """True mastery per student, step and skill (long format), after the interaction at that step.

    ``answered`` marks the skill answered at that step, so the skill asked next (step + 1) is known.
    """
    if ds.true_mastery is None:
        raise ValueError("this dataset has no true mastery (only simulated data has)")
    frames = []
    for sid, s in zip(student_ids, order, strict=True):
        m = ds.true_mastery[s]
        steps, skills = np.meshgrid(np.arange(len(m)), np.arange(ds.num_c), indexing="ij")
        frames.append(pd.DataFrame({
            "student_id": sid, "step": steps.ravel(), "skill": skills.ravel(), "true_mastery": m.ravel(),
            "answered": (skills == ds.concepts[s][:, None]).ravel().astype(np.int8),
        }))
    return pd.concat(frames, ignore_index=True)


def export(ds: KTDataset, out_dir: str | Path, fmt: str, params: dict) -> dict:
    """Write simulated students as ``fmt`` (pykt or dkvmn) plus truth.csv and SIMULATION.json; return the latter.

    Students are written in their simulated order within each part (train/valid first, then test),
    so reading the folder back gives the same windows as the built-in dataset (its pyKT folds are
    kept in ``pykt``; the dkvmn reader draws its own folds for the training file).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = (np.flatnonzero(ds.folds >= 0), np.flatnonzero(ds.folds < 0))
    files, ids = (_write_pykt if fmt == "pykt" else _write_dkvmn)(ds, out, groups)
    order = np.concatenate(groups)
    truth_table(ds, ids, order).to_csv(out / TRUTH_FILE, index=False)
    record = {
        "generator_parameters": params,
        "format": fmt,
        "students": len(ds),
        "skills": ds.num_c,
        "student_ids": "pykt: the simulated student index; dkvmn: <file stem>:<row> as gainakt's reader names them",
        "truth": {"file": TRUTH_FILE, "columns": ["student_id", "step", "skill", "true_mastery", "answered"],
                  "meaning": "true P(mastered) of every skill after the interaction at step (0-based); "
                             "answered marks the skill practised at that step"},
        "files": {p.name: _sha256(p) for p in [*files, out / TRUTH_FILE]},
    }
    (out / SIMULATION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
