"""Scar Quantification: myocardial scar on late-gadolinium-enhancement MRI (LV myocardium, n-SD / FWHM thresholds,
scar volume, %LGE, AHA 17 segments, bull's-eye).

Thin Slicer layer: the science is in `cardioquant.scar` (CardioQuantCore module).
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from cardioquant import scene as scene_layer
from CardioQuantCoreLib import selftests
from CardioQuantCoreLib.logic import ScarLogic, firstPointText
from CardioQuantCoreLib.module_base import CardioQuantLogic, CardioQuantWidget


class ScarQuantification(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Scar Quantification"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = ["CardioQuantCore"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = (
            "Myocardial scar on LGE MRI: LV myocardium (network trained on EMIDEC, or your segmentation), scar by "
            "n-SD, FWHM or the networks (a second network, the scar refiner, reads the myocardium the first found; "
            "their scar blobs under the 'smallest scar blob' volume count as myocardium), "
            "volumes, %LGE, AHA 17 segments and a bull's-eye. Edit the cavity, myocardium, "
            "scar or MVO in Segment Editor: the figures are recomputed from the segments as drawn after every edit. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "EMIDEC challenge data (Lalande et al.) trained the network. Not a medical device."


class ScarQuantificationLogic(ScarLogic, CardioQuantLogic):
    """The scar logic (CardioQuantCoreLib.logic.ScarLogic: process, editedResult, exportCurrent) with Slicer's
    parameter node."""


class ScarQuantificationWidget(CardioQuantWidget):
    MODULE_KEY = "scar"

    def createLogic(self):
        return ScarQuantificationLogic()

    def insertionPoint(self):
        """The reader's anterior RV insertion (first control point of the chosen point list) as 'X,Y,Z' in RAS mm,
        or None."""
        node = self._parameterNode.rv_insertion_point if self._parameterNode else None
        volumeNode = self.runInputNode or (self._parameterNode.inputVolume if self._parameterNode else None)
        return firstPointText(node, volumeNode) if node is not None and volumeNode is not None else None

    def onFinished(self, ok, outputDir, message):
        CardioQuantWidget.onFinished(self, ok, outputDir, message)
        if ok:
            self.watchEdits(self.ui.segmentEditorWidget.segmentationNode())
            if self.insertionPoint() is None:
                self.showEstimatedInsertion(outputDir)

    def showEstimatedInsertion(self, outputDir):
        """Put the estimated insertion point in the scene, selected, for the reader to drag and re-apply."""
        insertion = self.logic.runDocument(outputDir)["rv_insertion"]
        r, a, s = insertion["marker_ras"]
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
        node.AddControlPoint(r, a, s, f"RV insertion ({insertion['source']})")
        scene_layer.place_with_volume(slicer.mrmlScene, self.runInputNode, node)  # under the volume's transform
        self._parameterNode.rv_insertion_point = node

    def exportOverrides(self):
        return {"rv_insertion_point": self.insertionPoint()}

    def onSegmentationEdited(self):
        """Recompute volumes, %LGE and AHA segments from the edited segments with the run's own settings (its n,
        septum direction and RV insertion, or the insertion point the reader moved); the table shows them."""
        volumeNode = self.runInputNode
        if self.observedSegmentation is None or volumeNode is None or self.runDocument is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not recompute from the edited segmentation.", waitCursor=True):
            result = self.logic.editedResult(volumeNode, self.observedSegmentation, self.runDocument,
                                              **self.exportOverrides())
            self.showTable(result.table_rows, f"{volumeNode.GetName()} scar (edited)")
            summary = result.summary
            self.ui.statusLabel.text = (f"As edited: scar {summary['scar_ml']:.1f} mL + MVO {summary['mvo_ml']:.1f} mL of "
                                        f"{summary['myocardium_ml']:.1f} mL myocardium, LGE {summary['lge_percent']:.1f} %")


class ScarQuantificationTest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic LGE stack with a known scar (runs headless). Its body,
    CardioQuantCoreLib.selftests.scar, is the one pytest runs too."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_scar_logic_end_to_end()

    def test_scar_logic_end_to_end(self):
        selftests.scar(self, ScarQuantificationLogic())
