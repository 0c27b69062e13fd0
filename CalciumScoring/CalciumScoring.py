"""Calcium Scoring: coronary artery calcium on non-contrast CT and CTA (Agatston, volume, mass; per artery; risk).

Thin Slicer layer: the science is in `cardioquant.calcium` (CardioQuantCore module). The panel runs the analysis in
a background process, then lets the reader review lesions, reassign them (combo box or keys 1-4, 0) or edit the
segments in Segment Editor; scores recompute from the current segmentation after every edit.
"""

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from cardioquant import scene as scene_layer
from CardioQuantCoreLib import selftests
from CardioQuantCoreLib.logic import CalciumLogic
from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget

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


class CalciumScoringLogic(CalciumLogic, CardioQuantLogic):
    """The calcium logic (CardioQuantCoreLib.logic.CalciumLogic: process, rescore, reassignLesion, exportCurrent)
    with Slicer's parameter node."""


class CalciumScoringWidget(CardioQuantWidget):
    MODULE_KEY = "calcium"

    def createLogic(self):
        return CalciumScoringLogic()

    def setup(self):
        CardioQuantWidget.setup(self)
        self.lesions = []
        table = self.ui.lesionTableWidget
        table.setColumnCount(6)
        table.setHorizontalHeaderLabels(["#", "Artery", "Agatston", "Volume (mm3)", "Slices", "Review"])
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        table.connect("itemSelectionChanged()", self.onLesionSelected)
        self.ui.arteryComboBox.connect("activated(int)", lambda index: self.assignSelected(index + 1))
        for key, artery in ARTERY_KEYS.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), table)
            shortcut.connect("activated()", lambda a=artery: self.assignSelected(a))

    def onFinished(self, ok, outputDir, message):
        CardioQuantWidget.onFinished(self, ok, outputDir, message)
        if ok:
            self.watchEdits(self.ui.segmentEditorWidget.segmentationNode())
            self.updateScores()

    def onSegmentationEdited(self):
        self.updateScores()

    def updateScores(self):
        """The figures of the segmentation as it is now, scored with the run's own settings (as Export writes them):
        the lesion list (review flags kept on lesions that stayed), the run's table updated in place, the total."""
        segmentationNode = self.observedSegmentation
        volumeNode = self.runInputNode
        if segmentationNode is None or volumeNode is None or self.runDocument is None:
            return
        result = self.logic.editedResult(volumeNode, segmentationNode, self.runDocument)
        self.lesions = result.summary["lesions"]
        table = self.ui.lesionTableWidget
        table.setRowCount(len(self.lesions))
        for row, lesion in enumerate(self.lesions):
            values = [lesion["id"], lesion["artery"], f"{lesion['agatston']:.1f}", f"{lesion['volume_mm3']:.1f}",
                      f"{lesion['slices'][0]}-{lesion['slices'][1]}", lesion["review"] or ""]
            for column, value in enumerate(values):
                table.setItem(row, column, qt.QTableWidgetItem(str(value)))
        self.showTable(result.table_rows)
        total, risk = result.summary["total"], result.summary["risk"]
        leftMain = result.summary["arteries"]["LM"].get("scored_with")
        self.ui.statusLabel.text = (f"Agatston {total['agatston']:.1f}, volume {total['volume_mm3']:.1f} mm3; "
                                    f"risk {risk['classic']}, CAC-DRS {risk['cac_drs']}"
                                    + (f"; LM scored with the {leftMain} (reassign its lesions to LM)" if leftMain else ""))

    def selectedLesion(self):
        rows = {index.row() for index in self.ui.lesionTableWidget.selectedIndexes()}
        return self.lesions[min(rows)] if rows else None

    def onLesionSelected(self):
        lesion = self.selectedLesion()
        if lesion and lesion.get("centroid_ras"):
            where = scene_layer.point_in_world(self.runInputNode, lesion["centroid_ras"])  # through its transform
            slicer.modules.markups.logic().JumpSlicesToLocation(*where, True)

    def assignSelected(self, artery):
        lesion = self.selectedLesion()
        if lesion is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not reassign the lesion.", waitCursor=True):
            self.logic.reassignLesion(self.runInputNode, self.observedSegmentation,
                                      lesion["centroid_ijk"], artery)
        self.updateScores()


class CalciumScoringTest(ScriptedLoadableModuleTest):
    """Self-test on a voxel-built phantom with exact scores (runs headless: Slicer --no-main-window). Its body,
    CardioQuantCoreLib.selftests.calcium, is the one pytest runs too."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_calcium_logic_end_to_end()

    def test_calcium_logic_end_to_end(self):
        selftests.calcium(self, CalciumScoringLogic())
