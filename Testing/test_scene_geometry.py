"""Scene layer: exact geometry and segmentation round trips through real MRML nodes (slicer-core)."""

import os

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from conftest import oblique_image

from cardioquant import geometry, labels, scene

TABLE = labels.LabelTable([
    labels.SegmentSpec(1, "LM", (0.9, 0.1, 0.1), labels.MORPHOLOGICALLY_ALTERED, ("SCT", "75753009", "Calcification"),
                       ("SCT", "3227004", "Left main coronary artery")),
    labels.SegmentSpec(2, "LAD", (0.1, 0.8, 0.1), labels.MORPHOLOGICALLY_ALTERED, ("SCT", "75753009", "Calcification"),
                       ("SCT", "59438005", "Anterior descending branch of left coronary artery")),
    labels.SegmentSpec(4, "RCA", (0.1, 0.1, 0.9), labels.MORPHOLOGICALLY_ALTERED, ("SCT", "75753009", "Calcification"),
                       ("SCT", "13647002", "Right coronary artery")),
])


@pytest.fixture
def mrml():
    return scene.new_scene()


def _ras_of_index(node, ijk):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint([*ijk, 1.0])[:3])


def test_oblique_anisotropic_volume_round_trip_is_exact(mrml):
    array = np.random.default_rng(1).integers(-1024, 3000, size=(7, 9, 11)).astype(np.int16)
    image = oblique_image(array)
    node = scene.volume_node_from_image(mrml, image, "ct")
    # Every corner voxel lands where SimpleITK (LPS) says it is, after the LPS->RAS flip.
    for ijk in [(0, 0, 0), (10, 0, 0), (0, 8, 0), (0, 0, 6), (10, 8, 6)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        assert np.allclose(_ras_of_index(node, ijk), lps * [-1, -1, 1], atol=1e-9)
    back = scene.image_from_volume_node(node)
    assert np.array_equal(sitk.GetArrayFromImage(back), array)
    assert np.allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)


def test_volume_survives_nrrd_file_round_trip(mrml, tmp_path):
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    image = oblique_image(array)
    node = scene.volume_node_from_image(mrml, image, "ct")
    scene.save_node(node, tmp_path / "ct.nrrd")
    read = sitk.ReadImage(str(tmp_path / "ct.nrrd"))  # an independent reader
    assert np.array_equal(sitk.GetArrayFromImage(read), array)
    for ijk in [(0, 0, 0), (6, 5, 4)]:
        assert np.allclose(read.TransformIndexToPhysicalPoint(ijk), image.TransformIndexToPhysicalPoint(ijk), atol=1e-4)
    reloaded = scene.load_volume(mrml, tmp_path / "ct.nrrd")
    assert np.allclose(_ras_of_index(reloaded, (6, 5, 4)), _ras_of_index(node, (6, 5, 4)), atol=1e-4)


def test_ijk_to_ras_inverse():
    image = oblique_image(np.zeros((3, 4, 5), np.float32))
    spacing, origin, direction = geometry.geometry_from_ijk_to_ras(geometry.ijk_to_ras(image))
    assert np.allclose(spacing, image.GetSpacing()) and np.allclose(origin, image.GetOrigin())
    assert np.allclose(direction, image.GetDirection())


def _labels(shape):
    label = np.zeros(shape, np.uint8)
    label[1:3, 2:5, 3:6] = 2
    label[4, 1, 1] = 4
    return label


def test_segmentation_import_export_keeps_names_colours_terminology(mrml):
    array = np.zeros((6, 7, 8), np.int16)
    image = oblique_image(array)
    volume = scene.volume_node_from_image(mrml, image, "ct")
    label = _labels(array.shape)
    seg = scene.segmentation_node_from_labelmap(mrml, geometry.image_from_array(label, image), volume, TABLE, "cac")
    assert sorted(scene.segment_names(seg)) == ["LAD", "LM", "RCA"]  # LM kept as an empty segment to paint into
    segmentation = seg.GetSegmentation()
    lad = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("LAD"))
    assert "SCT^59438005^" in lad.GetTerminology() and "SCT^75753009^Calcification" in lad.GetTerminology()
    assert np.allclose(lad.GetColor(), (0.1, 0.8, 0.1))
    exported = scene.labelmap_from_segmentation_node(seg, volume, TABLE)
    assert np.array_equal(exported, label)
    assert int((exported == 2).sum()) == 2 * 3 * 3 and int((exported == 4).sum()) == 1


def test_a_table_that_offers_no_empty_segments_gives_only_what_was_found_and_keeps_stray_values(mrml):
    """A table of every possible vertebra puts only the found segments in the scene; a label value outside the
    table is kept as its own segment (never dropped), and every segment exports back to its voxels."""
    image = oblique_image(np.zeros((6, 7, 8), np.int16))
    volume = scene.volume_node_from_image(mrml, image, "ct")
    label = _labels((6, 7, 8))  # values 2 and 4
    label[5, 6, 7] = 9  # not in the table
    table = labels.LabelTable(TABLE.segments, offer_empty=False)
    seg = scene.segmentation_node_from_labelmap(mrml, geometry.image_from_array(label, image), volume, table, "cac")
    assert sorted(scene.segment_names(seg)) == ["LAD", "RCA", "unlabelled 9"]
    exported = scene.labelmap_from_segmentation_node(seg, volume, table)
    assert np.array_equal(exported, np.where(label == 9, 0, label))
    stray = labels.LabelTable([labels.SegmentSpec(9, "unlabelled 9", (0.5, 0.5, 0.5), labels.ANATOMICAL_STRUCTURE,
                                                  ("SCT", "0", "x"))])
    assert int((scene.labelmap_from_segmentation_node(seg, volume, stray) == 9).sum()) == 1


def _saved_segmentation(mrml, tmp_path, label, writer="slicer"):
    """(CT image, its volume node, the segmentation of `label` on it, the .seg.nrrd it was saved to by `writer`:
    Slicer's own writer, or the one-pass writer of a result's label image)."""
    image = oblique_image(np.zeros(label.shape, np.int16))
    volume = scene.volume_node_from_image(mrml, image, "ct")
    label_image = geometry.image_from_array(label, image)
    seg = scene.segmentation_node_from_labelmap(mrml, label_image, volume, TABLE, "cac")
    if writer == "slicer":
        scene.save_node(seg, tmp_path / "cac.seg.nrrd")
    else:
        scene.save_segmentation_file(label_image, TABLE, tmp_path / "cac.seg.nrrd")
    return image, volume, seg, tmp_path / "cac.seg.nrrd"


WRITERS = pytest.mark.parametrize("writer", ["slicer", "one pass"])


@WRITERS
def test_seg_nrrd_is_read_back_by_slicer_core(mrml, tmp_path, writer):
    label = _labels((6, 7, 8))
    image, _, _, path = _saved_segmentation(mrml, tmp_path, label, writer)
    other_scene = scene.new_scene()
    other_volume = scene.volume_node_from_image(other_scene, image, "ct")
    loaded = scene.load_segmentation(other_scene, path)
    assert sorted(scene.segment_names(loaded)) == ["LAD", "LM", "RCA"]
    segmentation = loaded.GetSegmentation()
    rca = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("RCA"))
    assert "SCT^13647002^" in rca.GetTerminology()
    assert np.array_equal(scene.labelmap_from_segmentation_node(loaded, other_volume, TABLE), label)


@WRITERS
def test_seg_nrrd_keeps_the_reference_grid_though_the_segments_fill_a_corner_of_it(mrml, tmp_path, writer):
    """The segments are held on the box of their voxels (Slicer's own layout), yet the file has the CT's grid:
    voxel (i, j, k) of the .seg.nrrd is voxel (i, j, k) of the CT, as a reader of both files expects."""
    label = _labels((6, 7, 8))  # voxels in k 1-4, j 1-4, i 1-5 only
    image, _, _, path = _saved_segmentation(mrml, tmp_path, label, writer)
    written = sitk.ReadImage(str(path))  # an independent reader
    assert written.GetSize() == image.GetSize()
    assert np.allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(written), label)


@WRITERS
def test_a_result_with_no_voxels_gives_empty_segments_that_are_written_and_read_back(mrml, tmp_path, writer):
    _, volume, seg, path = _saved_segmentation(mrml, tmp_path, np.zeros((6, 7, 8), np.uint8), writer)
    assert sorted(scene.segment_names(seg)) == ["LAD", "LM", "RCA"]
    assert not scene.labelmap_from_segmentation_node(seg, volume, TABLE).any()
    loaded = scene.load_segmentation(scene.new_scene(), path)
    assert sorted(scene.segment_names(loaded)) == ["LAD", "LM", "RCA"]


def _segments_as_read(path, volume):
    """What Slicer reads from a .seg.nrrd: per segment ID, (name, label value, colour, terminology, layer), the
    labelmap on the CT's grid, and the reference geometry the Segment Editor edits on."""
    loaded = scene.load_segmentation(scene.new_scene(), path)
    segmentation = loaded.GetSegmentation()
    segments = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segments[segmentation.GetNthSegmentID(index)] = (
            segment.GetName(), segment.GetLabelValue(), tuple(round(c, 6) for c in segment.GetColor()),
            segment.GetTerminology(), segmentation.GetLayerIndex(segmentation.GetNthSegmentID(index)))
    geometry_parameter = segmentation.GetConversionParameter("Reference image geometry")
    grid = [float(x) for x in geometry_parameter.split(";") if x]
    return segments, scene.labelmap_from_segmentation_node(loaded, volume, STRAY_TABLE), grid


STRAY_TABLE = labels.LabelTable([*TABLE.segments, labels.SegmentSpec(
    9, "unlabelled 9", labels.UNLABELLED_GREY, labels.ANATOMICAL_STRUCTURE, ("SCT", "0", "x"))])


@pytest.mark.parametrize("offer_empty", [True, False])
def test_a_results_one_pass_seg_nrrd_reads_in_slicer_as_slicers_own_file(mrml, tmp_path, offer_empty):
    """The result's .seg.nrrd, written in one pass, is read by Slicer to what Slicer's own writer gives for the
    same segmentation: the same segments (IDs, names, label values, colours, terminology, one layer), the same
    voxels, a value outside the table kept as its own segment, and the CT's grid as the reference geometry."""
    image = oblique_image(np.zeros((6, 7, 8), np.int16))
    volume = scene.volume_node_from_image(mrml, image, "ct")
    label = _labels((6, 7, 8))
    label[5, 6, 7] = 9  # not in the table
    table = labels.LabelTable(TABLE.segments, offer_empty=offer_empty)
    label_image = geometry.image_from_array(label, image)
    scene.save_node(scene.segmentation_node_from_labelmap(mrml, label_image, volume, table, "cac"),
                    tmp_path / "slicer.seg.nrrd")
    scene.save_segmentation_file(label_image, table, tmp_path / "one_pass.seg.nrrd")
    slicers_segments, slicers_voxels, slicers_grid = _segments_as_read(tmp_path / "slicer.seg.nrrd", volume)
    segments, voxels, grid = _segments_as_read(tmp_path / "one_pass.seg.nrrd", volume)
    assert segments == slicers_segments
    assert sorted(segments) == (["LAD", "LM", "RCA"] if offer_empty else ["LAD", "RCA"]) + ["unlabelled 9"]
    assert segments["unlabelled 9"][2] == labels.UNLABELLED_GREY and segments["LAD"][2] == (0.1, 0.8, 0.1)
    assert np.array_equal(voxels, label) and np.array_equal(slicers_voxels, label)
    assert np.allclose(grid, slicers_grid, atol=1e-9)
    ijk_to_ras = np.array(grid[:16]).reshape(4, 4)  # the CT's voxel (i, j, k) where the CT has it
    assert np.allclose(ijk_to_ras @ [5, 6, 4, 1], [*(np.array(image.TransformIndexToPhysicalPoint((5, 6, 4)))
                                                     * [-1, -1, 1]), 1], atol=1e-9)
    assert grid[16:] == [0, 7, 0, 6, 0, 5]


def test_overlapping_segments_export_as_the_later_table_entry_and_others_are_left_out(mrml):
    """A reader's segments may overlap (Slicer then keeps them in layers): exported to the table's values, an
    overlapped voxel is the later table entry's; a segment the table does not name is not exported."""
    image = oblique_image(np.zeros((6, 7, 8), np.int16))
    volume = scene.volume_node_from_image(mrml, image, "ct")
    lad, rca = np.zeros((6, 7, 8), np.uint8), np.zeros((6, 7, 8), np.uint8)
    lad[1:4, 1:4, 1:4], rca[2:5, 2:5, 2:5] = 2, 4  # 2 x 2 x 2 voxels overlap
    seg = scene.segmentation_node_from_labelmap(mrml, geometry.image_from_array(lad, image), volume, TABLE, "cac")
    other = scene.segmentation_node_from_labelmap(mrml, geometry.image_from_array(rca, image), volume, TABLE, "b")
    segmentation, theirs = seg.GetSegmentation(), other.GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName("RCA"))
    segmentation.CopySegmentFromSegmentation(theirs, theirs.GetSegmentIdBySegmentName("RCA"))  # a layer of its own
    marked = np.zeros((6, 7, 8), np.uint8)
    marked[5, 6, 7] = 2
    noted = scene.segmentation_node_from_labelmap(mrml, geometry.image_from_array(marked, image), volume, TABLE, "c")
    notes = noted.GetSegmentation()
    notes.GetSegment(notes.GetSegmentIdBySegmentName("LAD")).SetName("reader's note")
    segmentation.CopySegmentFromSegmentation(notes, notes.GetSegmentIdBySegmentName("reader's note"))
    assert segmentation.GetNumberOfLayers() >= 2 and "reader's note" in scene.segment_names(seg)
    exported = scene.labelmap_from_segmentation_node(seg, volume, TABLE)
    assert (exported == 4).sum() == 27 and (exported == 2).sum() == 27 - 8
    assert exported[2, 2, 2] == 4 and exported[5, 6, 7] == 0 and not (exported == 1).any()


def test_a_segment_edited_beyond_the_box_of_the_run_keeps_the_new_voxels(mrml, tmp_path):
    """The run's segments are held on the box of their voxels; a reader's edit reaching beyond it (a lesion the
    run missed, in a corner of the scan) is kept, exported, written and read back like any other voxel."""
    label = _labels((6, 7, 8))  # the run's voxels in k 1-4, j 1-4, i 1-5
    _, volume, seg, _ = _saved_segmentation(mrml, tmp_path, label)
    edited = label.copy()
    edited[5, 6, 7] = 1  # an LM lesion in the far corner, outside the run's box
    edited[1, 2, 3] = 0  # and a voxel taken off the LAD
    scene.update_segments_from_labelmap(seg, edited, volume, TABLE)
    assert np.array_equal(scene.labelmap_from_segmentation_node(seg, volume, TABLE), edited)
    scene.save_node(seg, tmp_path / "edited.seg.nrrd")
    reread = scene.load_segmentation(scene.new_scene(), tmp_path / "edited.seg.nrrd")
    assert np.array_equal(scene.labelmap_from_segmentation_node(reread, volume, TABLE), edited)


def test_table_node_csv_round_trip(mrml, tmp_path):
    records = [{"artery": "LAD", "agatston": 12.5, "lesions": 2}, {"artery": "RCA", "agatston": 0.0, "lesions": 0}]
    node = scene.table_node_from_records(mrml, records, "scores")
    scene.save_node(node, tmp_path / "scores.csv")
    text = (tmp_path / "scores.csv").read_text().splitlines()
    assert text[0] == '"artery","agatston","lesions"' and text[1] == '"LAD",12.5,2'
    assert scene.records_from_table_node(scene.load_table(mrml, tmp_path / "scores.csv")) == records


RECORDS = {
    "lesions": [{"artery": "LAD", "agatston": 12.5, "lesions": 2, "mass_mg": None, "flagged": True,
                 "volume_ml": float("nan"), "hu_sum": 1234567.891, "share": 1e-5},
                {"artery": "RCA", "agatston": 0.0, "lesions": 0, "mass_mg": None, "flagged": False,
                 "volume_ml": 2.0, "hu_sum": -0.0, "share": np.float32(0.1)}],
    "ragged": [{"agatston": 1}, {"artery": "LM"}],
    "none": [],
}


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_a_results_table_file_is_the_csv_and_schema_slicer_writes(mrml, tmp_path, case):
    """The result's CSV, written without Slicer's libraries, is byte for byte what Slicer writes for the same
    table node, and so is the schema that types its columns (numbers double, a missing number nan; text, a
    column with no value, true/false quoted)."""
    records = RECORDS[case]
    scene.save_node(scene.table_node_from_records(mrml, records, "scores"), tmp_path / "slicer.csv")
    scene.save_table_file(records, tmp_path / "ours.csv")
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "slicer.csv").read_bytes()
    slicers_schema, schema = tmp_path / "slicer.schema.csv", tmp_path / "ours.schema.csv"
    assert schema.exists() == slicers_schema.exists() == bool(records)
    assert not records or schema.read_bytes() == slicers_schema.read_bytes()


def test_a_quote_inside_a_tables_text_is_read_back_by_a_csv_reader_as_written(tmp_path):
    """Text with a comma and quotes (a series description) stays one cell for a standard CSV reader (RFC 4180: the
    quote doubled; Slicer's writer leaves it single and the row falls apart)."""
    import csv

    records = [{"series": 'Ca score 3.0 "I30f", 70%', "agatston": 12.5}]
    scene.save_table_file(records, tmp_path / "scores.csv")
    with open(tmp_path / "scores.csv", newline="") as table:
        assert list(csv.reader(table)) == [["series", "agatston"], ['Ca score 3.0 "I30f", 70%', "12.5"]]


def test_a_runs_table_is_updated_in_place_after_edits(mrml):
    """The panel re-computes after every edit: the run's table node takes the new figures, no new node appears."""
    node = scene.table_node_from_records(mrml, [{"artery": "LAD", "agatston": 12.5}], "scores")
    tables = mrml.GetNumberOfNodesByClass("vtkMRMLTableNode")
    edited = [{"artery": "LAD", "agatston": 0.0}, {"artery": "RCA", "agatston": 30.0}]
    same = scene.table_node_from_records(mrml, edited, "scores", node=node)
    assert same is node and mrml.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert scene.records_from_table_node(node) == edited


def test_results_sit_beside_their_volume_in_the_subject_hierarchy(mrml):
    """A reader finds the segmentation and table of a run under the study of the volume they were made from."""
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "study")
    volume = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    hierarchy.CreateItem(study, volume)
    segmentation = mrml.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT calcium")
    table = scene.table_node_from_records(mrml, [{"artery": "LAD", "agatston": 1.0}], "CT calcium table")
    scene.place_with_volume(mrml, volume, segmentation, table, None)
    assert [hierarchy.GetItemParent(hierarchy.GetItemByDataNode(n)) for n in (segmentation, table)] == [study, study]


@pytest.mark.parametrize(("shape", "spacing", "grid_size"), [
    ((23, 40, 57), (0.7, 0.9, 3.0), (20, 18, 35)),  # i and j smoothed and downsampled, k upsampled
    ((23, 40, 29), (0.7, 0.9, 3.0), (11, 18, 35)),  # the last grid column lies beyond the scan's: the default
    ((9, 12, 14), (2.5, 2.5, 3.0), (18, 15, 14)),  # every axis already coarser: nothing smoothed
])
def test_isotropic_resampling_is_gaussian_anti_aliasing_then_trilinear_interpolation(shape, spacing, grid_size):
    """The network grids: the whole volume smoothed per axis with sigma = (target - spacing) / 2 (none along axes
    already coarser), then trilinearly interpolated onto the isotropic grid with the scan's origin and direction,
    -1000 beyond the scan. Computed here in that textbook order; the pipeline does it otherwise (cheaper) and must
    agree."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    image = oblique_image(rng.normal(40, 300, shape).astype(np.int16), spacing=spacing)  # an oblique direction
    sigma_voxels = [(2.0 - s) / 2 / s if s < 2.0 else 0.0 for s in image.GetSpacing()][::-1]
    smoothed = sitk.GetImageFromArray(ndimage.gaussian_filter(sitk.GetArrayFromImage(image).astype(np.float32),
                                                              sigma_voxels))
    smoothed.CopyInformation(image)
    grid = sitk.Image([int(np.ceil(n * s / 2.0)) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)],
                      sitk.sitkFloat32)
    grid.SetSpacing((2.0, 2.0, 2.0))
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    expected = sitk.GetArrayFromImage(sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, -1000.0))

    resampled = geometry.resample_isotropic(image, 2.0, is_label=False, default=-1000.0)

    assert resampled.GetSize() == grid.GetSize() == grid_size
    assert resampled.GetOrigin() == image.GetOrigin() and resampled.GetDirection() == image.GetDirection()
    assert np.abs(sitk.GetArrayFromImage(resampled) - expected).max() < 1e-3


def test_a_grid_sample_on_the_scan_edge_keeps_the_edge_value():
    """1 mm slices on a 0.5 mm grid: the last grid slice lies exactly half a slice beyond the last scan slice, on
    the scan's edge. It keeps that slice's values (no slab of the default, -1000, at the end of the grid); one
    more grid slice beyond would be outside."""
    slab = np.random.default_rng(5).normal(40, 300, (1, 30, 30)).astype(np.int16)
    image = oblique_image(np.repeat(slab, 6, axis=0), spacing=(0.3, 0.3, 1.0))  # every slice the same
    grid = sitk.GetArrayFromImage(geometry.resample_isotropic(image, 0.5, is_label=False, default=-1000.0))
    assert grid.shape[0] == 12
    assert np.abs(grid[-1] - grid[0]).max() < 1e-3


def test_largest_component_is_the_piece_with_most_voxels_even_when_counted_in_parts():
    """A 20 x 256 x 1024 mask is counted in parts (over 4 M voxels): a 3000-voxel piece split evenly across the parts
    still beats a 2000-voxel piece lying wholly in one of them, and an empty mask gives an empty piece."""
    mask = np.zeros((20, 256, 1024), bool)
    mask[0:20, 10:15, 0:30] = True  # 3000 voxels over all 20 slices
    mask[2:6, 100:120, 200:225] = True  # 2000 voxels in slices 2-5 only
    mask[15, 200, 900] = True
    largest = geometry.largest_component(mask)
    assert largest.sum() == 3000 and largest[0:20, 10:15, 0:30].all()
    assert not geometry.largest_component(np.zeros((4, 5, 6), bool)).any()


def test_masks_of_labels_are_each_label_exactly_and_ignore_values_above_the_count():
    labels = np.zeros((9, 10, 11), np.uint8)
    labels[1:4, 2:5, 3:7] = 1
    labels[6, 8, 10] = 3  # label 2 absent: an empty mask
    labels[0, 0, 0] = 255  # "not a body": no mask of its own
    masks = geometry.masks_of_labels(labels, 3)
    assert [int(mask.sum()) for mask in masks] == [3 * 3 * 4, 0, 1]
    for value, mask in enumerate(masks, start=1):
        assert np.array_equal(mask, labels == value)


def test_the_values_a_label_map_holds_are_its_labels_without_the_background():
    labels = np.zeros((9, 10, 11), np.uint8)
    labels[1:4, 2:5, 3:7], labels[6, 8, 10], labels[0, 0, 0] = 21, 3, 255
    assert geometry.label_values(labels) == {3, 21, 255}
    assert geometry.label_values(np.zeros((2, 3, 4), np.int16)) == set()


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_per_slice_work_gives_the_same_answer_on_any_number_of_threads(threads, monkeypatch):
    from scipy import ndimage

    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    assert geometry.worker_threads() == min(int(threads), len(os.sched_getaffinity(0)))
    mask = np.random.default_rng(3).random((7, 30, 40)) > 0.3
    expected = np.stack([ndimage.distance_transform_edt(plane, sampling=(0.8, 0.6)) for plane in mask])
    assert np.array_equal(geometry.in_plane_distance(mask, (0.6, 0.8, 2.0)), expected)
    # work that itself maps over slices runs inside its thread instead of waiting on a full pool
    nested = geometry.parallel_map(lambda k: geometry.parallel_map(lambda j: (k, j), range(3)), range(4))
    assert nested == [[(k, j) for j in range(3)] for k in range(4)]


def test_a_mask_stored_in_another_axis_order_is_turned_onto_the_scan_not_interpolated():
    """A label file on the scan's grid but stored with its rows reversed and its columns and rows swapped (as a NIfTI
    mask of a DICOM scan may be) lands on the scan's grid with every voxel where it was in the patient; and a label
    map made on a turned copy of the scan goes back onto the scan's own grid."""
    rng = np.random.default_rng(0)
    scan = sitk.GetImageFromArray(rng.integers(0, 5, size=(6, 7, 8)).astype(np.uint8))
    scan.SetSpacing((0.7, 0.8, 2.5))
    scan.SetOrigin((-10.0, 20.0, 30.0))
    mask = sitk.DICOMOrient(scan, "ARS")
    assert geometry.orientation(scan) == "LPS" and geometry.orientation(mask) == "ARS"
    on_scan = geometry.resample_to(mask, scan, is_label=True)
    assert geometry.same_grid(on_scan, scan)
    assert np.array_equal(sitk.GetArrayFromImage(on_scan), sitk.GetArrayFromImage(scan))
    turned = geometry.turned_to(scan, "RAI")
    assert geometry.orientation(turned) == "RAI"
    back = geometry.turned_back(turned, scan)
    assert geometry.same_grid(back, scan) and np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(scan))
    for point in [(0, 0, 0), (7, 6, 5), (3, 2, 1)]:  # the same voxel value at the same place in the patient
        physical = scan.TransformIndexToPhysicalPoint(point)
        assert turned[turned.TransformPhysicalPointToIndex(physical)] == scan[point]
