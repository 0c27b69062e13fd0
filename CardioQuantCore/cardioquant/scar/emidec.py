"""EMIDEC data access (80 real LGE MRI cases as 2D short-axis PNG slices with labels) and its fixed split.

Labels: 0 background, 1 LV cavity, 2 myocardium, 3 infarct, 4 microvascular obstruction. The PNGs are 8-bit and
lost their pixel spacing; where a volume is needed 1.5 x 1.5 x 10 mm is assumed (docs/REFERENCE.md section 3) and said so.
The validation split is fixed by case (never slices of one case on both sides): every fifth case in sorted order
of each group (N = no infarct, P = infarct), i.e. 16 of 80 cases.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from .network import ASSUMED_SPACING  # noqa: F401  (the spacing the networks were trained at)


def cases(root: str | Path) -> dict[str, list[Path]]:
    """case id -> image slice paths in slice order."""
    by_case = defaultdict(list)
    for path in sorted(Path(root, "images").glob("Case_*_slice*.png")):
        case = re.match(r"(Case_[NP]\d+)_slice", path.name)
        if case:
            by_case[case.group(1)].append(path)
    return dict(by_case)


def split(case_ids: list[str]) -> tuple[list[str], list[str]]:
    train: list[str] = []
    validation: list[str] = []
    for group in ("Case_N", "Case_P"):
        members = sorted(c for c in case_ids if c.startswith(group))
        for n, case in enumerate(members):
            (validation if n % 5 == 2 else train).append(case)
    return train, validation


def load_case(root: str | Path, case_id: str, paths: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images [slices, 256, 256] float32, labels [slices, 256, 256] uint8)."""
    from PIL import Image

    paths = paths or cases(root)[case_id]
    images = np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in paths])
    labels = np.stack([np.asarray(Image.open(Path(root, "labels", p.name)), dtype=np.uint8) for p in paths])
    return images, labels
