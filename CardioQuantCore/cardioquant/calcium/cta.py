"""Calcium on contrast CTA: an adaptive threshold relative to the lumen attenuation.

Threshold T = mean_lumen + k x SD_lumen (k a setting, default 3; docs/REFERENCE.md section 1 marks the constants unverified).
Lumen statistics come from a user lumen mask when given, else from an automatic ROI in the ascending aorta: the
largest bright (iodine-range) region of the upper third of the scan, eroded to stay clear of its wall.
The CTA score is an *Agatston-equivalent*: lesions found at T with the usual Agatston weights from their peak HU,
times a calibration scale (DEFAULT_SCALE) for the calcium that hides below T; it is reported as such, never as a
true Agatston score. (Subtracting the iodine enhancement from the peak before weighting was tried and agreed
less with the paired non-contrast scores.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..geometry import in_plane_distance, round_cross_section

IODINE_RANGE_HU = (180.0, 900.0)
# Agatston-equivalent = DEFAULT_SCALE x raw CTA score: calcium below the lumen-relative threshold is invisible on
# CTA, so raw CTA scores run low (as published for direct CTA scoring). Fitted through the origin on 24 paired
# training phantoms (seeds 10000-10023) by scripts/fit_cta_calibration.py: 2.192 (raw r 0.915). A setting
# (--cta-scale); to be refitted on paired patient scans before clinical use.
DEFAULT_SCALE = 2.19


@dataclass
class LumenStatistics:
    mean_hu: float
    sd_hu: float
    voxels: int
    source: str

    def threshold(self, k: float) -> float:
        return self.mean_hu + k * self.sd_hu


def lumen_statistics(hu: np.ndarray, spacing, lumen_mask: np.ndarray | None = None,
                     upper_third: np.ndarray | None = None,
                     blood_pool: Callable[[], np.ndarray | None] | None = None) -> LumenStatistics:
    """From the user's lumen mask, else from the aorta in the upper third of the scan (`upper_third`: those
    slices, given apart when `hu` is only part of the scan), else from `blood_pool()`, where the blood inside the heart
    whose enhancement called the scan a CTA was measured (a weak or late phase: blood under the aortic ROI's 180 HU;
    asked for only then)."""
    if lumen_mask is not None and lumen_mask.any():
        values = hu[lumen_mask.astype(bool)]
        return LumenStatistics(float(values.mean()), float(values.std()), int(values.size), "user lumen mask")
    try:
        return _aortic_roi(upper_third_of(hu) if upper_third is None else upper_third, spacing)
    except InputError:
        pool = blood_pool() if blood_pool is not None else None
        if pool is None or pool.sum() < MIN_BLOOD_POOL_VOXELS:
            raise
    return _blood_pool_statistics(hu[pool])


MIN_BLOOD_POOL_VOXELS = 200


def _blood_pool_statistics(values: np.ndarray) -> LumenStatistics:
    """Median and a robust SD of the heart's blood pool. It was measured deep in the heart region, where the septum
    and papillary muscles, darker than enhanced blood, sit among the blood: the SD is read from the voxels above the
    median alone (1.4826 x their median distance from it, the SD of a normal distribution's upper half)."""
    values = np.asarray(values, dtype=np.float32)
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(values[values >= median] - median))
    return LumenStatistics(median, spread, int(values.size),
                           "blood inside the heart (no round aorta of 180-900 HU in the upper third: a weak or late "
                           "contrast phase)")


def upper_third_of(hu: np.ndarray) -> np.ndarray:
    return hu[upper_third_start(hu.shape[0]):]


def upper_third_start(slices: int) -> int:
    return int(slices * 2 / 3)


def _aortic_roi(top: np.ndarray, spacing) -> LumenStatistics:
    """Ascending/descending aorta in the upper third (`top`): a round iodine-range region (inscribed radius
    >= 8 mm in some slice, which ribs and sternum never reach) with nothing brighter around it (the vertebral body
    has its cortical shell)."""
    in_range = (top >= IODINE_RANGE_HU[0]) & (top <= IODINE_RANGE_HU[1])
    # Pad with "outside" so structures cut by the field of view do not look deep.
    depth = in_plane_distance(np.pad(in_range, ((0, 0), (1, 1), (1, 1))), spacing)[:, 1:-1, 1:-1]
    core = depth >= 3.0  # 3 mm inside the wall: no partial volume, no wall calcium
    components, count = ndimage.label(core)
    best = None
    margin = max(1, int(round(6.0 / spacing[0])))
    for index, tight in enumerate(ndimage.find_objects(components), start=1):
        box = (tight[0],) + tuple(slice(max(t.start - margin, 0), t.stop + margin) for t in tight[1:])
        region = components[box] == index
        if depth[box][region].max() < 8.0 or region.sum() * np.prod(spacing) < 500.0:
            continue
        if not round_cross_section(in_range[box], depth[box], region, spacing):
            continue  # a band (rib or chest wall running in-plane), not a vessel
        values = top[box][region]
        # Bone has a brighter cortical shell around a homogeneous core; a vessel lumen has nothing brighter around it.
        ring = ndimage.binary_dilation(region, iterations=margin) & ~region
        if ring.any() and np.mean(top[box][ring] > values.mean() + 150.0) > 0.1:
            continue
        if best is None or values.size > best.voxels:
            best = LumenStatistics(float(values.mean()), float(values.std()), int(values.size),
                                   "automatic aortic ROI")
    if best is None:
        raise InputError("no contrast-filled aorta found (no round 180-900 HU region in the upper third of the scan): "
                         "this does not look like a contrast CTA; use --mode noncontrast or give --lumen-mask.")
    return best
