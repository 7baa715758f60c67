"""The in-memory dataset every reader produces (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KTDataset:
    """Per-student interaction sequences plus their split and provenance.

    ``concepts[i]`` and ``responses[i]`` are int64 arrays of equal length for student i;
    ``folds[i]`` is 0..4 for train/valid students and -1 for test students.
    ``true_mastery`` is only set by the simulator: ``[L_i, num_c]`` float32, the true
    probability that each skill is mastered *after* interaction t.
    ``split`` names the split rule (a key of ``gainakt.data.splits.SPLITS``); ``num_c_source``
    says where ``num_c`` comes from; ``valid_folds`` limits the folds usable for validation
    (a published single train/valid split has only fold 0).
    """

    name: str
    fmt: str
    num_c: int
    concepts: list[np.ndarray]
    responses: list[np.ndarray]
    folds: np.ndarray
    uids: list[str]
    sha256: str
    source_files: tuple[str, ...]
    true_mastery: list[np.ndarray] | None = None
    # How students were split and where num_c came from (recorded with every run; see SPLITS).
    split: str = ""
    num_c_source: str = ""
    # Folds that may serve as the validation fold (None: every train/valid fold).
    valid_folds: tuple[int, ...] | None = None

    def __len__(self) -> int:
        """Return the number of students."""
        return len(self.concepts)

    @property
    def lengths(self) -> np.ndarray:
        """Return the number of interactions of every student (int64 array)."""
        return np.fromiter((len(c) for c in self.concepts), dtype=np.int64, count=len(self.concepts))
