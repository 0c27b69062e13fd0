"""CalciumScoring's settings: the options of `cardioquant calcium`, the panel and the JSON's "options".

Light on purpose (no SciPy, no network): the Slicer panel builds its parameter node from it when Slicer starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import budget
from ..settings import AnalysisSettings, setting

# Vendor presets of the minimum lesion area: (mm2, pixels); None where the vendor sets no such minimum.
MIN_AREA_PRESETS = {"literature": (1.0, None), "ge": (1.0, None), "terarecon": (1.0, None),
                    "philips": (0.5, None), "canon": (None, 3), "siemens": (None, None)}

CONNECTIVITY = ("2d8", "2d4", "3d6", "3d26")


@dataclass
class CalciumSettings(AnalysisSettings):
    """The calcium scoring's options (`cardioquant calcium --help`; the CalciumScoring panel)."""

    mode: str = setting("auto", "auto: CTA when the blood inside the heart is iodine-bright (>= 130 HU), else "
                                "non-contrast [auto]", choices=("auto", "noncontrast", "cta"), panel=True)
    labels: str | None = setting(None, "artery label map (1 LM, 2 LAD, 3 LCX, 4 RCA): semi-automatic scoring", path=True)
    roi: str | None = setting(None, "mask restricting where candidates are looked for", path=True)
    heart_mask: str | None = setting(None, "heart mask file (e.g. TotalSegmentator's heart.nii.gz), a folder of "
                                           "TotalSegmentator's output (heart.nii.gz; its aorta.nii.gz too when there), "
                                           "or 'totalsegmentator' to run it when installed, instead of the automatic "
                                           "heart search region; grown 10 mm for the coronaries on its surface, "
                                           "calcium in the aorta kept apart", path=True, words=("totalsegmentator",))
    # clinical CT tube voltages; the published table covers 70-135
    kvp: float | None = setting(None, "tube voltage; default: DICOM KVP, else 120 with a warning",
                                limits=(60.0, 150.0, True), panel=True)
    k: float = setting(3.0, "CTA threshold = lumen mean + k x SD [3]", limits=(0.0, 10.0, False))
    cta_scale: float | None = setting(None, "CTA: Agatston-equivalent = scale x raw CTA score [fitted default, see "
                                            "README]", limits=(0.0, 10.0, False))
    lumen_mask: str | None = setting(None, "CTA: lumen mask for the lumen statistics (default: automatic aortic ROI)",
                                     path=True)
    min_area: str = setting("literature", "minimum lesion area: a preset (literature, ge, terarecon 1 mm2; philips "
                                          "0.5 mm2; canon 3 pixels; siemens none) or a number in mm2 [literature]",
                            panel=True, panel_choices=tuple(MIN_AREA_PRESETS))
    connectivity: str = setting("2d8", "lesion connectivity [2d8]", choices=CONNECTIVITY)
    noise_floor_sd: float = setting(7.0, "automatic non-contrast path: a candidate whose brightest 1 mm2 mean lies "
                                         "under the blood's median + this many noise SD could be noise and is not "
                                         "scored (0: no noise floor) [7]", limits=(0.0, 20.0, True))
    slice_increment: float | None = setting(None, "slice increment in mm (default: the slice spacing)",
                                            limits=(0.0, 20.0, False))
    no_increment_scaling: bool = setting(False, "do not scale Agatston by increment / 3 mm")
    # mg/mm3 per HU; a 200 mg rod at ~230 HU gives 0.00087
    mass_calibration: float | None = setting(None, "mass calibration factor c (mg/mm3 per HU)",
                                             limits=(0.0, 1.0, False))
    calibration_rod_mask: str | None = setting(None, "mask of a calcium calibration rod (measures c with "
                                                     "--water-mask)", path=True)
    water_mask: str | None = setting(None, "mask of the water(-equivalent) calibration ROI", path=True)
    rod_density: float = setting(200.0, "calibration rod density, mg HA/cm3 [200]", limits=(0.0, 2000.0, False))
    memory_limit_gb: float = budget.memory_setting("a larger scan is scored around the heart only, or refused "
                                                   "before the scoring")


SETTINGS = CalciumSettings  # what cardioquant.pipelines.settings_class('calcium') returns
