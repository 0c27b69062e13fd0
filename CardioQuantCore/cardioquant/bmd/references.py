"""Automatic reference ROIs for phantomless calibration: air, subcutaneous fat, paraspinal muscle, aortic blood.

Placed relative to the body outline and the vertebrae, in the slices of the vertebrae being measured, on the scan
smoothed in plane (SMOOTHING_MM; muscle MUSCLE_SMOOTHING_MM). Each ROI is returned as a mask (shown to the user as
a segment) and summarised with robust statistics (median, MAD) of its voxels as stored.

Why placed on a smoothed scan: a low-dose chest CT, the seed study's scan, has noise of 30-60 HU. A tissue chosen by
an HU window on a lightly smoothed copy (a pixel, until session 49) is chosen with its noise: where a tissue is
mixed (paraspinal muscle marbled with fat) the voxels the window keeps change with the noise, and the window cuts
the noise's tails. With grain of 40 HU added, the paraspinal muscle of the real abdominal CT read 22 -> 32 HU, that
of a gated calcium scan 19 -> 42, the fat of another -103 -> -110, and patient BMDs moved by 6-10 mg/cm3. Local
means over millimetres carry a few HU of that noise, so the ROIs stay where they are and their medians with them
(`make bench`, "low-dose noise"). Muscle is placed on a coarser scale, at least MUSCLE_CORE_MM inside itself, and
only where a slice holds MIN_MUSCLE_MM2 of it. Every ROI keeps twice its smoothing clear of the field of view's edge.
A reference smaller than 10 mm^2 in total is left out rather than trusted. Air is taken only on slices that hold
the whole body outline: where the field of view cuts the body (a calcium scan's 150-200 mm), what lies beyond the
body's edge is lung (-850 to -950 HU), not air.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import (
    NO_DATA_HU,
    field_of_view_rim,
    fill_holes_in_plane,
    in_plane_distance,
    largest_component,
    round_cross_section,
)
from ..tissue import UNENHANCED_BLOOD_MAX_HU
from .calibration import robust_stats

MIN_AREA_MM2 = 10.0
SMOOTHING_MM = 1.5         # in-plane Gaussian sigma (at least 1 pixel) the references are placed on,
MUSCLE_SMOOTHING_MM = 3.0  # and muscle's
# The erector spinae is 5-30 cm2 a side; under MIN_MUSCLE_MM2 of it on a slice is a sliver at the edge of a calcium
# scan's field of view (on the COCA scans 0.2-0.4 cm2 a slice, reading -20 to 140 HU between its 10th and 90th
# centiles), not the muscle (the labelled CTs: 6-20 cm2 a slice).
MIN_MUSCLE_MM2 = 200.0
MUSCLE_CORE_MM = 2.0  # muscle this far inside the coarse muscle window (its smoothing has blurred the fat into it)
FAT_CORE_MM = 2.0  # COCA calcium scans' fat ROI median: -71 / -90 / -96 HU at the edges, -86 / -101 / -104 HU 2 mm in
# The share of the field of view's rim the body may cover and the slice still hold the whole body outline (an arm
# or the table at the edge of a tight field of view); a calcium scan's cut chest covers 20-99 %.
MAX_BODY_ON_RIM = 0.10
# The aorta runs beside the whole spine measured. Roundness is judged on one slice, the tube's widest, where the
# diaphragm's crus or the psoas can touch it: on the abdominal CT the aorta (all 17 slices measured, 45 HU) was
# round or not as that slice changed with the bodies found, and when it was not, a bowel loop crossing 3 slices or a
# speck of 20 HU became the blood reference (with air added beside the patient and the network's tiles read mirrored
# as well: patient BMD 130 against 117).
AORTA_SPAN_SHARE = 0.5
TISSUE_RANGES = {"air": (-1100.0, -900.0), "fat": (-200.0, -40.0), "muscle": (-20.0, 150.0), "blood": (-20.0, 150.0)}


def body_mask(hu: np.ndarray) -> np.ndarray:
    """Largest connected region above -500 HU with holes filled slice by slice (the patient, not the table)."""
    largest = largest_component(hu > -500)
    return fill_holes_in_plane(largest)


def measurement_slices(roi_mask: np.ndarray, at_most: int = 24) -> np.ndarray:
    """The slices the reference tissues are measured on: those of the trabecular ROIs, evenly thinned to at most
    `at_most` (distance transforms per slice are the cost; more slices add little to a median)."""
    slices = np.nonzero(roi_mask.any(axis=(1, 2)))[0]
    if slices.size > at_most:
        slices = slices[np.linspace(0, slices.size - 1, at_most).round().astype(int)]
    return slices


def reference_rois(hu: np.ndarray, spacing, vertebra_mask: np.ndarray, posterior_sign: int = +1,
                   slices: np.ndarray | None = None, left_sign: int = +1) -> dict:
    """Masks of the reference tissues near the given vertebrae (slices they span). `posterior_sign` / `left_sign`:
    +1 when the rows / columns run to the patient's back / left (LPS, as a DICOM series stores them), else -1.

    Each ROI is placed on the scan smoothed in plane (module docstring); `statistics` reads its voxels as stored.
    """
    if slices is None:
        slices = np.nonzero(vertebra_mask.any(axis=(1, 2)))[0]
    full_shape = hu.shape
    measured = hu[slices]  # only the measurement slices
    hu = smoothed(measured, spacing, SMOOTHING_MM)
    vertebra_mask = vertebra_mask[slices]
    band = np.ones(hu.shape, bool)
    body = body_mask(hu)
    # Smoothing reads past the field of view's edge (the image's edge reflected, the scanner's padding circle), and
    # tissue cut by it is not known to be what it seems: on a calcium scan's 172 mm field of view, cut just behind
    # the spine, the "muscle" was a sliver of fat, muscle and lamina at the image's edge, read 19-75 HU.
    from_edge = _from_field_of_view_edge(measured, spacing)
    pixel = spacing[0] * spacing[1]
    rois = {}
    # Air: outside the body, at least 10 mm from it, inside the field of view (not padding), on slices that hold
    # the whole body outline.
    outside = in_plane_distance(~body, spacing) >= 10.0
    # The smoothing pulls the body's edge back from padding by about twice its sigma: the rim is that much deeper.
    rim_voxels = 3 + int(np.ceil(2.0 * SMOOTHING_MM / min(spacing[0], spacing[1])))
    rois["air"] = (band & outside & _in_range(hu, "air")
                   & _whole_body_in_view(measured, body, rim_voxels)[:, None, None])
    # Subcutaneous fat: 2-15 mm under the skin, at least FAT_CORE_MM inside the fat (on a calcium scan's field of
    # view the "skin" is mostly the lungs' edge, and the fat there is thin epicardial and mediastinal fat whose
    # edges, mixed with lung, muscle and bone, read -70 instead of -100 HU).
    depth = in_plane_distance(body, spacing)
    fat = _in_range(hu, "fat")
    rois["fat"] = band & (depth >= 2.0) & (depth <= 15.0) & fat & (in_plane_distance(fat, spacing) >= FAT_CORE_MM)
    # Paraspinal muscle: 10-45 mm posterior to the vertebral body centre line, within 15-45 mm of the midline.
    k, j, i = np.nonzero(vertebra_mask)
    centre_i = i.mean()
    body_j = np.percentile(j, 25 if posterior_sign > 0 else 75)  # the body's part of the vertebra
    jj, ii = np.indices(hu.shape[1:])
    dj = (jj - body_j) * spacing[1] * posterior_sign
    di = np.abs(ii - centre_i) * spacing[0]
    paraspinal = (dj >= 25) & (dj <= 70) & (di >= 20) & (di <= 50)
    muscle = band & paraspinal[None] & _in_range(smoothed(measured, spacing, MUSCLE_SMOOTHING_MM), "muscle")
    core = (in_plane_distance(muscle, spacing) >= MUSCLE_CORE_MM) & (from_edge >= 2.0 * MUSCLE_SMOOTHING_MM)
    rois["muscle"] = core & (core.sum(axis=(1, 2)) * pixel >= MIN_MUSCLE_MM2)[:, None, None]
    # Aortic blood: a round soft-tissue region anterior-left of the vertebral body.
    rois["blood"] = _aorta(hu, spacing, band, body_j, centre_i, posterior_sign, left_sign)
    out = {}
    for tissue, mask in rois.items():
        mask &= from_edge >= 2.0 * SMOOTHING_MM
        if mask.sum() * pixel >= MIN_AREA_MM2:
            full = np.zeros(full_shape, bool)
            full[slices] = mask
            out[tissue] = full
    return out


def smoothed(hu: np.ndarray, spacing, sigma_mm: float) -> np.ndarray:
    """The slices smoothed in plane by a Gaussian of `sigma_mm`, at least one pixel."""
    sigma = [max(1.0, sigma_mm / s) for s in (spacing[1], spacing[0])]
    return ndimage.gaussian_filter(hu.astype(np.float32, copy=False), sigma=(0, *sigma))


def _from_field_of_view_edge(hu: np.ndarray, spacing) -> np.ndarray:
    """Each voxel's in-plane distance (mm) to the field of view's edge: the image's edge or the scanner's padding."""
    in_view = hu > NO_DATA_HU
    in_view[:, [0, -1], :] = False
    in_view[:, :, [0, -1]] = False
    return in_plane_distance(in_view, spacing)


def _whole_body_in_view(hu: np.ndarray, body: np.ndarray, rim_voxels: int) -> np.ndarray:
    """Per slice: whether the body (found on the smoothed scan) covers at most MAX_BODY_ON_RIM of the field of
    view's rim (the image's edge, or the edge of the reconstruction circle where the scanner pads outside it) on the
    scan as stored, the rim `rim_voxels` deep because the smoothing blurs the body's step from padding to tissue (on
    a gated CT's round field of view, a rim 3 pixels deep under a 4-pixel smoothing let the lungs, cut by the circle,
    count as air outside a whole body: COCA 1 got an "air" reference from its lungs)."""
    out = np.zeros(len(hu), bool)
    for n, (rim, patient) in enumerate(zip(field_of_view_rim(hu, rim_voxels), body, strict=True)):
        out[n] = rim.any() and (rim & patient).sum() <= MAX_BODY_ON_RIM * rim.sum()
    return out


def _in_range(hu, tissue):
    low, high = TISSUE_RANGES[tissue]
    return (hu >= low) & (hu <= high)


def _aorta(hu, spacing, band, body_j, centre_i, posterior_sign, left_sign):
    """The aortic blood: a soft-tissue region anterior-left of the vertebral body, 5 mm inside itself, that runs
    along the spine (on at least AORTA_SPAN_SHARE of the slices measured); a round one first (round_cross_section:
    not muscle or bowel), the largest of each kind."""
    jj, ii = np.indices(hu.shape[1:])
    dj = (jj - body_j) * spacing[1] * posterior_sign   # negative: anterior of the body centre
    di = (ii - centre_i) * spacing[0] * left_sign       # positive: patient left
    window = (dj <= -10) & (dj >= -70) & (di >= -10) & (di <= 50)
    soft = band & window[None] & _in_range(hu, "blood")
    depth = in_plane_distance(soft, spacing)
    labels, count = ndimage.label(depth >= 5.0)
    best, best_rank = None, None
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[box] == index
        if region.any(axis=(1, 2)).sum() < AORTA_SPAN_SHARE * len(hu):
            continue  # a bowel loop or a vessel's branch crossing a few slices, not the aorta
        rank = (round_cross_section(soft[box], depth[box], region, spacing), int(region.sum()))
        if best_rank is None or rank > best_rank:
            best, best_rank = (box, region), rank
    out = np.zeros(hu.shape, bool)
    if best is not None:
        out[best[0]] = best[1]
    return out


def statistics(hu: np.ndarray, rois: dict) -> dict:
    """Robust statistics of each reference's voxels as stored (placed on the smoothed scan: module docstring)."""
    return {tissue: robust_stats(hu[mask]) for tissue, mask in rois.items()}


# The aortic blood reference over UNENHANCED_BLOOD_MAX_HU is iodine, below the bright-core rule's 150 HU: the
# real contrast chest CT cut 15 mm behind its bodies' front, its thoracic aorta out of view, showed its lumbar aorta
# only, 95 HU, which was taken as the blood reference and made the line implausible (gain 0.65); the abdominal CT's
# unenhanced aorta reads 57 HU.


def contrast_enhanced(hu: np.ndarray, spacing, slices: np.ndarray, vertebra_mask: np.ndarray,
                      posterior_sign: int = +1, left_sign: int = +1, blood_hu: float | None = None) -> bool:
    """True when the aorta beside the spine is iodine-bright (> 150 HU), or the aortic blood reference reads over
    UNENHANCED_BLOOD_MAX_HU as stored (`blood_hu`, its median): BMD would be biased, so it is flagged.

    The aorta is looked for in front of the vertebra's front edge and never within 5 mm of the vertebra: bone is
    as bright as iodine, and a body mask that is too large (derived from a whole-vertebra mask) must not turn the
    vertebra itself into "contrast" (on the TotalSegmentator abdominal CT it did, and L1-L3 lost their blood
    reference)."""
    if blood_hu is not None and blood_hu > UNENHANCED_BLOOD_MAX_HU:
        return True
    hu, vertebra_mask = hu[slices], vertebra_mask[slices]
    k, j, i = np.nonzero(vertebra_mask)
    front_j = np.percentile(j, 5 if posterior_sign > 0 else 95)
    jj, ii = np.indices(hu.shape[1:])
    dj = (jj - front_j) * spacing[1] * posterior_sign
    di = (ii - i.mean()) * spacing[0] * left_sign  # positive: patient left, where the aorta runs
    window = (dj <= -5) & (dj >= -65) & (di >= -10) & (di <= 50)
    near_bone = in_plane_distance(~vertebra_mask, spacing) < 5.0
    bright = window[None] & ~near_bone & (hu >= 150) & (hu <= 700)
    core = in_plane_distance(bright, spacing) >= 5.0
    return bool(core.sum() * spacing[0] * spacing[1] >= 50.0)
