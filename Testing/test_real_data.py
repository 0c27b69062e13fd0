"""Real labelled scans in ../shared/data, checked against the figures the manifest and README state.

Slow (whole real volumes through the networks): `make test-slow`. Each test is skipped where its data is absent
(the data are research-use and never in the repository)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cardioquant.metrics import dice

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MYOPS, TOTALSEGMENTATOR = SHARED / "myops", SHARED / "totalsegmentator"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not MYOPS.is_dir(), reason="MyoPS not present (../shared/data/myops)")
def test_the_scar_cascade_finds_the_myocardium_of_another_centres_validation_cases():
    """MyoPS's 7 validation volumes (never trained on), read as the CLI reads them: myocardium Dice >= 0.80 (the
    issue's target; 0.827 stated in the manifest) and scar found in at least 6 of the 7 scarred hearts."""
    from cardioquant.models.runtime import load_named_model
    from cardioquant.scar import myops, network

    cpu = torch.device("cpu")
    segmenter, refiner = (load_named_model(name, None, cpu)[0] for name in (network.MODEL_NAME, network.REFINER_NAME))
    _, validation = myops.split(list(myops.cases(MYOPS)))
    myocardium, with_scar = [], 0
    for case in validation:
        signal, truth, _, spacing = myops.load_case(MYOPS, case)
        labels = network.predict(segmenter, network.normalise_stack(signal), cpu, pixel_mm=(spacing[1], spacing[0]),
                                 refiner=refiner)
        labels = network.drop_small_scar(labels, float(np.prod(spacing)) / 1000.0)
        myocardium.append(dice(labels >= 2, truth >= 2))
        with_scar += bool((labels >= 3).any())
    assert np.mean(myocardium) >= 0.80 and with_scar >= 6


@pytest.mark.skipif(not TOTALSEGMENTATOR.is_dir(), reason="TotalSegmentator example not present")
def test_a_vertebra_mask_alone_gives_the_body_masks_trabecular_hu():
    """TotalSegmentator's vertebra masks without its body mask: the body in front of the canal gives the same
    trabecular HU as the body mask (within 5 HU at T12-L5) and the same patient BMD (within 5 mg/cm3)."""
    from cardioquant.bmd.pipeline import run
    from cardioquant.imageio import read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    loaded = read_image(TOTALSEGMENTATOR / "example_ct.nii.gz")
    masks = {"vertebra_mask": str(TOTALSEGMENTATOR / "spine_report__example_ct_report__totalseg.nii.gz"), "kvp": 120.0}
    with_body = run(loaded, settings_for("bmd", **masks, vertebra_body_mask=str(
        TOTALSEGMENTATOR / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz")), Progress()).summary
    alone = run(loaded, settings_for("bmd", **masks), Progress()).summary
    for level in ("T12", "L1", "L2", "L3", "L4", "L5"):
        assert abs(alone["vertebrae"][level]["trabecular_hu"] - with_body["vertebrae"][level]["trabecular_hu"]) <= 5.0
    assert abs(alone["patient"]["bmd_mg_cm3"] - with_body["patient"]["bmd_mg_cm3"]) <= 5.0


@pytest.mark.skipif(not TOTALSEGMENTATOR.is_dir(), reason="TotalSegmentator example not present")
def test_a_50_mm_slab_of_a_real_ct_has_its_whole_vertebral_body_found():
    """A scan range shorter than the vertebra network's patch (here 50 mm of the real abdominal CT holding the whole
    of L3): the body is found by the network path and matches TotalSegmentator's vertebra label in the slab (Dice
    >= 0.8). Padded with the sliding window's 200 HU slabs, the network found no body and the scan was refused."""
    import SimpleITK as sitk

    from cardioquant.bmd.levels import TOTALSEGMENTATOR_VALUES
    from cardioquant.bmd.pipeline import BODY_VALUE, ROI_VALUE, run
    from cardioquant.imageio import LoadedImage, read_image
    from cardioquant.pipelines import settings_for
    from cardioquant.progress import Progress

    image = read_image(TOTALSEGMENTATOR / "example_ct.nii.gz").image
    vertebrae = sitk.GetArrayFromImage(sitk.ReadImage(str(TOTALSEGMENTATOR /
                                                          "spine_report__example_ct_report__totalseg.nii.gz")))
    bodies = sitk.GetArrayFromImage(sitk.ReadImage(str(
        TOTALSEGMENTATOR / "spine_report__example_ct_report__totalseg_vertebrae_body.nii.gz"))) > 0
    l3 = (vertebrae == TOTALSEGMENTATOR_VALUES["L3"]) & bodies
    slices = np.nonzero(l3.any(axis=(1, 2)))[0]
    first = int(slices.mean() - 25.0 / image.GetSpacing()[2])
    count = int(round(50.0 / image.GetSpacing()[2]))
    assert first >= 0 and l3[first:first + count].sum() == l3.sum()  # the slab holds the whole body
    slab = sitk.RegionOfInterest(image, [image.GetSize()[0], image.GetSize()[1], count], [0, 0, first])
    result = run(LoadedImage(image=slab, path="slab", format="nrrd", dicom={"modality": "CT"}),
                 settings_for("bmd", device="cpu", kvp=120.0), Progress())
    labels = sitk.GetArrayFromImage(result.label_image)
    found = [dice(np.isin(labels, (BODY_VALUE[level], ROI_VALUE[level])), l3[first:first + count])
             for level in result.summary["vertebrae"]]
    assert max(found) >= 0.8
