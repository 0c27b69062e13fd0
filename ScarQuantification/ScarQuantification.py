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
            "n-SD, FWHM or the networks (a second network, the scar refiner, reads the myocardium the first found; "
            "their scar blobs under the 'smallest scar blob' volume count as myocardium), "
            "volumes, %LGE, AHA 17 segments and a bull's-eye. Edit the cavity, myocardium, "
            "scar or MVO in Segment Editor: the figures are recomputed from the segments as drawn after every edit. "
            "See <a href='https://github.com/cardioquant/SlicerCardioQuant'>the CardioQuant documentation</a>."
        )
        self.parent.acknowledgementText = "EMIDEC challenge data (Lalande et al.) trained the network. Not a medical device."


class ScarQuantificationLogic(CardioQuantLogic):
    MODULE_KEY = "scar"

    def requantify(self, inputVolumeNode, segmentationNode, options):
        """Figures of the segmentation as the reader left it (nothing re-thresholded)."""
        from cardioquant import scene
        from cardioquant.imageio import LoadedImage
        from cardioquant.scar.pipeline import LABEL_TABLE, requantify

        loaded = LoadedImage(image=scene.image_from_volume_node(inputVolumeNode), path=inputVolumeNode.GetName(),
                             format="mrml", dicom=self.dicomAttributes(inputVolumeNode))
        labels = scene.labelmap_from_segmentation_node(segmentationNode, inputVolumeNode, LABEL_TABLE)
        return requantify(loaded, labels, options)


class ScarQuantificationWidget(CardioQuantWidget):
    MODULE_KEY = "scar"

    def createLogic(self):
        return ScarQuantificationLogic()

    def extraArguments(self):
        from cardioquant.scar.pipeline import LABEL_TABLE

        method = self.ui.methodComboBox.currentText
        args = ["--method", method] if method != "auto" else []
        args += ["--n-sd", str(self.ui.nSdSpinBox.value), "--min-scar-ml", str(self.ui.minScarSpinBox.value)]
        point = self.insertionPoint()
        if point is not None:
            args.append(f"--rv-insertion-point={point}")  # "=": a leading minus would read as an option
        myocardium = self.ui.myocardiumSelector.currentNode()
        if myocardium is not None:  # the reader's corrected myocardium: recompute from it
            path = writeSegmentationLabels(myocardium, self.ui.inputVolumeSelector.currentNode(), LABEL_TABLE,
                                           tempfile.mkdtemp(), "myocardium.nrrd")
            args += ["--myocardium-mask", path]
        return args

    def insertionPoint(self):
        """The reader's anterior RV insertion (first control point of the selected list) as 'X,Y,Z' in RAS mm, or
        None."""
        node = self.ui.rvInsertionSelector.currentNode()
        if node is None or node.GetNumberOfControlPoints() == 0:
            return None
        r, a, s = node.GetNthControlPointPositionWorld(0)
        return f"{r:.3f},{a:.3f},{s:.3f}"

    def onFinished(self, ok, outputDir, message):
        CardioQuantWidget.onFinished(self, ok, outputDir, message)
        if ok:
            self.watchEdits(self.ui.segmentEditorWidget.segmentationNode())
            if self.insertionPoint() is None:
                self.showEstimatedInsertion(outputDir)

    def showEstimatedInsertion(self, outputDir):
        """Put the estimated insertion point in the scene, selected, for the reader to drag and re-apply."""
        import json
        import os

        with open(os.path.join(outputDir, "scar.json")) as handle:
            insertion = json.load(handle)["rv_insertion"]
        r, a, s = insertion["marker_ras"]
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
        node.AddControlPoint(r, a, s, f"RV insertion ({insertion['source']})")
        self.ui.rvInsertionSelector.setCurrentNode(node)

    def exportOverrides(self):
        return {"rv_insertion_point": self.insertionPoint()}

    def requantifyOptions(self):
        return self.logic.defaultOptions(rv_insertion_point=self.insertionPoint())

    def onSegmentationEdited(self):
        """Recompute volumes, %LGE and AHA segments from the edited segments; the table shows the new figures."""
        from cardioquant import scene

        volumeNode = self.runInputNode
        if self.observedSegmentation is None or volumeNode is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not recompute from the edited segmentation.", waitCursor=True):
            result = self.logic.requantify(volumeNode, self.observedSegmentation, self.requantifyOptions())
            self.resultsTableNode = scene.table_node_from_records(
                slicer.mrmlScene, result.table_rows, f"{volumeNode.GetName()} scar (edited)", node=self.resultsTableNode)
            self.resultsTableNode.SetName(f"{volumeNode.GetName()} scar (edited)")
            self.ui.resultsTableView.setMRMLTableNode(self.resultsTableNode)
            summary = result.summary
            self.ui.statusLabel.text = (f"As edited: scar {summary['scar_ml']:.1f} mL + MVO {summary['mvo_ml']:.1f} mL of "
                                        f"{summary['myocardium_ml']:.1f} mL myocardium, LGE {summary['lge_percent']:.1f} %")


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
