"""Bone Density: opportunistic vertebral BMD from chest/abdominal CT (vertebrae, trabecular ROI, phantomless
calibration, mg/cm^3, ACR category).

Thin Slicer layer: the science is in `cardioquant.bmd` (CardioQuantCore module).
"""

import tempfile

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget, writeSegmentationLabels


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


class BoneDensityLogic(CardioQuantLogic):
    MODULE_KEY = "bmd"


class BoneDensityWidget(CardioQuantWidget):
    MODULE_KEY = "bmd"

    def createLogic(self):
        return BoneDensityLogic()

    def extraArguments(self):
        from cardioquant.bmd.levels import TOTALSEGMENTATOR_VALUES
        from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

        args = ["--calibration", self.ui.calibrationComboBox.currentText]
        if self.ui.kvpSpinBox.value:
            args += ["--kvp", str(self.ui.kvpSpinBox.value)]
        segmentation = self.ui.vertebraSegmentationSelector.currentNode()
        if self.ui.sourceComboBox.currentText == "segmentation" and segmentation is not None:
            table = LabelTable([SegmentSpec(value, f"vertebrae_{level}", (1, 1, 1), TISSUE, TISSUE)
                                for level, value in TOTALSEGMENTATOR_VALUES.items()])
            path = writeSegmentationLabels(segmentation, self.ui.inputVolumeSelector.currentNode(), table,
                                           tempfile.mkdtemp(), "vertebrae.nrrd")
            args += ["--vertebra-mask", path]
        return args


class BoneDensityTest(ScriptedLoadableModuleTest):
    """Self-test on a spine phantom of known BMD with TotalSegmentator-style labels (runs headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_bmd()

    def test_phantom_bmd(self):
        from cardioquant import scene
        from cardioquant.bmd.phantom import write_spine_phantom

        scanPath, labelsPath, trueBmd = write_spine_phantom(tempfile.mkdtemp())
        volumeNode = scene.load_volume(slicer.mrmlScene, scanPath, "ct")
        logic = BoneDensityLogic()
        segmentationNode, tableNode, result = logic.process(volumeNode, logic.defaultOptions(vertebra_mask=labelsPath))
        for level, value in trueBmd.items():
            self.assertAlmostEqual(result.summary["vertebrae"][level]["bmd_mg_cm3"], value, delta=3.0)
