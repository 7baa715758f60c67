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
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

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
