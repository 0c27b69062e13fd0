"""Scar Quantification: Myocardial scar on late-gadolinium-enhancement MRI: LV myocardium, n-SD / FWHM thresholds, scar volume, %LGE, AHA 17 segments.

Thin Slicer layer: the science is in the `cardioquant` package (CardioQuantCore module); this file holds the
panel (Widget), the scriptable Logic and the self-test.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class ScarQuantification(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Scar Quantification"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Myocardial scar on late-gadolinium-enhancement MRI: LV myocardium, n-SD / FWHM thresholds, scar volume, %LGE, AHA 17 segments. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class ScarQuantificationLogic(CardioQuantLogic):
    MODULE_KEY = "scar"


class ScarQuantificationWidget(CardioQuantWidget):
    MODULE_KEY = "scar"

    def createLogic(self):
        return ScarQuantificationLogic()


class ScarQuantificationTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_availability_is_reported()

    def test_availability_is_reported(self):
        logic = ScarQuantificationLogic()
        self.assertEqual(logic.isAvailable(), logic.pipeline() is not None)
