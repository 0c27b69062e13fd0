"""Base Widget and Logic classes of the CardioQuant panels, following Slicer's scripted-module template.

A module file derives its Logic from one of `logic.py`'s classes (the science on MRML nodes, usable without the
GUI) and `CardioQuantLogic`, and its Widget from `CardioQuantWidget`. The panel gets:
- a parameter node (`slicer.parameterNodeWrapper`) built from the analysis's settings object: the input volume,
  the nodes the reader may pick (NODE_INPUTS) and the settings the panel shows, each bound to the `.ui` widget
  whose SlicerParameterName is the field's name; a saved scene keeps them;
- Apply that turns into Cancel while the background run goes (the whole process tree ends on Cancel), a progress
  bar, one results table per run updated in place after the reader's edits, and Export of the current state;
- enter/exit and scene-close handling; the run's temporary folder is removed when it is no longer needed.
Results always go into new nodes: a re-run never replaces a segmentation the reader edited.
"""

import os
import tempfile
import typing

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from cardioquant import pipelines
from cardioquant.errors import InputError

from .background import BackgroundRun
from .dependencies import ensure_dependencies
from .logic import readingWarnings


def parameterNodeClass(moduleKey, nodeInputs):
    """The panel's parameter node class: `inputVolume`, a node for each NODE_INPUTS field, and the settings the
    panel shows (`AnalysisSettings.panel_fields`, with their choices and limits), all named as the settings'
    fields so that the `.ui` binds them by SlicerParameterName."""
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

    annotations = {"inputVolume": slicer.vtkMRMLScalarVolumeNode}
    defaults = {}
    for name, className in nodeInputs.items():
        annotations[name] = getattr(slicer, className)
    for name, kind, choices, limits, default in pipelines.settings_class(moduleKey).panel_fields():
        extras = ([Choice(list(choices))] if choices else []) + ([WithinRange(*limits)] if limits else [])
        annotations[name] = typing.Annotated[(kind, *extras)] if extras else kind
        defaults[name] = default
    cls = type(f"{moduleKey}ParameterNode", (), {"__annotations__": annotations, **defaults})
    return parameterNodeWrapper(cls)


class CardioQuantLogic(ScriptedLoadableModuleLogic):
    """Slicer's side of a module's logic: the parameter node (the science side is in logic.py)."""

    _parameterNodeClass = None

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        cls = type(self)
        if cls._parameterNodeClass is None:
            cls._parameterNodeClass = parameterNodeClass(self.MODULE_KEY, self.NODE_INPUTS)
        return cls._parameterNodeClass(super().getParameterNode())

    def settingsFromParameterNode(self, parameterNode):
        """The analysis's settings as the panel shows them, with the application's weights setting (offline sites
        point Slicer at their own copy of the weights: Application settings, key CardioQuant/<module>/weights)."""
        settingsClass = pipelines.settings_class(self.MODULE_KEY)
        panel = {name: parameterNode.getValue(name) for name, *_ in settingsClass.panel_fields()}
        weights = slicer.app.settings().value(f"CardioQuant/{self.MODULE_KEY}/weights", "") or None
        return settingsClass.from_panel(panel, weights=weights)

    def nodeInputsFromParameterNode(self, parameterNode):
        return {name: parameterNode.getValue(name) for name in self.NODE_INPUTS}


class CardioQuantWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    MODULE_KEY = None

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.run = None                # the background run in progress
        self.runInputNode = None       # the volume that run reads: its results attach to it, whatever is selected
        self.finishedRun = None        # the last finished run: its folder holds what Export starts from
        self.runDocument = None        # the last run's JSON: its settings, read back when re-scoring edits
        self.resultsTableNode = None   # the last run's table, updated in place after the reader's edits
        self.observedSegmentation = None
        self.editTimer = None

    def createLogic(self):
        raise NotImplementedError

    def exportOverrides(self):
        """What the panel shows beyond the segmentation that Export must use (e.g. a moved RV insertion point)."""
        return {}

    # --- Slicer's scripted-module lifecycle ------------------------------------------------------------------

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()
        loadFolderButton = qt.QPushButton("Load a folder...")
        loadFolderButton.toolTip = ("Read a DICOM folder (its subfolders searched) as the command line reads it; for "
                                    "scar, a short-axis stack stored one series per slice or with a slice missing "
                                    "becomes one volume")
        loadFolderButton.connect("clicked(bool)", self.onLoadFolder)
        self.ui.inputsFormLayout.addRow("", loadFolderButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyOrCancel)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.progressBar.setVisible(False)
        self.showWarnings([])
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def enter(self):
        """The module is shown: the panel shows (and edits) the scene's parameter node."""
        self.initializeParameterNode()

    def exit(self):
        """The module is hidden: the widgets stop following the parameter node (it keeps its values)."""
        self.setParameterNode(None)

    def onSceneStartClose(self, *_):
        """The scene closes: a run in progress is cancelled, the last run's folder removed, its nodes let go."""
        self.setParameterNode(None)
        if self.run is not None:
            self.run.cancel()
            self.run = None
        self._releaseFinishedRun()
        self.watchEdits(None)
        self.showWarnings([])
        self.runInputNode, self.resultsTableNode = None, None  # they go with the scene
        self.ui.progressBar.setVisible(False)
        self.ui.statusLabel.text = ""

    def onSceneEndClose(self, *_):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def cleanup(self):
        """The module is closed (Slicer exits or reloads it): cancel a run, remove the temporary folders."""
        self.removeObservers()
        self.setParameterNode(None)
        if self.run:
            self.run.cancel()
            self.run = None
        self._releaseFinishedRun()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:  # the template's convenience: the first volume of the scene
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode):
        """Bind the widgets (SlicerParameterName) to `parameterNode`, or unbind them (None)."""
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self.updateButtons()

    def updateButtons(self, *_):
        running = self.run is not None
        hasInput = self._parameterNode is not None and self._parameterNode.inputVolume is not None
        self.ui.applyButton.enabled = running or hasInput
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.exportButton.enabled = self.finishedRun is not None and not running

    # --- the input -------------------------------------------------------------------------------------------------

    def onLoadFolder(self):
        """A folder read by the command line's reader into a new volume, made the input; with several series in
        it, the reader picks one (or, for scar, several single slices of one stack) from the reader's listing."""
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Folder holding the series (DICOM)")
        if not folder:
            return
        series = None
        while True:
            try:
                with slicer.util.WaitCursor():
                    node = self.logic.loadInput(folder, series)
                break
            except InputError as error:
                if "--series" not in str(error):
                    slicer.util.errorDisplay(str(error), windowTitle="Could not read the folder")
                    return
                series = qt.QInputDialog.getText(slicer.util.mainWindow(), "Choose a series",
                                                 f"{error}\n\nSeries (its number in the list, or several numbers "
                                                 "separated by commas):")
                if not series:
                    return
        self._parameterNode.inputVolume = node
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        self.showWarnings(readingWarnings(node))  # how it was read: a stack assembled, a slice missing

    # --- the run -----------------------------------------------------------------------------------------------

    def onApplyOrCancel(self):
        if self.run is not None:
            self.run.cancel()  # ends the whole process tree and removes the run's folder
            self.run = None
            self.ui.statusLabel.text = "Cancelled."
            self.ui.progressBar.setVisible(False)
            self.updateButtons()
            return
        if not ensure_dependencies():
            return
        inputNode = self._parameterNode.inputVolume
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = "Running..."
        self.showWarnings([])
        with slicer.util.tryWithErrorDisplay("Could not start processing.", waitCursor=True):
            # The same steps as Logic.process: the volume with its DICOM attributes, the settings with the picked
            # nodes written as files (into the run's folder, removed with it).
            workdir = tempfile.mkdtemp(prefix=f"cardioquant-{self.MODULE_KEY}-")
            settings = self.logic.settingsFromParameterNode(self._parameterNode)
            loaded, settings = self.logic.prepareRun(inputNode, settings,
                                                     self.logic.nodeInputsFromParameterNode(self._parameterNode),
                                                     workdir)
            self.run = BackgroundRun(self.MODULE_KEY, loaded, settings, workdir, self.onProgress, self.onFinished)
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
        self.runDocument = self.logic.runDocument(outputDir)
        self.ui.resultsTableView.setMRMLTableNode(tableNode)
        self.resultsTableNode = tableNode
        if segmentationNode is not None and hasattr(self.ui, "segmentEditorWidget"):
            self.ui.segmentEditorWidget.setSegmentationNode(segmentationNode)
        warnings = self.runDocument.get("warnings", [])
        self.showWarnings(warnings)
        said = f", with {len(warnings)} warning(s) below" if warnings else ""
        self.ui.statusLabel.text = f"Done{said}. Review and edit the segments; Export writes the results."
        self.updateButtons()

    def showWarnings(self, warnings):
        """The run's warnings under the status line (a heart the field of view cuts, a noisy scan, a doubtful
        vertebra, lesions flagged for review): the reader sees them in the panel, not only in the JSON."""
        self.ui.warningsTextEdit.setPlainText("\n".join(f"- {warning}" for warning in warnings))
        self.ui.warningsTextEdit.setVisible(bool(warnings))

    def _releaseFinishedRun(self):
        if self.finishedRun is not None:
            self.finishedRun.cleanup()
        self.finishedRun, self.runDocument = None, None

    # --- the reader's edits ----------------------------------------------------------------------------------

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

    def showTable(self, records, name=None):
        """The run's one results table, its content replaced by `records` (after the reader's edits), renamed when
        `name` is given."""
        from cardioquant import scene

        name = name or self.resultsTableNode.GetName()
        self.resultsTableNode = scene.table_node_from_records(slicer.mrmlScene, records, name,
                                                              node=self.resultsTableNode)
        self.resultsTableNode.SetName(name)
        self.ui.resultsTableView.setMRMLTableNode(self.resultsTableNode)

    def onExport(self):
        """Export the current state: the edited segmentation and the figures recomputed from it."""
        target = qt.QFileDialog.getExistingDirectory(None, "Export results to folder")
        if not target:
            return
        outputDir = self.finishedRun.output_dir
        clashes = [n for n in os.listdir(outputDir) if os.path.exists(os.path.join(target, n))]
        if clashes and not slicer.util.confirmYesNoDisplay(
                f"{target} already holds {', '.join(clashes)}. Move them to {target}/previous and export?"):
            return
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            self.logic.exportCurrent(self.runInputNode, self.observedSegmentation, outputDir, target,
                                     **self.exportOverrides())
            self.ui.statusLabel.text = f"Exported the current segmentation and figures to {target}"
