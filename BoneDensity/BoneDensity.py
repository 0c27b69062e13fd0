"""Bone Density: opportunistic vertebral BMD from chest/abdominal CT (vertebrae, trabecular ROI, phantomless
calibration, mg/cm^3, ACR category).

Thin Slicer layer: the science is in `cardioquant.bmd` (CardioQuantCore module).
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib import selftests
from CardioQuantCoreLib.logic import BMDLogic
from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class BoneDensity(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Bone Density"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Vertebral trabecular BMD from routine CT without a phantom: vertebrae from the project's network or a "
            "TotalSegmentator-style segmentation (segments vertebrae_L1, ...), trabecular ROIs and reference-tissue "
            "ROIs as segments you can edit, calibrated BMD (mg/cm3) and the ACR category. Rename a segment to relabel "
            "a level and Apply again with that segmentation selected. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class BoneDensityLogic(BMDLogic, CardioQuantLogic):
    """The BMD logic (CardioQuantCoreLib.logic.BMDLogic: process, exportCurrent) with Slicer's parameter
    node."""


class BoneDensityWidget(CardioQuantWidget):
    MODULE_KEY = "bmd"

    def createLogic(self):
        return BoneDensityLogic()


class BoneDensityTest(ScriptedLoadableModuleTest):
    """Self-test on a spine phantom of known BMD with TotalSegmentator-style labels (runs headless). Its body,
    CardioQuantCoreLib.selftests.bone_density, is the one pytest runs too."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_bone_density_logic_end_to_end()

    def test_bone_density_logic_end_to_end(self):
        selftests.bone_density(self, BoneDensityLogic())
