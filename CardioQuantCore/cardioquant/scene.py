"""Scene layer: real MRML nodes through slicer-core (plain Python) or Slicer's own scene (inside Slicer).

Only this module (and the Slicer module files) import `slicer`. Functions take the scene explicitly so
tests can run several scenes side by side; `new_scene()` also installs the scene as `slicer.mrmlScene`
outside Slicer, which lets the parts of `slicer.util` that only need a scene work there too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

# VTK's own classes from the modules that hold them: `import vtk` loads every VTK module (0.2-0.3 s per command).
# Slicer's libraries load these modules anyway, so importing them here costs nothing.
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkDoubleArray, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from . import geometry
from .imageio import READING_KEY, RUN_ATTRIBUTES, LoadedImage, reading_record
from .labels import LabelTable


def _slicer():
    import slicer  # noqa: PLC0415  (deferred: importing VTK/MRML costs ~1 s; pure-science callers never pay it)

    return slicer


def in_slicer_app() -> bool:
    slicer = _slicer()
    return hasattr(slicer, "app") and getattr(slicer, "mrmlScene", None) is not None


def new_scene():
    """Slicer's scene inside the application; elsewhere a new slicer-core scene with the logics attached.

    The segmentations logic registers the representation converters (labelmap <-> closed surface); the colour
    logic creates the default colour tables that labelmap display nodes refer to.
    """
    slicer = _slicer()
    if in_slicer_app():
        return slicer.mrmlScene
    scene = slicer.vtkMRMLScene()
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    scene._cardioquant_logics = (color_logic, segmentations_logic)  # keep the logics alive with the scene
    if getattr(slicer, "mrmlScene", None) is None:
        slicer.mrmlScene = scene
    return scene


def _segmentations_logic():
    slicer = _slicer()
    if in_slicer_app():
        return slicer.modules.segmentations.logic()
    return slicer.vtkSlicerSegmentationsModuleLogic()


def _as_volume(image: sitk.Image) -> sitk.Image:
    """A 2D image (a slice) as a volume one voxel deep; a volume as it is."""
    return sitk.JoinSeries(image) if image.GetDimension() == 2 else image


def _vtk_matrix(matrix: np.ndarray):
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(matrix[r, c]))
    return out


def _numpy_matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


# --- volumes -------------------------------------------------------------------------------------------

def volume_node_from_image(scene, image: sitk.Image, name: str, labelmap: bool = False):
    """A scalar (or labelmap) volume node with the image's voxels and exact IJK-to-RAS geometry."""
    image = _as_volume(image)
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    update_volume_node(node, sitk.GetArrayViewFromImage(image), geometry.ijk_to_ras(image))  # VTK copies it once
    if not labelmap:
        node.CreateDefaultDisplayNodes()
    return node


def update_volume_node(node, array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    array_kji = np.ascontiguousarray(array_kji)
    image_data = vtkImageData()
    image_data.SetDimensions(array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True)
    vtk_array.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras))


def array_from_volume_node(node) -> np.ndarray:
    image_data = node.GetImageData()
    dims = image_data.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    return flat.reshape(dims[2], dims[1], dims[0]).copy()


def image_from_volume_node(node) -> sitk.Image:
    """SimpleITK image (LPS geometry) of a volume node in its own frame, as acquired: a parent transform (a
    registration, a reader's alignment) moves where Slicer shows the volume, not the voxels the analyses read.
    Results are placed under the same transform (place_with_volume), and the reader's points and segmentations
    are brought into this frame (points_in_volume_frame; Slicer's labelmap export does it for segmentations)."""
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    spacing, origin, direction = geometry.geometry_from_ijk_to_ras(_numpy_matrix(matrix))
    image = sitk.GetImageFromArray(array_from_volume_node(node))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _transform_between(volume_node, from_world: bool):
    """The general transform from world coordinates to the volume's own frame (or back), through whatever parent
    transforms it sits under, linear or not; None when it sits under none."""
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    parent = volume_node.GetParentTransformNode()
    if parent is None:
        return None
    transform = vtkGeneralTransform()
    source, target = (None, parent) if from_world else (parent, None)
    _slicer().vtkMRMLTransformNode.GetTransformBetweenNodes(source, target, transform)
    return transform


def non_linear_transform_warning(volume_node) -> str | None:
    """The warning for a volume under a non-linear transform; None under none or a linear one. Slicer's DICOM
    reader puts a series whose slices are not a regular grid (a CT acquired with the gantry tilted, uneven slice
    steps) under such a transform, its acquisition transform, unless told to harden it: the voxels as stored are
    then sheared or misplaced, and the analyses, which read them as stored, would measure them so."""
    parent = volume_node.GetParentTransformNode()
    if parent is None or parent.IsTransformToWorldLinear():
        return None
    return (f"{volume_node.GetName()} sits under a non-linear transform ({parent.GetName()}); the analysis reads the "
            "voxels as stored, without it. If it is the acquisition transform Slicer's DICOM reader adds to a "
            "gantry-tilted or unevenly spaced series, harden it (Data module: right-click the transform, Harden "
            "transform) and run again, or load the DICOM folder with this module's reader, which regularizes it.")


def points_in_volume_frame(volume_node, points_ras) -> list[list[float]]:
    """Points placed where Slicer shows the volume (world RAS, as a point list gives them) in the volume's own
    frame, where the analyses read it."""
    transform = _transform_between(volume_node, from_world=True)
    return [list(transform.TransformPoint(*map(float, p)) if transform else map(float, p)) for p in points_ras]


def point_in_world(volume_node, point_ras) -> list[float]:
    """A point of the volume's own frame (a result's RAS position) where Slicer shows it."""
    transform = _transform_between(volume_node, from_world=False)
    return list(transform.TransformPoint(*map(float, point_ras)) if transform else map(float, point_ras))


# --- segmentations ---------------------------------------------------------------------------------------

def segmentation_node_from_labelmap(scene, label_image: sitk.Image, reference_node, table: LabelTable,
                                    name: str, include_empty: bool = True):
    """Segmentation node from a label image: one segment per table entry, named, coloured, with terminology.

    Segments for labels absent from the image are created empty when `include_empty` and the table offers them
    (so the user can paint into them in Segment Editor). The input volume is the reference geometry.

    The label image itself, cropped to the box of its labelled voxels, becomes the segments' one shared
    labelmap, each segment its label value: Slicer's own layout for segments that do not overlap, built here
    directly. Slicer's labelmap import passes over the whole volume once per segment: a chest CT's 31 vertebral
    segments took 4 s to import that way, 0.4 s this way. Segment IDs are the table's names, so the same result
    gives the same .seg.nrrd.
    """
    slicer = _slicer()
    label_image, extent, box = _labelled_box(label_image)
    present = geometry.label_values(box)
    shared = _labelmap_on_extent(box, extent, geometry.ijk_to_ras(label_image))
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    if reference_node is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    segmentation = segmentation_node.GetSegmentation()
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(binary)
    for spec in table.segments_of(present, include_empty):
        segment = _new_segment(spec.value, spec.name, spec.color, shared, binary)
        segment.SetTerminology(spec.terminology_entry())
        segmentation.AddSegment(segment, spec.name)
    return segmentation_node


def _labelled_box(label_image: sitk.Image) -> tuple[sitk.Image, tuple[int, ...], np.ndarray]:
    """(the label image as an 8-bit volume, the VTK extent of its labelled voxels, those voxels' box [k, j, i]: every
    labelled voxel, read again instead of the whole scan)."""
    label_image = geometry.as_uint8(_as_volume(label_image))
    labels = sitk.GetArrayViewFromImage(label_image)
    extent = _labelled_extent(labels)
    i0, i1, j0, j1, k0, k1 = extent
    return label_image, extent, labels[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1]


def _labelled_extent(labels_kji: np.ndarray) -> tuple[int, ...]:
    """VTK extent (i0, i1, j0, j1, k0, k1) of the labelled voxels: the box Slicer itself keeps a segmentation's
    labelmap in, so that what passes over it once per segment (the import, the editor's tools) reads the box,
    not the whole scan. No labelled voxel: an empty extent, Slicer's own empty segment."""
    extent = []
    for axis in (2, 1, 0):  # i, j, k: VTK's order; the array's axes are k, j, i
        other = tuple(a for a in range(3) if a != axis)
        indices = np.flatnonzero(labels_kji.any(axis=other))
        if indices.size == 0:
            return (0, -1, 0, -1, 0, -1)
        extent += [int(indices[0]), int(indices[-1])]
    return tuple(extent)


def _labelmap_on_extent(box: np.ndarray, extent: tuple[int, ...], ijk_to_ras: np.ndarray):
    """The label voxels `box` [k, j, i] of `extent` as an oriented image on the full grid's IJK-to-RAS: the same
    voxel indices as the reference volume, so the file written keeps the reference extent (Slicer pads it back)."""
    shared = _slicer().vtkOrientedImageData()
    shared.SetExtent(*extent)
    shared.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    if box.size:
        numpy_support.vtk_to_numpy(shared.GetPointData().GetScalars())[:] = box.ravel()
    shared.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    return shared


def _new_segment(value: int, name: str, color, shared, representation: str):
    """A segment that is the voxels of `value` in the `shared` labelmap (none yet: an empty segment to paint into)."""
    segment = _slicer().vtkSegment()
    segment.SetName(name)
    segment.SetColor(*color)
    segment.SetLabelValue(value)
    segment.AddRepresentation(representation, shared)
    return segment


def labelmap_from_segmentation_node(segmentation_node, reference_node, table: LabelTable) -> np.ndarray:
    """Label array [k, j, i] on the reference volume's grid, values from the table by segment name (segment_id_of).

    Used to recompute scores after the user edits segments, and to export them; where segments overlap the later
    table entry wins. The segments are exported together, in table order (Slicer numbers them 1..N, a later one
    over an earlier), then renumbered to the table's values: one export per segment took 36 s for BoneDensity's 31
    segments on a 512 x 512 x 300 chest CT, all at once 3.6 s.
    """
    ids, values = _segment_ids_in_table_order(segmentation_node, table)
    shape = array_from_volume_node(reference_node).shape
    if not values:
        return np.zeros(shape, dtype=np.uint16)
    scene = segmentation_node.GetScene()
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__cardioquant_export__")
    try:
        if not _segmentations_logic().ExportSegmentsToLabelmapNode(segmentation_node, ids, temp, reference_node):
            raise RuntimeError(f"could not export the segments of {segmentation_node.GetName()}")
        if temp.GetImageData() is None:  # every segment empty
            return np.zeros(shape, dtype=np.uint16)
        return np.array([0, *values], dtype=np.uint16)[array_from_volume_node(temp)]
    finally:
        scene.RemoveNode(temp)


def _segment_ids_in_table_order(segmentation_node, table: LabelTable):
    """(the IDs of the segmentation's segments named in `table`, as a vtkStringArray in the table's order; the table
    value of each)."""
    ids, values = vtkStringArray(), []
    for spec in table.segments:
        segment_id = segment_id_of(segmentation_node, spec.name)
        if segment_id:
            ids.InsertNextValue(segment_id)
            values.append(spec.value)
    return ids, values


def update_segments_from_labelmap(segmentation_node, labels: np.ndarray, reference_node, table: LabelTable) -> None:
    """Replace, in place, the content of the segmentation's segments named in `table` by `labels` (values from the
    table, on the reference volume's grid): the reader's node keeps its segments, names, colours and terminology.
    Used when the panel reassigns a lesion (slicer.util's per-segment update needs Slicer's application)."""
    ids, values = _segment_ids_in_table_order(segmentation_node, table)
    # the import maps label n to the n-th segment ID; other values: none
    ordered = table.renumbered(labels, {value: number for number, value in enumerate(values, 1)})
    reference = image_from_volume_node(reference_node)
    temp = volume_node_from_image(segmentation_node.GetScene(), geometry.image_from_array(ordered, reference),
                                  "__cardioquant_update__", labelmap=True)
    try:
        if not _segmentations_logic().ImportLabelmapToSegmentationNode(temp, segmentation_node, ids):
            raise RuntimeError("Slicer could not update the segmentation from the label map")
    finally:
        segmentation_node.GetScene().RemoveNode(temp)


def segment_id_of(segmentation_node, name: str) -> str | None:
    """The ID of the segment called `name`: by its name, else by its ID, else by its name in any case. Slicer's
    TotalSegmentator extension keeps TotalSegmentator's class names as segment IDs ("heart", "vertebrae_L1") and,
    by default, shows standard terminology names ("Heart", ...): either way the segment is found."""
    segmentation = segmentation_node.GetSegmentation()
    found = segmentation.GetSegmentIdBySegmentName(name)
    if found:
        return found
    if segmentation.GetSegment(name) is not None:
        return name
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    return next((sid for sid in ids if segmentation.GetSegment(sid).GetName().lower() == name.lower()), None)


def segment_terminology(segmentation_node, name: str) -> str:
    """The serialised terminology entry of the segment called `name` ('' when it has none or is not there)."""
    segment_id = segment_id_of(segmentation_node, name)
    if not segment_id:
        return ""
    return segmentation_node.GetSegmentation().GetSegment(segment_id).GetTerminology() or ""


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


# --- tables ----------------------------------------------------------------------------------------------

def place_with_volume(scene, volume_node, *nodes) -> None:
    """Put result nodes beside their input volume in the subject hierarchy (under the volume's study or folder),
    where the reader looks for them in the Data module, and under the volume's parent transform, if any: results
    are in the volume's own frame and must be shown where the volume is shown."""
    hierarchy = _slicer().vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    parent = hierarchy.GetItemParent(volume_item) if volume_item else hierarchy.GetSceneItemID()
    for node in nodes:
        if node is None:
            continue
        if node.IsA("vtkMRMLTransformableNode"):
            node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
        item = hierarchy.GetItemByDataNode(node)  # made by Slicer's subject hierarchy plugins; not in plain Python
        if item:
            hierarchy.SetItemParent(item, parent)
        else:
            hierarchy.CreateItem(parent, node)


def table_node_from_records(scene, records: list[dict], name: str, columns: list[str] | None = None, node=None):
    """Table node with one row per record; numeric columns are typed (double) so Slicer plots them. With `node`
    (a run's table) its content is replaced in place: the panel keeps one table per run however often the reader
    edits."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    table.Initialize()
    for column, values, numeric in _table_columns(records, columns):
        table.AddColumn(_numbers(column, values) if numeric else _texts(column, values))
    node.Modified()
    return node


def _table_columns(records: list[dict], columns: list[str] | None = None) -> list[tuple[str, list, bool]]:
    """(name, values, whether numeric) per column of a table of `records`. A column of numbers is numeric (a missing
    value NaN); one with no value at all (e.g. mass without a calibration) is text, so the CSV says nothing there
    (the JSON's null), not "nan"."""
    columns = columns or list(dict.fromkeys(k for r in records for k in r))
    typed = []
    for column in columns:
        values = [r.get(column) for r in records]
        numeric = any(v is not None for v in values) and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) or v is None for v in values)
        typed.append((column, values, numeric))
    return typed


def _numbers(name: str, values: list):
    """A table column of doubles; a missing value is NaN."""
    array = vtkDoubleArray()
    array.SetName(name)
    for v in values:
        array.InsertNextValue(float("nan") if v is None else float(v))
    return array


def _texts(name: str, values: list):
    """A table column of text; a missing value is empty."""
    array = vtkStringArray()
    array.SetName(name)
    for v in values:
        array.InsertNextValue("" if v is None else str(v))
    return array


def plot_profiles(scene, profiles: dict, name: str, x_title: str, y_title: str):
    """A plot chart with one line series per profile (name -> (x values, y values)), each backed by its own
    table node, as Slicer's Plots module expects: e.g. FFR against distance along every vessel."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    for series_name, (x, y) in profiles.items():
        table = table_node_from_records(scene, [{x_title: float(a), y_title: float(b)} for a, b in zip(x, y, strict=True)],
                                        f"{name} {series_name}")
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", series_name)
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(x_title)
        series.SetYColumnName(y_title)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleNone)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def records_from_table_node(node) -> list[dict]:
    table = node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, n in enumerate(names):
            value = table.GetValue(r, c)
            row[n] = value.ToDouble() if value.IsNumeric() else value.ToString()
        rows.append(row)
    return rows


# --- storage ---------------------------------------------------------------------------------------------

_STORAGE = {
    "vtkMRMLScalarVolumeNode": "vtkMRMLVolumeArchetypeStorageNode",
    "vtkMRMLLabelMapVolumeNode": "vtkMRMLVolumeArchetypeStorageNode",
    "vtkMRMLSegmentationNode": "vtkMRMLSegmentationStorageNode",
    "vtkMRMLTableNode": "vtkMRMLTableStorageNode",
    "vtkMRMLModelNode": "vtkMRMLModelStorageNode",
}


def save_node(node, path: str | Path) -> None:
    """Write a volume (.nrrd), segmentation (.seg.nrrd) or table (.csv) node with Slicer's own writers."""
    scene = node.GetScene()
    storage = scene.AddNewNodeByClass(_STORAGE[node.GetClassName()])
    try:
        storage.SetFileName(str(path))
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise OSError(f"Slicer could not write {path}")
    finally:
        scene.RemoveNode(storage)


def save_segmentation_file(label_image: sitk.Image, table: LabelTable, path: str | Path,
                           include_empty: bool = True) -> None:
    """A result's label image as a Slicer segmentation file (.seg.nrrd), written in one pass: the segments that
    segmentation_node_from_labelmap puts in the scene, one layer on the scan's grid, each with its ID (its name),
    label value, colour and terminology, and the scan's grid as the reference geometry the Segment Editor edits on.

    Slicer's writer (save_node) pads the segments' shared labelmap to the scan's extent once per segment: a chest
    CT's 31 vertebral and reference segments took 3-4 s on the 2-core benchmark machine, over a tenth of the
    BoneDensity command. The file is the one Slicer writes (its format: Slicer's segmentation storage node) and reads
    back to the same segments (tested); save_node stays for a reader's edited segmentation, which may overlap."""
    label_image, extent, box = _labelled_box(label_image)
    written = sitk.Image(label_image)  # a copy: the header is the file's alone
    for key, value in _segmentation_header(table.segments_of(geometry.label_values(box), include_empty), extent,
                                           label_image).items():
        written.SetMetaData(key, value)
    sitk.WriteImage(written, str(path), True)


def _segmentation_header(segments, extent: tuple[int, ...], label_image: sitk.Image) -> dict[str, str]:
    """The keys of Slicer's segmentation file: the segmentation's (source representation, reference geometry) and,
    for each segment, ID, name, label value, colour, terminology, layer 0 and the extent of the layer's voxels (one
    extent for all: Slicer reads a layer's voxels within its first segment's extent)."""
    ijk_to_ras = geometry.ijk_to_ras(label_image)
    size = label_image.GetSize()
    grid = ";".join(f"{x:.17g}" for x in [*ijk_to_ras.ravel(), 0, size[0] - 1, 0, size[1] - 1, 0, size[2] - 1]) + ";"
    keys = {"Segmentation_MasterRepresentation": "Binary labelmap",
            "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
            "Segmentation_ReferenceImageExtentOffset": "0 0 0",
            "Segmentation_ConversionParameters": f"Reference image geometry|{grid}|the scan's grid&"}
    for n, spec in enumerate(segments):
        keys |= spec.header_keys(n) | {
            f"Segment{n}_ID": spec.name, f"Segment{n}_Color": " ".join(f"{c:.6g}" for c in spec.color),
            f"Segment{n}_ColorAutoGenerated": "1", f"Segment{n}_NameAutoGenerated": "1",
            f"Segment{n}_Layer": "0", f"Segment{n}_Extent": " ".join(str(e) for e in extent)}
    return keys


def save_table_file(records: list[dict], path: str | Path, columns: list[str] | None = None) -> None:
    """A result's table as Slicer writes a table node (table_node_from_records) to CSV: the CSV and, beside it, the
    schema (NAME.schema.csv) that types its columns for Slicer's reader; numbers as Slicer writes them (six
    significant digits, a missing number "nan"), text quoted (a quote inside doubled, as CSV readers expect: Slicer's
    writer leaves it single and the row falls apart). Written without Slicer's libraries: importing them took 1 s
    of a 3-5 s scar command on the 2-core benchmark machine."""
    path = Path(path)
    typed = _table_columns(records, columns)

    def cell(value, numeric: bool) -> str:
        if numeric:
            return "nan" if value is None else f"{float(value):g}"
        return '"' + ("" if value is None else str(value)).replace('"', '""') + '"'

    lines = [",".join(cell(name, False) for name, _, _ in typed)]
    lines += [",".join(cell(values[row], numeric) for _, values, numeric in typed) for row in range(len(records))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")  # the same file on every system
    if typed:
        schema = ['"columnName","type","componentNames"']
        schema += [f'{cell(name, False)},"{"double" if numeric else "string"}",""' for name, _, numeric in typed]
        path.with_name(path.name.removesuffix(".csv") + ".schema.csv").write_text(
            "\n".join(schema) + "\n", encoding="utf-8", newline="\n")


def load_node(scene, path: str | Path, node_class: str, name: str | None = None):
    """Read a node of `node_class` from a file with Slicer's storage node (the reader Slicer itself uses)."""
    path = Path(path)
    node = scene.AddNewNodeByClass(node_class, name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass(_STORAGE[node_class])
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise OSError(f"Slicer could not read {path}")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def load_volume(scene, path, name=None):
    return load_node(scene, path, "vtkMRMLScalarVolumeNode", name)


def load_segmentation(scene, path, name=None):
    return load_node(scene, path, "vtkMRMLSegmentationNode", name)


def load_table(scene, path, name=None):
    return load_node(scene, path, "vtkMRMLTableNode", name)


def load_model(scene, path, name=None, scalars: str | None = None):
    """A model node (e.g. centerlines coloured by FFR); `scalars` selects the point array to colour by."""
    node = load_node(scene, path, "vtkMRMLModelNode", name)
    node.CreateDefaultDisplayNodes()
    if scalars:
        display = node.GetDisplayNode()
        display.SetActiveScalarName(scalars)
        display.SetScalarVisibility(True)
    return node


def loaded_from_volume_node(node, dicom: dict):
    """The pipelines' input for a volume node and its DICOM attributes (kVp, modality, contrast, slice increment):
    the one way the panel's background run and the scripting path (Logic.process) see a volume."""
    return LoadedImage(image=image_from_volume_node(node), path=node.GetName(), format="mrml",
                       dicom={key: str(value) for key, value in dicom.items() if key in RUN_ATTRIBUTES and value})


def write_run_input(loaded, path: str | Path) -> Path:
    """Write a volume for a background run with its DICOM attributes as NRRD keys, so the separate process
    scores an 80 kVp scan with 80 kVp thresholds and checks the modality as the scripting path does."""
    image = sitk.Image(loaded.image)
    for key in RUN_ATTRIBUTES:
        if loaded.dicom.get(key):
            image.SetMetaData(key, str(loaded.dicom[key]))
    record = reading_record(loaded)
    if record:  # how it was read (a stack of single-slice series, a slice missing): the run repeats it
        image.SetMetaData(READING_KEY, record)
    sitk.WriteImage(image, str(path), True)
    return Path(path)
