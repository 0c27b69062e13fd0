"""Trabecular region of interest in a vertebral body (docs/REFERENCE.md section 2, Comp2Comp-style).

In each axial slice of the middle third of the body (the slices whose centres lie in it, the body's end slivers
left out of its height and centre: see middle_third), an ellipse whose centre lies
at 58 % of the antero-posterior extent measured from the posterior edge (so the ROI sits anterior of the
basivertebral vein, which enters the body posteriorly), with semi-axes 25 % of the AP extent and 32.5 % of the
left-right width, centred left-right; intersected with the body mask eroded in-plane by 2 voxels (1 when slices
are >= 3 mm thick) to exclude the cortex. Dense foci inside it (a bone island; an end plate or the cortex where the
ellipse reaches them) are then left out, as a reader placing an ROI by hand leaves them out (without_dense_foci).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CENTRE_FROM_POSTERIOR = 0.58
SEMI_AXIS_AP = 0.25
SEMI_AXIS_LR = 0.325
# Trabecular bone varies by some tens of HU across a body, and a low-dose scan's noise is at most ~60 HU SD: 300 HU
# above the ROI's median is 5 SD of that. Compact bone reads 600-1500 HU (500-770 HU through 3 mm voxels).
DENSE_FOCUS_ABOVE_MEDIAN_HU = 300.0
# A body's slices at either end whose cross-section is under this share of its largest are slivers of an oblique end
# plate or of the disc's partial volume, not the body's height: labelled bodies (TotalSegmentator-style and the
# network's alike) carry 0-3 of them at 2.5 mm slices, and counted in they moved the middle third towards the
# dense subchondral bone under the end plate (a real chest CT's T8 read 113 HU against 87 on its label).
FULL_SECTION_SHARE = 0.5


@dataclass
class RoiSettings:
    centre_from_posterior: float = CENTRE_FROM_POSTERIOR
    semi_axis_ap: float = SEMI_AXIS_AP
    semi_axis_lr: float = SEMI_AXIS_LR
    erosion_voxels: int | None = None  # None: 2, or 1 when slices are >= 3 mm
    dense_focus_above_median_hu: float = DENSE_FOCUS_ABOVE_MEDIAN_HU


def erosion_for(slice_thickness_mm: float, settings: RoiSettings) -> int:
    if settings.erosion_voxels is not None:
        return settings.erosion_voxels
    return 1 if slice_thickness_mm >= 3.0 else 2


def middle_third(body: np.ndarray) -> np.ndarray:
    """The slices (sorted k) of the body's middle third: those whose centres lie within a sixth of its height of its
    centre. Its centre is the cross-section-weighted mean slice, and its height the run from the first to the last
    slice whose cross-section is at least FULL_SECTION_SHARE of the largest: slivers at either end (an oblique end
    plate, a disc's partial volume) move neither. A body filling its slices whole gets the slices symmetric about its
    middle: a 4-slice body (20 mm at 5 mm slices) its two central ones, a 7-slice one (21 mm at 3 mm, a mid-thoracic
    body on a calcium scan) its three; a body under 3 slices high all of them. Until session 36 only the slices
    lying wholly inside the middle third were taken, and whole thoracic bodies on 3 mm calcium scans got ROIs of
    0.6 mL, under the plausibility rule's 1 mL; until session 38 the slivers counted in the height and the centre."""
    areas = body.sum(axis=(1, 2)).astype(float)
    slices = np.nonzero(areas)[0]
    full = np.nonzero(areas >= FULL_SECTION_SHARE * areas.max())[0]
    height = full[-1] - full[0] + 1
    if height < 3:
        return slices[(slices >= full[0]) & (slices <= full[-1])]
    centre = float((slices * areas[slices]).sum() / areas[slices].sum())
    return slices[np.abs(slices - centre) <= height / 6 + 1e-9]


def trabecular_roi(body: np.ndarray, spacing, posterior_sign: int = +1, settings: RoiSettings | None = None,
                   hu: np.ndarray | None = None) -> np.ndarray:
    """Boolean ROI [k, j, i] inside a vertebral-body mask.

    `posterior_sign` is +1 when the j index increases towards posterior (LPS images with identity direction),
    -1 when it increases towards anterior. The image must be axial (k along the S-I axis). With the scan's `hu`, the
    middle third may move a slice off an end plate (`off_the_end_plate`).
    """
    settings = settings or RoiSettings()
    roi = np.zeros(body.shape, bool)
    if not body.any():
        return roi
    erosion = erosion_for(spacing[2], settings)
    chosen = middle_third(body)
    areas = body.sum(axis=(1, 2))
    # the window's slices and, where a move may look (with `hu`), the two beyond each end on the body's full sections
    nearby = chosen if hu is None else [k for k in range(chosen[0] - 2, chosen[-1] + 3) if 0 <= k < body.shape[0] and (
        k in chosen or areas[k] >= FULL_SECTION_SHARE * areas.max())]
    ellipses = {k: _ellipse_in(body[k], spacing, posterior_sign, settings, erosion) for k in nearby}
    if hu is not None:
        chosen = off_the_end_plate(chosen, ellipses, hu)
    for k in chosen:
        roi[k] = ellipses[k]
    return roi


# An end plate through a thick slice (3-5 mm) raises its ROI's mean by 30-150 HU; neighbouring slices of a body's
# middle differ by 5-15 HU.
END_PLATE_EXCESS_HU = 20.0


def off_the_end_plate(chosen: np.ndarray, ellipses: dict, hu: np.ndarray) -> np.ndarray:
    """The middle third moved by a slice off an end plate: where its end slice lies on the rise to an end plate (denser
    than the window's other slices, and the slice beyond it denser still) and reads more than END_PLATE_EXCESS_HU
    above the slice at its other end's side that a move would take in; each slice as measured, its dense foci left
    out (a bone island stays for without_dense_foci to leave out and name). A body's height is found to within a
    slice at either end (a network on a 2 mm grid, a disc's partial volume), and on thick slices a slice of error
    puts one of the middle third's two or three slices on the end plate: the real contrast chest CT's L2 and L3,
    reconstructed at 4 mm, read 94 and 109 mg/cm3 against 72 and 61 on its own 2.5 mm slices (their ROIs' slices 72
    and 108 HU, 71 and 153 HU). Moved, the window keeps its length and stays on the body's full sections. Density
    that merely varies inside the body (a gated CT's body reading 113, 131, 135, 81, 87 HU up its middle) moves
    nothing: the slice left must rise towards the end plate."""
    def measured(k):
        if k not in ellipses or not ellipses[k].any():
            return None
        voxels = hu[k][ellipses[k]]
        return float(voxels[voxels <= np.median(voxels) + DENSE_FOCUS_ABOVE_MEDIAN_HU].mean())

    best, largest = chosen, END_PLATE_EXCESS_HU
    for step in (-1, 1):
        moved = chosen + step
        left, taken = (chosen[-1], moved[0]) if step < 0 else (chosen[0], moved[-1])
        beyond = left - step  # the next slice towards the end plate the window moves away from
        values = {k: measured(k) for k in (*chosen, taken, beyond)}
        if any(v is None for v in values.values()):
            continue
        rising = values[beyond] > values[left] > max((values[k] for k in chosen if k != left), default=-np.inf)
        if rising and (excess := values[left] - values[taken]) > largest:
            best, largest = moved, excess
    return best


def _ellipse_in(plane: np.ndarray, spacing, posterior_sign: int, settings: RoiSettings, erosion: int) -> np.ndarray:
    """The ROI's ellipse on one slice of the body, within the body eroded in-plane by `erosion` voxels."""
    (centre_j, centre_i), (semi_j, semi_i) = _ellipse_place(plane, spacing, posterior_sign, settings)
    jj, ii = np.indices(plane.shape)
    ellipse = ((jj * spacing[1] - centre_j) / semi_j) ** 2 + ((ii * spacing[0] - centre_i) / semi_i) ** 2 <= 1.0
    structure = ndimage.generate_binary_structure(2, 1)
    eroded = ndimage.binary_erosion(plane, structure, iterations=erosion) if erosion else plane
    return ellipse & eroded


def _ellipse_place(plane: np.ndarray, spacing, posterior_sign: int, settings: RoiSettings) -> tuple[tuple, tuple]:
    """((centre row, centre column), (semi-axis along the rows, across the columns)) in mm of the ellipse on one
    slice, from the body's front-back and left-right extents there."""
    rows = np.nonzero(plane.any(axis=1))[0]
    cols = np.nonzero(plane.any(axis=0))[0]
    ap_extent = (rows[-1] - rows[0] + 1) * spacing[1]
    lr_extent = (cols[-1] - cols[0] + 1) * spacing[0]
    posterior_edge = (rows[-1] + 0.5) * spacing[1] if posterior_sign > 0 else (rows[0] - 0.5) * spacing[1]
    centre = (posterior_edge - posterior_sign * settings.centre_from_posterior * ap_extent,
              (cols[0] + cols[-1]) / 2 * spacing[0])
    return centre, (settings.semi_axis_ap * ap_extent, settings.semi_axis_lr * lr_extent)


def cut_across_the_ellipse(body: np.ndarray, on_rim: tuple, spacing, posterior_sign: int = +1,
                           settings: RoiSettings | None = None) -> bool:
    """Whether the field of view's edge (`on_rim`: the body's voxels on it, k, j, i) cuts the body where its extents
    place the ellipse: on a slice of its middle third (or the two beyond either end), in the band of columns the
    ellipse spans (the body's front-back extent is then the cut's) or of rows (its left-right extent). A round field
    of view's circle that only grazes a body's corner, behind and beside it, leaves both extents and the ellipse
    as they are: COCA 1 in a round field of view had four bodies so grazed measured as cut ones, their ellipse
    centred in them, and read 1-14 HU higher (patient 126 against 118 mg/cm3 in the square field of view)."""
    settings = settings or RoiSettings()
    k_on, j_on, i_on = on_rim
    if not k_on.size:
        return False
    chosen = middle_third(body)
    for k in range(chosen[0] - 2, chosen[-1] + 3):
        here = k_on == k
        if not here.any() or not body[k].any():
            continue
        (centre_j, centre_i), (semi_j, semi_i) = _ellipse_place(body[k], spacing, posterior_sign, settings)
        in_row_band = np.abs(j_on[here] * spacing[1] - centre_j) <= semi_j
        in_column_band = np.abs(i_on[here] * spacing[0] - centre_i) <= semi_i
        if (in_row_band | in_column_band).any():
            return True
    return False


def without_dense_foci(roi: np.ndarray, hu: np.ndarray, settings: RoiSettings | None = None) -> np.ndarray:
    """The ROI less its dense foci: voxels more than `dense_focus_above_median_hu` above the ROI's median, with their
    face neighbours (the focus's partial-volume rim). On the real abdominal CT a 3 mm bone island in L1 (500-770 HU)
    raised the mean of the ROI on TotalSegmentator's body mask from 102 to 124 HU (the automatic body's ROI, on
    other slices, did not reach it)."""
    settings = settings or RoiSettings()
    if not roi.any():
        return roi
    dense = roi & (hu > np.median(hu[roi]) + settings.dense_focus_above_median_hu)
    return roi & ~ndimage.binary_dilation(dense)
