"""CT-FFR: CT-derived fractional flow reserve from coronary CTA (lumen, vmtk centerlines, reduced-order hyperemic
flow with svZeroDSolver, FFR along each vessel).

Thin Slicer layer: the science is in `cardioquant.ffr` (CardioQuantCore module). Lumen from, in this order: a
selected coronary lumen segmentation, a seed point list (ostium first, then distal ends), or the project's network.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib import selftests
from CardioQuantCoreLib.logic import FFRLogic
from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class CTFFR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CT-FFR"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "CT-derived FFR from coronary CTA: coronary lumen (network, seed points or your segmentation), vmtk centerlines, stenosis detection, a 0D hyperemic "
            "flow model solved with svZeroDSolver, FFR along every vessel (centerlines coloured by FFR, table, report). "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "svZeroDSolver (SimVascular) and vmtk. Research software, not a medical device."


class CTFFRLogic(FFRLogic, CardioQuantLogic):
    """The CT-FFR logic (CardioQuantCoreLib.logic.FFRLogic: process, loadOutputs with centerlines, surface and
    FFR plots, exportCurrent) with Slicer's parameter node."""


class CTFFRWidget(CardioQuantWidget):
    MODULE_KEY = "ffr"

    def createLogic(self):
        return CTFFRLogic()


class CTFFRTest(ScriptedLoadableModuleTest):
    """Self-test: a synthetic left coronary tree with a 70 % area stenosis, from its lumen mask (runs headless). Its
    body, CardioQuantCoreLib.selftests.ctffr, is the one pytest runs too."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ctffr_logic_end_to_end()

    def test_ctffr_logic_end_to_end(self):
        selftests.ctffr(self, CTFFRLogic())
