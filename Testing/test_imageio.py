"""Input readers: every supported format keeps voxels and geometry; bad input gives InputError."""

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_image
from dicom_factory import write_ct_series, write_enhanced_ct, write_one_frame_rt_dose

from cardioquant import geometry
from cardioquant.errors import InputError
from cardioquant.imageio import find_dicom_series, fingerprint, read_image, read_mask


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha", ".nhdr"])
def test_image_formats_keep_voxels_and_geometry(tmp_path, suffix):
    array = np.random.default_rng(0).integers(-1000, 1500, size=(4, 5, 6)).astype(np.int16)
    image = oblique_image(array)
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = read_image(path)
    assert np.array_equal(loaded.array(np.int16), array)
    assert np.allclose(loaded.image.TransformIndexToPhysicalPoint((5, 4, 3)), image.TransformIndexToPhysicalPoint((5, 4, 3)),
                       atol=1e-4)


def test_dicom_series_keeps_hu_geometry_and_tags(tmp_path):
    volume = np.full((5, 8, 9), -1000.0)
    volume[2, 3, 4] = 400
    write_ct_series(tmp_path / "ct", volume, spacing=(0.5, 0.6, 3.0), origin=(-10, 20, 50), kvp=100)
    loaded = read_image(tmp_path / "ct")
    assert loaded.modality == "CT" and loaded.kvp == 100.0
    assert loaded.array()[2, 3, 4] == 400 and loaded.array()[0, 0, 0] == -1000
    assert np.allclose(loaded.image.GetSpacing(), (0.5, 0.6, 3.0))
    assert np.allclose(loaded.image.TransformIndexToPhysicalPoint((4, 3, 2)), (-10 + 4 * 0.5, 20 + 3 * 0.6, 56))
    assert len(loaded.source_files) == 5 and float(loaded.dicom["slice_increment"]) == pytest.approx(3.0)


def test_an_enhanced_multi_frame_series_reads_as_its_single_frame_files_do(tmp_path):
    """A whole series in one enhanced (multi-frame) file, as newer scanners and PACS exports store it: the same HU at
    the same places, its pixel spacing, slice thickness and kVp found in its functional groups (read from the top
    level only, an LGE stack would be taken for one of unknown pixel size, a CT for one of unknown kVp), and the
    listing counts its frames. It was refused as a 4D image."""
    volume = np.full((5, 8, 9), -1000.0)
    volume[2, 3, 4] = 400
    files = write_ct_series(tmp_path / "ct", volume, spacing=(0.5, 0.6, 3.0), origin=(-10, 20, 50), kvp=100)
    write_enhanced_ct(tmp_path / "enhanced", files)
    single, enhanced = read_image(tmp_path / "ct"), read_image(tmp_path / "enhanced")
    on_single = sitk.Resample(enhanced.image, single.image, sitk.Transform(), sitk.sitkNearestNeighbor, -2000)
    assert np.array_equal(sitk.GetArrayFromImage(on_single), single.array(np.int16))
    assert enhanced.modality == "CT" and enhanced.kvp == 100.0 and float(enhanced.dicom["slice_thickness"]) == 3.0
    assert enhanced.dicom["pixel_spacing"] == single.dicom["pixel_spacing"]
    assert float(enhanced.dicom["slice_increment"]) == pytest.approx(3.0)
    assert enhanced.multiframe and "multi-frame" in enhanced.not_one_series and fingerprint(enhanced)["multiframe"]
    assert "5 slices" in find_dicom_series(tmp_path / "enhanced")[0].line(1)


def test_a_multi_frame_object_with_several_images_per_position_is_refused(tmp_path):
    """Cine phases, inversion times, or magnitude and phase-sensitive images at the same positions are not one
    volume: one line says how many frames at how many positions and what to export."""
    files = write_ct_series(tmp_path / "ct", np.full((4, 8, 9), -1000.0), spacing=(0.5, 0.5, 3.0))
    write_enhanced_ct(tmp_path / "two", files, images_per_position=2)
    with pytest.raises(InputError, match="8 images at 4 slice positions: the object holds several images per"):
        read_image(tmp_path / "two")


def test_a_series_of_cardiac_phases_at_the_same_positions_is_refused_with_what_to_export(tmp_path):
    """A retrospectively gated cardiac CT exported as one series: the same 4 slice positions imaged in 3 phases.
    Not one volume (nor a series with uneven steps): the line says how many images at how many positions and to
    export one phase."""
    (tmp_path / "phases").mkdir()
    for phase in range(3):
        for path in write_ct_series(tmp_path / f"phase{phase}", np.full((4, 8, 9), -1000.0), series_uid="1.2.3.4"):
            path.rename(tmp_path / "phases" / f"phase{phase}_{path.name}")
    with pytest.raises(InputError, match="12 images at 4 slice positions: the series holds several images per "
                                         "position .* export one image per position"):
        read_image(tmp_path / "phases")


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nothing.nrrd")


def test_empty_folder_is_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty")


def test_a_folder_of_image_files_names_them_instead_of_asking_for_dicom(tmp_path):
    """A case folder of NIfTI files (as MyoPS ships its cases) given as the input: the message names the files to
    give, rather than only saying that no DICOM series was found."""
    case = tmp_path / "Case3001"
    case.mkdir()
    for name in ("Case3001_LGE.nii.gz", "Case3001_gd.nii.gz"):
        sitk.WriteImage(sitk.Image(4, 4, 2, sitk.sitkInt16), str(case / name))
    (case / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"holds 2 image files \(Case3001_LGE.nii.gz, Case3001_gd.nii.gz\): give one"):
        read_image(case)


def test_mixed_dicom_series_are_refused(tmp_path):
    write_ct_series(tmp_path / "mixed", np.zeros((3, 4, 4)), series_uid="1.2.3.1")
    for path in write_ct_series(tmp_path / "other", np.zeros((3, 4, 4)), series_uid="1.2.3.2", origin=(0, 0, 100)):
        path.rename(tmp_path / "mixed" / ("b" + path.name))
    with pytest.raises(InputError, match="2 DICOM series"):
        read_image(tmp_path / "mixed")


def test_a_study_with_a_localizer_and_a_dose_report_reads_its_one_volume_and_says_so(tmp_path):
    """A calcium-score study as a PACS exports it: the 5-slice scan, a one-image topogram and a one-image dose report
    (patient/study/series folders). The scan is the only volume: it is read, and the warning names it; two volumes
    still need --series."""
    study = tmp_path / "patient" / "study"
    write_ct_series(study / "scan", np.full((5, 6, 7), 40.0), series_uid="1.2.3.10")
    write_ct_series(study / "topogram", np.full((1, 9, 9), 0.0), series_uid="1.2.3.11", origin=(0, 0, 300))
    write_ct_series(study / "dose", np.full((1, 4, 4), 0.0), series_uid="1.2.3.12", origin=(0, 0, 500))
    loaded = read_image(tmp_path / "patient")
    assert loaded.image.GetSize() == (7, 6, 5) and loaded.dicom["series_instance_uid"] == "1.2.3.10"
    assert any("read series 2 (no description, 5 slices), the only volume" in w for w in loaded.warnings)  # dose, scan, topogram
    write_ct_series(study / "second", np.full((3, 6, 7), 40.0), series_uid="1.2.3.13", origin=(0, 0, 100))
    with pytest.raises(InputError, match="4 DICOM series"):
        read_image(tmp_path / "patient")


def test_uneven_slice_spacing_is_refused(tmp_path):
    write_ct_series(tmp_path / "gap", np.zeros((4, 4, 4)), z_positions=[0, 3, 6, 12])
    with pytest.raises(InputError, match="unevenly spaced"):
        read_image(tmp_path / "gap")


def _mr_series(folder, z_positions):
    volume = np.arange(1, len(z_positions) + 1)[:, None, None] * 100.0 + np.zeros((len(z_positions), 6, 5))
    write_ct_series(folder, volume, spacing=(1.4, 1.4, 8.0), kvp=None, modality="MR", rescale_intercept=0.0,
                    z_positions=z_positions)


def test_a_short_axis_stack_with_a_missing_slice_is_read_on_its_regular_grid_where_allowed(tmp_path):
    """A breath-hold skipped: slices at 0, 8, 16, 32 and 40 mm are read on an 8 mm grid of six slices, the one at
    24 mm left at the series' lowest value and named missing, with a warning; without the analysis allowing it
    (CT), the series is refused as before."""
    _mr_series(tmp_path / "gap", [0.0, 8.0, 16.0, 32.0, 40.0])
    loaded = read_image(tmp_path / "gap", allow_slice_gaps=True)
    assert loaded.image.GetSize() == (5, 6, 6) and loaded.image.GetSpacing()[2] == pytest.approx(8.0)
    assert np.array_equal(loaded.array()[:, 0, 0], [100, 200, 300, 100, 400, 500]) and loaded.missing_slices == [3]
    assert loaded.image.TransformIndexToPhysicalPoint((0, 0, 4))[2] == pytest.approx(32.0)
    assert "1 missing slice(s) left empty and not analysed" in loaded.warnings[0]
    with pytest.raises(InputError, match="unevenly spaced"):
        read_image(tmp_path / "gap")


def test_slices_shifted_by_breath_holds_are_placed_on_the_nearest_grid_position_or_refused(tmp_path):
    """Slices a little off an even step (up to a quarter of it) go to their nearest position on the grid that fits
    them best (least squares: 9.96 mm steps), the largest move said; a slice half a step off has no position and the series is refused."""
    _mr_series(tmp_path / "shifted", [0.0, 10.6, 19.6, 30.2])
    loaded = read_image(tmp_path / "shifted", allow_slice_gaps=True)
    assert loaded.image.GetSize()[2] == 4 and loaded.missing_slices == []
    assert loaded.image.GetSpacing()[2] == pytest.approx(9.96) and "each moved at most 0.5 mm" in loaded.warnings[0]
    _mr_series(tmp_path / "irregular", [0.0, 10.0, 15.0, 30.0])
    with pytest.raises(InputError, match="unevenly spaced"):
        read_image(tmp_path / "irregular", allow_slice_gaps=True)


def test_a_volume_stored_with_a_fourth_axis_of_one_time_point_is_read_as_that_volume(tmp_path):
    """NRRD keeps a fourth axis of size 1 (one time point, as some converters write a 3D scan); it is the volume, on
    its own grid. A fourth axis of several time points is still refused."""
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    stored = sitk.JoinSeries([sitk.GetImageFromArray(volume)])
    stored.SetSpacing((0.5, 0.6, 3.0, 1.0))
    stored.SetOrigin((10.0, -20.0, 30.0, 0.0))
    sitk.WriteImage(stored, str(tmp_path / "one_time_point.nrrd"))
    loaded = read_image(tmp_path / "one_time_point.nrrd")
    assert loaded.image.GetDimension() == 3 and np.array_equal(loaded.array(), volume)
    assert loaded.image.GetSpacing() == (0.5, 0.6, 3.0) and loaded.image.GetOrigin() == (10.0, -20.0, 30.0)
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(volume)] * 2), str(tmp_path / "two.nrrd"))
    with pytest.raises(InputError, match="4D images are not supported"):
        read_image(tmp_path / "two.nrrd")


def test_2d_image_is_refused_unless_allowed(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.int16)), str(tmp_path / "slice.nrrd"))
    with pytest.raises(InputError, match="2D image"):
        read_image(tmp_path / "slice.nrrd")
    assert read_image(tmp_path / "slice.nrrd", allow_2d=True).image.GetDimension() == 2


def test_a_png_slice_is_read_as_its_grey_levels_and_a_colour_picture_is_refused(tmp_path):
    """A slice exported as a picture (EMIDEC's LGE slices are PNGs), saved grey or as RGB with the grey in every
    channel, reads as the same 2D grey image; a picture in colour is refused (one channel needed)."""
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "grey.png"))
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([grey] * 3, -1), isVector=True), str(tmp_path / "rgb.png"))
    for name in ("grey.png", "rgb.png"):
        loaded = read_image(tmp_path / name, allow_2d=True)
        assert loaded.format == "png" and np.array_equal(sitk.GetArrayFromImage(loaded.image), grey)
    coloured = np.stack([grey, grey, 255 - grey], -1)
    sitk.WriteImage(sitk.GetImageFromArray(coloured, isVector=True), str(tmp_path / "colour.png"))
    with pytest.raises(InputError, match="3 components per voxel"):
        read_image(tmp_path / "colour.png", allow_2d=True)


def test_nan_voxels_are_refused(tmp_path):
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.nrrd"))
    with pytest.raises(InputError, match="1 voxels are NaN"):
        read_image(tmp_path / "nan.nrrd")


def test_not_an_image_is_input_error(tmp_path):
    (tmp_path / "notes.nrrd").write_text("not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "notes.nrrd")


def test_a_picture_of_another_kind_is_named_as_not_readable(tmp_path):
    """A JPEG (ITK reads it, CardioQuant does not) is neither a DICOM file nor an image file of a kind read here."""
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(tmp_path / "photo.jpg"))
    with pytest.raises(InputError, match="photo.jpg: neither a DICOM file nor an image file"):
        read_image(tmp_path / "photo.jpg", allow_2d=True)


def test_mask_on_other_grid_is_resampled_nearest(tmp_path):
    reference = sitk.Image(10, 10, 4, sitk.sitkInt16)
    reference.SetSpacing((1, 1, 2))
    mask = sitk.Image(20, 20, 8, sitk.sitkUInt8)
    mask.SetSpacing((0.5, 0.5, 1))
    mask.SetOrigin((-0.25, -0.25, -0.5))
    mask[4:8, 4:8, 0:4] = 3  # physical x,y in [1.75, 3.75], z in [-0.5, 3.5]
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
    on_reference = sitk.GetArrayFromImage(read_mask(tmp_path / "mask.nrrd", reference))
    assert set(np.unique(on_reference)) == {0, 3}
    assert on_reference[0:2, 2:4, 2:4].min() == 3 and on_reference[3].max() == 0


def test_a_dicom_seg_mask_lands_on_the_voxels_it_segments(tmp_path):
    """A mask stored as a DICOM SEG (as a PACS or TotalSegmentator's DICOM output keeps it) holds only the frames
    with a segment, each placed by its position: read through its positions, every voxel of each segment lands
    where it was drawn on the CT, its value the segment's number, its name the segment's label. ITK reads the
    same file as a plain stack of those frames, 1 mm apart from the first frame's position."""
    from dicom_factory import write_seg

    from cardioquant.imageio import read_labelled_mask

    files = write_ct_series(tmp_path / "ct", np.zeros((12, 24, 30), np.int16), spacing=(0.7, 0.8, 2.5),
                            origin=(-10.0, 20.0, 55.0))
    truth = np.zeros((12, 24, 30), np.uint8)
    truth[3:6, 4:10, 5:12] = 1
    truth[8:11, 12:20, 15:25] = 2
    seg = write_seg(tmp_path / "mask.dcm", files, truth, {1: "vertebrae_L2", 2: "vertebrae_L1"})
    ct = read_image(tmp_path / "ct").image
    mask, names = read_labelled_mask(seg, ct)
    assert np.array_equal(sitk.GetArrayFromImage(mask), truth)
    assert names == {1: "vertebrae_L2", 2: "vertebrae_L1"}
    assert np.array_equal(sitk.GetArrayFromImage(read_mask(seg, ct)) > 0, truth > 0)  # as --heart-mask reads it


def test_a_mask_of_one_structure_takes_a_seg_of_one_segment_and_refuses_a_seg_of_several(tmp_path):
    """--lumen-mask, --roi, --remote-mask and the calibration rod ask for one structure: a SEG of one segment gives
    its voxels; a SEG of several (TotalSegmentator's DICOM output holds every structure it found) is refused in one
    line naming them, where merged they would have been one "lumen"."""
    from dicom_factory import write_seg

    from cardioquant.imageio import read_one_structure

    files = write_ct_series(tmp_path / "ct", np.zeros((8, 20, 20), np.int16), spacing=(0.5, 0.5, 1.0))
    ct = read_image(tmp_path / "ct").image
    truth = np.zeros((8, 20, 20), np.uint8)
    truth[2:6, 5:9, 5:9] = 1
    one = write_seg(tmp_path / "lumen.dcm", files, truth, {1: "coronary lumen"})
    assert np.array_equal(read_one_structure(one, ct), truth > 0)
    truth[2:6, 12:16, 12:16] = 2
    several = write_seg(tmp_path / "total.dcm", files, truth, {1: "aorta", 2: "heart"})
    with pytest.raises(InputError, match=r"holds 2 segments \(aorta, heart\)"):
        read_one_structure(several, ct)
    # The one asked for by its label (CT-FFR's own SEG holds its coronary lumen and the aorta): that one alone.
    own = write_seg(tmp_path / "ffr.dcm", files, truth, {1: "Coronary lumen", 2: "aorta"})
    assert np.array_equal(read_one_structure(own, ct, called=("coronary lumen",)), truth == 1)


def test_a_mask_that_is_not_a_label_map_is_refused_in_one_line(tmp_path):
    """A colour (vector) image stopped the command with SimpleITK's cast error; a probability map became an empty
    mask (0.7 cast to 0) and the refusal spoke of an empty mask. A float label map of whole numbers is read."""
    reference = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    colour = sitk.Image(reference.GetSize(), sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(colour, str(tmp_path / "colour.nrrd"))
    with pytest.raises(InputError, match="3 values per voxel"):
        read_mask(tmp_path / "colour.nrrd", reference)
    probability = sitk.GetImageFromArray(np.full((3, 4, 5), 0.7, np.float32))
    sitk.WriteImage(probability, str(tmp_path / "probability.nrrd"))
    with pytest.raises(InputError, match="fractional values .*0.7.*probability map"):
        read_mask(tmp_path / "probability.nrrd", reference)
    labels = np.zeros((3, 4, 5), np.float32)
    labels[1, 1:3, 1:4] = 2.0
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "float_labels.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(read_mask(tmp_path / "float_labels.nii.gz", reference)), labels)


def test_fingerprint_has_no_patient_data(tmp_path):
    write_ct_series(tmp_path / "ct", np.zeros((3, 4, 4)))
    text = str(fingerprint(read_image(tmp_path / "ct")))
    assert "PHANTOM1" not in text and "Phantom" not in text


def _pacs_export(root, series):
    """patient/study/series folders as a PACS writes them: one (description, slices, thickness) per series."""
    import pydicom

    uids = []
    for number, (description, slices, thickness) in enumerate(series, start=1):
        folder = root / "PATIENT1" / "STUDY1" / f"SERIES{number}"
        volume = np.full((slices, 8, 8), -1000.0)
        volume[:, 4, 4] = 100.0 * number  # tells the series apart
        paths = write_ct_series(folder, volume, spacing=(0.5, 0.5, thickness))
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = description
            ds.save_as(path)
        uids.append(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    return uids


def test_dicom_series_in_subfolders_is_found(tmp_path):
    _pacs_export(tmp_path, [("Ca score 3.0", 4, 3.0)])
    loaded = read_image(tmp_path)  # two levels above the series folder
    assert loaded.array().shape == (4, 8, 8) and loaded.array()[0, 4, 4] == 100


def test_a_dicom_series_in_a_linked_folder_is_found_and_read_once(tmp_path):
    """A cohort or an exam assembled from links to where the scans are stored: the series behind a link to a folder
    is found (os.walk passes over such links: "no DICOM series found"), a second link to it and a link back up the
    tree are passed over, so the series is found once and the search ends."""
    write_ct_series(tmp_path / "store" / "series", np.full((3, 8, 8), 100.0))
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "patient1").symlink_to(tmp_path / "store")
    (tmp_path / "cohort" / "patient1_again").symlink_to(tmp_path / "store")
    (tmp_path / "store" / "up").symlink_to(tmp_path / "cohort")  # a loop
    found = find_dicom_series(tmp_path / "cohort")
    assert len(found) == 1 and len(found[0].files) == 3
    assert all("patient1/series" in path for path in found[0].files)
    assert read_image(tmp_path / "cohort").array().shape == (3, 8, 8)


def test_a_series_copied_twice_into_its_folder_is_read_once_and_said(tmp_path):
    """Each file of a series beside its copy ("slice0000 (1).dcm", as a second copy of an export leaves it) is the
    same image, by its SOP Instance UID, at the same place: read once, with a warning, where it was refused as
    several images per position (cardiac phases)."""
    import shutil

    volume = np.arange(4, dtype=float)[:, None, None] * 100.0 + np.zeros((4, 8, 8))
    for path in write_ct_series(tmp_path, volume):
        shutil.copy(path, path.with_name(f"{path.stem} (1).dcm"))
    loaded = read_image(tmp_path)
    assert loaded.array().shape == (4, 8, 8) and list(loaded.array()[:, 4, 4]) == [0.0, 100.0, 200.0, 300.0]
    assert any("4 DICOM files" in warning and "each image read once" in warning for warning in loaded.warnings)


def test_slices_an_anonymiser_gave_one_sop_instance_uid_are_not_copies(tmp_path):
    """Only the same UID at the same position is a copy: slices whose UIDs an anonymiser made alike stay slices."""
    import pydicom

    for path in write_ct_series(tmp_path, np.zeros((4, 8, 8))):
        dataset = pydicom.dcmread(path)
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
        dataset.save_as(path)
    loaded = read_image(tmp_path)
    assert loaded.array().shape == (4, 8, 8) and not any("read once" in warning for warning in loaded.warnings)


def _without_preamble(path):
    """A DICOM file rewritten without the part 10 preamble and "DICM" prefix, as some older systems export."""
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.preamble = None
    dataset.save_as(path, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"


def test_a_series_stored_without_the_dicom_preamble_is_read(tmp_path):
    """GDCM reads such files, but SimpleITK, choosing a reader by the file's first bytes, did not recognise them:
    the command stopped with an internal error."""
    volume = np.arange(3, dtype=float)[:, None, None] * 100.0 + np.zeros((3, 6, 7))
    for path in write_ct_series(tmp_path, volume):
        _without_preamble(path)
    loaded = read_image(tmp_path)
    assert loaded.array()[:, 0, 0].tolist() == [0, 100, 200] and loaded.image.GetSpacing()[2] == pytest.approx(3.0)


def _scan_with_an_rt_dose_beside_it(folder, z_positions):
    """A 5-slice scan whose voxels tell its slices apart (slice k reads 100 k HU), one slice stored without the DICOM
    file preamble (as some older systems export), and an RT Dose object of one frame in the same folder, on which
    GDCM's scan of the folder fails."""
    volume = np.arange(5, dtype=float)[:, None, None] * 100.0 + np.zeros((5, 6, 7))
    _without_preamble(write_ct_series(folder, volume, z_positions=z_positions)[2])
    write_one_frame_rt_dose(folder / "RD.dose.dcm")
    with pytest.raises(RuntimeError):  # what the reader must get past: GDCM refuses the whole folder
        sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))


def test_a_dicom_file_gdcm_cannot_parse_is_left_out_and_named_and_the_scan_beside_it_is_read(tmp_path):
    """A PACS or planning export holds RT Dose objects beside the scans; one that GDCM cannot parse made every
    series in its folder (and the whole search of a study tree) fail. The scan is read as it is without the object
    (the same voxels, in slice order, on the same grid) and the object is named in a warning."""
    _scan_with_an_rt_dose_beside_it(tmp_path / "study" / "series", z_positions=[12.0, 9.0, 6.0, 3.0, 0.0])
    loaded = read_image(tmp_path)
    (tmp_path / "study" / "series" / "RD.dose.dcm").unlink()
    alone = read_image(tmp_path)
    assert np.array_equal(loaded.array(), alone.array()) and loaded.image.GetOrigin() == alone.image.GetOrigin()
    assert loaded.image.GetDirection() == alone.image.GetDirection()
    assert sorted(np.unique(loaded.array())) == [0, 100, 200, 300, 400]
    assert any("1 DICOM image file" in w and "RD.dose.dcm" in w and "left out" in w for w in loaded.warnings)
    assert not any("RD.dose.dcm" in w for w in alone.warnings)


def test_a_series_split_over_folders_beside_a_file_gdcm_cannot_parse_is_read_in_slice_order(tmp_path):
    """A series spread over two folders (as media exports split them) with the unparsable object in one: the
    slices are put in order by their positions along the slice normal, as GDCM orders them."""
    series = tmp_path / "export"
    _scan_with_an_rt_dose_beside_it(series / "A", z_positions=[0.0, 3.0, 6.0, 9.0, 12.0])
    for name in ("slice0001.dcm", "slice0003.dcm"):
        (series / "B").mkdir(exist_ok=True)
        (series / "A" / name).rename(series / "B" / name)
    loaded = read_image(series)
    assert loaded.array()[:, 0, 0].tolist() == [0, 100, 200, 300, 400]  # z upwards, as each slice was written
    assert loaded.image.GetSpacing()[2] == pytest.approx(3.0)


def test_a_folder_holding_only_files_gdcm_cannot_parse_says_so(tmp_path):
    write_one_frame_rt_dose(tmp_path / "RD.dose.dcm")
    with pytest.raises(InputError, match=r"no DICOM series found .*1 DICOM image file .*RD\.dose\.dcm.* could not be read"):
        read_image(tmp_path)


def _cut_short(path):
    """A slice file cut short, as an interrupted transfer leaves it: its header whole, its pixels partly there."""
    path.write_bytes(path.read_bytes()[:-40])


def test_a_slice_cut_short_is_named_not_taken_for_uneven_slices_or_lost_unsaid(tmp_path):
    """GDCM passes over a slice file it cannot read. In the middle of a series the gap it leaves was refused as
    'unevenly spaced' with no word of the damaged file; at an end the scan was read one slice short, unsaid."""
    volume = np.arange(5, dtype=float)[:, None, None] * 100.0 + np.zeros((5, 6, 7))
    middle = write_ct_series(tmp_path / "middle", volume)[2]
    _cut_short(middle)
    with pytest.raises(InputError, match=r"unevenly spaced.*1 DICOM image file .*slice0002\.dcm.*leaves a gap"):
        read_image(tmp_path / "middle")
    end = write_ct_series(tmp_path / "end", volume)[4]
    _cut_short(end)
    loaded = read_image(tmp_path / "end")
    assert loaded.array().shape[0] == 4
    assert any("1 DICOM image file" in w and "slice0004.dcm" in w and "left out" in w for w in loaded.warnings)


def test_dicom_objects_without_an_image_beside_the_scan_are_passed_over_unsaid(tmp_path):
    """A structured report (the CT's radiation dose report) or a plan exported with the scan is not an image: GDCM
    passes over it, and so does the reader, without a warning."""
    import pydicom

    write_ct_series(tmp_path, np.zeros((3, 6, 7)))
    report = pydicom.dcmread(write_ct_series(tmp_path / "sr", np.zeros((1, 2, 2)))[0])
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "SamplesPerPixel", "PhotometricInterpretation", "RescaleIntercept", "RescaleSlope", "RescaleType"):
        delattr(report, keyword)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray dose SR
    report.Modality = "SR"
    report.save_as(tmp_path / "dose_report.dcm", enforce_file_format=True)
    for path in (tmp_path / "sr").iterdir():
        path.unlink()
    (tmp_path / "sr").rmdir()
    loaded = read_image(tmp_path)
    assert loaded.array().shape == (3, 6, 7) and not any("DICOM image file" in w for w in loaded.warnings)


def test_a_segmentation_exported_beside_the_scan_is_not_taken_for_a_second_scan(tmp_path):
    """A DICOM SEG (this project's --dicom-seg, or a segmentation a PACS exports with the study) is not a scan: the
    study folder is read as its one scan, where the SEG's frames made it a second 'volume' to choose; a folder
    holding only the SEG says it holds no scan."""
    from test_scene_geometry import TABLE

    from cardioquant.dicomseg import export_dicom_seg

    write_ct_series(tmp_path / "study" / "ct", np.full((6, 10, 12), -1000.0), spacing=(0.5, 0.5, 3.0))
    scan = read_image(tmp_path / "study")
    label = np.zeros((6, 10, 12), np.uint8)
    label[1:5, 2:5, 3:7] = 2
    (tmp_path / "study" / "seg").mkdir()
    export_dicom_seg(label, TABLE, scan.source_files, tmp_path / "study" / "seg" / "calcium_seg.dcm", "CalciumScoring")
    again = read_image(tmp_path / "study")
    assert again.source_files == scan.source_files
    assert any("1 DICOM series that is not a scan (SEG" in w for w in again.warnings)
    with pytest.raises(InputError, match="not a scan .*SEG.*give the scan's series"):
        read_image(tmp_path / "study" / "seg")


def test_several_series_are_listed_and_chosen_by_number_or_uid(tmp_path):
    uids = _pacs_export(tmp_path, [("Ca score 3.0", 4, 3.0), ("Lung 1.0", 6, 1.0)])
    with pytest.raises(InputError) as refused:
        read_image(tmp_path)
    message = str(refused.value)
    assert "2 DICOM series" in message and "--series" in message and "\n" not in message
    assert "Ca score 3.0, 4 slices, 3.0 mm" in message and "Lung 1.0, 6 slices, 1.0 mm" in message
    # The folder each lies in tells apart series that carry no description (an anonymised export's).
    assert "1: in PATIENT1/STUDY1/SERIES1, Ca score" in message and "2: in PATIENT1/STUDY1/SERIES2, Lung" in message
    assert read_image(tmp_path, series="2").array()[0, 4, 4] == 200
    assert read_image(tmp_path, series=uids[0]).array().shape == (4, 8, 8)
    with pytest.raises(InputError, match="--series 3 is not in"):
        read_image(tmp_path, series="3")


def _breath_hold_series(folder, volume, z_positions, frame_uid, study_uid):
    """One MR series per slice, as many scanners store a short-axis LGE stack (one breath-hold each), in folders
    whose order is not the slices'."""
    for k in np.random.default_rng(0).permutation(len(volume)):
        write_ct_series(folder / f"series{k}", volume[k:k + 1], spacing=(1.4, 1.4, 8.0), kvp=None, modality="MR",
                        rescale_intercept=0.0, z_positions=[z_positions[k]], frame_uid=frame_uid, study_uid=study_uid)


def test_single_slice_series_of_one_stack_are_read_as_that_stack(tmp_path):
    """Five single-slice series with one frame of reference, orientation and grid: the stack in slice order,
    10 mm apart, said in a warning; read one series with --series; without stacking they are listed."""
    from pydicom.uid import generate_uid

    volume = np.arange(5)[:, None, None] * 100.0 + np.zeros((5, 24, 20))
    _breath_hold_series(tmp_path, volume, [50.0, 60.0, 70.0, 80.0, 90.0], generate_uid(), generate_uid())
    loaded = read_image(tmp_path, allow_2d=True, stack_single_slices=True)
    assert loaded.image.GetSize() == (20, 24, 5) and loaded.image.GetSpacing()[2] == pytest.approx(10.0)
    assert np.array_equal(sitk.GetArrayFromImage(loaded.image)[:, 0, 0], [0, 100, 200, 300, 400])
    assert loaded.stacked_series == 5 and "5 single-slice series stacked" in loaded.warnings[0]
    assert read_image(tmp_path, allow_2d=True, series="2", stack_single_slices=True).image.GetSize()[2] == 1
    with pytest.raises(InputError, match="holds 5 DICOM series"):
        read_image(tmp_path, allow_2d=True)


def test_single_slice_series_that_are_not_one_stack_are_listed(tmp_path):
    """Two frames of reference, or two series at one position (magnitude and phase-sensitive images): not a stack."""
    from pydicom.uid import generate_uid

    study = generate_uid()
    _breath_hold_series(tmp_path / "a" / "first", np.zeros((2, 24, 20)), [50.0, 60.0], generate_uid(), study)
    _breath_hold_series(tmp_path / "a" / "second", np.zeros((1, 24, 20)), [70.0], generate_uid(), study)
    frame = generate_uid()
    _breath_hold_series(tmp_path / "b" / "magnitude", np.zeros((2, 24, 20)), [50.0, 60.0], frame, study)
    _breath_hold_series(tmp_path / "b" / "phase", np.zeros((2, 24, 20)), [50.0, 60.0], frame, study)
    for folder, count in (("a", 3), ("b", 4)):
        with pytest.raises(InputError, match=f"holds {count} DICOM series"):
            read_image(tmp_path / folder, allow_2d=True, stack_single_slices=True)


def test_a_list_of_series_is_read_as_their_stack_where_the_analysis_allows_it(tmp_path):
    """--series UID,UID,...: those single-slice series as one stack (the batch names stacks this way); refused for
    an analysis that reads one series, and for series that are not one stack."""
    from pydicom.uid import generate_uid

    from cardioquant.imageio import find_dicom_series

    frame, study, other = generate_uid(), generate_uid(), generate_uid()
    _breath_hold_series(tmp_path / "stack", np.arange(4)[:, None, None] + np.zeros((4, 24, 20)), [0.0, 8.0, 16.0, 24.0],
                        frame, study)
    write_ct_series(tmp_path / "other", np.zeros((1, 30, 20)), kvp=None, modality="MR", rescale_intercept=0.0,
                    frame_uid=frame, study_uid=study, series_uid=other)  # another pixel grid
    by_folder = {series.files[0].split("/")[-2]: series.uid for series in find_dicom_series(tmp_path / "stack")}
    chosen = ",".join(by_folder[f"series{k}"] for k in (3, 1, 2))
    loaded = read_image(tmp_path, allow_2d=True, series=chosen, stack_single_slices=True)
    assert np.array_equal(sitk.GetArrayFromImage(loaded.image)[:, 0, 0], [1, 2, 3]) and loaded.stacked_series == 3
    with pytest.raises(InputError, match="takes one series"):
        read_image(tmp_path, allow_2d=True, series=chosen)
    with pytest.raises(InputError, match=r"holds 5 DICOM series .*; series (\d, ){3}\d are the single slices of one "
                                         r"stack: --series (\d,){3}\d reads them as one") as listing:
        read_image(tmp_path, allow_2d=True, stack_single_slices=True)  # the stack beside another series: named
    numbers = str(listing.value).split("--series ")[-1].split()[0]
    assert read_image(tmp_path, allow_2d=True, series=numbers, stack_single_slices=True).image.GetSize()[2] == 4
    with pytest.raises(InputError, match="not single slices of one stack"):
        read_image(tmp_path, allow_2d=True, series=f"{by_folder['series0']},{other}", stack_single_slices=True)


def test_how_an_input_was_read_travels_with_a_background_runs_volume_and_nothing_else_is_taken_for_it(tmp_path):
    """A volume written for a background run carries how it was read (its warnings, the single-slice series stacked,
    the missing slices) and is read back with them; a key of that name that is not such a record is ignored."""
    from cardioquant.imageio import READING_KEY, LoadedImage
    from cardioquant.scene import write_run_input

    image = sitk.GetImageFromArray(np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5))
    stacked = LoadedImage(image=image, path="lge", format="dicom", warnings=["4 single-slice series stacked"],
                          stacked_series=3, missing_slices=[2])
    again = read_image(write_run_input(stacked, tmp_path / "run.nrrd"))
    assert (again.warnings, again.stacked_series, again.missing_slices) == (["4 single-slice series stacked"], 3, [2])
    assert read_image(write_run_input(LoadedImage(image=image, path="ct", format="nrrd"), tmp_path / "plain.nrrd")
                      ).warnings == []
    for other in ("written by another tool", '{"missing_slices": "two"}'):
        image.SetMetaData(READING_KEY, other)
        sitk.WriteImage(image, str(tmp_path / "other.nrrd"))
        assert read_image(tmp_path / "other.nrrd").missing_slices == []


def _scan_with_fill(fill, slices=5, air_hu=-1000.0, seed=3):
    """A noisy 64 x 64 CT (air around a 40 HU body) with `fill` (None: none) outside its inscribed circle, and
    that circle's outside."""
    rng = np.random.default_rng(seed)
    rows, columns = np.indices((64, 64))
    radius = np.hypot(rows - 31.5, columns - 31.5)
    hu = np.where(radius < 20, 40.0, air_hu) + rng.normal(0, 15, (slices, 64, 64))
    hu = np.maximum(hu, -1024.0)  # stored clipped at -1024, as converters store it
    outside = radius > 32
    if fill is not None:
        hu[:, outside] = fill
    return sitk.GetImageFromArray(hu.astype(np.float32)), outside


@pytest.mark.parametrize("fill", [-1024.0, -1000.0, 0.0])
def test_the_fill_outside_the_reconstruction_circle_is_found_whatever_value_it_is_stored_as(fill):
    image, outside = _scan_with_fill(fill)
    assert np.array_equal(geometry.outside_the_reconstruction(image), outside)


def test_air_clipped_at_minus_1024_is_not_taken_for_a_fill():
    """Air that reads about -1030 HU is clipped to -1024 on most pixels of a slice, but not on the same pixels of
    every slice; padding already below -1500 HU needs nothing; one or two slices cannot tell."""
    assert geometry.outside_the_reconstruction(_scan_with_fill(None, air_hu=-1030.0)[0]) is None
    assert geometry.outside_the_reconstruction(_scan_with_fill(-3024.0)[0]) is None
    assert geometry.outside_the_reconstruction(_scan_with_fill(-1024.0, slices=2)[0]) is None


def test_padding_at_the_int16_floor_is_not_taken_for_the_patients_intensities():
    """A CT whose corners outside the reconstruction circle hold -32768 (a vendor's padding at the int16 floor) is
    CT in Hounsfield units: the check reads what is in view. A CT shifted 3000 HU down is still refused."""
    from cardioquant.imageio import check_hounsfield

    image, outside = _scan_with_fill(-32768.0)
    check_hounsfield(image, "calcium scoring")
    shifted = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) - 3000.0)
    with pytest.raises(InputError, match="Hounsfield"):
        check_hounsfield(shifted, "calcium scoring")


def test_a_stray_voxel_below_minus_1500_is_no_padding():
    """Padding (a CT scanner's mark) excuses a round field of view with no air in it; a volume with no air and no
    padding is refused by the analyses that need air in view, and one voxel at -2000 is not padding."""
    from cardioquant.imageio import check_hounsfield

    values = np.random.default_rng(1).uniform(-100, 900, (6, 64, 64)).astype(np.float32)
    values[0, 0, 0] = -2000.0
    with pytest.raises(InputError, match="Hounsfield"):
        check_hounsfield(sitk.GetImageFromArray(values), "bone density")
    rows, columns = np.indices((64, 64))
    values[:, np.hypot(rows - 31.5, columns - 31.5) > 32] = -3024.0  # padded outside the circle: a CT's image
    check_hounsfield(sitk.GetImageFromArray(values), "bone density")


@pytest.mark.parametrize("enhanced", [False, True], ids=["single-frame files", "one enhanced file"])
def test_a_ct_acquired_with_the_gantry_tilted_is_read_unsheared_with_its_true_volume(tmp_path, enhanced):
    """A sphere of radius 10 mm (4189 mm3) scanned on slices tilted 20 degrees, stepping 1.5 mm along the table:
    read as stored, the stack is sheared (its centre mm away) and, as single-frame files, 1 / cos(20) = 6 % too
    large."""
    tilt, step, pixel, radius, centre = np.radians(20.0), 1.5, 0.5, 10.0, np.array([24.0, 20.0, 25.0])
    rows = np.arange(96) * pixel
    slices = []
    for k in range(30):  # each slice's pixels where they lie: position + column offset along (0, cos, sin)
        x, along = np.meshgrid(rows, rows)  # [j, i]
        points = np.stack([x, along * np.cos(tilt), k * step + along * np.sin(tilt)], axis=-1)
        slices.append(np.where(np.linalg.norm(points - centre, axis=-1) <= radius, 1000.0, -1000.0))
    files = write_ct_series(tmp_path / "tilted", np.array(slices), spacing=(pixel, pixel, step), gantry_tilt_deg=20.0)

    loaded = read_image(write_enhanced_ct(tmp_path / "enhanced", files) if enhanced else tmp_path / "tilted")

    image = loaded.image
    inside = np.argwhere(sitk.GetArrayFromImage(image) > 0)[:, ::-1]  # (i, j, k)
    assert len(inside) * np.prod(image.GetSpacing()) == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.02)
    found = np.mean([image.TransformContinuousIndexToPhysicalPoint(v.tolist()) for v in inside.astype(float)], axis=0)
    assert np.linalg.norm(found - centre) < 0.3
    assert image.GetSpacing()[2] == pytest.approx(step * np.cos(tilt))  # between the slices, along their normal
    assert loaded.gantry_tilt_deg == pytest.approx(20.0, abs=0.1)
    assert fingerprint(loaded)["gantry_tilt_deg"] == pytest.approx(20.0, abs=0.1)  # the JSON says how it was read
    assert any("gantry tilt 20.0 degrees" in w for w in loaded.warnings)
    assert "gantry tilt" in loaded.not_one_series  # a DICOM SEG cannot reference the files' grid


def test_an_untilted_series_is_read_on_its_own_grid_unwarned(tmp_path):
    write_ct_series(tmp_path / "s", np.zeros((4, 8, 8)), spacing=(0.5, 0.5, 1.5))
    loaded = read_image(tmp_path / "s")
    assert loaded.gantry_tilt_deg == 0.0 and not loaded.warnings and loaded.image.GetSize() == (8, 8, 4)


def test_an_input_without_an_image_volume_is_refused_where_a_scan_is_read():
    """A CT-FFR centerline file is read without an image; any analysis that reads the scan's voxels from it is told,
    in one line, to give the scan itself."""
    from cardioquant.imageio import LoadedImage

    with pytest.raises(InputError, match="centerlines.vtp holds no image volume"):
        _ = LoadedImage(image=None, path="centerlines.vtp", format="vtp").volume


def test_a_scan_given_where_a_mask_goes_is_refused(tmp_path):
    """A label map is 0 outside and whole numbers inside; a CT's air (-1000 HU) and fat are negative. The chest CT
    given as its own heart mask had been read as a heart filling the whole scan (every voxel not 0)."""
    ct = sitk.GetImageFromArray(np.full((6, 8, 8), -1000, np.int16))
    ct[2:6, 2:6, 2:4] = 40
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    with pytest.raises(InputError, match="the mask holds negative values \\(down to -1000\\): a scan, not a label map"):
        read_mask(tmp_path / "ct.nrrd", ct)
    labels = sitk.GetImageFromArray((sitk.GetArrayFromImage(ct) > 0).astype(np.uint8))
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    assert int(sitk.GetArrayFromImage(read_mask(tmp_path / "labels.nrrd", ct)).sum()) == 4 * 4 * 2


def test_a_slicer_segmentation_names_its_segments_and_one_of_overlapping_layers_is_refused(tmp_path):
    """A .seg.nrrd (Slicer's segmentation file) names each label value's segment in its header, as a DICOM SEG does:
    read as a mask, its values come with their names (and types). One whose segments overlap is stored in layers (a
    value per layer in each voxel): refused in one line saying so, where it was called a colour or vector image."""
    from cardioquant.imageio import read_labelled_image

    labels = np.zeros((4, 16, 16), np.uint8)
    labels[:, 2:8, 2:8], labels[:, 9:14, 9:14] = 3, 7
    image = sitk.GetImageFromArray(labels)
    for n, (value, name) in enumerate(((3, "heart"), (7, "aorta"))):
        image.SetMetaData(f"Segment{n}_Name", name)
        image.SetMetaData(f"Segment{n}_LabelValue", str(value))
        image.SetMetaData(f"Segment{n}_Tags", "TerminologyEntry:Segmentation category and type - 3D Slicer General "
                          "Anatomy list~SCT^123037004^Anatomical Structure~SCT^80891009^Heart~^^~x~^^~^^|")
    sitk.WriteImage(image, str(tmp_path / "two.seg.nrrd"))
    read, names = read_labelled_image(tmp_path / "two.seg.nrrd")
    assert names == {3: "heart", 7: "aorta"} and np.array_equal(sitk.GetArrayFromImage(read), labels)

    layered = sitk.Compose(sitk.GetImageFromArray((labels == 3).astype(np.uint8)),
                           sitk.GetImageFromArray((labels > 0).astype(np.uint8)))
    for n, name in enumerate(("heart", "region")):
        layered.SetMetaData(f"Segment{n}_Name", name)
        layered.SetMetaData(f"Segment{n}_LabelValue", "1")
        layered.SetMetaData(f"Segment{n}_Layer", str(n))
    sitk.WriteImage(layered, str(tmp_path / "layers.seg.nrrd"))
    with pytest.raises(InputError, match="a Slicer segmentation of 2 layers"):
        read_labelled_image(tmp_path / "layers.seg.nrrd")
