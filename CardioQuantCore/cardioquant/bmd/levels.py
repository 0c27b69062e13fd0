"""Vertebral levels and TotalSegmentator's label values for them (TotalSegmentator v2 `total` task)."""

from __future__ import annotations

import re

LEVELS = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]

# Bodies whose level could not be determined are named from the lowest in view up: V1, V2, ... (never a level).
UNDETERMINED = [f"V{n}" for n in range(1, 26)]

# TotalSegmentator v2 "total": 26 vertebrae_S1, 27 vertebrae_L5 ... 31 vertebrae_L1, 32 vertebrae_T12 ... 43
# vertebrae_T1, 44 vertebrae_C7 ... 50 vertebrae_C1.
TOTALSEGMENTATOR_VALUES = {"S1": 26, **{f"L{i}": 32 - i for i in range(1, 6)}, **{f"T{i}": 44 - i for i in range(1, 13)},
                           **{f"C{i}": 51 - i for i in range(1, 8)}}
VALUE_TO_LEVEL = {v: k for k, v in TOTALSEGMENTATOR_VALUES.items()}

# Preference for the patient-level BMD: two best available lumbar (L1-L2 first), else lower thoracic.
PREFERRED = ["L1", "L2", "L3", "L4", "T12", "T11", "T10", "T9", "T8", "T7"]


def level_from_name(name: str) -> str | None:
    """'vertebrae_L1', 'vertebrae_L1.nii.gz', 'L1' -> 'L1'."""
    stem = name.split("/")[-1].replace(".nii.gz", "").replace(".nii", "").replace(".nrrd", "")
    stem = stem.removeprefix("vertebrae_")
    return stem if stem in LEVELS else None


def level_from_segment_label(label: str) -> str | None:
    """A DICOM SEG segment's label -> its level: TotalSegmentator's ('vertebrae_L1'), a level alone ('L1'), or a
    level beside a word for vertebra ('L1 vertebra', 'Vertebra L1', 'vertebral body L1'); 'sacrum' -> 'S1'.
    Anything else (ribs, discs, other organs) names no level."""
    words = [word for word in re.split(r"[\s_\-]+", label.strip()) if word]
    levels = [word.upper() for word in words if word.upper() in LEVELS]
    if [word.lower() for word in words] == ["sacrum"]:
        return "S1"
    others = [word.lower() for word in words if word.upper() not in LEVELS]
    if len(levels) == 1 and all(word.startswith("vertebr") or word == "body" for word in others):
        return levels[0]
    return None


def is_determined(name: str) -> bool:
    return name in LEVELS
