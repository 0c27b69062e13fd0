"""CT-FFR: CT-derived fractional flow reserve from coronary CTA: lumen segmentation, centerlines, reduced-order flow simulation, FFR along each vessel.

Thin Slicer layer: the science is in the `cardioquant` package (CardioQuantCore module); this file holds the
panel (Widget), the scriptable Logic and the self-test.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class CTFFR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CT-FFR"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "CT-derived fractional flow reserve from coronary CTA: lumen segmentation, centerlines, reduced-order flow simulation, FFR along each vessel. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class CTFFRLogic(CardioQuantLogic):
    MODULE_KEY = "ffr"


class CTFFRWidget(CardioQuantWidget):
    MODULE_KEY = "ffr"

    def createLogic(self):
        return CTFFRLogic()


class CTFFRTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_availability_is_reported()

    def test_availability_is_reported(self):
        logic = CTFFRLogic()
        self.assertEqual(logic.isAvailable(), logic.pipeline() is not None)
