"""DICOM SEG export: a reader (highdicom) gets back the same voxels, names and codes."""

import highdicom as hd
import numpy as np
import pytest
from dicom_factory import write_ct_series
from test_scene_geometry import TABLE

from cardioquant.dicomseg import export_dicom_seg
from cardioquant.errors import InputError
from cardioquant.imageio import read_image


def test_dicom_seg_round_trip(tmp_path):
    write_ct_series(tmp_path / "ct", np.full((4, 10, 12), -1000.0), spacing=(0.5, 0.5, 3.0))
    loaded = read_image(tmp_path / "ct")
    label = np.zeros((4, 10, 12), np.uint16)  # as the panel exports a reader's segmentation
    label[1, 2:5, 3:7] = 2   # LAD, 12 voxels
    label[3, 8, 10] = 4      # RCA, 1 voxel
    label[0, 0, 0] = 9       # a value outside the table: no segment of its own, in none of the others
    path = export_dicom_seg(label, TABLE, loaded.source_files, tmp_path / "seg.dcm", "CalciumScoring")
    seg = hd.seg.segread(path)
    names = {seg.get_segment_description(n).segment_label: n for n in seg.segment_numbers}
    assert set(names) == {"LAD", "RCA"}
    lad = seg.get_segment_description(names["LAD"])
    assert lad.segmented_property_type.value == "75753009"
    assert lad.anatomic_regions[0].value == "59438005"
    source_uids = [(loaded_ds.StudyInstanceUID, loaded_ds.SeriesInstanceUID, loaded_ds.SOPInstanceUID)
                   for loaded_ds in map(__import__("pydicom").dcmread, loaded.source_files)]
    volume = seg.get_pixels_by_source_instance(source_sop_instance_uids=[u[2] for u in source_uids],
                                               segment_numbers=[names["LAD"], names["RCA"]],
                                               ignore_spatial_locations=True)
    assert volume.shape == (4, 10, 12, 2)
    assert np.array_equal(volume[..., 0] > 0, label == 2) and np.array_equal(volume[..., 1] > 0, label == 4)


def test_dicom_seg_needs_dicom_source():
    with pytest.raises(InputError, match="needs the input to be a DICOM series"):
        export_dicom_seg(np.ones((2, 2, 2), np.uint8), TABLE, [], "x.dcm", "CalciumScoring")
