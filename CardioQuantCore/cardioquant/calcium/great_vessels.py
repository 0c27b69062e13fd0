"""The great vessels above the heart (ascending aorta and its root, pulmonary trunk, superior vena cava), found as
round vertical tubes of blood in the mediastinum, so that calcium in their walls is not taken for a coronary.

Why: the coronaries leave the aortic root and run on the heart's surface, in epicardial fat; the aortic root and
ascending aorta sit in the middle of the heart's upper slices, where position alone cannot tell aortic-wall
calcium from a proximal RCA or left main. On a real gated scan the aortic root's wall calcium was the largest
false "RCA" lesion. The aorta is easy to see even without contrast: a disk of blood 20-45 mm across, wrapped in
fat, continuing from slice to slice. Coronary calcium never lies inside such a disk.

Method, on the ~2 mm LPS copy used for the heart region (anatomy.py), in the slices above the mediastinum's
widest one (the great vessels and the aortic root are in the heart's upper half; lower down the ventricles can
look round):
1. Blood and walls are soft tissue (> -40 HU after a 6 mm in-plane mean: fat and lung are below); its in-plane
   distance map peaks at the centre of every round structure, at about its radius.
2. A peak inside the mediastinum of the slice is a vessel cross-section when its radius is 10-22 mm (aorta 12-22,
   pulmonary trunk 12-16, SVC 10-12; coronary lumina are 1-3 mm) and at least GAP_SHARE of a circle 3 mm outside
   it is fat or lung (a vessel in its fat; a chamber cut through is bordered by other chambers and myocardium).
3. Cross-sections are linked from the top slice down into tubes (centre moving <= 6 mm, radius within 0.7-1.4
   times, gaps up to 12 mm); a tube spanning at least MIN_TUBE_MM, seen round on at least MIN_SECTIONS slices,
   is a great vessel (any two round disks within reach link: the demo phantom's heart cap, round in its fat, and
   the soft tissue 12 mm above it made a "tube" that took its left main plaque for aortic wall). Where the aorta
   enters the heart the disk stops being round and the tube ends: the valve and annulus below are the depth rule's
   (territories.DEEP_FRACTION).
4. A tube whose disk comes within 15 mm of the spine's front (anatomy.POSTERIOR_MEDIASTINUM_MM) is the descending
   aorta (anatomy.py marks it `posterior`): its disks hold its wall calcium apart like the others', but it does not
   join the heart, so where it ends does not set the coronary height limit (territories.heart_base_s_mm).
The disks of every tube, at their measured radius, are returned on the scan's grid, on the slices between its
linked cross-sections too (centre and radius interpolated: the vessel runs on where it was not found round).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SOFT_TISSUE_HU = -40.0      # fat reads -150 to -50, lung below; blood, wall and myocardium above
MIN_RADIUS_MM, MAX_RADIUS_MM = 10.0, 22.0
GAP_SHARE = 0.3             # share of the ring outside the disk that is fat or lung
RING_OFFSET_MM = 3.0
MAX_SHIFT_MM = 6.0          # the ascending aorta leans a few mm per slice at most
MAX_GAP_MM = 12.0
MIN_TUBE_MM = 12.0
MIN_SECTIONS = 3            # two round disks within reach of each other always link: a tube is three in line


@dataclass
class Tube:
    sections: list  # [(k, j, i, radius_mm)] on the coarse grid, top slice first
    # Its disk reaches the posterior mediastinum, in front of the spine (anatomy.py marks it): the descending aorta,
    # not a vessel that joins the heart. Its wall calcium is still aortic; where it ends says nothing of the heart.
    posterior: bool = False

    @property
    def span_slices(self) -> int:
        return self.sections[0][0] - self.sections[-1][0]

    def describe(self, spacing, height_mm) -> dict:
        """Where the tube runs (`height_mm(k)`: the S coordinate of coarse slice k), how long and how wide."""
        return {"from_s_mm": round(float(height_mm(self.sections[-1][0])), 1),
                "to_s_mm": round(float(height_mm(self.sections[0][0])), 1),
                "length_mm": round(self.span_slices * float(spacing[2]), 1),
                "radius_mm": round(float(np.mean([s[3] for s in self.sections])), 1),
                "posterior_mediastinum": self.posterior}


def cross_sections(hu_slice: np.ndarray, mediastinum_slice: np.ndarray, spacing) -> list[tuple[int, int, float]]:
    """(j, i, radius mm) of the round blood-filled disks in one slice whose centre lies in the mediastinum."""
    soft = ndimage.uniform_filter(hu_slice, size=3) > SOFT_TISSUE_HU
    radius = ndimage.distance_transform_edt(soft, sampling=(spacing[1], spacing[0]))
    peaks = (radius == ndimage.maximum_filter(radius, size=5)) & mediastinum_slice
    peaks &= (radius >= MIN_RADIUS_MM) & (radius <= MAX_RADIUS_MM)
    angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    found = []
    for j, i in _one_peak_per_disk(np.nonzero(peaks), radius, spacing):
        ring = radius[j, i] + RING_OFFSET_MM
        rows = np.clip(np.round(j + ring / spacing[1] * np.sin(angles)).astype(int), 0, soft.shape[0] - 1)
        cols = np.clip(np.round(i + ring / spacing[0] * np.cos(angles)).astype(int), 0, soft.shape[1] - 1)
        if np.mean(~soft[rows, cols]) >= GAP_SHARE:
            found.append((int(j), int(i), float(radius[j, i])))
    return found


def _one_peak_per_disk(peaks, radius: np.ndarray, spacing) -> list[tuple[int, int]]:
    """The deepest of the peaks within one disk (a round disk's distance map has a plateau of equal peaks)."""
    kept: list[tuple[int, int]] = []
    for j, i in sorted(zip(*peaks, strict=True), key=lambda p: -radius[p]):
        if all(np.hypot((j - a) * spacing[1], (i - b) * spacing[0]) > radius[a, b] for a, b in kept):
            kept.append((int(j), int(i)))
    return kept


def link_tubes(sections_by_slice: dict[int, list], spacing) -> list[Tube]:
    """Cross-sections linked from the top slice down; tubes spanning at least MIN_TUBE_MM."""
    open_tubes: list[Tube] = []
    for k in sorted(sections_by_slice, reverse=True):
        for j, i, r in sections_by_slice[k]:
            best, best_shift = None, None
            for tube in open_tubes:
                last_k, last_j, last_i, last_r = tube.sections[-1]
                gap = (last_k - k) * spacing[2]
                if last_k <= k or gap > MAX_GAP_MM or not 0.7 <= r / last_r <= 1.4:
                    continue
                shift = float(np.hypot((j - last_j) * spacing[1], (i - last_i) * spacing[0]))
                if shift <= MAX_SHIFT_MM + 0.3 * gap and (best_shift is None or shift < best_shift):
                    best, best_shift = tube, shift
            if best is not None:
                best.sections.append((k, j, i, r))
            else:
                open_tubes.append(Tube([(k, j, i, r)]))
    return [tube for tube in open_tubes
            if tube.span_slices * spacing[2] >= MIN_TUBE_MM and len(tube.sections) >= MIN_SECTIONS]


def find_great_vessels(hu: np.ndarray, mediastinum: np.ndarray, spacing, top_slices: np.ndarray):
    """(disks bool [k, j, i] on the coarse grid, tubes) of the great vessels in the slices `top_slices` (bool)."""
    sections = {int(k): cross_sections(hu[k], mediastinum[k], spacing) for k in np.nonzero(top_slices)[0]}
    tubes = link_tubes(sections, spacing)
    disks = np.zeros(hu.shape, bool)
    rows, cols = np.ogrid[:hu.shape[1], :hu.shape[2]]
    for tube in tubes:
        for k, j, i, r in _with_gaps_bridged(tube.sections):
            disks[k] |= ((rows - j) * spacing[1]) ** 2 + ((cols - i) * spacing[0]) ** 2 <= r ** 2
    return disks, tubes


def _with_gaps_bridged(sections: list) -> list:
    """A tube's sections (top first) with the slices between two linked ones filled in, centre and radius
    interpolated: the vessel runs on where its disk was not found round (a valve cusp's or a coronary ostium's
    calcium in the wall on that slice, the pulmonary trunk touching it). Its wall calcium there is as much the
    aorta's as on the slices either side (a small patient's aortic root, found on alternate slices, left its wall
    calcium out of every disk, and it was scored as RCA)."""
    bridged = []
    for (k0, j0, i0, r0), (k1, j1, i1, r1) in zip(sections[:-1], sections[1:], strict=True):
        for k in range(k0, k1, -1):  # from this section down to the slice above the next
            f = (k0 - k) / (k0 - k1)
            bridged.append((k, j0 + (j1 - j0) * f, i0 + (i1 - i0) * f, r0 + (r1 - r0) * f))
    return bridged + sections[-1:]
