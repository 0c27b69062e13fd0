"""The noise floor of a non-contrast scan: the brightness under which a calcium candidate could be image noise.

Agatston counts every region of at least 1 mm2 at or above 130 HU. On a typical gated scan (noise SD 10-15 HU in
the blood) noise never gets there; on a low-dose one (20-30 HU) it does, many times over in a heart's millions of
voxels, and each speck scores 1-3: enough to turn a patient with no calcium into "1-10". The readers whose
scores define the truth do not count such specks, so the automatic path does not either.

A speck passes the area rule only when the mean over a 1 mm2 footprint reaches the threshold, so that mean is
what is compared with the noise: each candidate's brightest footprint mean against the blood's median plus 7
(the setting `noise_floor_sd`) standard deviations of footprint means, measured in the heart's deep non-fat part (the median of
local SDs in 5 mm windows: robust to the chamber walls). Measured on the three COCA gated scans with correlated
noise of 10-30 HU added, noise specks reached 5-7 SD and traced lesions 4-126 SD; on the phantoms' white noise
(10-40 HU) noise specks reached 7.4 SD. Below the floor a candidate is set aside as "not coronary" with its
reason, for the reader to review, never silently dropped. On those COCA scans as stored the floor lies at
122-131 HU, under or at the 130 HU threshold: it changes nothing on a scan of ordinary noise.

The blood is not the only tissue a candidate can lie in: the heart search region takes in the liver dome under
the heart, and a liver dense with amiodarone (common in cardiac patients) or iron reads 90-140 HU, so its noise
crosses 130 HU in specks everywhere. The contrast chest CT made unenhanced with its liver at 100, 110 and 120 HU
(make bench) scored Agatston 47, 696 and 27 from such specks (0 at 60 HU). So a candidate must also stand
`noise_floor_sd` noise SD above the tissue around it (the upper quartile of its slices' voxels 2-6 mm from it,
darker than itself), where that tissue is brighter than the blood: in fat or blood the floor is unchanged.

Where the heart meets the lung (the hila, the pulmonary veins, a thin patient's heart surface) a candidate must
also leave Agatston's lowest density class: its brightest 1 mm2 mean must reach LUNG_BORDER_HU (200 HU). On the
three COCA scans as stored, six faint specks of 1-4 mm2 (brightest 1 mm2 means 131-148 HU, each scoring 1-3) lay
within 2.5 mm of the lung's air and none was traced by the experts; on a patient without calcium each would turn
"0" into "1-10". The traced lesions that close to the lung reached 515 HU or more (in-sample: seen on these three
scans). A coronary plaque runs in the epicardial fat, and the traced ones that touched the lung were dense enough
to stay; what is set aside is kept for review like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import in_plane_distance

FOOTPRINT_MM = 1.0       # the side of the area rule's 1 mm2
NOISE_WINDOW_MM = 5.0    # local SD windows: wide enough for noise grains, narrow enough to sit inside one chamber
DEEP_MM = 8.0            # the blood pool: this far inside the heart region (the coronaries run on its surface)
SOFT_TISSUE_HU = (-30.0, 100.0)  # blood and myocardium without contrast; fat and calcium left out
AT_MOST_SLICES = 24
LUNG_HU = -400.0         # air in the lung or an airway: far under fat (-100), far over nothing else in the chest
LUNG_BORDER_MM = 2.5     # in-plane reach of "touching the lung" (the specks lay 1.1-2.1 mm from its air)
LUNG_BORDER_HU = 200.0   # Agatston's density weight 1 ends here (130-199 HU)
SURROUNDING_MM = (2.0, 6.0)  # the tissue around a candidate: past its blur, within the fat a coronary runs in


@dataclass
class NoiseFloor:
    blood_hu: float
    noise_sd_hu: float     # SD of 1 mm2 footprint means in the blood
    floor_sd: float        # how many of them above the blood the floor lies

    @property
    def floor_hu(self) -> float:
        return self.blood_hu + self.floor_sd * self.noise_sd_hu

    def floor_in(self, tissue_hu: float) -> float:
        """The floor for a candidate lying in tissue that reads `tissue_hu` around it: `floor_sd` noise SD above
        that tissue where it is brighter than the blood (a dense liver), else the scan's floor."""
        tissue_hu = tissue_hu if np.isfinite(tissue_hu) else self.blood_hu  # no tissue around it measured
        return max(self.blood_hu, tissue_hu) + self.floor_sd * self.noise_sd_hu

    @property
    def lung_border_hu(self) -> float:
        """The floor for a candidate within LUNG_BORDER_MM of the lung's air."""
        return max(self.floor_hu, LUNG_BORDER_HU)

    def describe(self) -> dict:
        return {"blood_hu": round(self.blood_hu, 1), "noise_sd_hu": round(self.noise_sd_hu, 1),
                "floor_hu": round(self.floor_hu, 1), "floor_sd": self.floor_sd,
                "lung_border_floor_hu": round(self.lung_border_hu, 1),
                "rule": f"a candidate whose brightest {FOOTPRINT_MM:g} mm2 mean is under the blood's median + "
                        f"{self.floor_sd:g} noise SD (or under {LUNG_BORDER_HU:g} HU within {LUNG_BORDER_MM:g} mm "
                        "of the lung) could be noise: not coronary, kept for review"}


def footprint_pixels(spacing) -> tuple[int, int]:
    """(rows, columns) of the footprint: the fewest pixels whose side comes to about 1 mm or more, so that it holds
    the area rule's pixels (3 x 3 at 0.34 mm, 2 x 2 at 0.5-0.9 mm, 1 pixel above 0.9 mm)."""
    rows, columns = (max(1, int(np.ceil(FOOTPRINT_MM / s - 0.1))) for s in (spacing[1], spacing[0]))
    return rows, columns


def footprint_mean(hu: np.ndarray, spacing) -> np.ndarray:
    """In-plane mean over the ~1 mm2 footprint around each voxel."""
    return ndimage.uniform_filter(hu.astype(np.float32), size=(1, *footprint_pixels(spacing)))


def noise_floor(hu: np.ndarray, heart_region: np.ndarray, spacing, floor_sd: float = 7.0) -> NoiseFloor | None:
    """The floor `floor_sd` noise SD above the heart's blood pool (None where the region has no deep non-fat part
    to measure)."""
    slices = np.nonzero(heart_region.any(axis=(1, 2)))[0]
    if slices.size > AT_MOST_SLICES:
        slices = slices[np.linspace(0, slices.size - 1, AT_MOST_SLICES).round().astype(int)]
    if slices.size == 0:
        return None
    means = footprint_mean(hu[slices], spacing)
    window = tuple(max(3, int(round(NOISE_WINDOW_MM / s)) | 1) for s in (spacing[1], spacing[0]))
    local_mean = ndimage.uniform_filter(means, size=(1, *window))
    local_sd = np.sqrt(np.maximum(ndimage.uniform_filter(means * means, size=(1, *window)) - local_mean ** 2, 0.0))
    deep = in_plane_distance(heart_region[slices], spacing) >= DEEP_MM
    blood = deep & (local_mean > SOFT_TISSUE_HU[0]) & (local_mean < SOFT_TISSUE_HU[1])
    if not blood.any():
        return None
    blood_hu, noise_sd = float(np.median(means[blood])), float(np.median(local_sd[blood]))
    return NoiseFloor(blood_hu, noise_sd, floor_sd)


def surrounding_hu(hu: np.ndarray, inside_box: np.ndarray, box, spacing) -> float:
    """The HU of the tissue around a candidate (`inside_box`: its voxels within `box`, a tuple of slices of `hu`):
    the upper quartile of its slices' voxels SURROUNDING_MM in plane from it, past its partial-volume rim, that are
    darker than its own darkest voxel (other calcium and bone left out). The upper quartile, not the median: a speck
    at the liver's surface has fat on one side (with the median, 7 of the 335 specks on the liver at 110 HU still
    scored). NaN where there are none."""
    reach = [int(np.ceil(SURROUNDING_MM[1] / s)) + 1 for s in (spacing[1], spacing[0])]
    around, candidate = around_candidate(hu, inside_box, box, reach)
    distance = in_plane_distance(~candidate, spacing)
    ring = (distance > SURROUNDING_MM[0]) & (distance <= SURROUNDING_MM[1]) & (around < around[candidate].min())
    return float(np.percentile(around[ring], 75)) if ring.any() else float("nan")


def brightest_footprint(hu: np.ndarray, inside: np.ndarray, box, spacing) -> float:
    """A candidate's brightest footprint mean (`inside`: its voxels within `box`, a tuple of slices of `hu`)."""
    around, candidate = around_candidate(hu, inside, box, footprint_pixels(spacing))
    return float(footprint_mean(around, spacing)[candidate].max())


def around_candidate(hu: np.ndarray, inside_box: np.ndarray, box, reach: tuple | list) -> tuple[np.ndarray, np.ndarray]:
    """(`hu` on a candidate's slices in its box grown in plane by `reach` (rows, columns) pixels, clipped at the
    image's edges; the candidate's voxels there): a candidate (`inside_box`: its voxels within `box`, a tuple of
    slices of `hu`) with the tissue around it."""
    grown = (box[0], *(slice(max(b.start - r, 0), b.stop + r) for b, r in zip(box[1:], reach, strict=True)))
    around = hu[grown]
    rows, cols = (b.start - g.start for b, g in zip(box[1:], grown[1:], strict=True))
    candidate = np.zeros(around.shape, bool)
    candidate[:, rows:rows + inside_box.shape[1], cols:cols + inside_box.shape[2]] = inside_box
    return around, candidate
