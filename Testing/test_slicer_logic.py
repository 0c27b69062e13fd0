"""The modules' logic on real MRML nodes (slicer-core), as the panels use it: one run path for Apply and
Logic.process, the run's own settings for re-scoring, Export of the reader's edits, the reader's nodes as inputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series

from cardioquant import scene
from cardioquant.calcium.phantom import block_phantom, write_block_phantom
from cardioquant.calcium.pipeline import LABEL_TABLE
from CardioQuantCoreLib import logic

pytestmark = pytest.mark.usefixtures("slicer_scene")  # every test puts its nodes in a fresh scene


def _mrml():
    import slicer

    return slicer.mrmlScene


def _background_run(module_key, loaded, settings, workdir):
    """What the panel's BackgroundRun starts (its Qt polling aside): the input written with its DICOM attributes,
    then the command line of logic.backgroundCommand."""
    input_path = scene.write_run_input(loaded, workdir / "input.nrrd")
    command = logic.backgroundCommand(module_key, input_path, workdir / "out", settings, python=sys.executable)
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads((workdir / "out" / f"{module_key}.json").read_text())


def test_apply_and_process_score_an_80_kvp_dicom_alike(tmp_path):
    """A DICOM series at 80 kVp loaded into the scene: the panel's background run and Logic.process use the 80 kVp
    threshold, 177 HU (Agatston's 130 HU scaled to 80 kVp), and give the same scores and settings."""
    from cardioquant.imageio import read_image

    image, labels = block_phantom()
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(image).astype(float), spacing=image.GetSpacing(), kvp=80)
    volume = logic.volumeNodeFromLoaded(read_image(tmp_path / "dicom"), "cac 80 kV")
    label_image = sitk.GetImageFromArray(sitk.GetArrayFromImage(labels))
    label_image.CopyInformation(scene.image_from_volume_node(volume))
    sitk.WriteImage(label_image, str(tmp_path / "labels.nrrd"))
    calcium = logic.CalciumLogic()
    settings = calcium.settings(labels=str(tmp_path / "labels.nrrd"), mode="noncontrast")

    _, _, scripted = calcium.process(volume, settings)
    (tmp_path / "run").mkdir()
    loaded, prepared = calcium.prepareRun(volume, settings, {}, tmp_path / "run")
    background = _background_run("calcium", loaded, prepared, tmp_path / "run")

    assert scripted.settings["boundaries_hu"][0] == background["settings"]["boundaries_hu"][0] == 177
    assert background["total"]["agatston"] == pytest.approx(scripted.summary["total"]["agatston"])
    assert background["total"]["agatston"] > 0
    assert background["options"] == scripted.options
    assert not any("KVP" in warning for warning in background["warnings"])


def test_rescore_right_after_a_cta_run_equals_the_run():
    """The panel re-scores the segmentation node with the run's own settings: right after a CTA run (adaptive
    threshold, Agatston-equivalent scale) the unedited node gives the run's figures, per artery and risk."""
    from cardioquant.calcium import evaluation, phantom

    case = phantom.make_cardiac_phantom(30510, spacing=(0.8, 0.8, 3.0), contrast=True, n_calcifications=8)
    volume = scene.volume_node_from_image(_mrml(), evaluation.phantom_loaded(case).image, "cta phantom")
    calcium = logic.CalciumLogic()
    segmentation, _, result = calcium.process(volume, calcium.settings(device="cpu"))
    assert result.summary["mode"] == "cta" and result.summary["total"]["agatston"] > 0
    again = calcium.rescore(volume, segmentation, calcium.resultDocument(result, volume)["settings"])
    assert again["total"]["agatston"] == pytest.approx(result.summary["total"]["agatston"])
    for artery, figures in result.summary["arteries"].items():
        assert again["arteries"][artery]["agatston"] == pytest.approx(figures["agatston"])
    assert again["risk"] == result.summary["risk"]


def test_export_after_an_edit_writes_the_edited_voxels_and_recomputed_scores(tmp_path):
    """Logic.exportCurrent, as the panel's Export calls it: the reader erased the RCA lesion of the hand-worked
    block phantom (LAD 16 + RCA 6, a DICOM series); the exported label map and DICOM SEG have no RCA, the JSON and
    CSV say 16 with the run's options, and the files of an earlier export are kept in previous/."""
    import csv

    import highdicom as hd

    from cardioquant import cli
    from cardioquant.imageio import read_image

    image, labels = block_phantom()
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(image), spacing=(0.5, 0.5, 3.0), kvp=120)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    assert cli.main(["calcium", str(tmp_path / "dicom"), "--labels", str(tmp_path / "labels.nrrd"), "--mode",
                     "noncontrast", "-o", str(tmp_path / "run"), "--quiet"]) == 0
    volume = logic.volumeNodeFromLoaded(read_image(tmp_path / "dicom"), "cac")
    segmentation = scene.load_segmentation(_mrml(), tmp_path / "run" / "calcium.seg.nrrd")
    calcium = logic.CalciumLogic()
    edited = calcium.labelArray(volume, segmentation)
    edited[edited == 4] = 0  # the reader erases the RCA lesion in Segment Editor
    scene.update_segments_from_labelmap(segmentation, edited, volume, LABEL_TABLE)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "calcium.json").write_text("{}")  # an earlier export in the folder

    calcium.exportCurrent(volume, segmentation, str(tmp_path / "run"), str(tmp_path / "export"))

    run = json.loads((tmp_path / "run" / "calcium.json").read_text())
    exported = json.loads((tmp_path / "export" / "calcium.json").read_text())
    assert run["total"]["agatston"] == pytest.approx(22.0)
    assert exported["total"]["agatston"] == pytest.approx(16.0) and exported["arteries"]["RCA"]["agatston"] == 0
    assert exported["options"] == run["options"]
    assert any("edited by the reader" in w for w in exported["warnings"])
    assert not (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "export" / "calcium_labels.nrrd"))) == 4).any()
    with open(tmp_path / "export" / "calcium.csv", newline="") as handle:
        total = next(row for row in csv.DictReader(handle) if row["artery"] == "total")
    assert float(total["agatston"]) == pytest.approx(16.0)
    seg = hd.seg.segread(tmp_path / "export" / "calcium_seg.dcm")
    assert {seg.get_segment_description(n).segment_label for n in seg.segment_numbers} == {"LAD", "not coronary"}
    assert list((tmp_path / "export" / "previous").glob("calcium-*/calcium.json"))


def test_the_readers_nodes_become_files_in_the_runs_folder_only(tmp_path):
    """A heart segmentation and a point list picked in the panel: written into the run's folder (removed with the
    run) as the options the command line reads, the heart voxel for voxel; the reader's nodes are left as they
    were; Logic.process leaves no file behind."""
    from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

    ct_path, label_path = write_block_phantom(tmp_path)
    volume = scene.load_volume(_mrml(), ct_path, "ct")
    image = scene.image_from_volume_node(volume)
    heart = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    heart[:, 4:12, 3:15] = 1
    heart_table = LabelTable([SegmentSpec(1, "heart", (1, 0, 0), TISSUE, TISSUE)])
    heart_node = scene.segmentation_node_from_labelmap(_mrml(), scene.geometry.image_from_array(heart, image), volume,
                                                       heart_table, "TotalSegmentator heart")
    calcium = logic.CalciumLogic()
    (tmp_path / "run").mkdir()
    _, prepared = calcium.prepareRun(volume, calcium.settings(), {"heart_mask": heart_node}, tmp_path / "run")
    assert prepared.heart_mask.startswith(str(tmp_path / "run"))
    written = sorted(p.name for p in Path(prepared.heart_mask).iterdir())
    assert written == ["heart.nii.gz"]  # the segmentation has no aorta segment
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(f"{prepared.heart_mask}/heart.nii.gz")), heart)
    assert scene.segment_names(heart_node) == ["heart"]
    # SlicerTotalSegmentator's segmentation holds the aorta too: written beside the heart, its calcium kept apart.
    aorta = np.zeros_like(heart)
    aorta[:, 12:15, 3:6] = 1
    both = scene.segmentation_node_from_labelmap(
        _mrml(), scene.geometry.image_from_array(heart + 2 * aorta, image), volume,
        LabelTable([SegmentSpec(1, "heart", (1, 0, 0), TISSUE, TISSUE), SegmentSpec(2, "aorta", (1, 0, 0), TISSUE, TISSUE)]),
        "TotalSegmentator heart and aorta")
    (tmp_path / "run2").mkdir()
    _, prepared = calcium.prepareRun(volume, calcium.settings(), {"heart_mask": both}, tmp_path / "run2")
    assert sorted(p.name for p in Path(prepared.heart_mask).iterdir()) == ["aorta.nii.gz", "heart.nii.gz"]
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(f"{prepared.heart_mask}/aorta.nii.gz")), aorta)

    points = _mrml().AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    points.AddControlPoint(-12.5, 30.25, 101.0)
    points.AddControlPoint(1.0, 2.0, 3.0)
    _, prepared = logic.ScarLogic().prepareRun(volume, logic.ScarLogic().settings(), {"rv_insertion_point": points})
    assert prepared.rv_insertion_point == "-12.500,30.250,101.000"  # the first point, RAS mm

    with pytest.raises(KeyError, match="takes no node for labels"):
        calcium.prepareRun(volume, calcium.settings(), {"labels": heart_node})

    _, _, result = calcium.process(volume, calcium.settings(labels=label_path, mode="noncontrast"),
                                   {"heart_mask": heart_node})
    assert result.options["heart_mask"].endswith("heart_mask") and not Path(result.options["heart_mask"]).exists()


def _aligned(volume, degrees=30.0, shift_ras=(40.0, -25.0, 12.0)):
    """The volume put under a linear transform, as a reader aligns a scan with another (a rotation about the
    patient's long axis and a shift); returns the transform's local-to-world 4 x 4 matrix (RAS)."""
    import vtk

    angle = np.radians(degrees)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = shift_ras
    transform = _mrml().AddNewNodeByClass("vtkMRMLLinearTransformNode", "alignment")
    vtk_matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            vtk_matrix.SetElement(row, column, matrix[row, column])
    transform.SetMatrixTransformToParent(vtk_matrix)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    return matrix


def test_a_volume_under_a_transform_is_read_as_acquired_and_its_results_are_shown_where_it_is(tmp_path):
    """A scan the reader has aligned with a transform: the analysis reads its voxels as acquired (the same scores
    as without the transform), the results sit under the same transform (shown over the volume), and what the
    reader places on the volume as shown (a heart segmentation drawn in world space, a point) is read at the
    voxels it was placed on."""
    from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

    ct_path, label_path = write_block_phantom(tmp_path)
    plain = scene.load_volume(_mrml(), ct_path, "ct as acquired")
    volume = scene.load_volume(_mrml(), ct_path, "ct aligned")
    to_world = _aligned(volume)
    calcium = logic.CalciumLogic()
    settings = calcium.settings(labels=label_path, mode="noncontrast")
    segmentation, _, aligned_result = calcium.process(volume, settings)
    _, _, plain_result = calcium.process(plain, settings)
    assert aligned_result.summary["total"]["agatston"] == pytest.approx(plain_result.summary["total"]["agatston"])
    assert aligned_result.summary["total"]["agatston"] > 0
    assert segmentation.GetTransformNodeID() == volume.GetTransformNodeID() is not None

    # The heart drawn where the volume is shown: its geometry is the volume's, moved by the transform.
    image = scene.image_from_volume_node(volume)
    heart = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    heart[:, 4:12, 3:15] = 1
    shown = scene.geometry.image_from_array(heart, image)
    lps = np.diag([-1.0, -1.0, 1.0])  # the transform is in RAS; SimpleITK's geometry in LPS
    rotation, shift = lps @ to_world[:3, :3] @ lps, lps @ to_world[:3, 3]
    shown.SetDirection((rotation @ np.reshape(image.GetDirection(), (3, 3))).ravel().tolist())
    shown.SetOrigin((rotation @ np.array(image.GetOrigin()) + shift).tolist())
    heart_node = scene.segmentation_node_from_labelmap(
        _mrml(), shown, None, LabelTable([SegmentSpec(1, "heart", (1, 0, 0), TISSUE, TISSUE)]), "drawn heart")
    (tmp_path / "run").mkdir()
    _, prepared = calcium.prepareRun(volume, calcium.settings(), {"heart_mask": heart_node}, tmp_path / "run")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(f"{prepared.heart_mask}/heart.nii.gz")), heart)

    # A point placed on voxel (i, j, k) as shown is read as that voxel's own RAS position.
    voxel = (5, 7, 2)
    own_ras = lps @ np.array(image.TransformIndexToPhysicalPoint(voxel))
    placed = to_world[:3, :3] @ own_ras + to_world[:3, 3]
    points = _mrml().AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    points.AddControlPoint(*placed)
    _, prepared = logic.ScarLogic().prepareRun(volume, logic.ScarLogic().settings(), {"rv_insertion_point": points})
    assert [float(v) for v in prepared.rv_insertion_point.split(",")] == pytest.approx(own_ras, abs=1e-3)
    assert scene.point_in_world(volume, own_ras) == pytest.approx(placed)


def test_a_volume_under_a_non_linear_transform_is_analysed_with_a_warning_to_harden_it(tmp_path):
    """Slicer's DICOM reader leaves a gantry-tilted series under a grid transform (its acquisition transform): the
    voxels as stored are sheared, and the run says so and what to do; a linear transform (an alignment) does not."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    ct_path, label_path = write_block_phantom(tmp_path)
    aligned = scene.load_volume(_mrml(), ct_path, "ct aligned")
    _aligned(aligned)
    tilted = scene.load_volume(_mrml(), ct_path, "ct tilted")
    grid = vtk.vtkImageData()
    grid.SetDimensions(4, 4, 4)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    shear = numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())
    shear[:] = 0.0
    shear[:, 1] = np.repeat(np.arange(4.0), 16)  # each slab moved further along y: a shear
    displacement = slicer.vtkOrientedGridTransform()
    displacement.SetDisplacementGridData(grid)
    acquisition = _mrml().AddNewNodeByClass("vtkMRMLGridTransformNode", "ct tilted acquisition transform")
    acquisition.SetAndObserveTransformFromParent(displacement)
    tilted.SetAndObserveTransformNodeID(acquisition.GetID())
    calcium = logic.CalciumLogic()
    settings = calcium.settings(labels=label_path, mode="noncontrast")

    _, _, tilted_result = calcium.process(tilted, settings)
    _, _, aligned_result = calcium.process(aligned, settings)

    assert any("non-linear transform (ct tilted acquisition transform)" in w and "harden" in w
               for w in tilted_result.warnings)
    assert not any("non-linear" in w for w in aligned_result.warnings)


def test_slicer_totalsegmentator_segments_are_found_by_their_ids_under_standard_names(tmp_path):
    """Slicer's TotalSegmentator extension keeps TotalSegmentator's class names as segment IDs ("heart", "aorta",
    "vertebrae_L1") and by default shows standard names ("Heart", "Aorta", "L1 vertebra"): the panels still find
    the heart, the aorta and the vertebrae, voxel for voxel."""
    from cardioquant.bmd.levels import TOTALSEGMENTATOR_VALUES
    from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

    ct_path, _ = write_block_phantom(tmp_path)
    volume = scene.load_volume(_mrml(), ct_path, "ct")
    image = scene.image_from_volume_node(volume)
    masks = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    masks[:, 4:12, 3:15], masks[:, 12:15, 3:6], masks[:, 1:3, 1:3] = 1, 2, 3
    classes = ("heart", "aorta", "vertebrae_L1")
    node = scene.segmentation_node_from_labelmap(
        _mrml(), scene.geometry.image_from_array(masks, image), volume,
        LabelTable([SegmentSpec(n + 1, name, (1, 0, 0), TISSUE, TISSUE) for n, name in enumerate(classes)]),
        "TotalSegmentator")
    segmentation = node.GetSegmentation()
    for segment_id, shown in zip(classes, ("Heart", "Aorta", "L1 vertebra"), strict=True):
        segmentation.GetSegment(segment_id).SetName(shown)

    calcium = logic.CalciumLogic()
    (tmp_path / "calcium").mkdir()
    _, prepared = calcium.prepareRun(volume, calcium.settings(), {"heart_mask": node}, tmp_path / "calcium")
    for name, value in (("heart", 1), ("aorta", 2)):
        written = sitk.GetArrayFromImage(sitk.ReadImage(f"{prepared.heart_mask}/{name}.nii.gz"))
        assert np.array_equal(written > 0, masks == value)
    bmd = logic.BMDLogic()
    (tmp_path / "bmd").mkdir()
    _, prepared = bmd.prepareRun(volume, bmd.settings(), {"vertebra_mask": node}, tmp_path / "bmd")
    written = sitk.GetArrayFromImage(sitk.ReadImage(prepared.vertebra_mask))
    assert np.array_equal(written == TOTALSEGMENTATOR_VALUES["L1"], masks == 3)


def test_the_lumen_is_never_taken_from_the_first_of_many_segments(tmp_path):
    """CT-FFR's lumen segmentation: the segment called "coronary lumen", else TotalSegmentator's coronary_arteries,
    else a segmentation's only segment; a segmentation of many structures is refused with what to do, rather than
    its first segment (a whole-body TotalSegmentator result starts with the spleen) read as the lumen. A heart or
    vertebra segmentation without the segments the analysis reads is refused the same way, before the run."""
    from cardioquant.errors import InputError
    from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

    ct_path, _ = write_block_phantom(tmp_path)
    volume = scene.load_volume(_mrml(), ct_path, "cta")
    image = scene.image_from_volume_node(volume)
    masks = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    masks[:, 4:8, 3:9], masks[:, 9:12, 3:9] = 1, 2

    def segmentation(*names):
        table = LabelTable([SegmentSpec(n + 1, name, (1, 0, 0), TISSUE, TISSUE) for n, name in enumerate(names)])
        labels = np.where(masks <= len(names), masks, 0)
        return scene.segmentation_node_from_labelmap(_mrml(), scene.geometry.image_from_array(labels, image), volume,
                                                     table, "+".join(names))

    ffr = logic.FFRLogic()
    for names, lumen_value in ((("spleen", "coronary_arteries"), 2), (("my lumen",), 1)):
        folder = tmp_path / names[0]
        folder.mkdir()
        _, prepared = ffr.prepareRun(volume, ffr.settings(), {"lumen_mask": segmentation(*names)}, folder)
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(prepared.lumen_mask)) > 0, masks == lumen_value)
    with pytest.raises(InputError, match="has 2 segments and none is called 'coronary lumen'"):
        ffr.prepareRun(volume, ffr.settings(), {"lumen_mask": segmentation("spleen", "kidney_right")}, tmp_path)
    # The same for a heart or vertebra segmentation without the segment the analysis reads: said before the run.
    with pytest.raises(InputError, match="has no segment called 'heart'"):
        logic.CalciumLogic().prepareRun(volume, logic.CalciumLogic().settings(),
                                        {"heart_mask": segmentation("spleen", "kidney_right")}, tmp_path)
    with pytest.raises(InputError, match="no segment named as TotalSegmentator names vertebrae"):
        logic.BMDLogic().prepareRun(volume, logic.BMDLogic().settings(),
                                    {"vertebra_mask": segmentation("spleen", "kidney_right")}, tmp_path)
    # A myocardium drawn in another tool, its one segment named otherwise, is the myocardium (value 2).
    scar = logic.ScarLogic()
    (tmp_path / "scar").mkdir()
    _, prepared = scar.prepareRun(volume, scar.settings(), {"myocardium_mask": segmentation("Segment_1")},
                                  tmp_path / "scar")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(prepared.myocardium_mask)), np.where(masks == 1, 2, 0))
    with pytest.raises(InputError, match="has 2 segments and none is called 'myocardium'"):
        scar.prepareRun(volume, scar.settings(), {"myocardium_mask": segmentation("spleen", "kidney_right")}, tmp_path)


def test_export_of_a_module_that_does_not_rescore_copies_the_run_and_adds_the_dicom_seg(tmp_path):
    """BoneDensity does not re-score edits. Unedited, Export copies the run's files and, for a DICOM input, adds a
    DICOM SEG of the segmentation (its vertebral bodies and ROIs) referencing the series. After the reader erases
    L1's ROI, Export writes the segmentation and label map as they are now, without that ROI, keeps the run's
    figures and says in the JSON that they were not recomputed."""
    import highdicom as hd

    from cardioquant import cli
    from cardioquant.bmd.phantom import write_spine_phantom
    from cardioquant.bmd.pipeline import LABEL_TABLE as BMD_LABELS
    from cardioquant.imageio import read_image, slicer_segments

    scan_path, labels_path, _ = write_spine_phantom(tmp_path)
    scan = sitk.ReadImage(scan_path)
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(scan).astype(float), spacing=scan.GetSpacing(),
                    origin=scan.GetOrigin(), kvp=120)
    assert cli.main(["bmd", str(tmp_path / "dicom"), "--vertebra-mask", labels_path, "-o", str(tmp_path / "run"),
                     "--quiet"]) == 0
    volume = logic.volumeNodeFromLoaded(read_image(tmp_path / "dicom"), "spine")
    segmentation = scene.load_segmentation(_mrml(), tmp_path / "run" / "bmd.seg.nrrd")
    bmd = logic.BMDLogic()

    written = bmd.exportCurrent(volume, segmentation, str(tmp_path / "run"), str(tmp_path / "export"))

    assert (tmp_path / "export" / "bmd.json").read_text() == (tmp_path / "run" / "bmd.json").read_text()
    seg = hd.seg.segread(tmp_path / "export" / "bmd_seg.dcm")
    labels = {seg.get_segment_description(n).segment_label for n in seg.segment_numbers}
    assert {"vertebrae_L1", "vertebrae_L2", "L1 trabecular ROI", "L2 trabecular ROI"} <= labels
    assert str(tmp_path / "export" / "bmd_seg.dcm") in map(str, written)

    roi = next(spec.value for spec in BMD_LABELS.segments if spec.name == "L1 trabecular ROI")
    edited = bmd.labelArray(volume, segmentation)
    assert (edited == roi).any()
    edited[edited == roi] = 0  # the reader erases L1's ROI
    scene.update_segments_from_labelmap(segmentation, edited, volume, BMD_LABELS)
    bmd.exportCurrent(volume, segmentation, str(tmp_path / "run"), str(tmp_path / "edited"))

    exported_file = sitk.ReadImage(str(tmp_path / "edited" / "bmd_labels.nrrd"))
    exported = sitk.GetArrayFromImage(exported_file)
    # its values named as the run's label map names them: read back as a mask, L1 is L1, not TotalSegmentator's 1
    body = next(spec.value for spec in BMD_LABELS.segments if spec.name == "vertebrae_L1")
    assert slicer_segments(exported_file)[body] == ("vertebrae_L1", "51282000")
    run_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "run" / "bmd_labels.nrrd")))
    assert not (exported == roi).any() and np.array_equal(exported[run_labels != roi], run_labels[run_labels != roi])
    reread = scene.load_segmentation(_mrml(), tmp_path / "edited" / "bmd.seg.nrrd")
    assert not (bmd.labelArray(volume, reread) == roi).any()
    document = json.loads((tmp_path / "edited" / "bmd.json").read_text())
    run_document = json.loads((tmp_path / "run" / "bmd.json").read_text())
    assert document["patient"] == run_document["patient"]
    assert any("edited after the run" in warning for warning in document["warnings"])


def test_the_scar_panel_loads_a_stack_with_a_missing_slice_as_the_command_line_reads_it(tmp_path):
    """A short-axis stack stored one series per breath-hold, one breath-hold skipped: Logic.loadInput reads the folder
    as the scar command does (one stack on its 8 mm grid, the missing slice empty), keeps no file list for a SEG
    (the grid has a slice no file holds), and both run paths repeat how it was read in their warnings."""
    from pydicom.uid import generate_uid

    from cardioquant.scar.phantom import make_lge_phantom

    case = make_lge_phantom(noise=3.0, spacing=(1.5, 1.5, 8.0))
    frame, study = generate_uid(), generate_uid()
    for k in range(len(case.signal)):
        write_ct_series(tmp_path / "lge" / f"breath_hold_{k}", case.signal[k:k + 1], spacing=(1.5, 1.5, 8.0), kvp=None,
                        modality="MR", rescale_intercept=0.0, z_positions=[8.0 * k + (8.0 if k >= 3 else 0.0)],
                        frame_uid=frame, study_uid=study)
    scar = logic.ScarLogic()
    volume = scar.loadInput(tmp_path / "lge")
    assert volume.GetImageData().GetDimensions()[2] == len(case.signal) + 1 and volume.GetSpacing()[2] == pytest.approx(8.0)
    assert logic.dicomSourceFiles(volume) == []
    mask = sitk.GetImageFromArray(np.insert(case.labels, 3, 0, axis=0))
    mask.CopyInformation(scene.image_from_volume_node(volume))
    sitk.WriteImage(mask, str(tmp_path / "lv.nrrd"))
    settings = scar.settings(myocardium_mask=str(tmp_path / "lv.nrrd"))

    _, _, scripted = scar.process(volume, settings)
    (tmp_path / "run").mkdir()
    loaded, prepared = scar.prepareRun(volume, settings, {}, tmp_path / "run")
    background = _background_run("scar", loaded, prepared, tmp_path / "run")
    assert any("1 missing slice(s)" in w for w in logic.readingWarnings(volume))  # what the panel shows at loading
    for document in (scar.resultDocument(scripted, volume), background):
        assert any("single-slice series stacked" in w for w in document["warnings"])
        assert any("1 missing slice(s)" in w for w in document["warnings"])
        assert document["input"]["stacked_series"] == len(case.signal) and document["input"]["missing_slices"] == [3]
    assert background["myocardium_ml"] == pytest.approx((case.labels >= 2).sum() * 1.5 * 1.5 * 8.0 / 1000)


def test_bodies_from_a_bmd_result_read_back_as_vertebrae_measure_as_they_did(tmp_path):
    """The reader corrects BoneDensity's bodies and applies again with them as the vertebrae (the panel), or scores
    its DICOM SEG again (the command line). They are bodies, typed so, and each holds its ROI as another segment:
    read as whole vertebrae they had no canal to be cut at and their front 45 % was measured. Read back unedited,
    every vertebra's ROI and trabecular HU are the run's."""
    from cardioquant import cli, pipelines
    from cardioquant.bmd.phantom import write_spine_phantom
    from cardioquant.imageio import read_image
    from cardioquant.progress import Progress

    scan_path, labels_path, _ = write_spine_phantom(tmp_path)
    scan = sitk.ReadImage(scan_path)
    write_ct_series(tmp_path / "dicom", sitk.GetArrayFromImage(scan).astype(float), spacing=scan.GetSpacing(),
                    origin=scan.GetOrigin(), kvp=120)
    assert cli.main(["bmd", str(tmp_path / "dicom"), "--vertebra-mask", labels_path, "-o", str(tmp_path / "run"),
                     "--dicom-seg", "--quiet"]) == 0
    first = json.loads((tmp_path / "run" / "bmd.json").read_text())["vertebrae"]
    volume = logic.volumeNodeFromLoaded(read_image(tmp_path / "dicom"), "spine")
    segmentation = scene.load_segmentation(_mrml(), tmp_path / "run" / "bmd.seg.nrrd")
    bmd = logic.BMDLogic()
    (tmp_path / "panel").mkdir()
    loaded, settings = bmd.prepareRun(volume, bmd.settings(), {"vertebra_mask": segmentation}, str(tmp_path / "panel"))
    panel = pipelines.run_analysis("bmd", loaded, settings, Progress()).summary["vertebrae"]
    assert cli.main(["bmd", str(tmp_path / "dicom"), "--vertebra-mask", str(tmp_path / "run" / "bmd_seg.dcm"), "-o",
                     str(tmp_path / "seg"), "--quiet"]) == 0
    seg = json.loads((tmp_path / "seg" / "bmd.json").read_text())["vertebrae"]
    for again in (panel, seg):
        assert list(again) == list(first)
        for level, vertebra in first.items():
            assert again[level]["roi_volume_ml"] == pytest.approx(vertebra["roi_volume_ml"])
            assert again[level]["trabecular_hu"] == pytest.approx(vertebra["trabecular_hu"], abs=0.01)
