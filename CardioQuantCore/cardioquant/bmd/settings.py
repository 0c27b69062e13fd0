"""BoneDensity's settings: the options of `cardioquant bmd`, the panel and the JSON's "options".

Light on purpose (no SciPy, no network): the Slicer panel builds its parameter node from it when Slicer starts.
"""

from __future__ import annotations

import dataclasses
import math

from .. import budget
from ..errors import InputError
from ..settings import AnalysisSettings, setting
from .levels import LEVELS, UNDETERMINED

# Block averages no coarser than this: a trabecular ROI of 2-10 mL still holds hundreds of voxels, and its mean
# (what BMD is made of) is the mean of the averaged blocks but for its edge.
COARSEST_MM = 1.5


@dataclasses.dataclass
class BoneDensitySettings(AnalysisSettings):
    """The bone density's options (`cardioquant bmd --help`; the BoneDensity panel)."""

    vertebra_mask: str | None = setting(None, "TotalSegmentator output folder (vertebrae_L1.nii.gz, ...) or a "
                                              "multilabel file with TotalSegmentator `total` values, or "
                                              "'totalsegmentator' to run it when installed",
                                        path=True, words=("totalsegmentator",))
    vertebra_body_mask: str | None = setting(None, "TotalSegmentator vertebrae_body mask (label 1 = body), optional",
                                             path=True)
    seed: list[str] = setting([], "LEVEL:x,y,z (RAS mm) click inside a vertebral body; repeat for several")
    levels: str | None = setting(None, "comma-separated levels to report (default: all found)")
    lowest_level: str | None = setting(None, "network source: level of the lowest vertebra in view, when neither "
                                             "the sacrum nor ribs are visible to count from",
                                       choices=tuple(level for level in LEVELS if level != "S1"), metavar="LEVEL")
    # clinical CT tube voltages; the HA slopes are tabulated for 80-140
    kvp: float | None = setting(None, "tube voltage; default: DICOM KVP, else 120 with a warning",
                                limits=(60.0, 150.0, True), panel=True)
    calibration: str = setting("multi-material", "phantomless calibration method [multi-material]",
                               choices=("multi-material", "two-point"), panel=True)
    phantom: str | None = setting(None, "asynchronous calibration: HU:density pairs measured on a phantom, e.g. "
                                        "'2.1:0,98.5:100,201.7:200'")
    memory_limit_gb: float = budget.memory_setting(
        "a larger scan is measured on block averages of its voxels (the means BMD is made of are kept), no coarser "
        f"than {COARSEST_MM:g} mm, or refused before the measurement")

    def check(self) -> None:
        super().check()
        self.phantom_points()
        if self.levels and (unknown := [v for v in self.wanted_levels() if v not in LEVELS + UNDETERMINED]):
            raise InputError(f"--levels {self.levels}: {', '.join(unknown)} is not a vertebral level (C1-C7, T1-T12, "
                             "L1-L5, or V1, V2, ... where the levels are not determined)")

    def wanted_levels(self) -> list[str]:
        """--levels as a list (empty: every body found)."""
        return [v.strip() for v in self.levels.split(",")] if self.levels else []

    def phantom_points(self) -> list[tuple[float, float]]:
        """--phantom as (HU measured, density mg/cm3) pairs; one line naming the option, before any work, when it
        is not two or more of them at different HU (a line needs two points)."""
        if not self.phantom:
            return []
        try:
            points = [(float(hu), float(density)) for hu, density in (pair.split(":") for pair in self.phantom.split(","))]
        except ValueError:
            points = []
        if len({hu for hu, _ in points}) < 2 or not all(math.isfinite(v) for point in points for v in point):
            raise InputError(f"--phantom '{self.phantom}' must be two or more HU:density pairs at different HU, separated "
                             "by commas, e.g. '2:0,99:100,202:200'")
        return points


SETTINGS = BoneDensitySettings  # what cardioquant.pipelines.settings_class('bmd') returns
