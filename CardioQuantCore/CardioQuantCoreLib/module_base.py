"""Base Widget and Logic classes for the CardioQuant modules, following Slicer's scripted-module template.

A module file subclasses these and sets MODULE_KEY (the `cardioquant` pipeline name); the panel gets the
input selector, Apply that turns into Cancel while the background process runs, a progress bar, the results
table and Export. Results always go into new nodes: a re-run never replaces a segmentation the user edited.
"""

import os
import shutil
from pathlib import Path

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from cardioquant import pipelines
from cardioquant import scene as scene_layer
from cardioquant.progress import Progress

from .background import BackgroundRun
from .dependencies import ensure_dependencies


class CardioQuantLogic(ScriptedLoadableModuleLogic):
    MODULE_KEY = None

    def pipeline(self):
        return pipelines.get(self.MODULE_KEY)

    def process(self, inputVolumeNode, options, progressCallback=None):
        """Run in this process (scripting, self-tests, headless Slicer); returns (segmentationNode, tableNode, result).

        `options` is an argparse-style namespace of the module's command-line options (see `defaultOptions`).
        """
        loaded = scene_layer.loaded_from_volume_node(inputVolumeNode, self.dicomAttributes(inputVolumeNode))
        result = self.pipeline().run(loaded, options, Progress(progressCallback))
        return self.addResultToScene(result, inputVolumeNode) + (result,)

    def defaultOptions(self, **overrides):
        from cardioquant.cli import default_options

        return default_options(self.MODULE_KEY, **overrides)

    @staticmethod
    def dicomAttributes(volumeNode):
        """KVP, modality and contrast agent of a volume loaded from DICOM (Slicer keeps the instance UIDs on the
        node; the slice increment is the node's spacing, which Slicer computes from the slice positions)."""
        attributes = {}
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        if uids and hasattr(slicer, "dicomDatabase") and slicer.dicomDatabase:
            for key, tag in (("kvp", "0018,0060"), ("modality", "0008,0060"), ("contrast_agent", "0018,0010")):
                value = slicer.dicomDatabase.instanceValue(uids[0], tag)
                if value:
                    attributes[key] = value
        return attributes

    def addResultToScene(self, result, inputVolumeNode):
        scene = slicer.mrmlScene
        name = slicer.mrmlScene.GenerateUniqueName(f"{inputVolumeNode.GetName()} {self.MODULE_KEY}")
        segmentationNode = None
        if result.label_image is not None:
            segmentationNode = scene_layer.segmentation_node_from_labelmap(
                scene, result.label_image, inputVolumeNode, result.label_table, name)
        tableNode = scene_layer.table_node_from_records(scene, result.table_rows, name + " table")
        scene_layer.place_with_volume(scene, inputVolumeNode, segmentationNode, tableNode)
        return segmentationNode, tableNode

    def exportCurrent(self, inputVolumeNode, segmentationNode, runOutputDir, target, **overrides):
        """Write what the reader sees now into `target`: for a module that can re-score edits (edited_result), the
        edited segmentation with its recomputed figures, tables and report; otherwise the run's files. Files
        already in `target` are kept in target/previous/ (results.keep_previous), never overwritten."""
        import json

        from cardioquant.results import keep_previous, write_outputs

        pipeline = self.pipeline()
        if hasattr(pipeline, "edited_result") and segmentationNode is not None:
            with open(os.path.join(runOutputDir, f"{self.MODULE_KEY}.json")) as handle:
                runDocument = json.load(handle)
            loaded = scene_layer.loaded_from_volume_node(inputVolumeNode, self.dicomAttributes(inputVolumeNode))
            labels = scene_layer.labelmap_from_segmentation_node(segmentationNode, inputVolumeNode, pipeline.LABEL_TABLE)
            result = pipeline.edited_result(loaded, labels, runDocument, **overrides)
            return write_outputs(result, loaded, target, overwrite=True)
        keep_previous(Path(target), self.MODULE_KEY)
        written = []
        for name in os.listdir(runOutputDir):
            if os.path.isfile(os.path.join(runOutputDir, name)):
                written.append(shutil.copy2(os.path.join(runOutputDir, name), target))
        return written

    def loadOutputs(self, outputDir, inputVolumeNode):
        """Load a background run's files as new nodes (never into existing ones)."""
        key = self.MODULE_KEY
        scene = slicer.mrmlScene
        name = scene.GenerateUniqueName(f"{inputVolumeNode.GetName()} {key}")
        segmentationNode = None
        segPath = os.path.join(outputDir, f"{key}.seg.nrrd")
        if os.path.exists(segPath):
            segmentationNode = scene_layer.load_segmentation(scene, segPath, name)
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolumeNode)
        tableNode = scene_layer.load_table(scene, os.path.join(outputDir, f"{key}.csv"), name + " table")
        scene_layer.place_with_volume(scene, inputVolumeNode, segmentationNode, tableNode)
        return segmentationNode, tableNode


class CardioQuantWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    MODULE_KEY = None

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.run = None                # the background run in progress
        self.runInputNode = None       # the volume that run reads: its results attach to it, whatever is selected
        self.finishedRun = None        # the last finished run: its folder holds what Export starts from
        self.resultsTableNode = None   # the last run's table, updated in place after the reader's edits
        self.lastOutputDir = None
        self.observedSegmentation = None
        self.editTimer = None

    def createLogic(self):
        raise NotImplementedError

    def extraArguments(self):
        """Module-specific command-line options taken from the panel's widgets."""
        return []

    def exportOverrides(self):
        """What the panel shows beyond the segmentation that Export must use (e.g. a moved RV insertion point)."""
        return {}

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.progressBar.setVisible(False)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.updateButtons()

    def enter(self):
        """The module is shown: the buttons reflect the scene as it is now."""
        self.updateButtons()

    def onSceneStartClose(self, *_):
        """The scene closes: a run in progress is cancelled and the last run's files and nodes are let go (the
        nodes go with the scene; its temporary folder is removed)."""
        if self.run is not None:
            self.run.cancel()
            self.run = None
        self._releaseFinishedRun()
        self.watchEdits(None)
        self.runInputNode, self.resultsTableNode = None, None  # they go with the scene
        self.ui.progressBar.setVisible(False)
        self.ui.statusLabel.text = ""
        self.updateButtons()

    def _releaseFinishedRun(self):
        if self.finishedRun is not None:
            self.finishedRun.cleanup()
        self.finishedRun, self.lastOutputDir = None, None

    def onSegmentationEdited(self):
        """Called (debounced) after the reader edits the result segmentation; modules recompute their figures."""

    def watchEdits(self, segmentationNode):
        """Recompute after Segment Editor edits: one call 500 ms after the last stroke of a burst."""
        if self.editTimer is None:
            self.editTimer = qt.QTimer()
            self.editTimer.setSingleShot(True)
            self.editTimer.setInterval(500)
            self.editTimer.connect("timeout()", self.onSegmentationEdited)
        if self.observedSegmentation is not None:
            self.removeObserver(self.observedSegmentation, slicer.vtkSegmentation.SegmentModified, self._onSegmentModified)
        self.observedSegmentation = segmentationNode
        if segmentationNode is not None:
            if hasattr(self.ui, "segmentEditorWidget"):
                self.ui.segmentEditorWidget.setSourceVolumeNode(self.runInputNode)
            self.addObserver(segmentationNode, slicer.vtkSegmentation.SegmentModified, self._onSegmentModified)

    def _onSegmentModified(self, *_):
        self.editTimer.start()

    def cleanup(self):
        """The module is closed (Slicer exits or reloads it): cancel a run, remove the temporary folders."""
        self.removeObservers()
        if self.run:
            self.run.cancel()
            self.run = None
        self._releaseFinishedRun()

    def updateButtons(self, *_):
        running = self.run is not None
        self.ui.applyButton.enabled = running or self.ui.inputVolumeSelector.currentNode() is not None
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.exportButton.enabled = self.lastOutputDir is not None and not running

    def onApplyOrCancel(self):
        if self.run is not None:
            self.run.cancel()
            self.run = None
            self.ui.statusLabel.text = "Cancelled."
            self.ui.progressBar.setVisible(False)
            self.updateButtons()
            return
        if not ensure_dependencies():
            return
        inputNode = self.ui.inputVolumeSelector.currentNode()
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = "Running..."
        arguments = self.extraArguments()
        # Offline sites point Slicer at their own copy of the weights (Application settings, key below).
        weights = slicer.app.settings().value(f"CardioQuant/{self.MODULE_KEY}/weights", "")
        if weights:
            arguments += ["--weights", weights]
        with slicer.util.tryWithErrorDisplay("Could not start processing.", waitCursor=True):
            loaded = scene_layer.loaded_from_volume_node(inputNode, self.logic.dicomAttributes(inputNode))
            self.run = BackgroundRun(self.MODULE_KEY, loaded, arguments, self.onProgress,
                                     self.onFinished, device=self.ui.deviceComboBox.currentText)
            self.runInputNode = inputNode
        self.updateButtons()

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = message

    def onFinished(self, ok, outputDir, message):
        run, self.run = self.run, None
        self.ui.progressBar.setVisible(False)
        if not ok:
            self.ui.statusLabel.text = "Failed."
            slicer.util.errorDisplay(f"CardioQuant {self.MODULE_KEY} failed:\n{message}")
            run.cleanup()
            self.updateButtons()
            return
        # The results belong to the volume the run read, even if the reader selected another meanwhile.
        segmentationNode, tableNode = self.logic.loadOutputs(outputDir, self.runInputNode)
        self._releaseFinishedRun()  # the previous run's folder: its nodes are in the scene, Export uses the new one
        self.finishedRun = run
        self.ui.resultsTableView.setMRMLTableNode(tableNode)
        self.resultsTableNode = tableNode
        if segmentationNode is not None and hasattr(self.ui, "segmentEditorWidget"):
            self.ui.segmentEditorWidget.setSegmentationNode(segmentationNode)
        self.lastOutputDir = outputDir
        self.ui.statusLabel.text = "Done. Review and edit the segments; Export writes the results."
        self.updateButtons()

    def onExport(self):
        """Export the current state: the edited segmentation and the figures recomputed from it."""
        target = qt.QFileDialog.getExistingDirectory(None, "Export results to folder")
        if not target:
            return
        clashes = [n for n in os.listdir(self.lastOutputDir) if os.path.exists(os.path.join(target, n))]
        if clashes and not slicer.util.confirmYesNoDisplay(
                f"{target} already holds {', '.join(clashes)}. Move them to {target}/previous and export?"):
            return
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            self.logic.exportCurrent(self.runInputNode, self.observedSegmentation,
                                     self.lastOutputDir, target, **self.exportOverrides())
            self.ui.statusLabel.text = f"Exported the current segmentation and figures to {target}"


def writeSegmentationLabels(segmentationNode, referenceVolumeNode, table, folder, name="labels.nrrd"):
    """Write a segmentation as a label map file (values from `table`, matched by segment name) for the CLI."""
    import SimpleITK as sitk

    from cardioquant import geometry

    labels = scene_layer.labelmap_from_segmentation_node(segmentationNode, referenceVolumeNode, table)
    reference = scene_layer.image_from_volume_node(referenceVolumeNode)
    path = os.path.join(folder, name)
    sitk.WriteImage(geometry.image_from_array(labels, reference), path, True)
    return path
