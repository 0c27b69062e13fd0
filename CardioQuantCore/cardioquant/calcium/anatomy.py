"""Chest anatomy for calcium scoring, found by image analysis on any chest or cardiac CT: lungs, spine, the heart
region (the mediastinum between the lungs, epicardial fat and the coronaries on its surface included), the blood
pool inside it (for the scan type) and a heart-centred frame (for artery assignment).

Why image analysis and not a network: the project has two real scans with a heart label, so a trained heart
segmenter could not be checked; the heart's relation to the lungs holds on every chest CT, gated or not, at any
field of view, dose or kVp, which is what this has to work on.

Method, on a ~2 mm copy of the scan turned to LPS (so it does not depend on how the file stores its axes):
1. Lungs: air (< -400 HU) in 3D pieces of at least 40 mL whose median is above -960 HU (lung parenchyma, with
   its vessels and septa averaged in, reads -700 to -950; air outside the body and bowel gas read -965 to -1000),
   at least 300 mL in all (no chest CT shows less lung than that). Values below -1500 HU (the padding outside
   the reconstruction circle) are not air.
2. In every slice with a left and a right lung (told apart by side: they may touch in front of the heart), the
   mediastinum is the convex hull of the lungs minus the lungs, at least 15 mm in front of the spine (the
   posterior mediastinum holds the descending aorta and oesophagus, not the heart), and behind the sternum
   (flat bone in the middle, level with the lungs' front, looked for in the slices within 5 mm together: a pale
   sternal marrow leaves only fragments of cortex in each slice). Above its widest slice,
   slices where the mediastinum is under a third of its median area are the upper mediastinum (great vessels,
   aortic arch) and are left out, and so are those whose inscribed radius is under 0.4 of the deepest slice's
   (the great vessels in their fat are a thin band; the heart, even at its top, is not). The median, not the
   widest: the widest is often the liver dome below the heart, and a third of it cut the top of the heart,
   where the left main and the ostia are.
3. The heart region is the largest 3D piece of that, with its holes filled. No such piece of at least 150 mL
   means there is no heart in the field of view.
4. The great vessels above the mediastinum's widest slice (ascending aorta and root, pulmonary trunk, SVC) as
   round tubes of blood in fat (great_vessels.py), so that calcium in their walls is not scored as coronary.
5. Blood: voxels 8 mm or more inside the region that are not fat (> -30 HU), in the slices where the region is
   thickest (the ventricles; the region may take in the liver dome below the heart, brighter than unenhanced
   blood), in the 5-slice band where they are brightest; their median HU decides contrast.
Where the region reaches the scan's lowest slice, the heart's inferior wall may be cut by the scan range (or only
the liver dome under it: the region cannot tell) and a warning says so. Reaching the highest slice is what a
calcium scan planned from just below the carina shows, the great vessels above the heart's base: only with no great
vessel found there is the heart's top, with the coronary ostia and the left main, taken as possibly cut. With no
spine found behind the heart in most of its slices (a field of view cut around the heart), the region runs back to
the image's edge over the descending aorta, and a warning says that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..budget import block_average
from ..errors import InputError
from ..geometry import (
    NO_DATA_HU,
    depth_inside,
    disk,
    fill_holes,
    fill_holes_in_plane,
    outside_the_reconstruction,
    turned_to,
    voxels_to_lps,
    within,
)
from . import great_vessels

COARSE_MM = 2.0
LUNG_HU = -400.0
OUTSIDE_AIR_MEDIAN_HU = -960.0
MIN_LUNGS_TOTAL_ML = 300.0
MIN_LUNG_ML = 40.0
MIN_HEART_ML = 150.0
BLOOD_DEPTH_MM = 8.0
HEART_CORE_DEPTH = 0.75  # slices whose inscribed depth is at least this share of the deepest: the ventricles
UPPER_MEDIASTINUM_RADIUS = 0.4  # heart slices 0.5-1.0 of the deepest slice's inscribed radius; aortic arch level < 0.4
MAX_SPINE_DEPTH_MM = 120.0  # a thoracic or lumbar vertebra, body to spinous process, is 70-100 mm deep
SPINE_RUN_MM = 15.0  # a slice's spine front is checked against the median over this many mm of slices
SPINE_JUMP_MM = 30.0  # the spine's front does not move this far forward between neighbouring slices
SPINE_BACK_JUMP_MM = 10.0  # ... nor this far back (a disc's slice, where the posterior elements are the bone found)
SPINE_BRIDGE_MM = 30.0  # a thoracic vertebra with its disc is 20-30 mm high: a gap no longer is bridged
MAX_SPINE_AREA_MM2 = 5000.0  # its axial cross-section (body, arch, processes, rib heads) is under 35 cm2
POSTERIOR_MEDIASTINUM_MM = 15.0  # the descending aorta (20-30 mm) and oesophagus lie between spine and heart
# Over half of the region's slices with no spine found behind the heart: a field of view that cuts it away (a crop
# around the heart). 0-12 % on the three gated COCA scans and 0 % on the chest CTs here, 70 % on TotalSegmentator's
# crop of a CTA, where the region ran back over the descending aorta and its wall calcium was scored as coronary.
SPINELESS_SHARE = 0.5
HULL_HOLDS_HEART = 0.01  # a slice's lung hull holds the heart when at most this share of the heart mask lies outside
CTA_BONE_HU = 180.0  # 6 mm mean: above iodine-enhanced myocardium (100-150 HU), below cortical and most trabecular bone
SPINE_HU = 120.0  # 10 mm mean: patchy osteoporotic trabecular bone still reads >= 120; muscle, blood, liver <= 70
CONTRAST_BLOOD_HU = 130.0  # non-contrast blood 20-60 HU; iodine-enhanced blood 200-600 HU
CANAL_AREA_MM2 = (60.0, 700.0)  # the spinal canal's cross-section (adults 150-300 mm2) within its bony ring
CANAL_SLAB_MM = 10.0  # the bone of the slices within this distance, seen from above, closes the canal's ring
CANAL_WALL_HU = 200.0  # cortical bone of the ring (pedicles, laminae, the body's back)
CANAL_CONTENT_HU = (-120.0, 80.0)  # cord, CSF and epidural fat (enhanced myocardium, held by iodine, reads 100-150)
CANAL_RUN_MM = 20.0  # the canal is a column: found in consecutive slices over at least this length
CANAL_STEP_MM = 6.0  # ... moving at most this much from one slice to the next
CANAL_MIDLINE_MM = 20.0  # the canal lies on the midline; a calcified descending aorta's ring lies 20-40 mm left
VERTEBRAL_BODY_MAX_MM = 45.0  # a thoracic or lumbar vertebral body is 25-40 mm front to back
STERNUM_SLAB_MM = 5.0  # the sternum is looked for in the bone of the slices this close (its marrow is patchy)
STERNUM_RUN_MM = 30.0  # a slice's sternum back is checked against the median over this many mm of slices
STERNUM_JUMP_MM = 10.0  # ... and may lie at most this far behind it (the sternum is 8-15 mm thick)
DISC_MM = 6.0  # thoracic discs are 3-8 mm high (lumbar 10-15, below the heart)
BODY_HU = 100.0  # 3 x 3 mean: osteoporotic trabecular bone still reads 100-200; the fat in front of it below 0
NO_HEART_MESSAGE = "no heart in the field of view: calcium scoring needs the heart"


@dataclass
class HeartAnatomy:
    heart_region: np.ndarray          # bool [k, j, i] on the input grid: mediastinum between the lungs
    lungs: np.ndarray                 # bool [k, j, i] on the input grid
    blood_hu: float                   # median HU of the blood pool
    blood_voxels: int
    blood_centre_lps: tuple           # where the blood was measured (mm)
    centre_lps: np.ndarray            # heart region centroid (mm, LPS)
    extent_mm: np.ndarray             # (3,) 5-95 % extent of the region along L, P, S
    volume_ml: float
    warnings: list = field(default_factory=list)
    method: str = "mediastinum between the lungs (image analysis)"
    great_vessels: np.ndarray | None = None  # bool [k, j, i] on the input grid: aorta, pulmonary trunk, SVC disks
    great_vessel_tubes: list = field(default_factory=list)  # great_vessels.Tube.describe() of each
    grid: sitk.Image | None = None    # the grid the masks are on (the scan's, or the coarse one they were found on)
    spine_cut_away: bool = False      # no spine behind the heart in most slices: the region's back is the image's edge
    blood_pool: np.ndarray | None = None  # bool [k, j, i] on `blood_grid`: where `blood_hu` was measured
    blood_grid: sitk.Image | None = None  # (the coarse grid it was found on: brought to a scan only when needed)

    @property
    def contrast(self) -> bool:
        return self.blood_hu >= CONTRAST_BLOOD_HU

    def regrid(self, target: sitk.Image) -> HeartAnatomy:
        """The same anatomy with its masks on `target`'s grid (e.g. the part of a large scan that is analysed)."""
        if self.grid is None:
            raise ValueError("this heart anatomy does not know the grid of its masks")
        return replace(self, heart_region=_regridded(self.heart_region, self.grid, target),
                       lungs=_regridded(self.lungs, self.grid, target),
                       great_vessels=None if self.great_vessels is None else
                       _regridded(self.great_vessels, self.grid, target), grid=target)

    def blood_pool_on(self, target: sitk.Image) -> np.ndarray | None:
        """Where the blood was measured, on `target`'s grid (for the rare scan whose CTA threshold needs it)."""
        if self.blood_pool is None or self.blood_grid is None:
            return None
        return _regridded(self.blood_pool, self.blood_grid, target)

    def describe(self) -> dict:
        return {"volume_ml": round(self.volume_ml, 1), "centre_lps_mm": [round(float(v), 1) for v in self.centre_lps],
                "extent_lps_mm": [round(float(v), 1) for v in self.extent_mm],
                "blood_hu": round(self.blood_hu, 1), "blood_voxels": self.blood_voxels,
                "blood_measured_at_lps_mm": [round(float(v), 1) for v in self.blood_centre_lps],
                "method": self.method, "great_vessels": self.great_vessel_tubes}


def coarse_grid(image: sitk.Image) -> sitk.Image:
    """LPS-oriented copy on a ~2 mm in-plane grid (slices kept when thicker than 2 mm), block-averaged.

    Averaged slab by slab and turned to LPS afterwards, so that a 1024 x 1024 x 600 scan never needs a float copy
    of itself; an axis that LPS reverses drops its leftover voxels at its start, not its end, so that the blocks
    are those of the scan turned first and averaged after. What lies outside the reconstruction circle, padding or
    a fill stored as air (geometry.outside_the_reconstruction), is no data on this grid, never air beside the
    lungs."""
    factors = [max(1, int(round(COARSE_MM / s))) for s in image.GetSpacing()]
    outside = outside_the_reconstruction(image)
    if factors == [1, 1, 1] and outside is None:
        return sitk.Cast(turned_to(image, "LPS"), sitk.sitkFloat32)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    reversed_axes = [direction[np.argmax(np.abs(direction[:, a])), a] < 0 for a in range(3)]
    size = image.GetSize()
    start = tuple(int(size[a] % factors[a]) if reversed_axes[a] else 0 for a in range(3))
    coarse = block_average(image, factors, start, outside)
    return turned_to(coarse, "LPS")


def find_lungs(hu: np.ndarray, spacing) -> np.ndarray:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # Below -1500 HU is no air but "no data": scanners pad outside the reconstruction circle with -2048 or -3024,
    # and a lung that runs into the padding must not become one piece with it.
    air = (hu < LUNG_HU) & (hu > NO_DATA_HU)
    components, count = ndimage.label(air)
    if count == 0:
        return air
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    big = np.nonzero(sizes * voxel_ml >= MIN_LUNG_ML)[0]
    big = big[big > 0]
    keep = np.zeros(count + 1, bool)
    if big.size:
        medians = np.asarray(ndimage.median(hu, components, index=big))
        keep[big[medians > OUTSIDE_AIR_MEDIAN_HU]] = True
    if sizes[keep].sum() * voxel_ml < MIN_LUNGS_TOTAL_ML:
        keep[:] = False
    return keep[components]


def _hull_mask(points: np.ndarray, shape) -> np.ndarray:
    """Filled 2D convex hull of (row, col) points on a grid of `shape`."""
    from matplotlib.path import Path as Polygon

    try:
        hull = ConvexHull(points)
    except QhullError:
        return np.zeros(shape, bool)
    polygon = Polygon(points[hull.vertices])
    lo = points.min(0).astype(int)
    hi = points.max(0).astype(int) + 1
    rows, cols = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
    # Qhull lists a 2D hull's vertices counter-clockwise, the way round for which matplotlib's radius margin grows
    # the polygon (it shrinks one drawn the other way): the points on the hull's edges count as inside.
    inside = polygon.contains_points(np.column_stack([rows.ravel(), cols.ravel()]), radius=0.5).reshape(rows.shape)
    out = np.zeros(shape, bool)
    out[lo[0]:hi[0], lo[1]:hi[1]] = inside
    return out


def _lung_span(lung_slice: np.ndarray, pixel_mm2: float, column_mm: float) -> tuple[int, int] | None:
    """Columns (right, left edge) spanned by a right and a left lung in one slice, or None. The lungs may touch
    in front of the heart, so they are told apart by side, not by connection: at least 1.5 cm2 of lung in each
    outer quarter of a span of at least 8 cm."""
    cols = np.nonzero(lung_slice)[1]
    if cols.size * pixel_mm2 < 300.0:
        return None
    lo, hi = np.percentile(cols, [1, 99])
    if (hi - lo) * column_mm < 80.0:
        return None
    quarter = (hi - lo) / 4
    if min(int(np.count_nonzero(cols <= lo + quarter)), int(np.count_nonzero(cols >= hi - quarter))) * pixel_mm2 < 150.0:
        return None
    return int(lo), int(hi)


def _lung_spans(lungs: np.ndarray, spacing) -> list[tuple[int, int] | None]:
    """Each slice's _lung_span (None where it has no left and right lung): found once, used by both passes."""
    return [_lung_span(plane, spacing[0] * spacing[1], spacing[0]) for plane in lungs]


def _spine_fronts(lungs: np.ndarray, spans, bone: np.ndarray, spacing,
                  bodies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fronts, seen): the spine's first row in each slice with a left and a right lung (-1 elsewhere), and whether
    the slice itself showed vertebral bone (its front may be bridged from others, _bridged). The spine is a column whose
    front moves a few mm from slice to slice, while on a CTA an iodine-filled chamber, cut apart from the rest of
    the heart in one slice, can look like a vertebra there (its front taken for the spine's would cut the heart
    away and split the region in two): a front more than SPINE_JUMP_MM in front of the median over SPINE_RUN_MM of
    slices is replaced by that median. A front found too far back (on osteoporotic bone, or where the body's bone
    joins an iodine-filled aorta and the posterior elements are taken for the spine) is brought forward to the
    vertebral body found in front of the spinal canal (`bodies`, from _body_fronts)."""
    raw = np.full(lungs.shape[0], -1)
    for k, span in enumerate(spans):
        if span is not None:
            raw[k] = _spine_front(bone[k], span, np.nonzero(lungs[k])[0], spacing)
    fronts = _bridged(_kept_to_the_column(raw, spacing, SPINE_RUN_MM, -SPINE_JUMP_MM), lungs.shape[1], spacing)
    forward = (bodies >= 0) & (fronts >= 0) & (bodies < fronts)
    fronts[forward] = bodies[forward]
    return fronts, ((raw >= 0) & (raw < lungs.shape[1])) | (bodies >= 0)


def _bridged(fronts: np.ndarray, none: int, spacing) -> np.ndarray:
    """The spine's fronts with the slices that found none (`none`: the image's last row) or one more than
    SPINE_BACK_JUMP_MM behind the median over SPINE_RUN_MM of slices bridged from the column: interpolated between
    the nearest good slices above and below when they are at most SPINE_BRIDGE_MM apart, else the nearest good one
    within half that. The spine is a column, but a disc (70-120 HU, not bone) leaves a slice with only the posterior
    elements or nothing, and a field of view cutting the body to a sliver leaves a few slices with too little bone
    to be a vertebra. Unbridged, the heart region ran back to the image's edge there, over the descending aorta
    and the disc: on a gated CT with 10 mm cut from its back, the region's depth, and with it the coronary
    territories of the heart's cross-section, changed, and a 392-point circumflex plaque was scored as LAD."""
    half = max(1, int(round(SPINE_RUN_MM / spacing[2] / 2)))
    seen = (fronts >= 0) & (fronts < none)
    good = seen.copy()
    for k in map(int, np.nonzero(seen)[0]):
        around = fronts[max(k - half, 0):k + half + 1]
        good[k] = (fronts[k] - np.median(around[(around >= 0) & (around < none)])) * spacing[1] <= SPINE_BACK_JUMP_MM
    anchors = np.nonzero(good)[0]
    bridged = fronts.copy()
    if anchors.size == 0:
        return bridged
    for k in map(int, np.nonzero((fronts >= 0) & ~good)[0]):
        below, above = anchors[anchors < k], anchors[anchors > k]
        if below.size and above.size and (above[0] - below[-1]) * spacing[2] <= SPINE_BRIDGE_MM:
            share = (k - below[-1]) / (above[0] - below[-1])
            bridged[k] = int(round((1 - share) * fronts[below[-1]] + share * fronts[above[0]]))
            continue
        nearest = min((a for a in (below[-1:], above[:1]) if a.size), key=lambda a: abs(int(a[0]) - k))[0]
        bridged[k] = fronts[nearest] if abs(int(nearest) - k) * spacing[2] <= SPINE_BRIDGE_MM / 2 else fronts[k]
    return bridged


def _body_fronts(hu: np.ndarray, lungs: np.ndarray, spans, spacing) -> np.ndarray:
    """The first row of the vertebral body in front of the spinal canal in each slice (-1 where no canal is found
    within DISC_MM): from the canal's front wall forward while the bone lasts (BODY_HU, 3 x 3 mean), at most
    VERTEBRAL_BODY_MAX_MM. An intervertebral disc (70-120 HU) stops that walk short, so each slice takes the
    foremost front found within DISC_MM of it: the bodies above and below a disc are as deep as the disc. Rows run
    front to back (the grid is LPS)."""
    out = np.full(hu.shape[0], -1)
    deepest = int(round(VERTEBRAL_BODY_MAX_MM / spacing[1]))
    for k, canal in enumerate(_canal(hu, lungs, spans, spacing)):
        if canal is None:
            continue
        front_wall, column = canal
        profile = ndimage.uniform_filter(hu[k], size=3)[:front_wall, max(column - 2, 0):column + 3].mean(axis=1)
        row = front_wall - 1
        while row > 0 and front_wall - row < deepest and (profile[row] >= BODY_HU or profile[row - 1] >= BODY_HU):
            row -= 1
        if front_wall - row > 2:  # a body, not the canal's wall alone
            out[k] = row + 1
    reach = max(1, int(round(DISC_MM / spacing[2])))
    none = hu.shape[1]  # beyond the last row: no front
    foremost = ndimage.minimum_filter1d(np.where(out >= 0, out, none), size=2 * reach + 1, mode="nearest")
    return np.where(foremost < none, foremost, -1)


def _canal(hu: np.ndarray, lungs: np.ndarray, spans, spacing) -> list[tuple[int, int] | None]:
    """The spinal canal's front wall (row) and column in each slice, or None: a hole of soft tissue in the bone
    seen from above over CANAL_SLAB_MM (there pedicles and laminae close its ring), of canal size, within
    CANAL_MIDLINE_MM of the middle of the lungs' span, behind the lungs' middle (the hindmost such hole); kept
    only where it forms a column (CANAL_RUN_MM, CANAL_STEP_MM), as the canal does and a hole between iodine-filled
    chambers does not."""
    wall = hu >= CANAL_WALL_HU
    slab = max(1, int(round(CANAL_SLAB_MM / spacing[2])))
    pixel_mm2 = spacing[0] * spacing[1]
    found: list[tuple[float, float, int] | None] = [None] * hu.shape[0]
    for k, span in enumerate(spans):
        if span is None:
            continue
        seen = wall[max(0, k - slab):k + slab + 1].any(axis=0)
        holes, _ = ndimage.label(fill_holes(seen) & ~seen)
        centre = (span[0] + span[1]) / 2.0
        middle = np.percentile(np.nonzero(lungs[k])[0], 50)
        for index, box in enumerate(ndimage.find_objects(holes), start=1):
            hole = holes[box] == index
            area = np.count_nonzero(hole) * pixel_mm2
            content = float(hu[k][box][hole].mean())
            rows, columns = (np.nonzero(hole)[axis] + box[axis].start for axis in (0, 1))
            hindmost = found[k]
            if (CANAL_AREA_MM2[0] <= area <= CANAL_AREA_MM2[1] and CANAL_CONTENT_HU[0] < content < CANAL_CONTENT_HU[1]
                    and abs(columns.mean() - centre) * spacing[0] <= CANAL_MIDLINE_MM and rows.mean() > middle
                    and (hindmost is None or rows.mean() > hindmost[0])):
                found[k] = (float(rows.mean()), float(columns.mean()), int(rows.min()))
    step = CANAL_STEP_MM / spacing[0]
    joined = [a is not None and b is not None and np.hypot(a[0] - b[0], a[1] - b[1]) <= step
              for a, b in zip(found[:-1], found[1:], strict=True)]
    runs, _ = ndimage.label(np.array([f is not None for f in found]) & (np.r_[False, joined] | np.r_[joined, False]))
    lengths = np.bincount(runs.ravel())
    long_enough = lengths * spacing[2] >= CANAL_RUN_MM
    return [(f[2], int(round(f[1]))) if f is not None and runs[k] and long_enough[runs[k]] else None
            for k, f in enumerate(found)]


def _mediastinum_slice(hu_slice, lung_slice, spacing, spine_front: int, sternum_back: int) -> np.ndarray:
    """The mediastinum of one slice with a left and a right lung, between the spine's front and the sternum's back
    (-1: no sternum found)."""
    # A cardiac field of view cuts the lungs: where a lung runs off the left or right image edge, the tissue on
    # that edge from there back to the spine stands for lung outside the image, so the hull wraps the heart.
    edge = np.zeros_like(lung_slice)
    for column in (0, -1):
        touching = np.nonzero(lung_slice[:, column])[0]
        if touching.size:
            edge[touching.min():spine_front, column] = hu_slice[touching.min():spine_front, column] >= LUNG_HU
    points = np.column_stack(np.nonzero(lung_slice | edge)).astype(float)
    hull = _hull_mask(points, lung_slice.shape)
    region = hull & ~lung_slice & (hu_slice >= LUNG_HU)
    if spine_front < region.shape[0]:
        # The posterior mediastinum (descending aorta, oesophagus, azygos) lies in front of the spine.
        region[max(spine_front - int(round(POSTERIOR_MEDIASTINUM_MM / spacing[1])), 0):] = False
    if sternum_back >= 0:
        region[:sternum_back + 1] = False  # nothing of the heart lies in front of the sternum's back surface
    return region


def _middle_band(shape, span, margin_share: float) -> np.ndarray:
    """Columns of the lungs' span without `margin_share` of it on each side (where the spine and sternum lie)."""
    width = span[1] - span[0]
    band = np.zeros(shape, bool)
    band[:, span[0] + int(margin_share * width):span[1] - int(margin_share * width) + 1] = True
    return band


def _sternum_backs(lungs: np.ndarray, spans, bone: np.ndarray, spacing) -> np.ndarray:
    """The sternum's last row in each slice with a left and a right lung (-1 where none is found). The sternum is
    a plate running down the front of the chest: its patchy marrow leaves single slices with fragments too small to
    tell, so it is looked for in the bone of the slices within STERNUM_SLAB_MM together. Its back moves a few mm
    from slice to slice: a back more than STERNUM_JUMP_MM behind the median over STERNUM_RUN_MM of slices (a
    clavicle's head or a bright vein joined to it) is replaced by that median."""
    slab = 2 * int(round(STERNUM_SLAB_MM / spacing[2])) + 1
    plate = ndimage.maximum_filter1d(bone, size=slab, axis=0)
    raw = np.full(lungs.shape[0], -1)
    for k, span in enumerate(spans):
        if span is not None:
            back = _sternum_back(plate[k], span, int(np.nonzero(lungs[k])[0].min()), spacing)
            raw[k] = -1 if back is None else back
    return _kept_to_the_column(raw, spacing, STERNUM_RUN_MM, STERNUM_JUMP_MM)


def _kept_to_the_column(rows: np.ndarray, spacing, run_mm: float, jump_mm: float) -> np.ndarray:
    """Per-slice rows of a bone that runs down the chest as a column (-1: not found), each checked against the
    median of those found over `run_mm` of slices: one lying more than `jump_mm` behind it (a negative `jump_mm`:
    in front of it) is something else joined to the bone in that slice, and is replaced by the median."""
    half = max(1, int(round(run_mm / spacing[2] / 2)))
    kept = rows.copy()
    for k in map(int, np.nonzero(rows >= 0)[0]):
        around = rows[max(k - half, 0):k + half + 1]
        median = float(np.median(around[around >= 0]))
        if np.sign(jump_mm) * (rows[k] - median) * spacing[1] > abs(jump_mm):
            kept[k] = int(median)
    return kept


def _sternum_back(bone_slice, span, lung_front: int, spacing) -> int | None:
    """Last row of the sternum, or None: flat pieces of bone (each at least 20 mm2, at most 20 mm front to back;
    the iodine-filled right ventricle is thicker), 1-20 cm2 together, in the middle of the lungs' span, starting
    no more than 5 mm behind the lungs' front. Together: where its marrow is pale, the sternum shows as several
    pieces of cortex; a contrast-filled internal thoracic artery beside it is under 20 mm2."""
    band = _middle_band(bone_slice.shape, span, 0.3)
    pieces, _ = ndimage.label(bone_slice)
    limit = lung_front + int(round(5.0 / spacing[1]))
    backs, total = [], 0.0
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[box] == index
        area = np.count_nonzero(piece) * spacing[0] * spacing[1]
        thickness = (box[0].stop - box[0].start) * spacing[1]
        if box[0].start <= limit and area >= 20.0 and thickness <= 20.0 and (piece & band[box]).any():
            backs.append(box[0].stop - 1)
            total += area
    return max(backs) if backs and 100.0 <= total <= 2000.0 else None


def _spine_front(bone_slice, span, lung_rows, spacing) -> int:
    """First row of the spine: of the pieces of bone of at least 3 cm2 (coronary calcium and the aortic wall are
    smaller) touching the middle 60 % of the lungs' span, the one reaching furthest back (on CTA the iodine-filled
    chambers and aorta are as bright as bone, but in front of the spine). A piece larger or deeper than any
    vertebra (MAX_SPINE_AREA_MM2, MAX_SPINE_DEPTH_MM) is iodine-filled heart, not spine: on a CTA whose field of
    view cuts the spine away, taking it for the spine put the cut in front of the spine at the heart's front. No
    spine piece: no cut (the image's last row)."""
    band = _middle_band(bone_slice.shape, span, 0.2)
    pixel_mm2 = spacing[0] * spacing[1]
    pieces, _ = ndimage.label(bone_slice)
    middle = np.percentile(lung_rows, 50)
    back, front = -1, bone_slice.shape[0]
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[box] == index
        area = np.count_nonzero(piece) * pixel_mm2
        depth = (box[0].stop - box[0].start) * spacing[1]
        vertebra_sized = 300.0 <= area <= MAX_SPINE_AREA_MM2 and depth <= MAX_SPINE_DEPTH_MM
        if box[0].stop > max(middle, back) and vertebra_sized and (piece & band[box]).any():
            back, front = box[0].stop, box[0].start
    return int(front)


def find_heart(image: sitk.Image, on_scan_grid: bool = True) -> HeartAnatomy:
    """The heart region of a chest or cardiac CT, or InputError(NO_HEART_MESSAGE). Its masks are on the scan's
    grid, or with `on_scan_grid` False on the ~2 mm grid they were found on (regrid them onto a part of a large
    scan without ever holding them on the whole of it).

    The spine is found in two passes: first with a bone threshold above enhanced myocardium (on CTA the
    iodine-filled heart is as bright as trabecular bone, and a low threshold joins heart and spine into one
    piece); when the blood found then is not iodine-bright, again with a threshold low enough for patchy
    osteoporotic bone, so no vertebral fragment is left in front of the cut."""
    coarse = coarse_grid(image)
    spacing = coarse.GetSpacing()
    hu = sitk.GetArrayFromImage(coarse)
    lungs = find_lungs(hu, spacing)
    target = image if on_scan_grid else coarse
    spans = _lung_spans(lungs, spacing)
    bodies = _body_fronts(hu, lungs, spans, spacing)  # where the canal shows the vertebral body: both passes
    anatomy = _heart_with_bone(target, coarse, hu, lungs, spans, bodies,
                               ndimage.uniform_filter(hu, size=(1, 3, 3)) >= CTA_BONE_HU)
    if anatomy.contrast:
        return anatomy
    return _heart_with_bone(target, coarse, hu, lungs, spans, bodies,
                            ndimage.uniform_filter(hu, size=(1, 5, 5)) >= SPINE_HU)


def _heart_with_bone(image, coarse, hu, lungs, spans, bodies, bone) -> HeartAnatomy:
    spacing = coarse.GetSpacing()
    mediastinum = np.zeros(hu.shape, bool)
    fronts, spine_seen = _spine_fronts(lungs, spans, bone, spacing, bodies)
    sterna = _sternum_backs(lungs, spans, bone, spacing)
    for k, span in enumerate(spans):
        if span is not None:
            mediastinum[k] = _mediastinum_slice(hu[k], lungs[k], spacing, int(fronts[k]), int(sterna[k]))
    areas = mediastinum.sum(axis=(1, 2))
    if areas.max(initial=0) == 0:
        raise InputError(NO_HEART_MESSAGE)
    # A slice or two where the lungs were not told apart must not split the heart: judge the z-smoothed area.
    smoothed = ndimage.median_filter(areas, size=5, mode="nearest")
    widest = int(np.argmax(smoothed))
    vessels, tubes = great_vessels.find_great_vessels(hu, mediastinum, spacing, np.arange(areas.size) > widest)
    for tube in tubes:
        tube.posterior = _reaches_posterior_mediastinum(tube, fronts, spacing, hu.shape[1])
    upper = np.arange(areas.size) > widest
    typical = float(np.median(smoothed[smoothed > 0]))
    mediastinum[upper & (smoothed < typical / 3.0)] = False
    # Above the heart the mediastinum is a band of great vessels in fat, far thinner than the heart: slices above
    # the widest whose inscribed radius is under UPPER_MEDIASTINUM_RADIUS of the deepest slice's are left out.
    radii = np.array([ndimage.distance_transform_edt(np.pad(plane, 1), sampling=spacing[1::-1]).max() if plane.any()
                      else 0.0 for plane in mediastinum])
    radii = ndimage.median_filter(radii, size=3, mode="nearest")
    mediastinum[upper & (radii < UPPER_MEDIASTINUM_RADIUS * radii.max())] = False
    opened = ndimage.binary_opening(mediastinum, structure=disk(max(1, int(round(4.0 / spacing[0]))))[None])
    components, count = ndimage.label(opened)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if count == 0:
        raise InputError(NO_HEART_MESSAGE)
    sizes = np.bincount(components.ravel())[1:]
    region = components == (int(np.argmax(sizes)) + 1)
    region = fill_holes_in_plane(region)
    volume_ml = float(region.sum()) * voxel_ml
    if volume_ml < MIN_HEART_ML:
        raise InputError(NO_HEART_MESSAGE)
    anatomy = _anatomy_from(image, coarse, hu, region, lungs, spacing, volume_ml)
    spineless = _spineless_share(region, spine_seen)
    anatomy.spine_cut_away = spineless > SPINELESS_SHARE
    anatomy.warnings = _scan_range_warnings(region, great_vessels_seen=any(not tube.posterior for tube in tubes))
    if anatomy.spine_cut_away:
        anatomy.warnings.append(f"no spine found behind the heart in {100 * spineless:.0f} % of its slices (a field of "
                                "view cut around the heart?): there the search region's back is the image's edge, or "
                                "the spine's front carried over from the slices that show it, and calcium in the "
                                "descending aorta's wall can be scored as coronary; the lesions at the back of the "
                                "heart are flagged for review")
    anatomy.great_vessels = _regridded(vessels, coarse, image)
    anatomy.grid = image
    height_mm = lambda k: voxels_to_lps(coarse, np.array([[0.0, 0.0, float(k)]]))[0, 2]  # noqa: E731
    anatomy.great_vessel_tubes = [tube.describe(spacing, height_mm) for tube in tubes]
    return anatomy


def _reaches_posterior_mediastinum(tube: great_vessels.Tube, fronts: np.ndarray, spacing, rows: int) -> bool:
    """Whether the tube's disk comes within POSTERIOR_MEDIASTINUM_MM of the spine's front on any of its slices (the
    descending aorta, beside the vertebral bodies: 3-4 mm from their front on a gated CT and the contrast chest CT
    here; the aorta, pulmonary trunk and superior vena cava, which join the heart, 17-55 mm). On a gated CT read
    with a chest CT's 0.9 mm pixels, a 12 mm piece of the descending aorta at the top of the scan was taken for a
    vessel joining the heart, and the height limit for coronary calcium rose 33 mm: hilar calcium scored as RCA."""
    ahead = [(fronts[k] - j - radius / spacing[1]) * spacing[1] for k, j, _, radius in tube.sections if fronts[k] < rows]
    return bool(ahead) and bool(min(ahead) < POSTERIOR_MEDIASTINUM_MM)


def _anatomy_from(image, coarse, hu, region, lungs, spacing, volume_ml) -> HeartAnatomy:
    blood = blood_pool(hu, region, spacing)
    return HeartAnatomy(heart_region=_regridded(region, coarse, image), lungs=_regridded(lungs, coarse, image),
                        volume_ml=volume_ml, blood_pool=blood, blood_grid=coarse,
                        **_measures(coarse, hu, region, blood))


def _spineless_share(region: np.ndarray, spine_seen: np.ndarray) -> float:
    """The share of the region's slices that show no vertebral bone behind the heart (`spine_seen` false): a field of
    view cut around the heart. The region's back there is the image's edge, or a front bridged from a few slivers
    of vertebra, and the descending aorta's wall can lie inside it."""
    slices = np.nonzero(region.any(axis=(1, 2)))[0]
    return float(np.mean(~spine_seen[slices]))


def _scan_range_warnings(region: np.ndarray, great_vessels_seen: bool) -> list[str]:
    """Where the scan range may cut the heart, the region [k, j, i] being on an LPS grid (slice 0 the lowest).
    The highest slice: a gated calcium scan is planned from just below the carina, so the region reaches it with
    the ascending aorta and pulmonary trunk above the heart's base; that the top of the heart is in view shows in
    the great vessels found there (`great_vessels_seen`: round tubes in fat, which end where they join the heart).
    Without them the region's top is the heart itself, cut, and the ostia and left main may lie above the scan."""
    slices = np.nonzero(region.any(axis=(1, 2)))[0]
    warnings = []
    if slices[-1] == region.shape[0] - 1 and not great_vessels_seen:
        warnings.append("the heart region reaches the scan's highest slice with no great vessel seen above the "
                        "heart: its base (the coronary ostia, the left main) may be cut by the scan range; calcium "
                        "above it is not scored")
    if slices[0] == 0:
        warnings.append("the heart region reaches the scan's lowest slice: the heart's inferior wall may be cut by "
                        "the scan range; calcium below it is not scored")
    return warnings


def _measures(grid: sitk.Image, hu, heart: np.ndarray, blood: np.ndarray) -> dict:
    """Blood HU and where it was measured; the heart's centre and extent (LPS mm), on `grid`."""
    values = np.asarray(hu[blood], dtype=np.float32)
    kk, jj, ii = np.nonzero(heart)
    points = voxels_to_lps(grid, np.column_stack([ii, jj, kk]))
    centre = points.mean(axis=0)
    bk, bj, bi = np.nonzero(blood)
    return {"blood_hu": float(np.median(values)) if values.size else float("nan"), "blood_voxels": int(values.size),
            "blood_centre_lps": tuple(voxels_to_lps(grid, np.array([[bi.mean(), bj.mean(), bk.mean()]]))[0] if bk.size
                                      else centre),
            "centre_lps": centre,
            "extent_mm": np.maximum(np.percentile(points, 95, axis=0) - np.percentile(points, 5, axis=0), 10.0)}


def heart_from_mask(image: sitk.Image, heart_mask: np.ndarray, margin_mm: float = 10.0,
                    source: str = "given heart mask", great_vessels: np.ndarray | None = None) -> HeartAnatomy:
    """A given heart mask (e.g. TotalSegmentator's heart.nii.gz) grown by `margin_mm` for the coronaries on its
    surface; the blood is measured inside the mask itself. `great_vessels` (e.g. TotalSegmentator's aorta): calcium
    mostly inside it is the vessel's, not coronary (territories.assign)."""
    spacing = image.GetSpacing()
    if not heart_mask.any():
        raise InputError("the heart mask is empty on this scan's grid")
    region = heart_mask | (grown(heart_mask, spacing, margin_mm) & _behind_the_chest_wall(image, heart_mask))
    hu = sitk.GetArrayViewFromImage(image)
    depth = depth_inside(heart_mask, spacing[::-1])
    blood = (depth >= min(BLOOD_DEPTH_MM, depth.max() / 2)) & (hu > -30.0)
    volume_ml = float(heart_mask.sum()) * float(np.prod(spacing)) / 1000.0
    vessels = "" if great_vessels is None else "; calcium in its aorta kept apart as aortic"
    return HeartAnatomy(heart_region=region, lungs=np.zeros_like(region), volume_ml=volume_ml, grid=image,
                        method=f"{source}, grown {margin_mm:g} mm{vessels}", great_vessels=great_vessels,
                        blood_pool=blood, blood_grid=image, **_measures(image, hu, heart_mask, blood))


def grown(mask: np.ndarray, spacing, margin_mm: float) -> np.ndarray:
    """`mask` grown by `margin_mm` in every direction (an ellipsoid of that radius in voxels of `spacing`, x y z, at
    least one voxel along each axis).

    The dilation by that ellipsoid is the voxels whose distance to the mask, each axis in units of its radius, is
    at most 1 (`within`). A dilation with the ellipsoid itself over the whole scan took 84 s for a
    TotalSegmentator heart grown 10 mm on a 512 x 512 x 133 chest CT, 412 s at 512 x 512 x 300."""
    radius = [max(1, int(round(margin_mm / s))) for s in spacing[::-1]]
    # 1 + 1e-9: an offset on the ellipsoid's surface is in it (the distance's rounding would leave some out)
    return within(np.asarray(mask, bool), 1.0 + 1e-9, [1.0 / r for r in radius])


def _behind_the_chest_wall(image: sitk.Image, heart_mask: np.ndarray) -> np.ndarray:
    """Where a heart mask's margin may reach, on `image`'s grid: inside the convex hull of the lungs (less the lungs)
    in each slice where that hull holds the heart, anywhere in the others. Where the heart lies against the front
    of the chest, a margin grown from TotalSegmentator's heart reached the costal cartilage in front of the lungs'
    anterior edges (six calcified pieces scored as LAD on its CTA crop); the coronaries lie inside the hull. At the
    lung bases the hull can miss the heart's front (the lungs there lie behind it): those slices keep the margin."""
    coarse = coarse_grid(image)
    spacing = coarse.GetSpacing()
    hu = sitk.GetArrayFromImage(coarse)
    lungs = find_lungs(hu, spacing)
    heart = _regridded(heart_mask, image, coarse)
    allowed = np.ones(hu.shape, bool)
    for k, span in enumerate(_lung_spans(lungs, spacing)):
        if span is None:
            continue
        hull = _mediastinum_slice(hu[k], lungs[k], spacing, hu.shape[1], -1)  # no spine or sternum cut
        if (heart[k] & ~hull).sum() <= HULL_HOLDS_HEART * heart[k].sum():
            allowed[k] = hull
    return _regridded(allowed, coarse, image)


def blood_pool(hu: np.ndarray, region: np.ndarray, spacing) -> np.ndarray:
    """Where the blood is measured: voxels BLOOD_DEPTH_MM or more inside the heart region that are not fat, in the
    5-slice band where they are brightest among the slices where the region is thickest."""
    depth = ndimage.distance_transform_edt(np.pad(region, 1), sampling=spacing[::-1])[1:-1, 1:-1, 1:-1]
    deep = (depth >= BLOOD_DEPTH_MM) & (hu > -30.0)
    if deep.sum() < 20:
        deep = (depth >= depth.max() / 2) & (hu > -30.0)
    return _brightest_band(hu, deep & _heart_core_slices(depth)[:, None, None])


def _heart_core_slices(depth: np.ndarray) -> np.ndarray:
    """The slices where the region is thickest (its inscribed depth at least HEART_CORE_DEPTH of the deepest): the
    ventricles. The region can take in the liver dome under the heart, and on a scan without contrast the liver
    (55-65 HU; 90-140 with amiodarone or iron overload) is brighter than the blood (30-60): the brightest band of
    the whole region was the liver's. On the contrast chest CT made unenhanced (make bench) the blood was measured
    in the labelled liver at 68 HU; the region is 21-23 mm deep there and 44 mm in the ventricles."""
    per_slice = depth.max(axis=(1, 2))
    return per_slice >= HEART_CORE_DEPTH * per_slice.max()


def _brightest_band(hu: np.ndarray, deep: np.ndarray, band_slices: int = 5) -> np.ndarray:
    """Deep voxels of the run of `band_slices` slices whose median HU is highest."""
    per_slice = np.array([np.median(hu[k][deep[k]]) if deep[k].sum() >= 10 else -np.inf for k in range(hu.shape[0])])
    if not np.isfinite(per_slice).any():
        return deep
    smoothed = ndimage.minimum_filter1d(np.where(np.isfinite(per_slice), per_slice, -1e9), band_slices)
    best = int(np.argmax(smoothed))
    band = np.zeros_like(deep)
    lo, hi = max(best - band_slices // 2, 0), best + band_slices // 2 + 1
    band[lo:hi] = deep[lo:hi]
    return band


def _regridded(mask: np.ndarray, grid: sitk.Image, target: sitk.Image) -> np.ndarray:
    """A mask on `grid` brought onto `target`'s grid (nearest voxel): the coarse masks onto the scan, or a given
    heart mask onto the coarse grid."""
    if grid is target:
        return mask
    small = sitk.GetImageFromArray(mask.astype(np.uint8))
    small.CopyInformation(grid)
    resampled = sitk.Resample(small, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled).astype(bool)
