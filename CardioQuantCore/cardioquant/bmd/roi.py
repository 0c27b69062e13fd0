"""Trabecular region of interest in a vertebral body (docs/REFERENCE.md section 2, Comp2Comp-style).

In each axial slice of the middle third of the body (by slice count, rounded inward), an ellipse whose centre lies
at 58 % of the antero-posterior extent measured from the posterior edge (so the ROI sits anterior of the
basivertebral vein, which enters the body posteriorly), with semi-axes 25 % of the AP extent and 32.5 % of the
left-right width, centred left-right; intersected with the body mask eroded in-plane by 2 voxels (1 when slices
are >= 3 mm thick) to exclude the cortex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CENTRE_FROM_POSTERIOR = 0.58
SEMI_AXIS_AP = 0.25
SEMI_AXIS_LR = 0.325


@dataclass
class RoiSettings:
    centre_from_posterior: float = CENTRE_FROM_POSTERIOR
    semi_axis_ap: float = SEMI_AXIS_AP
    semi_axis_lr: float = SEMI_AXIS_LR
    erosion_voxels: int | None = None  # None: 2, or 1 when slices are >= 3 mm


def erosion_for(slice_thickness_mm: float, settings: RoiSettings) -> int:
    if settings.erosion_voxels is not None:
        return settings.erosion_voxels
    return 1 if slice_thickness_mm >= 3.0 else 2


def middle_third(slices: np.ndarray) -> np.ndarray:
    """The middle third of a sorted run of slice indices, rounded inward (away from the endplates); all of a run
    under 3 slices. A 4-slice body (20 mm at 5 mm slices) has no whole slice in its middle third: its two central
    slices, so that the ROI stays centred on the body rather than on the slice above or below its centre."""
    n = len(slices)
    if n < 3:
        return slices
    start, stop = int(np.ceil(n / 3 - 1e-9)), int(np.floor(2 * n / 3 + 1e-9))
    if stop <= start:
        start, stop = n // 2 - 1, n // 2 + 1
    return slices[start:stop]


def trabecular_roi(body: np.ndarray, spacing, posterior_sign: int = +1, settings: RoiSettings | None = None) -> np.ndarray:
    """Boolean ROI [k, j, i] inside a vertebral-body mask.

    `posterior_sign` is +1 when the j index increases towards posterior (LPS images with identity direction),
    -1 when it increases towards anterior. The image must be axial (k along the S-I axis).
    """
    settings = settings or RoiSettings()
    roi = np.zeros(body.shape, bool)
    slices = np.nonzero(body.any(axis=(1, 2)))[0]
    if slices.size == 0:
        return roi
    erosion = erosion_for(spacing[2], settings)
    structure = ndimage.generate_binary_structure(2, 1)
    for k in middle_third(slices):
        plane = body[k]
        rows = np.nonzero(plane.any(axis=1))[0]
        cols = np.nonzero(plane.any(axis=0))[0]
        ap_extent = (rows[-1] - rows[0] + 1) * spacing[1]
        lr_extent = (cols[-1] - cols[0] + 1) * spacing[0]
        posterior_edge = (rows[-1] + 0.5) * spacing[1] if posterior_sign > 0 else (rows[0] - 0.5) * spacing[1]
        centre_j = posterior_edge - posterior_sign * settings.centre_from_posterior * ap_extent
        centre_i = (cols[0] + cols[-1]) / 2 * spacing[0]
        jj, ii = np.indices(plane.shape)
        ellipse = (((jj * spacing[1] - centre_j) / (settings.semi_axis_ap * ap_extent)) ** 2
                   + ((ii * spacing[0] - centre_i) / (settings.semi_axis_lr * lr_extent)) ** 2) <= 1.0
        eroded = ndimage.binary_erosion(plane, structure, iterations=erosion) if erosion else plane
        roi[k] = ellipse & eroded
    return roi
