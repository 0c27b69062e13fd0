"""ScarQuantification's settings: the options of `cardioquant scar`, the panel and the JSON's "options".

Light on purpose (no SciPy, no network): the Slicer panel builds its parameter node from it when Slicer starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import AnalysisSettings, setting
from .network import MIN_SCAR_COMPONENT_ML

DEFAULT_N_SD = 5.0  # between the 3-SD (agrees with expert manual) and 6-SD (visual) HCM findings; a setting
DEFAULT_SEPTUM_DIRECTION = +1  # without an orientation: the septum counter-clockwise of the anterior RV insertion,
# as in the conventional display (RV on the image left)


@dataclass
class ScarSettings(AnalysisSettings):
    """The scar quantification's options (`cardioquant scar --help`; the ScarQuantification panel)."""

    method: str = setting("auto", "scar inside the myocardium: auto (the network's scar, or the mask's drawn scar; n-SD "
                                  "for a myocardium mask with no scar drawn), model, n-SD or FWHM [auto]",
                          choices=("auto", "model", "nsd", "fwhm"), panel=True)
    # n-SD: 2-6 SD in the literature
    n_sd: float = setting(DEFAULT_N_SD, f"n for n-SD, 2-6 [{DEFAULT_N_SD:g}]", limits=(2.0, 6.0, True), panel=True)
    min_scar_ml: float = setting(MIN_SCAR_COMPONENT_ML,
                                 "the network's scar (+ MVO) blobs smaller than this (mL, 3D connected) count as "
                                 f"myocardium; 0 keeps every blob; never applied to a mask or edits "
                                 f"[{MIN_SCAR_COMPONENT_ML:g}]", limits=(0.0, 1000.0, True), panel=True)
    myocardium_mask: str | None = setting(None, "label map of the LV (EMIDEC values: 1 cavity, 2 myocardium, 3 scar, "
                                                "4 MVO) or a binary myocardium mask; skips the network", path=True)
    remote_mask: str | None = setting(None, "remote (normal) myocardium ROI for n-SD (default: automatic)", path=True)
    rv_insertion: float | None = setting(None, "anterior RV insertion angle, degrees counter-clockwise from image up "
                                               "[estimated from the image]")
    rv_insertion_point: str | None = setting(None, "anterior RV insertion as a point X,Y,Z in RAS mm (as Slicer shows "
                                                   "it) or a markups file (its first point); its angle about the LV "
                                                   "centre is used")
    septum_direction: int = setting(0, "+1 when the septum lies counter-clockwise of the insertion point, -1 when "
                                       "clockwise; 0: from the scan's orientation (the anterior insertion is the "
                                       "RV's end towards anterior-superior), +1 for a stack without one [0]",
                                    choices=(0, 1, -1))


SETTINGS = ScarSettings  # what cardioquant.pipelines.settings_class('scar') returns
