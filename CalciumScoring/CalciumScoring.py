"""Calcium Scoring: Coronary artery calcium on non-contrast CT and CTA: Agatston, volume and mass scores per artery (LM, LAD, LCX, RCA), risk category.

Thin Slicer layer: the science is in the `cardioquant` package (CardioQuantCore module); this file holds the
panel (Widget), the scriptable Logic and the self-test.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class CalciumScoring(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Calcium Scoring"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Coronary artery calcium on non-contrast CT and CTA: Agatston, volume and mass scores per artery (LM, LAD, LCX, RCA), risk category. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class CalciumScoringLogic(CardioQuantLogic):
    MODULE_KEY = "calcium"


class CalciumScoringWidget(CardioQuantWidget):
    MODULE_KEY = "calcium"

    def createLogic(self):
        return CalciumScoringLogic()


class CalciumScoringTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_availability_is_reported()

    def test_availability_is_reported(self):
        logic = CalciumScoringLogic()
        self.assertEqual(logic.isAvailable(), logic.pipeline() is not None)
