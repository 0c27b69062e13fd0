"""Agreement measures used to check the networks against labelled truth (benchmarks, training scripts, tests)."""

from __future__ import annotations

import numpy as np


def dice(found: np.ndarray, truth: np.ndarray, empty: float = 0.0) -> float:
    """Dice overlap 2|A and B| / (|A| + |B|) of two boolean masks; `empty` when both are empty (EMIDEC's
    evaluation code counts that case as 1)."""
    total = int(found.sum()) + int(truth.sum())
    return 2.0 * int((found & truth).sum()) / total if total else empty
