"""Write the small sample scans bundled for `cardioquant demo` (deterministic: same files every run)."""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cardioquant.calcium import phantom

OUT = Path(__file__).resolve().parents[1] / "CardioQuantCore" / "cardioquant" / "sample_data"


def calcium_sample() -> None:
    case = phantom.make_cardiac_phantom(seed=424242, spacing=(0.625, 0.625, 3.0), fov_mm=160.0, z_extent_mm=105.0,
                                        kvp=120.0, noise_hu=14.0, n_calcifications=7)
    image = sitk.GetImageFromArray(np.round(case.hu).astype(np.int16))
    image.SetSpacing(case.spacing)
    image.SetOrigin(case.origin)
    image.SetMetaData("modality", "CT")
    image.SetMetaData("kvp", "120")
    sitk.WriteImage(image, str(OUT / "calcium_phantom.nrrd"), True)
    truth = sitk.GetImageFromArray(case.truth_labels())
    truth.CopyInformation(image)
    sitk.WriteImage(truth, str(OUT / "calcium_phantom_truth_labels.nrrd"), True)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    calcium_sample()
