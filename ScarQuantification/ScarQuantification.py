"""Scar Quantification: myocardial scar on late-gadolinium-enhancement MRI (LV myocardium, n-SD / FWHM thresholds,
scar volume, %LGE, AHA 17 segments, bull's-eye).

Thin Slicer layer: the science is in `cardioquant.scar` (CardioQuantCore module).
"""

import tempfile

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget, writeSegmentationLabels


class ScarQuantification(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Scar Quantification"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Myocardial scar on LGE MRI: LV myocardium (network trained on EMIDEC, or your segmentation), scar by "
            "n-SD, FWHM or the network, volumes, %LGE, AHA 17 segments and a bull's-eye. Edit the myocardium in "
            "Segment Editor and Apply again with it selected to recompute. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "EMIDEC challenge data (Lalande et al.) trained the network. Not a medical device."


class ScarQuantificationLogic(CardioQuantLogic):
    MODULE_KEY = "scar"


class ScarQuantificationWidget(CardioQuantWidget):
    MODULE_KEY = "scar"

    def createLogic(self):
        return ScarQuantificationLogic()

    def extraArguments(self):
        from cardioquant.scar.pipeline import LABEL_TABLE

        args = ["--method", self.ui.methodComboBox.currentText, "--n-sd", str(self.ui.nSdSpinBox.value),
                "--rv-insertion", str(self.ui.rvInsertionSpinBox.value)]
        myocardium = self.ui.myocardiumSelector.currentNode()
        if myocardium is not None:  # the reader's corrected myocardium: recompute from it
            path = writeSegmentationLabels(myocardium, self.ui.inputVolumeSelector.currentNode(), LABEL_TABLE,
                                           tempfile.mkdtemp(), "myocardium.nrrd")
            args += ["--myocardium-mask", path]
        return args


class ScarQuantificationTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic LGE stack with a known scar (runs headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_lge_percent()

    def test_phantom_lge_percent(self):
        import os

        from cardioquant import scene
        from cardioquant.scar.phantom import write_lge_phantom

        folder = tempfile.mkdtemp()
        scanPath, maskPath, truePercent = write_lge_phantom(folder)
        volumeNode = scene.load_volume(slicer.mrmlScene, scanPath, "lge")
        logic = ScarQuantificationLogic()
        options = logic.defaultOptions(myocardium_mask=maskPath, method="nsd", n_sd=5.0)
        segmentationNode, tableNode, result = logic.process(volumeNode, options)
        self.assertAlmostEqual(result.summary["lge_percent"], truePercent, delta=0.5)
        self.assertEqual(tableNode.GetNumberOfRows(), 17)
        self.assertTrue(os.path.exists(scanPath))
