"""Bone Density: Opportunistic vertebral bone mineral density from chest/abdominal CT: vertebra segmentation, trabecular ROI, phantomless calibration, ACR category.

Thin Slicer layer: the science is in the `cardioquant` package (CardioQuantCore module); this file holds the
panel (Widget), the scriptable Logic and the self-test.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class BoneDensity(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Bone Density"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Opportunistic vertebral bone mineral density from chest/abdominal CT: vertebra segmentation, trabecular ROI, phantomless calibration, ACR category. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class BoneDensityLogic(CardioQuantLogic):
    MODULE_KEY = "bmd"


class BoneDensityWidget(CardioQuantWidget):
    MODULE_KEY = "bmd"

    def createLogic(self):
        return BoneDensityLogic()


class BoneDensityTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_availability_is_reported()

    def test_availability_is_reported(self):
        logic = BoneDensityLogic()
        self.assertEqual(logic.isAvailable(), logic.pipeline() is not None)
