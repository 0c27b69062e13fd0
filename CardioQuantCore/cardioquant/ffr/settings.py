"""CTFFR's settings: the options of `cardioquant ffr`, the panel and the JSON's "options".

Light on purpose (no SciPy, no vmtk, no network): the Slicer panel builds its parameter node from it when Slicer
starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import budget
from ..settings import AnalysisSettings, setting
from .physics import BoundaryConditions

_DEFAULT_BC = BoundaryConditions()


@dataclass
class FFRSettings(AnalysisSettings):
    """CT-FFR's options (`cardioquant ffr --help`; the CTFFR panel): the lumen's source, the boundary conditions
    (physiological ranges) and the lesion rule."""

    lumen_mask: str | None = setting(None, "coronary lumen segmentation (one tree from one ostium)", path=True)
    centerlines: str | None = setting(None, "vmtk-style centerlines .vtp (MaximumInscribedSphereRadius in mm)", path=True)
    seeds: str | None = setting(None, "semi-automatic lumen: 'x,y,z;x,y,z;...' (RAS mm) or a markups file; the "
                                      "ostium first, then the distal end of each vessel to follow")
    ostium: str | None = setting(None, "with --lumen-mask: inlet point x,y,z (RAS mm) or a markups file; default: "
                                       "the widest end")
    side: str = setting("left", "tree given by a mask, seeds or centerlines [left]; the network finds both trees "
                                "itself", choices=("left", "right"), panel=True)
    aortic_pressure: float = setting(_DEFAULT_BC.aortic_pressure_mmhg,
                                     f"mean aortic pressure, mmHg [{_DEFAULT_BC.aortic_pressure_mmhg:g}]",
                                     limits=(40.0, 200.0, True), panel=True)
    cardiac_output: float = setting(_DEFAULT_BC.cardiac_output_l_min,
                                    f"cardiac output, L/min [{_DEFAULT_BC.cardiac_output_l_min:g}]",
                                    limits=(1.0, 15.0, True))
    # hyperaemic / resting microvascular resistance (about 0.2-0.3)
    hyperemia_factor: float = setting(_DEFAULT_BC.hyperemia_factor, "hyperemic / resting microvascular resistance "
                                      f"[{_DEFAULT_BC.hyperemia_factor:g}]", limits=(0.0, 1.0, False))
    # a share of the flow: both trees get some
    left_share: float = setting(_DEFAULT_BC.left_share, f"left share of coronary flow [{_DEFAULT_BC.left_share:g}]",
                                limits=(0.0, 1.0, False, False))
    # Murray's law: 3; 2-3 reported for coronary trees
    murray_exponent: float = setting(_DEFAULT_BC.murray_exponent, "outlet flow split exponent m "
                                     f"[{_DEFAULT_BC.murray_exponent:g}]", limits=(2.0, 3.0, True), panel=True)
    # must stay well below the aortic pressure
    venous_pressure: float = setting(_DEFAULT_BC.venous_pressure_mmhg, "mmHg [0]", limits=(0.0, 20.0, True))
    min_stenosis: float = setting(20.0, "lesions: minimum diameter stenosis %% [20]", limits=(0.0, 99.0, True))
    memory_limit_gb: float = budget.memory_setting("the automatic lumen network reads the heart region only; a "
                                                   "larger region is refused before it runs")


SETTINGS = FFRSettings  # what cardioquant.pipelines.settings_class('ffr') returns
