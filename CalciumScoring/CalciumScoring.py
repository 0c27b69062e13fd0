"""Calcium Scoring: coronary artery calcium on non-contrast CT and CTA (Agatston, volume, mass; per artery; risk).

Thin Slicer layer: the science is in `cardioquant.calcium` (CardioQuantCore module). The panel runs the analysis in
a background process, then lets the reader review lesions, reassign them (combo box or keys 1-4, 0) or edit the
segments in Segment Editor; scores recompute from the current segmentation after every edit.
"""

import tempfile

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget, writeSegmentationLabels

ARTERY_KEYS = {"1": 1, "2": 2, "3": 3, "4": 4, "0": 5}


class CalciumScoring(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Calcium Scoring"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Coronary artery calcium on non-contrast CT and CTA: Agatston, volume and mass scores per artery "
            "(LM, LAD, LCX, RCA) and risk category. The automatic path finds the heart between the lungs (shown as "
            "the 'heart search region' segment), decides CTA from the blood inside it, keeps calcium outside the "
            "heart and on the aortic valve, root or mitral annulus as their own segments, and assigns arteries "
            "from where each lesion lies on the heart; lesions it is unsure of are flagged. Checked on only three "
            "real gated scans: review every lesion. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "Research software, not a medical device."


class CalciumScoringLogic(CardioQuantLogic):
    MODULE_KEY = "calcium"

    def labelArray(self, inputVolumeNode, segmentationNode):
        from cardioquant import scene
        from cardioquant.calcium.pipeline import LABEL_TABLE

        return scene.labelmap_from_segmentation_node(segmentationNode, inputVolumeNode, LABEL_TABLE)

    def rescore(self, inputVolumeNode, segmentationNode, runSettings=None):
        """Scores of the segmentation as it is now (after the reader's edits), with the settings the run scored
        with (its JSON "settings": kVp, CTA threshold and scale, minimum area, connectivity)."""
        from cardioquant import scene
        from cardioquant.calcium.pipeline import rescore

        image = scene.image_from_volume_node(inputVolumeNode)
        return rescore(image, self.labelArray(inputVolumeNode, segmentationNode), runSettings)

    def reassignLesion(self, inputVolumeNode, segmentationNode, seedIJK, artery):
        """Move a lesion to another artery segment; the other segments are left as they are."""
        from cardioquant.calcium.pipeline import LABEL_TABLE, reassign_lesion

        labels = self.labelArray(inputVolumeNode, segmentationNode)
        seed = (int(round(seedIJK[2])), int(round(seedIJK[1])), int(round(seedIJK[0])))
        updated = reassign_lesion(labels, seed, artery)
        segmentation = segmentationNode.GetSegmentation()
        for spec in LABEL_TABLE.segments:
            segmentId = segmentation.GetSegmentIdBySegmentName(spec.name)
            slicer.util.updateSegmentBinaryLabelmapFromArray((updated == spec.value).astype("uint8"), segmentationNode,
                                                             segmentId, inputVolumeNode)


class CalciumScoringWidget(CardioQuantWidget):
    MODULE_KEY = "calcium"

    def createLogic(self):
        return CalciumScoringLogic()

    def setup(self):
        CardioQuantWidget.setup(self)
        self.lesions = []
        table = self.ui.lesionTableWidget
        self.runLesions = []
        self.runSettings = None  # the run's scoring settings, kept for re-scoring the reader's edits
        table.setColumnCount(6)
        table.setHorizontalHeaderLabels(["#", "Artery", "Agatston", "Volume (mm3)", "Slices", "Review"])
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        table.connect("itemSelectionChanged()", self.onLesionSelected)
        self.ui.arteryComboBox.connect("activated(int)", lambda index: self.assignSelected(index + 1))
        for key, artery in ARTERY_KEYS.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), table)
            shortcut.connect("activated()", lambda a=artery: self.assignSelected(a))

    def extraArguments(self):
        args = ["--mode", self.ui.modeComboBox.currentText, "--min-area", self.ui.minAreaComboBox.currentText]
        if self.ui.kvpSpinBox.value:
            args += ["--kvp", str(self.ui.kvpSpinBox.value)]
        heart = self.ui.heartSegmentationSelector.currentNode()
        if heart is not None:
            from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

            # TotalSegmentator names the segment "heart"; only that segment is written, as value 1.
            table = LabelTable([SegmentSpec(1, "heart", (1, 0, 0), TISSUE, TISSUE)])
            path = writeSegmentationLabels(heart, self.ui.inputVolumeSelector.currentNode(), table,
                                           tempfile.mkdtemp(), "heart.nrrd")
            args += ["--heart-mask", path]
        return args

    def onFinished(self, ok, outputDir, message):
        CardioQuantWidget.onFinished(self, ok, outputDir, message)
        if ok:
            import json
            import os

            with open(os.path.join(outputDir, "calcium.json")) as handle:
                stored = json.load(handle)
            self.runLesions, self.runSettings = stored["lesions"], stored["settings"]
            self.watchEdits(self.ui.segmentEditorWidget.segmentationNode())
            self.updateScores()

    def onSegmentationEdited(self):
        self.updateScores()

    def updateScores(self):
        segmentationNode = self.observedSegmentation
        volumeNode = self.runInputNode
        if segmentationNode is None or volumeNode is None:
            return
        from cardioquant.calcium.pipeline import carry_review_flags

        scores = self.logic.rescore(volumeNode, segmentationNode, self.runSettings)
        self.lesions = carry_review_flags(scores["lesions"], self.runLesions)
        table = self.ui.lesionTableWidget
        table.setRowCount(len(self.lesions))
        for row, lesion in enumerate(self.lesions):
            values = [lesion["id"], lesion["artery"], f"{lesion['agatston']:.1f}", f"{lesion['volume_mm3']:.1f}",
                      f"{lesion['slices'][0]}-{lesion['slices'][1]}", lesion["review"] or ""]
            for column, value in enumerate(values):
                table.setItem(row, column, qt.QTableWidgetItem(str(value)))
        total = scores["total"]
        self.ui.statusLabel.text = (f"Agatston {total['agatston']:.1f}, volume {total['volume_mm3']:.1f} mm3; "
                                    f"risk {scores['risk']['classic']}, CAC-DRS {scores['risk']['cac_drs']}")

    def selectedLesion(self):
        rows = {index.row() for index in self.ui.lesionTableWidget.selectedIndexes()}
        return self.lesions[min(rows)] if rows else None

    def onLesionSelected(self):
        lesion = self.selectedLesion()
        if lesion and lesion.get("centroid_ras"):
            slicer.modules.markups.logic().JumpSlicesToLocation(*lesion["centroid_ras"], True)

    def assignSelected(self, artery):
        lesion = self.selectedLesion()
        if lesion is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not reassign the lesion.", waitCursor=True):
            self.logic.reassignLesion(self.runInputNode, self.observedSegmentation,
                                      lesion["centroid_ijk"], artery)
        self.updateScores()


class CalciumScoringTest(ScriptedLoadableModuleTest):
    """Self-test on a voxel-built phantom with exact scores (runs headless: Slicer --no-main-window)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_semi_automatic_exact_scores()

    def test_semi_automatic_exact_scores(self):
        import tempfile

        from cardioquant import scene
        from cardioquant.calcium.phantom import write_block_phantom

        ctPath, labelPath = write_block_phantom(tempfile.mkdtemp())  # LAD 16 + RCA 6 = 22, worked by hand
        volumeNode = scene.load_volume(slicer.mrmlScene, ctPath, "phantom")
        logic = CalciumScoringLogic()
        options = logic.defaultOptions(labels=labelPath, mode="noncontrast", kvp=120.0)
        segmentationNode, tableNode, result = logic.process(volumeNode, options)
        self.assertAlmostEqual(result.summary["total"]["agatston"], 22.0)
        self.assertAlmostEqual(result.summary["arteries"]["LAD"]["agatston"], 16.0)
        rescored = logic.rescore(volumeNode, segmentationNode, result.settings)
        self.assertAlmostEqual(rescored["arteries"]["RCA"]["agatston"], 6.0)
        self.assertEqual(tableNode.GetNumberOfRows(), 5)
