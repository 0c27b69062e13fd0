"""CT-FFR: CT-derived fractional flow reserve from coronary CTA (lumen, vmtk centerlines, reduced-order hyperemic
flow with svZeroDSolver, FFR along each vessel).

Thin Slicer layer: the science is in `cardioquant.ffr` (CardioQuantCore module). Lumen from, in this order: a
selected coronary lumen segmentation, a seed point list (ostium first, then distal ends), or the project's network.
"""

import tempfile

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget, writeSegmentationLabels


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


class CTFFRLogic(CardioQuantLogic):
    MODULE_KEY = "ffr"

    def loadOutputs(self, outputDir, inputVolumeNode):
        """Besides the lumen and the table: centerlines and vessel surface coloured by FFR, and FFR-distance plots."""
        import json
        import os

        from cardioquant import scene

        segmentationNode, tableNode = CardioQuantLogic.loadOutputs(self, outputDir, inputVolumeNode)
        name = tableNode.GetName().replace(" table", "")
        for suffix, label in (("centerlines", "centerlines"), ("surface", "vessel surface")):
            path = os.path.join(outputDir, f"ffr_{suffix}.vtp")
            if os.path.exists(path):
                scene.load_model(slicer.mrmlScene, path, f"{name} {label}", scalars="FFR")
        with open(os.path.join(outputDir, "ffr.json")) as handle:
            vessels = json.load(handle)["vessels"]
        profiles = {vessel: ([p[0] for p in v["points"]], [p[1] for p in v["points"]]) for vessel, v in vessels.items()}
        chart = scene.plot_profiles(slicer.mrmlScene, profiles, f"{name} FFR along vessels", "distance_mm", "FFR")
        slicer.modules.plots.logic().ShowChartInLayout(chart)
        return segmentationNode, tableNode


class CTFFRWidget(CardioQuantWidget):
    MODULE_KEY = "ffr"

    def createLogic(self):
        return CTFFRLogic()

    def extraArguments(self):
        from cardioquant.ffr.pipeline import LABEL_TABLE

        args = ["--side", self.ui.sideComboBox.currentText, "--aortic-pressure", str(self.ui.aorticPressureSpinBox.value),
                "--murray-exponent", str(self.ui.murraySpinBox.value)]
        lumen = self.ui.lumenSelector.currentNode()
        if lumen is not None:
            segmentation = lumen.GetSegmentation()
            if segmentation.GetNumberOfSegments() and not segmentation.GetSegmentIdBySegmentName("coronary lumen"):
                segmentation.GetNthSegment(0).SetName("coronary lumen")  # the first segment is the lumen
            path = writeSegmentationLabels(lumen, self.ui.inputVolumeSelector.currentNode(), LABEL_TABLE,
                                           tempfile.mkdtemp(), "lumen.nrrd")
            args += ["--lumen-mask", path]
            return args
        seeds = self.ui.seedsSelector.currentNode()
        if seeds is not None and seeds.GetNumberOfControlPoints() >= 2:
            points = []
            for index in range(seeds.GetNumberOfControlPoints()):
                position = [0.0, 0.0, 0.0]
                seeds.GetNthControlPointPositionWorld(index, position)
                points.append(",".join(f"{v:.3f}" for v in position))
            args.append("--seeds=" + ";".join(points))  # "=": a leading minus would read as an option
        return args


class CTFFRTest(ScriptedLoadableModuleTest):
    """Self-test: a synthetic left coronary tree with a 70 % area stenosis, from its lumen mask (runs headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_tree()

    def test_phantom_tree(self):
        from cardioquant import scene
        from cardioquant.ffr.phantom import write_tree_phantom

        ctaPath, lumenPath, trueDistal = write_tree_phantom(tempfile.mkdtemp())
        volumeNode = scene.load_volume(slicer.mrmlScene, ctaPath, "cta")
        logic = CTFFRLogic()
        _, tableNode, result = logic.process(volumeNode, logic.defaultOptions(lumen_mask=lumenPath))
        distal = sorted(v["distal_ffr"] for v in result.summary["vessels"].values())
        for measured, expected in zip(distal, sorted(trueDistal), strict=True):
            self.assertAlmostEqual(measured, expected, delta=0.03)
        self.assertEqual(tableNode.GetNumberOfRows(), len(trueDistal))
