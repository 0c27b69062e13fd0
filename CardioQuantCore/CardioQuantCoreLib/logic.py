"""The four modules' logic on MRML nodes, without Slicer's application: what the panels, scripts and self-tests call.

It imports only `slicer` (MRML: Slicer's own, or slicer-core in plain Python), SimpleITK and `cardioquant`, never
Qt, so the same code runs in Slicer, in plain Python and in pytest. The module files derive their Logic from these
classes and Slicer's ScriptedLoadableModuleLogic (for the parameter node).

One run path: the panel's Apply and `process` (scripting, self-tests) both go through `prepareRun` (the volume
with its DICOM attributes, the settings with the reader's nodes written as files); Apply then starts the command
line with `settings.to_arguments()` (`backgroundCommand`), `process` runs the same analysis in this process.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile

import slicer

from cardioquant import pipelines
from cardioquant import scene as scene_layer
from cardioquant.imageio import RUN_ATTRIBUTES, apply_reading_record, reading_record
from cardioquant.progress import Progress

# Where a volume loaded by CardioQuant's own reader keeps its DICOM attributes (Slicer's DICOM module keeps the
# instance UIDs instead, and the attributes are read from its database).
ATTRIBUTE_PREFIX = "CardioQuant.DICOM."
SOURCE_FILES = ATTRIBUTE_PREFIX + "sourceFiles"  # the series' files in slice order, one per line
READING = ATTRIBUTE_PREFIX + "reading"  # how the input was read (imageio.reading_record): every run repeats it


def volumeNodeFromLoaded(loaded, name):
    """A volume node for an input read by `cardioquant.imageio` (a DICOM folder included), keeping its DICOM
    attributes (kVp, modality, contrast, slice increment) and how it was read on the node for the runs that read
    it. A volume assembled from single-slice series or with slices added to make a regular grid keeps no file list
    for a DICOM SEG, as the command line refuses --dicom-seg for it: a SEG references one series, slice by slice."""
    node = scene_layer.volume_node_from_image(slicer.mrmlScene, loaded.image, name)
    for key in RUN_ATTRIBUTES:
        if loaded.dicom.get(key):
            node.SetAttribute(ATTRIBUTE_PREFIX + key, str(loaded.dicom[key]))
    if loaded.source_files and not loaded.not_one_series:
        node.SetAttribute(SOURCE_FILES, "\n".join(str(path) for path in loaded.source_files))
    record = reading_record(loaded)
    if record:
        node.SetAttribute(READING, record)
    return node


def dicomAttributes(volumeNode):
    """KVP, modality, contrast agent, slice increment and stated orientation of a volume: kept on the node by
    CardioQuant's reader, or read from Slicer's DICOM database for a volume loaded by the DICOM module (its
    instance UIDs)."""
    attributes = {key: volumeNode.GetAttribute(ATTRIBUTE_PREFIX + key) for key in RUN_ATTRIBUTES
                  if volumeNode.GetAttribute(ATTRIBUTE_PREFIX + key)}
    uids, database = _fromDicomModule(volumeNode)
    if uids and database:
        for key, tag in (("kvp", "0018,0060"), ("modality", "0008,0060"), ("contrast_agent", "0018,0010"),
                         ("image_orientation", "0020,0037")):
            value = database.instanceValue(uids[0], tag)
            if value:
                attributes[key] = value
    return attributes


def readingWarnings(volumeNode):
    """What the reader is told about how a volume was read (a stack assembled, a slice missing); [] for none."""
    from cardioquant.imageio import LoadedImage

    told = LoadedImage(image=None, path=volumeNode.GetName(), format="mrml")
    apply_reading_record(told, volumeNode.GetAttribute(READING))
    return told.warnings


def loadedInput(volumeNode):
    """The pipelines' input for a volume node: its image with its DICOM attributes and how it was read."""
    loaded = scene_layer.loaded_from_volume_node(volumeNode, dicomAttributes(volumeNode))
    apply_reading_record(loaded, volumeNode.GetAttribute(READING))
    transformed = scene_layer.non_linear_transform_warning(volumeNode)
    if transformed:
        loaded.warnings.append(transformed)
    return loaded


def dicomSourceFiles(volumeNode):
    """The volume's DICOM files in slice order, which a DICOM SEG references: kept by CardioQuant's reader, or
    found in Slicer's DICOM database from the node's instance UIDs (listed in the order the slices were loaded);
    [] for a volume that did not come from DICOM."""
    kept = volumeNode.GetAttribute(SOURCE_FILES)
    if kept:
        return kept.split("\n")
    uids, database = _fromDicomModule(volumeNode)
    files = [database.fileForInstance(uid) for uid in uids] if uids and database else []
    return files if files and all(files) else []


def _fromDicomModule(volumeNode):
    """(instance UIDs, Slicer's DICOM database) of a volume the DICOM module loaded; ([], None) otherwise (and
    always outside Slicer, which has no DICOM database)."""
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    return uids, getattr(slicer, "dicomDatabase", None)


def writeSegmentationLabels(segmentationNode, referenceVolumeNode, table, folder, name):
    """A segmentation as a label map file on the volume's grid (values from `table`, matched by segment name)."""
    import SimpleITK as sitk

    from cardioquant import geometry

    labels = scene_layer.labelmap_from_segmentation_node(segmentationNode, referenceVolumeNode, table)
    path = os.path.join(folder, name)
    sitk.WriteImage(geometry.image_from_array(labels, scene_layer.image_from_volume_node(referenceVolumeNode)), path,
                    True)
    return path


def pointsText(markupsNode, volumeNode):
    """A point list's control points as 'x,y,z;x,y,z' in RAS mm, the command line's form (None when empty), in the
    volume's own frame: placed where Slicer shows the volume, they are brought through its parent transform."""
    placed = []
    for index in range(markupsNode.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, position)
        placed.append(position)
    points = scene_layer.points_in_volume_frame(volumeNode, placed)
    return ";".join(",".join(f"{value:.3f}" for value in point) for point in points) or None


def firstPointText(markupsNode, volumeNode):
    """The first control point of a point list as 'x,y,z' in RAS mm of the volume's frame (None when it has none)."""
    text = pointsText(markupsNode, volumeNode)
    return text.split(";")[0] if text else None


def backgroundCommand(moduleKey, inputPath, outputDir, settings, python=None):
    """The command line of a background run: the settings as options (they parse back into the same object)."""
    python = python or shutil.which("PythonSlicer") or sys.executable
    return [python, "-m", "cardioquant.cli", moduleKey, str(inputPath), "-o", str(outputDir),
            "--progress-format", "lines", *settings.to_arguments()]


class AnalysisLogic:
    """What every module's logic does; `MODULE_KEY` names the analysis (`cardioquant.pipelines`)."""

    MODULE_KEY = None
    NODE_INPUTS = {}  # settings field -> MRML class of the node the reader may pick for it (a panel selector)

    def pipeline(self):
        return pipelines.get(self.MODULE_KEY)

    def loadInput(self, path, series=None):
        """A volume node for an image file or a DICOM folder read as the command line reads it for this analysis
        (its subfolders searched, `series` choosing one; for scar, a short-axis stack stored one series per slice,
        or with a slice missing, read as one stack). Raises InputError with the command line's message."""
        loaded = self.pipeline().read_input(str(path), series)
        name = slicer.mrmlScene.GenerateUniqueName(os.path.basename(os.path.normpath(str(path))) or "input")
        return volumeNodeFromLoaded(loaded, name)

    def settings(self, **values):
        """The analysis's settings object: its defaults, with `values` (see `cardioquant <module> --help`)."""
        return pipelines.settings_for(self.MODULE_KEY, **values)

    def nodeInputValue(self, name, node, inputVolumeNode, folder):
        """The settings value of a node the reader picked for field `name` of NODE_INPUTS (a mask written as a
        file in `folder`, a point list as text); modules with node inputs implement it."""
        raise NotImplementedError

    def prepareRun(self, inputVolumeNode, settings, nodeInputs=None, folder=None):
        """(loaded input, settings) as both run paths see them: the volume with its DICOM attributes, the settings
        with each picked node (field name -> node, None for none) written into `folder`."""
        loaded = loadedInput(inputVolumeNode)
        values = {}
        for name, node in (nodeInputs or {}).items():
            if name not in self.NODE_INPUTS:
                raise KeyError(f"{self.MODULE_KEY} takes no node for {name} (it takes {', '.join(self.NODE_INPUTS)})")
            if node is not None:
                values[name] = self.nodeInputValue(name, node, inputVolumeNode, folder)
        return loaded, dataclasses.replace(settings, **values)

    def process(self, inputVolumeNode, settings=None, nodeInputs=None, progressCallback=None):
        """Run in this process (scripting, self-tests, headless Slicer): (segmentationNode, tableNode, result).
        Files written for the picked nodes are removed afterwards."""
        settings = settings or self.settings()
        with tempfile.TemporaryDirectory(prefix=f"cardioquant-{self.MODULE_KEY}-") as folder:
            loaded, settings = self.prepareRun(inputVolumeNode, settings, nodeInputs, folder)
            result = pipelines.run_analysis(self.MODULE_KEY, loaded, settings, Progress(progressCallback))
        return self.addResultToScene(result, inputVolumeNode) + (result,)

    def addResultToScene(self, result, inputVolumeNode):
        scene = slicer.mrmlScene
        name = scene.GenerateUniqueName(f"{inputVolumeNode.GetName()} {self.MODULE_KEY}")
        segmentationNode = None
        if result.label_image is not None:
            segmentationNode = scene_layer.segmentation_node_from_labelmap(
                scene, result.label_image, inputVolumeNode, result.label_table, name)
        tableNode = scene_layer.table_node_from_records(scene, result.table_rows, name + " table")
        scene_layer.place_with_volume(scene, inputVolumeNode, segmentationNode, tableNode)
        return segmentationNode, tableNode

    def loadOutputs(self, outputDir, inputVolumeNode):
        """Load a background run's files as new nodes (never into existing ones), beside the volume it read."""
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

    def resultDocument(self, result, inputVolumeNode):
        """The JSON document a run writes (`<module>.json`), for a result of `process`."""
        from cardioquant.results import result_document

        loaded = loadedInput(inputVolumeNode)
        return json.loads(json.dumps(result_document(result, loaded)))

    def runDocument(self, outputDir):
        """The run's JSON: its figures, the settings it was given ("options") and those it derived ("settings")."""
        with open(os.path.join(outputDir, f"{self.MODULE_KEY}.json")) as handle:
            return json.load(handle)

    def labelArray(self, inputVolumeNode, segmentationNode):
        """The segmentation as the analysis's label values, on the volume's grid."""
        return scene_layer.labelmap_from_segmentation_node(segmentationNode, inputVolumeNode,
                                                           self.pipeline().LABEL_TABLE)

    def editedResult(self, inputVolumeNode, segmentationNode, runDocument, **overrides):
        """The figures of the segmentation as the reader left it, with the run's own settings (its JSON)."""
        return self.pipeline().edited_result(loadedInput(inputVolumeNode),
                                             self.labelArray(inputVolumeNode, segmentationNode), runDocument,
                                             **overrides)

    def exportCurrent(self, inputVolumeNode, segmentationNode, runOutputDir, target, **overrides):
        """Write what the reader sees now into `target`, swapped in as a whole set (files already there are kept
        in target/previous/): for a module that re-scores edits (edited_result), the edited segmentation with its
        recomputed figures, tables and report; otherwise the run's figures, tables and report, with the
        segmentation as the reader left it and, when it was edited, a warning in the JSON that the figures are the
        run's. When the volume came from DICOM, also `<module>_seg.dcm`, a DICOM SEG of the segmentation as edited,
        referencing the series."""
        from cardioquant.dicomseg import seg_writer
        from cardioquant.results import output_names, swap_in, write_outputs

        pipeline, key = self.pipeline(), self.MODULE_KEY
        labels = self.labelArray(inputVolumeNode, segmentationNode) if segmentationNode is not None else None
        sourceFiles = dicomSourceFiles(inputVolumeNode) if labels is not None else []
        seg = seg_writer(labels, pipeline.LABEL_TABLE, sourceFiles, pipeline.TITLE) if sourceFiles else None
        if hasattr(pipeline, "edited_result") and labels is not None:
            loaded = loadedInput(inputVolumeNode)
            result = pipeline.edited_result(loaded, labels, self.runDocument(runOutputDir), **overrides)
            if seg is not None:
                result.extra_outputs[f"{key}_seg.dcm"] = seg
            return write_outputs(result, loaded, target, overwrite=True)
        edited = labels is not None and self._differsFromRun(labels, runOutputDir)

        def copyRun(staging):
            for name in output_names(key):
                if os.path.isfile(os.path.join(runOutputDir, name)):
                    shutil.copy2(os.path.join(runOutputDir, name), staging)
            if edited:
                self._writeEditedSegmentation(inputVolumeNode, segmentationNode, labels, runOutputDir, staging)
            if seg is not None:
                seg(staging / f"{key}_seg.dcm")

        return swap_in(target, key, copyRun, overwrite=True)

    def _differsFromRun(self, labels, runOutputDir):
        """Whether the segmentation's labels differ from the run's label map."""
        import numpy as np
        import SimpleITK as sitk

        runLabels = os.path.join(runOutputDir, f"{self.MODULE_KEY}_labels.nrrd")
        return os.path.isfile(runLabels) and not np.array_equal(labels, sitk.GetArrayFromImage(sitk.ReadImage(runLabels)))

    def _writeEditedSegmentation(self, inputVolumeNode, segmentationNode, labels, runOutputDir, staging):
        """The segmentation as the reader left it (segmentation and label map), in place of the run's, and the
        run's JSON with a warning that its figures were not recomputed from the edits."""
        from cardioquant import geometry
        from cardioquant.results import write_label_map

        key = self.MODULE_KEY
        image = geometry.image_from_array(labels, scene_layer.image_from_volume_node(inputVolumeNode))
        write_label_map(image, self.pipeline().LABEL_TABLE, staging / f"{key}_labels.nrrd")
        scene_layer.save_node(segmentationNode, staging / f"{key}.seg.nrrd")
        document = self.runDocument(runOutputDir)
        document["warnings"] = [*document.get("warnings", []), (
            f"the segmentation was edited after the run; {pipelines.TITLES[key]} does not recompute its figures "
            "from edits: the figures, table and report are the run's (Apply again with the edited segmentation "
            "selected as the input masks to recompute)")]
        (staging / f"{key}.json").write_text(json.dumps(document, indent=2))


class CalciumLogic(AnalysisLogic):
    MODULE_KEY = "calcium"
    NODE_INPUTS = {"heart_mask": "vtkMRMLSegmentationNode"}

    def nodeInputValue(self, _name, node, inputVolumeNode, folder):  # heart_mask, its one node input
        """The segmentation's "heart" segment, and its "aorta" segment when it has one (TotalSegmentator's names),
        written as TotalSegmentator writes them (heart.nii.gz, aorta.nii.gz) into a folder: the --heart-mask."""
        from cardioquant.errors import InputError
        from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

        if not scene_layer.segment_id_of(node, "heart"):
            raise InputError(f"the heart segmentation '{node.GetName()}' has no segment called 'heart' "
                             "(TotalSegmentator's name): name its heart segment so.")
        masks = os.path.join(folder, "heart_mask")
        os.makedirs(masks, exist_ok=True)
        for name in ("heart", "aorta"):
            if scene_layer.segment_id_of(node, name):
                table = LabelTable([SegmentSpec(1, name, (1, 0, 0), TISSUE, TISSUE)])
                writeSegmentationLabels(node, inputVolumeNode, table, masks, f"{name}.nii.gz")
        return masks

    def rescore(self, inputVolumeNode, segmentationNode, runSettings=None):
        """Scores of the segmentation as it is now, with the settings the run scored with (its JSON "settings":
        kVp, CTA threshold and scale, minimum area, connectivity)."""
        from cardioquant.calcium.pipeline import rescore

        image = scene_layer.image_from_volume_node(inputVolumeNode)
        return rescore(image, self.labelArray(inputVolumeNode, segmentationNode), runSettings)

    def reassignLesion(self, inputVolumeNode, segmentationNode, seedIJK, artery):
        """Move the lesion at `seedIJK` to another artery segment; the other segments are left as they are."""
        from cardioquant.calcium.pipeline import LABEL_TABLE, reassign_lesion

        labels = self.labelArray(inputVolumeNode, segmentationNode)
        seed = (int(round(seedIJK[2])), int(round(seedIJK[1])), int(round(seedIJK[0])))
        scene_layer.update_segments_from_labelmap(segmentationNode, reassign_lesion(labels, seed, artery),
                                                  inputVolumeNode, LABEL_TABLE)


class ScarLogic(AnalysisLogic):
    MODULE_KEY = "scar"
    NODE_INPUTS = {"myocardium_mask": "vtkMRMLSegmentationNode", "rv_insertion_point": "vtkMRMLMarkupsFiducialNode"}

    def nodeInputValue(self, name, node, inputVolumeNode, folder):
        if name == "myocardium_mask":  # the reader's corrected myocardium: recompute from it
            return writeSegmentationLabels(node, inputVolumeNode, self.myocardiumTable(node), folder, "myocardium.nrrd")
        return firstPointText(node, inputVolumeNode)  # rv_insertion_point: the first control point of the reader's point list


    def myocardiumTable(self, node):
        """How the reader's myocardium segmentation is read: by this module's segment names (LV cavity, myocardium,
        scar, MVO); a segmentation of one segment named otherwise (drawn in another tool) is the myocardium."""
        from cardioquant.errors import InputError
        from cardioquant.labels import LabelTable

        table = self.pipeline().LABEL_TABLE
        if any(scene_layer.segment_id_of(node, spec.name) for spec in table.segments):
            return table
        names = scene_layer.segment_names(node)
        if len(names) != 1:
            raise InputError(f"the myocardium segmentation '{node.GetName()}' has {len(names)} segments and none is "
                             "called 'myocardium': name the myocardium segment so.")
        myocardium = next(spec for spec in table.segments if spec.name == "myocardium")
        return LabelTable([dataclasses.replace(myocardium, name=names[0])])


class BMDLogic(AnalysisLogic):
    MODULE_KEY = "bmd"
    NODE_INPUTS = {"vertebra_mask": "vtkMRMLSegmentationNode"}

    def nodeInputValue(self, _name, node, inputVolumeNode, folder):  # vertebra_mask, its one node input
        from cardioquant.bmd.levels import TOTALSEGMENTATOR_VALUES
        from cardioquant.errors import InputError
        from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

        # Segments named as TotalSegmentator names them (vertebrae_L1, ...), written with its values.
        table = LabelTable([SegmentSpec(value, f"vertebrae_{level}", (1, 1, 1), TISSUE, TISSUE)
                            for level, value in TOTALSEGMENTATOR_VALUES.items()])
        if not any(scene_layer.segment_id_of(node, spec.name) for spec in table.segments):
            raise InputError(f"the vertebra segmentation '{node.GetName()}' has no segment named as TotalSegmentator "
                             "names vertebrae (vertebrae_L1, vertebrae_T12, ...): name them so, or leave it empty "
                             "for the network to find the vertebrae.")
        return writeSegmentationLabels(node, inputVolumeNode, table, folder, "vertebrae.nrrd")

    def prepareRun(self, inputVolumeNode, settings, nodeInputs=None, folder=None):
        """As for every module; a vertebra segmentation of vertebral bodies (this module's own result, edited) is
        also the body mask: taken for whole vertebrae, bodies have no canal to be cut at, and the front 45 % of each
        was measured (40-55 HU high on a phantom). Each body is written with what its segment encloses, its ROI
        (another segment)."""
        import SimpleITK as sitk
        from scipy import ndimage

        from cardioquant import geometry

        loaded, settings = AnalysisLogic.prepareRun(self, inputVolumeNode, settings, nodeInputs, folder)
        node = (nodeInputs or {}).get("vertebra_mask")
        if node is None or not self.holdsBodies(node):
            return loaded, settings
        image = sitk.ReadImage(settings.vertebra_mask)
        labels = sitk.GetArrayFromImage(image)
        # each body's enclosed ROI filled in, read in the body's box (each over the whole scan: 30 s for a chest CT)
        for value, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                body = labels[box]
                body[geometry.fill_holes_in_plane(body == value) & (body == 0)] = value
        path = os.path.join(folder, "bodies.nrrd")
        for written, values in ((settings.vertebra_mask, labels), (path, labels > 0)):
            bodies = sitk.GetImageFromArray(values.astype(labels.dtype))
            bodies.CopyInformation(image)
            sitk.WriteImage(bodies, written, True)
        return loaded, dataclasses.replace(settings, vertebra_body_mask=path)

    @staticmethod
    def holdsBodies(node):
        """Whether the segmentation's vertebrae_* segments are typed as vertebral bodies (SNOMED CT 51282000), as
        this module's results are."""
        from cardioquant.bmd.vertebrae import VERTEBRAL_BODY_CODE

        return any(name.startswith("vertebrae_") and VERTEBRAL_BODY_CODE in scene_layer.segment_terminology(node, name)
                   for name in scene_layer.segment_names(node))


class FFRLogic(AnalysisLogic):
    MODULE_KEY = "ffr"
    NODE_INPUTS = {"lumen_mask": "vtkMRMLSegmentationNode", "seeds": "vtkMRMLMarkupsFiducialNode"}

    def nodeInputValue(self, name, node, inputVolumeNode, folder):
        if name == "lumen_mask":
            from cardioquant.labels import LabelTable, SegmentSpec

            spec = self.pipeline().LABEL_TABLE.segments[0]
            segment = self.lumenSegment(node, spec.name)
            table = LabelTable([SegmentSpec(spec.value, segment, spec.color, spec.category, spec.type)])
            return writeSegmentationLabels(node, inputVolumeNode, table, folder, "lumen.nrrd")
        # seeds: the ostium first, then the distal end of each vessel
        return pointsText(node, inputVolumeNode) if node.GetNumberOfControlPoints() >= 2 else None

    @staticmethod
    def lumenSegment(node, lumenName):
        """The lumen in the reader's segmentation: the segment called `lumenName` (this module's own), else
        TotalSegmentator's coronary_arteries, else the segmentation's only segment. A segmentation of many
        structures (TotalSegmentator's whole body) is refused rather than its first segment taken as the lumen."""
        from cardioquant.errors import InputError

        for name in (lumenName, "coronary_arteries"):
            if scene_layer.segment_id_of(node, name):
                return name
        names = scene_layer.segment_names(node)
        if len(names) == 1:
            return names[0]
        raise InputError(f"the lumen segmentation '{node.GetName()}' has {len(names)} segments and none is called "
                         f"'{lumenName}': name the coronary lumen segment so, or pick a segmentation of the lumen alone.")

    def loadOutputs(self, outputDir, inputVolumeNode):
        """Besides the lumen and the table: centerlines and vessel surface coloured by FFR, and FFR-distance plots."""
        segmentationNode, tableNode = AnalysisLogic.loadOutputs(self, outputDir, inputVolumeNode)
        name = tableNode.GetName().replace(" table", "")
        for suffix, label in (("centerlines", "centerlines"), ("surface", "vessel surface")):
            path = os.path.join(outputDir, f"ffr_{suffix}.vtp")
            if os.path.exists(path):
                model = scene_layer.load_model(slicer.mrmlScene, path, f"{name} {label}", scalars="FFR")
                scene_layer.place_with_volume(slicer.mrmlScene, inputVolumeNode, model)
        vessels = self.runDocument(outputDir)["vessels"]
        profiles = {vessel: ([p[0] for p in v["points"]], [p[1] for p in v["points"]]) for vessel, v in vessels.items()}
        chart = scene_layer.plot_profiles(slicer.mrmlScene, profiles, f"{name} FFR along vessels", "distance_mm", "FFR")
        if scene_layer.in_slicer_app():
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        return segmentationNode, tableNode
