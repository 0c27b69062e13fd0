"""The memory budget (--memory-limit-gb): a scan too large to analyse whole is scored around the heart (calcium),
measured on block averages (BMD), or refused in one line before the heavy work; the figures do not change.

The per-voxel costs are raised in these tests so that small generated scans stand for 1024 x 1024 x 600 ones.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from cardioquant import budget, cli
from cardioquant.bmd import phantom as spine
from cardioquant.calcium import evaluation
from cardioquant.calcium import phantom as chest
from cardioquant.imageio import LoadedImage


def _image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_block_averages_are_the_means_of_the_blocks():
    array = np.arange(6 * 4 * 5, dtype=np.int16).reshape(6, 4, 5)  # k, j, i; 5 columns: one left over
    averaged = budget.block_average(_image(array, (0.5, 0.5, 1.0), (10.0, 20.0, 30.0)), [2, 2, 3])
    expected = array[:, :, :4].reshape(2, 3, 2, 2, 2, 2).mean(axis=(1, 3, 5))
    assert np.array_equal(sitk.GetArrayFromImage(averaged), expected)
    assert averaged.GetSpacing() == (1.0, 1.0, 3.0)
    assert np.allclose(averaged.GetOrigin(), (10.25, 20.25, 31.0))  # the centre of the first block


def test_block_averages_leave_out_the_padding_outside_the_reconstruction_circle():
    """A block half outside the reconstruction circle is the mean of its tissue, not of tissue and padding: averaged
    in, -3024 HU padding beside 40 HU chest wall reads -1492 HU, "air". A block wholly outside stays padding."""
    array = np.full((2, 2, 6), 40, np.int16)
    array[:, :, 0:3] = -3024  # columns 0-2 outside the circle: block 0 all padding, block 1 half
    array[:, :, 4:6] = [-900, -700]  # lung: averaged as ever
    averaged = sitk.GetArrayFromImage(budget.block_average(_image(array), [2, 2, 2]))
    assert averaged.shape == (1, 1, 3)
    assert averaged[0, 0, 0] <= -1500.0
    assert averaged[0, 0, 1] == 40.0
    assert averaged[0, 0, 2] == -800.0


def test_the_box_around_a_coarse_mask_holds_every_voxel_of_it_on_the_fine_grid():
    fine = _image(np.zeros((60, 80, 80), np.int16), (0.5, 0.5, 1.0))
    coarse_mask = np.zeros((15, 20, 20), np.uint8)
    coarse_mask[5:9, 6:11, 3:8] = 1
    coarse = _image(coarse_mask, (2.0, 2.0, 4.0), (0.75, 0.75, 1.5))
    box = budget.box_around(coarse, fine, margin_mm=0.0)
    on_fine = sitk.GetArrayFromImage(sitk.Resample(coarse, fine, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    inside = np.zeros(on_fine.shape, bool)
    inside[box.slices_kji()] = True
    assert on_fine.any() and not (on_fine.astype(bool) & ~inside).any()
    assert box.size == (20, 20, 16)  # 5 x 5 x 4 coarse voxels of 2 x 2 x 4 mm on a 0.5 x 0.5 x 1 mm grid
    grown = budget.box_around(coarse, fine, margin_mm=2.0)
    assert grown.size == (28, 28, 20)


def test_labels_found_on_a_box_come_back_to_their_place_on_the_scan():
    scan = _image(np.zeros((10, 30, 40), np.int16), (0.7, 0.7, 2.0), (5.0, -3.0, 100.0))
    box = budget.Box((4, 6, 2), (10, 8, 5))
    part = budget.crop(LoadedImage(image=scan, path="scan", format="nrrd", dicom={"kvp": "80"}), box)
    labels = sitk.Cast(part.image * 0 + 3, sitk.sitkUInt8)
    whole = sitk.GetArrayFromImage(budget.paste(labels, scan, box))
    expected = np.zeros((10, 30, 40), np.uint8)
    expected[2:7, 6:14, 4:14] = 3
    assert np.array_equal(whole, expected) and part.kvp == 80.0
    assert np.allclose(part.image.GetOrigin(), scan.TransformIndexToPhysicalPoint((4, 6, 2)))


def test_shrinking_coarsens_the_finest_axis_first_and_never_beyond_the_limit():
    image = sitk.Image([1000, 1000, 300], sitk.sitkInt16)
    image.SetSpacing((0.35, 0.35, 1.0))
    factors, needed = budget.shrink_to_fit(image, bytes_per_voxel=24.0, limit=4.0, coarsest_mm=1.5)
    assert factors[2] == 1 and factors[0] >= 2 and factors[1] >= 2
    assert budget.needed_gb(3e8 / np.prod(factors), 24.0, budget.resident_gb(image)) == needed <= 4.0
    _, needed = budget.shrink_to_fit(image, bytes_per_voxel=24.0, limit=1.0, coarsest_mm=1.5)
    assert needed > 1.0  # even the coarsest blocks do not fit


@pytest.fixture(scope="module")
def chest_scan():
    return chest.make_cardiac_phantom(30007, spacing=(0.7, 0.7, 3.0), n_calcifications=10)


def test_a_chest_ct_over_the_budget_is_scored_around_the_heart_with_the_same_scores(chest_scan, monkeypatch):
    from cardioquant.calcium import pipeline

    whole = evaluation.run_pipeline(chest_scan, mode="noncontrast")
    scan_voxels = chest_scan.hu.size
    # As if the scan needed 1.15 GB whole: over a 1 GB budget, while the heart's part of it fits.
    monkeypatch.setattr(pipeline, "BYTES_PER_VOXEL", 0.55e9 / scan_voxels)
    cropped = evaluation.run_pipeline(chest_scan, mode="noncontrast", memory_limit_gb=1.0)
    assert any("scored around the heart only" in w for w in cropped.warnings)
    assert whole.summary["total"]["agatston"] > 0
    assert cropped.summary["total"] == whole.summary["total"]
    assert cropped.summary["arteries"] == whole.summary["arteries"]
    assert [(les["slices"], les["centroid_ijk"]) for les in cropped.summary["lesions"]] == \
           [(les["slices"], les["centroid_ijk"]) for les in whole.summary["lesions"]]  # indices of the whole scan
    labels_whole = sitk.GetArrayFromImage(whole.label_image)
    labels_cropped = sitk.GetArrayFromImage(cropped.label_image)
    assert labels_cropped.shape == labels_whole.shape
    for artery in (1, 2, 3, 4):  # every coronary voxel where it was
        assert np.array_equal(labels_cropped == artery, labels_whole == artery)


def test_a_scan_whose_heart_region_is_over_the_budget_is_refused_in_one_line(chest_scan, tmp_path, capsys,
                                                                               monkeypatch):
    from cardioquant.calcium import pipeline

    monkeypatch.setattr(pipeline, "BYTES_PER_VOXEL", 20e9 / chest_scan.hu.size)  # 20 GB whole
    scan = evaluation.phantom_loaded(chest_scan).image
    scan.SetMetaData("modality", "CT")
    sitk.WriteImage(scan, str(tmp_path / "chest.nrrd"))
    code = cli.main(["calcium", str(tmp_path / "chest.nrrd"), "-o", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert "scoring the heart region" in error[0] and "(--memory-limit-gb 4)" in error[0]
    assert not (tmp_path / "out").exists()


def test_bmd_over_the_budget_is_measured_on_block_averages_within_2_mg(tmp_path, monkeypatch):
    from cardioquant.bmd import pipeline

    case = spine.make_spine_phantom(seed=7, spacing=(0.5, 0.5, 1.0), levels=("L1", "L2"),
                                    bmd={"L1": 120.0, "L2": 80.0}, noise_hu=15.0, fov_mm=260.0)
    image = sitk.GetImageFromArray(case.hu)
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    labels = sitk.GetImageFromArray(spine.totalsegmentator_labels(case))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(tmp_path / "ts.nrrd"))
    args = ["bmd", str(tmp_path / "ct.nrrd"), "--vertebra-mask", str(tmp_path / "ts.nrrd"), "--kvp", "120", "--quiet"]
    assert cli.main([*args, "-o", str(tmp_path / "whole")]) == 0
    monkeypatch.setattr(pipeline, "BYTES_PER_VOXEL", 0.5e9 / case.hu.size)  # 1.1 GB whole: over a 1 GB budget
    assert cli.main([*args, "-o", str(tmp_path / "averaged"), "--memory-limit-gb", "1"]) == 0
    whole, averaged = (json.loads((tmp_path / name / "bmd.json").read_text()) for name in ("whole", "averaged"))
    assert any("block averages" in w for w in averaged["warnings"])
    for level, truth in (("L1", 120.0), ("L2", 80.0)):
        assert abs(averaged["vertebrae"][level]["bmd_mg_cm3"] - whole["vertebrae"][level]["bmd_mg_cm3"]) < 2.0
        assert abs(averaged["vertebrae"][level]["bmd_mg_cm3"] - truth) < 5.0
    on_scan = sitk.ReadImage(str(tmp_path / "averaged" / "bmd_labels.nrrd"))
    assert on_scan.GetSize() == image.GetSize() and np.allclose(on_scan.GetOrigin(), image.GetOrigin())
    body = sitk.GetArrayFromImage(on_scan) == pipeline.BODY_VALUE["L1"]
    truth_body = case.bodies == case.levels.index("L1") + 1
    assert (body & truth_body).sum() / body.sum() > 0.9  # the body lies where it is on the scan's own grid


def test_bmd_refused_when_even_its_coarsest_averages_do_not_fit(tmp_path, capsys, monkeypatch):
    from cardioquant.bmd import pipeline

    monkeypatch.setattr(pipeline, "BYTES_PER_VOXEL", 1e6)
    kk, jj, ii = np.indices((40, 64, 64))
    image = _image(np.where((jj - 32) ** 2 + (ii - 32) ** 2 < 25 ** 2, 40, -1000).astype(np.int16), (0.5, 0.5, 1.0))
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    code = cli.main(["bmd", str(tmp_path / "ct.nrrd"), "-o", str(tmp_path / "out"), "--quiet"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "would need about" in error[0] and "--memory-limit-gb 4" in error[0]
    assert not (tmp_path / "out").exists()

