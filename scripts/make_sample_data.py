"""Write the small sample scans bundled for `cardioquant demo` (deterministic: same files every run)."""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cardioquant.calcium import phantom

OUT = Path(__file__).resolve().parents[1] / "CardioQuantCore" / "cardioquant" / "sample_data"


def write_ct_and_labels(hu, spacing, origin, labels, ct_name: str, labels_name: str) -> None:
    """A CT sample as int16 HU (modality CT, 120 kVp in the NRRD header) and its label map on the same grid."""
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetMetaData("modality", "CT")
    image.SetMetaData("kvp", "120")
    sitk.WriteImage(image, str(OUT / ct_name), True)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    sitk.WriteImage(label_image, str(OUT / labels_name), True)


def calcium_sample() -> None:
    # 220 mm field of view: the one the calcium network was trained on (see its manifest entry).
    case = phantom.make_cardiac_phantom(seed=424242, spacing=(0.7, 0.7, 3.0), fov_mm=220.0, z_extent_mm=105.0,
                                        kvp=120.0, noise_hu=14.0, n_calcifications=7)
    write_ct_and_labels(case.hu, case.spacing, case.origin, case.truth_labels(), "calcium_phantom.nrrd",
                        "calcium_phantom_truth_labels.nrrd")


def spine_sample() -> None:
    from cardioquant.bmd import phantom as spine

    case = spine.make_spine_phantom(seed=2024, spacing=(1.0, 1.0, 2.5), kvp=120.0, levels=("T12", "L1", "L2"),
                                    bmd={"T12": 104.0, "L1": 96.0, "L2": 92.0}, fov_mm=260.0)
    write_ct_and_labels(case.hu, case.spacing, case.origin, spine.totalsegmentator_labels(case), "spine_phantom.nrrd",
                        "spine_phantom_vertebrae.nrrd")


def lge_sample() -> None:
    import shutil
    import tempfile

    from cardioquant.scar.phantom import write_lge_phantom

    folder = tempfile.mkdtemp()
    scan, mask, _ = write_lge_phantom(folder, seed=11)
    shutil.move(scan, OUT / "lge_phantom.nrrd")
    shutil.move(mask, OUT / "lge_phantom_lv.nrrd")


def coronary_sample() -> None:
    from cardioquant.ffr import centerlines, phantom

    centerlines.write_vtp(phantom.left_tree(0.3), OUT / "coronary_centerlines.vtp")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    calcium_sample()
    spine_sample()
    lge_sample()
    coronary_sample()
