"""Artery assignment of calcium candidates from where they lie on the heart (replaces the phantom-trained network
on the automatic path: on the three real COCA scans that network called every coronary lesion "not coronary").

Candidates are 3D-connected (26) regions of voxels at or above the calcium threshold, found on the whole scan.
- Outside the heart search region (anatomy.find_heart): "outside heart", its own segment, never scored.
- Reaching METAL_HU (a pacemaker or ICD lead, a clip, a sternal wire, a valve frame): "not coronary", and so is
  any candidate within METAL_REACH_MM of it (streaks, blooming, or calcium of a stented segment).
- Bone-sized (>= 3000 mm3) or running out of the region (ribs, sternum, costal cartilage, spine continue outside
  it; a coronary plaque lies on the heart; one EDGE_SHARE inside whose other voxels touch the region over the lung
  lies at its edge and is scored, flagged), or within BONE_GAP_MM of such a bone (a fragment of it cut off by
  partial volume, where the region reaches the sternum's or spine's surface): "not coronary".
- On CTA, wrapped in iodine-bright blood (>= 80 % of a 1 mm ring >= 200 HU: the bright tail of a chamber or the
  aorta) or touching a wide iodine lumen (>= 6 mm radius: the aortic or a chamber's wall): "aorta or valve".
- Mostly inside a great vessel's disk (great_vessels.py: the ascending aorta and its root, the pulmonary trunk,
  the superior vena cava, found as round tubes of blood in fat above the heart): "aorta or valve". A candidate
  that only touches one may be a coronary ostium and is flagged for review.
- Over OSTIA_MARGIN_MM above where the great vessels join the heart (the highest lower end of their tubes): "not
  coronary". The coronaries leave the aorta in its sinuses, below the sinotubular junction, and run down the
  heart from there; above the heart's base the region holds the great vessels and the hilar lymph nodes beside
  them, whose calcium a gated scan shows as often. The highest of the tubes' lower ends (aorta, pulmonary trunk,
  superior vena cava: the pulmonary valve and the SVC's entry sit at or above the aortic sinuses) keeps the rule
  on the safe side; a lesion within OSTIA_REVIEW_MM below that limit is flagged.
- Deep inside the region (beyond DEEP_FRACTION of its inscribed radius from the surface): "aorta or valve"
  (aortic valve, aortic root, mitral annulus), its own segment, never scored.
- On a non-contrast scan, under the scan's noise floor (its brightest 1 mm2 mean under the blood's median + 7
  noise SD, noise.py): "not coronary", its reason saying it could be noise. On ordinary scans the floor lies
  under the 130 HU threshold; on low-dose ones it keeps noise specks from scoring. Within 2.5 mm of the lung's
  air it is at least 200 HU (the end of Agatston's lowest density class): faint specks at the hila and pulmonary
  veins, never traced by the experts.
- With no epicardial fat within FAT_REACH_MM in plane: "not coronary" (inside the myocardium, a chamber or the
  aortic root; the coronaries run in the epicardial fat).
- Thicker in plane than a coronary artery can be (NODE_ACROSS_MM or more across its narrowest way, on its thickest
  slice): "not coronary", a calcified lymph node or valve or annulus calcium; THICK_REVIEW_ACROSS_MM or more is
  scored and flagged (a coronary, or a small node?).
- In front of the heart's cross-section on its slice by IN_FRONT_T of its depth or more (t below, see next): "not
  coronary", the sternum, costal cartilage or chest wall; in front of it by less is scored and flagged.
- Otherwise the artery follows coronary anatomy, from where the lesion lies in the heart's cross-section on its
  own slice: u, the share of the way from the section's right edge to its left, and t, from its front to its
  back (2nd-98th percentile of the region's voxels in patient axes, so neither the field of view, the heart's
  position in it nor the region's reach above or below the heart moves them). The RCA runs in the right
  atrioventricular groove: u < 0.55 is RCA, but not in the back fifth of the section above the crux (the lowest
  quarter of the region), which lies behind the atria (pulmonary veins, subcarinal and hilar lymph nodes). On the left, the LAD runs in the anterior interventricular groove
  and the circumflex in the left atrioventricular groove behind it: t < 0.6 is LAD, t >= 0.6 LCX. The left main
  (about 1 cm long) cannot be told from the proximal LAD by position: left-system lesions within 5 mm of its
  highest one are flagged for review, and those of them that lie deep, towards the aortic root the left main
  leaves, are scored with the LAD (as orCaScore folds the LM); one at that level out in the circumflex's groove
  keeps its LCX.
A lesion within REVIEW_MARGIN of a boundary is flagged "review" in the JSON, the table and the report.

The boundaries are anatomical halves, not fitted weights; they were checked (in-sample) on the three COCA scans
in shared/data, on which every RCA lesion has u <= 0.40 and every left-system lesion u >= 0.70. Proximal LAD and
LCX lesions near the bifurcation overlap in t: review every flagged lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..geometry import NO_DATA_HU, in_plane_distance
from . import noise

LM, LAD, LCX, RCA, NOT_CORONARY, OUTSIDE_HEART = 1, 2, 3, 4, 5, 6
AORTA_OR_VALVE = 8  # 7 is the heart search region itself (pipeline.HEART_REGION)
BONE_VOLUME_MM3 = 3000.0          # no coronary lesion is this large; spine, ribs and sternum are
# A candidate at least this much inside the heart search region, whose other voxels touch it against the lung, lies
# at the region's edge (scored, flagged): a traced 37 mm3 LAD plaque on COCA 5, on the heart's surface against the
# lung, lay 95 % inside, five voxels one layer out over the lung, and was called chest wall. The untraced candidates
# crossing the region on the three COCA scans, and the sternum's and ribs' pieces crossing it on the contrast chest
# CT, lay at most 86 % inside it; a phantom's aortic-wall calcium 97 % inside pokes out into soft tissue.
EDGE_SHARE = 0.9
BONE_GAP_MM = 4.0                 # fragments of sternum, rib or vertebra sit on their bone; the coronaries run on
                                  # the heart, behind the pericardium and its fat: 10 mm or more from any bone
RCA_BELOW_U = 0.55                # share of the cross-section from its right edge: the right half is the RCA's
LCX_FROM_T = 0.6                  # share from its front: the back 40 % on the left is the circumflex's groove
REVIEW_MARGIN = 0.08
# Depth below the region's surface as a share of its deepest point (about the heart's inscribed radius): the
# coronaries run in the epicardial fat on the surface, and even the left main and the proximal RCA, which leave
# the aortic root, stay in its outer half (<= 0.5); the aortic valve lies at the heart's centre and the mitral
# annulus and the aortic root wall deep in its base (0.7-1.0). 0.6 is the midpoint; 0.45-0.6 is flagged.
DEEP_FRACTION = 0.6
DEPTH_SAMPLES = 4_000_000         # the depth map's samples over the region's bounding box (~64 MB, ~1 s)
IODINE_HU = 200.0                 # CTA: blood with iodine (non-contrast blood, wall and fat read far lower)
IODINE_SHELL_SHARE = 0.8
LARGE_LUMEN_RADIUS_MM = 6.0       # CTA: the aorta (10-18 mm) and chambers; coronary lumina are 1-2.5 mm
DEEP_REVIEW_FRACTION = 0.45
BACK_REVIEW_SHARE = 0.25          # with no spine behind the heart, its back quarter may hold the descending aorta
LEFT_SYSTEM_TOP_MM = 5.0          # within 5 mm of the left system's highest lesion: the left main's level
# The left main leaves the aortic root at the heart's centre and runs a centimetre out between the pulmonary trunk
# and the left atrial appendage before it divides: its calcium lies deeper than the grooves' arteries (0.55-0.60 of
# the heart's radius on COCA 1 and 4, whose traced LM/proximal LAD plaque sits at the LAD/LCX boundary), and a
# proximal circumflex plaque at the same level lies out in the atrioventricular groove (under 0.45 on COCA 5).
# Moving every left-system lesion at that level to the LAD made the one rule hang on the highest speck: at a chest
# CT's 0.9 mm pixels COCA 5's highest speck fell under the area rule, its 301 mm3 proximal LCX plaque came within
# 5 mm of the new highest lesion and 392 points went to the LAD.
LEFT_MAIN_DEPTH_FRACTION = DEEP_REVIEW_FRACTION
# The ostia lie 10-20 mm above the aortic annulus, in the sinuses, at or below where the great vessels' round
# sections in fat end; 20 mm above that end is above every normally placed ostium.
OSTIA_MARGIN_MM = 20.0
OSTIA_REVIEW_MM = 10.0
# The coronaries run in the epicardial fat: lumen <= 2.5 mm in radius, wall and plaque a millimetre or two, so a
# coronary plaque lies within about 4 mm of fat; a bridged segment runs a few mm inside the muscle, and is spared of
# plaque. On the three COCA scans every traced lesion lay within 3.0 mm of fat (1 mm2 means -190 to -30 HU); two
# untraced specks in the blood of the aortic root and a chamber lay 8.2 and 8.6 mm from it.
FAT_REACH_MM = 6.0
FAT_HU = (-190.0, -30.0)
# The RCA runs down the right atrioventricular groove in front of the right atrium, and reaches the back of the
# heart only at its bottom, at the crux (the posterior descending artery). Behind the atria, on the right side above
# the crux, lie the right pulmonary veins, the left atrium's wall, the oesophagus and the subcarinal and hilar lymph
# nodes, which granulomatous disease calcifies: an 8 mm calcified node put beside the left atrium's roof of the chest
# CT made unenhanced, 5 mm from its labelled heart and at the search region's edge, scored Agatston 359 as RCA. On
# the three COCA scans every right-side lesion in the back 40 % of the section (t 0.63-0.73) lies in the lowest fifth
# of the region (0.82-0.96 of the way down); above that every RCA lesion has t <= 0.33.
BEHIND_THE_ATRIA_T = 0.8
CRUX_DOWN = 0.75  # the lowest quarter of the region's height: the crux and the posterior descending artery
# Metal: pacemaker and ICD leads, surgical clips, sternal wires and valve frames reach the top of a 12-bit CT scale
# (3071 HU) through their partial volume; calcium does not at 100-140 kVp (cortical bone reads 1500-2000 HU, the
# densest traced plaque on the three COCA scans 1390 HU). Near metal, streaks and blooming make bright specks in
# fat and blood, and a stented segment's calcium is not scored (it is reported as a stent). Thin-strut coronary
# stents can read under this, as calcium does: the reader must set those aside. On CTA the contrast arriving
# undiluted in the subclavian and brachiocephalic veins and the SVC reads as high (3071 HU on the contrast chest CT
# here), with the same streaks.
METAL_HU = 3000.0
METAL_REACH_MM = 10.0
# Mitral annular calcification (MAC) lies under the left atrioventricular groove, a few millimetres from the
# circumflex, and neither its position, its depth nor the fat around it tells it apart on a scan without contrast
# (README, Limits). What does is its size: it is a band along the back of the mitral ring, often of 500-3000 mm3,
# where the largest traced circumflex lesion on the COCA scans here is 301 mm3 (COCA 5's proximal plaque). A lesion
# called circumflex and larger than this is scored, and flagged for the reader to look at.
MAC_REVIEW_MM3 = 800.0
# A coronary artery is at most about 5 mm across with its wall (the left main 4-5 mm, proximal RCA and LAD 3-4), and
# its calcium, however much of the wall it takes, stays within that, plus a millimetre or so of blooming on each
# side at the 130 HU threshold: the thickest traced lesion on the three COCA scans (COCA 5's 482 mm3 RCA plaque,
# Agatston 2230 in all) is 5.1 mm across its narrowest way on its thickest slice. Calcified lymph nodes (old
# tuberculosis or histoplasmosis) are balls of 5-20 mm; the hilar, prevascular and aortic-root stations lie beside
# the heart's base inside the search region, and an 8 mm one there scored 367 points as LCX or RCA (make bench,
# "calcified lymph node"). 10 mm across every way is no coronary; 7-10 mm is scored and flagged for the reader.
NODE_ACROSS_MM = 10.0
THICK_REVIEW_ACROSS_MM = 7.0
# The coronaries lie on the heart's surface, inside the front-back extent of its section (t from 0 at its front): on
# the three COCA scans every traced lesion has t >= 0.08. The region reaches forward only where a thin piece of it
# runs along the chest wall, and what lies there, a tenth of the section's depth or more in front of its front, is
# the sternum or costal cartilage: fragments of the contrast chest CT's sternum, framed as 150-200 mm cardiac fields
# of view, lay at t -0.14, -0.13 and -0.05, and scored as LAD or RCA. In front of the section by less is flagged.
IN_FRONT_T = -0.1
POSSIBLE_NOISE = "could be noise"  # the reason of a candidate under the noise floor starts with this
FAINT_AT_LUNG = "faint at the lung's border"  # ... and of one under the lung border's floor with this
METAL = "metal"                                # ... of metal itself
UNDILUTED_CONTRAST = ", or contrast arriving undiluted in a vein"  # on CTA, as bright as metal (and as streaky)
BESIDE_METAL = "beside metal"                  # ... and of a candidate within METAL_REACH_MM of it
AT_VIEW_EDGE = "at the field of view's edge"   # ... and of one within BONE_GAP_MM of the field of view's edge


@dataclass
class Assignment:
    labels: np.ndarray         # uint8 [k, j, i]: 1-4 arteries, 5 not coronary, 6 outside heart, 8 aorta or valve
    per_candidate: list[dict]  # one entry per candidate: label, reason, review flag, where it lies
    components: np.ndarray     # int [k, j, i]: the candidate each voxel belongs to (0 none), as `candidate` says


def candidate_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def artery_from_position(u: float, t: float) -> tuple[int, bool]:
    """(artery 2-4, review?) of a lesion at u (0 right edge .. 1 left edge) and t (0 front .. 1 back) of the
    heart's cross-section on its slice."""
    if u < RCA_BELOW_U:
        return RCA, u > RCA_BELOW_U - REVIEW_MARGIN
    near_right = u < RCA_BELOW_U + REVIEW_MARGIN
    near_groove = abs(t - LCX_FROM_T) < REVIEW_MARGIN
    return (LCX if t >= LCX_FROM_T else LAD), near_right or near_groove


class _Subsample:
    """A subsample of the scan's grid (every ~`step_mm`), for distance maps that at full resolution would take
    gigabytes, and the lookup of full-resolution voxels in a map made on it.

    The samples are anchored in patient space (every `steps`-th voxel counted from the patient's origin along each
    axis, not from the array's first voxel), and voxels between samples read the linear interpolation of their
    neighbours: the same patient stored mirrored is sampled at the same places and reads the same values."""

    def __init__(self, spacing, voxel_to_lps, step_mm: float = 2.0):
        spacing_kji = tuple(float(s) for s in spacing)[::-1]
        self.steps = [max(1, int(round(step_mm / s))) for s in spacing_kji]
        self.sampling = [s * f for s, f in zip(spacing_kji, self.steps, strict=True)]
        corner = voxel_to_lps(np.zeros((1, 3)))[0]
        self.offsets = []
        for axis, step in enumerate(self.steps):
            unit_step = np.zeros((1, 3))
            unit_step[0, 2 - axis] = 1.0
            along = voxel_to_lps(unit_step)[0] - corner              # one voxel along this array axis, in mm
            first_index_from_origin = round(float(corner @ along) / float(along @ along))
            self.offsets.append(int(-first_index_from_origin % step))

    def take(self, volume: np.ndarray, box=None) -> tuple[np.ndarray, tuple[int, ...]]:
        """(the samples of `volume` within `box` (whole volume: None), the index of the first sample taken along
        each axis, counted among all of the volume's samples)."""
        box = box or tuple(slice(0, n) for n in volume.shape)
        first = [-(-(b.start - o) // f) for b, o, f in zip(box, self.offsets, self.steps, strict=True)]  # ceil
        picks = tuple(slice(o + m * f, b.stop, f) for b, o, f, m in zip(box, self.offsets, self.steps, first,
                                                                        strict=True))
        return volume[picks], tuple(first)

    def at(self, small: np.ndarray, k, j, i, first=(0, 0, 0)) -> np.ndarray:
        """Values of `small` (samples from `first` on, as take() gives them) under the full-resolution voxels
        (k, j, i), linearly interpolated between samples."""
        where = [(np.asarray(a, float) - o) / f - m
                 for a, o, f, m in zip((k, j, i), self.offsets, self.steps, first, strict=True)]
        return ndimage.map_coordinates(np.asarray(small, np.float32), where, order=1, mode="nearest")


def _region_depth(heart_region: np.ndarray, spacing, voxel_to_lps):
    """(depth_at(k, j, i) -> deepest mm of those voxels below the region's surface, the region's deepest mm).

    A depth measured between samples overstates the true one by up to a sample's width (the surface lies between
    the last sample inside and the first outside), and the valve rule compares it with DEEP_FRACTION: so the map
    is made on the finest subsample of the region's bounding box that keeps to DEPTH_SAMPLES (about 1 mm for a
    heart region; a 2 mm one moved a traced LAD lesion of COCA 1 from 0.57 to 0.60 of the radius)."""
    if not heart_region.any():
        return (lambda _k, _j, _i: 0.0), 1.0
    box = ndimage.find_objects(heart_region.astype(np.uint8))[0]
    box_mm3 = float(np.prod([(b.stop - b.start) * s for b, s in zip(box, tuple(spacing)[::-1], strict=True)]))
    grid = _Subsample(spacing, voxel_to_lps, step_mm=(box_mm3 / DEPTH_SAMPLES) ** (1 / 3))
    small, first = grid.take(heart_region, box)
    depth = ndimage.distance_transform_edt(np.pad(small, 1), sampling=grid.sampling)[1:-1, 1:-1, 1:-1]
    depth = depth.astype(np.float32)  # 0 outside the region, so the box's edge needs no care when looked up
    return (lambda k, j, i: float(grid.at(depth, k, j, i, first).max())), max(float(depth.max()), 1.0)


def section_extents(heart_region: np.ndarray, voxel_to_lps) -> np.ndarray:
    """Per slice (x right edge, x left edge, y front, y back) in LPS mm of the region (NaN where empty)."""
    extents = np.full((heart_region.shape[0], 4), np.nan)
    for k in np.nonzero(heart_region.any(axis=(1, 2)))[0]:
        jj, ii = np.nonzero(heart_region[k])  # every voxel: a strided sample would depend on how the scan is stored
        points = voxel_to_lps(np.column_stack([ii, jj, np.full(ii.size, k)]))
        extents[k] = [*np.percentile(points[:, 0], [2, 98]), *np.percentile(points[:, 1], [2, 98])]
    return extents


def _height_range_s(extents: np.ndarray, voxel_to_lps) -> tuple[float, float]:
    """(S of the region's top slice, S of its bottom slice) in mm."""
    slices = np.nonzero(~np.isnan(extents[:, 0]))[0]
    ends = voxel_to_lps(np.array([[0.0, 0.0, slices.min()], [0.0, 0.0, slices.max()]]))[:, 2]
    return float(ends.max()), float(ends.min())


def _position(point_lps, extent) -> tuple[float, float]:
    u = (point_lps[0] - extent[0]) / max(extent[1] - extent[0], 1.0)
    t = (point_lps[1] - extent[2]) / max(extent[3] - extent[2], 1.0)
    return float(u), float(t)


def assign(candidate_mask: np.ndarray, heart_region: np.ndarray, voxel_to_lps, spacing,
           hu: np.ndarray | None = None, contrast: bool = False,
           great_vessels: np.ndarray | None = None, heart_base_s_mm: float | None = None,
           floor: noise.NoiseFloor | None = None, back_unbounded: bool = False) -> Assignment:
    """Label every candidate voxel. `voxel_to_lps(ijk (n, 3)) -> (n, 3)` maps voxel indices to LPS mm. On CTA
    (`contrast`, with `hu`) a candidate wrapped in iodine is the bright tail of a chamber or the aorta. A candidate
    mostly inside `great_vessels` (the disks of the aorta, pulmonary trunk and SVC, great_vessels.py) is in a
    great vessel's wall. `heart_base_s_mm` (S, mm): where the great vessels join the heart (heart_base_s_mm());
    no coronary runs more than OSTIA_MARGIN_MM above it. A candidate whose brightest 1 mm2 mean (with `hu`) is under
    the scan's noise `floor` (noise.py; higher where it touches the lung) could be noise and is not coronary. With
    `back_unbounded` (no spine found behind the heart: anatomy.HeartAnatomy.spine_cut_away) a coronary lesion in
    the back BACK_REVIEW_SHARE of the section may be the descending aorta's wall and is flagged for review."""
    ostia_limit = np.inf if heart_base_s_mm is None else heart_base_s_mm + OSTIA_MARGIN_MM
    components, count = candidate_regions(candidate_mask)
    labels = np.zeros(candidate_mask.shape, np.uint8)
    voxel_mm3 = float(np.prod(spacing))
    grid = _Subsample(spacing, voxel_to_lps)
    depth_at, radius = _region_depth(heart_region, spacing, voxel_to_lps)
    on_large_lumen = _large_lumen_lookup(hu, grid) if contrast and hu is not None else None
    bone_gap_at = _bone_gap_lookup(components, heart_region, voxel_mm3, grid)
    metal_voxels = hu >= METAL_HU if hu is not None else None  # no HU: no metal rules
    metal = set(np.unique(components[metal_voxels]).tolist()) - {0} if metal_voxels is not None else set()
    metal_gap_at = (_metal_gap_lookup(metal_voxels, voxel_to_lps)
                    if metal_voxels is not None and metal_voxels.any() else None)
    extents = section_extents(heart_region, voxel_to_lps)
    top_s, bottom_s = _height_range_s(extents, voxel_to_lps)
    entries = []
    boxes = ndimage.find_objects(components)
    for index, box in enumerate(boxes, start=1):
        inside_box = components[box] == index
        in_heart = heart_region[box][inside_box]
        at_edge = not in_heart.all() and _at_the_regions_edge(heart_region, box, inside_box, hu, spacing)
        within = bool(in_heart.all()) or at_edge  # at the region's lung edge: judged as inside it, flagged
        volume = float(inside_box.sum()) * voxel_mm3
        kk, jj, ii = np.nonzero(inside_box)
        centroid = np.array([ii.mean() + box[2].start, jj.mean() + box[1].start, kk.mean() + box[0].start])
        point = voxel_to_lps(centroid[None])[0]
        u, t = _position(point, extents[int(round(centroid[2]))]) if within else (np.nan, np.nan)
        down = (top_s - point[2]) / max(top_s - bottom_s, 1.0)  # 0 at the region's top, 1 at its bottom
        voxels = (kk + box[0].start, jj + box[1].start, ii + box[2].start)
        if not in_heart.any():
            label, reason, review = OUTSIDE_HEART, "outside the heart search region", False
        elif hu is not None and index in metal:
            label, review = NOT_CORONARY, False
            reason = (f"{METAL} ({hu[box][inside_box].max():.0f} HU): a pacemaker or ICD lead, clip, sternal wire, stent or "
                      f"valve prosthesis{UNDILUTED_CONTRAST if contrast else ''}, not calcium")
        elif volume >= BONE_VOLUME_MM3:
            label, reason, review = NOT_CORONARY, f"bone-sized ({volume:.0f} mm3)", False
        elif not within:
            label, reason, review = NOT_CORONARY, "runs out of the heart search region (chest wall, spine)", False
        elif _near_the_field_of_views_rim(hu, candidate_mask.shape, spacing, voxel_to_lps, box, inside_box):
            label, review = NOT_CORONARY, False
            reason = (f"{AT_VIEW_EDGE} (within {BONE_GAP_MM:g} mm) where the heart search region meets it: the sternum, "
                      "costal cartilage or spine running out of view, or a lesion the field of view cuts")
        elif (gap := bone_gap_at(*voxels)) <= BONE_GAP_MM:
            label, review = NOT_CORONARY, False
            reason = f"a fragment of bone ({gap:.0f} mm from the sternum, a rib or the spine)"
        elif metal_gap_at is not None and (metal_gap := metal_gap_at(*voxels)) <= METAL_REACH_MM:
            label, review = NOT_CORONARY, False
            reason = (f"{BESIDE_METAL} ({metal_gap:.0f} mm from it): a streak or blooming artefact, or calcium of a "
                      "stented segment, not scored")
        elif (vessel_share := _share_in(great_vessels, box, inside_box)) >= 0.5:
            label, reason, review = AORTA_OR_VALVE, "in the wall of a great vessel (aorta or its root, pulmonary " \
                                                    "trunk, superior vena cava)", False
        elif point[2] > ostia_limit:
            label, review = NOT_CORONARY, False
            reason = (f"{point[2] - ostia_limit + OSTIA_MARGIN_MM:.0f} mm above where the great vessels join the "
                      "heart: above the coronary ostia (hilar or mediastinal calcium)")
        elif contrast and hu is not None and _wrapped_in_iodine(hu, components, index, box):
            label, reason, review = AORTA_OR_VALVE, "inside iodine-filled blood (a chamber or the aorta)", False
        elif on_large_lumen is not None and on_large_lumen(*voxels):
            label, reason, review = AORTA_OR_VALVE, "on the wall of the aorta or a chamber (a wide iodine lumen)", False
        elif (fraction := depth_at(*voxels) / radius) > DEEP_FRACTION:
            label, review = AORTA_OR_VALVE, False
            reason = f"deep inside the heart ({fraction:.2f} of its radius): aortic valve, root or mitral annulus"
        elif (noise_reason := _under_noise_floor(hu, inside_box, box, spacing, floor)) is not None:
            label, reason, review = NOT_CORONARY, noise_reason, False
        elif hu is not None and not _within_in_plane(hu, inside_box, box, spacing, FAT_REACH_MM,
                                                     lambda near: _epicardial_fat(near, spacing)):
            label, review = NOT_CORONARY, False
            reason = (f"no epicardial fat within {FAT_REACH_MM:g} mm: inside the myocardium, a chamber or the aortic "
                      "root (the coronaries run in the epicardial fat)")
        elif (across := across_mm(inside_box, spacing)) >= NODE_ACROSS_MM:
            label, review = NOT_CORONARY, False
            reason = (f"{across:.0f} mm across its narrowest way: thicker than any coronary artery (at most about 5 mm "
                      "with its wall): a calcified lymph node, or valve or annulus calcium")
        elif u < RCA_BELOW_U and t >= BEHIND_THE_ATRIA_T and down < CRUX_DOWN:
            label, review = NOT_CORONARY, False
            reason = (f"behind the atria on the heart's right side (right-left {u:.2f}, front-back {t:.2f}), above the "
                      f"crux ({down:.2f} of the way down): a pulmonary vein, the left atrium's wall, the oesophagus or "
                      "a subcarinal or hilar lymph node; the RCA runs in front of the right atrium at this level")
        elif t < IN_FRONT_T:
            label, review = NOT_CORONARY, False
            reason = (f"in front of the heart's cross-section (front-back {t:.2f}): the sternum, costal cartilage or "
                      "chest wall; the coronaries lie on the heart's surface")
        else:
            label, review = artery_from_position(u, t)
            reason = f"position in the heart's cross-section (right-left {u:.2f}, front-back {t:.2f})"
            if label == RCA and t >= BEHIND_THE_ATRIA_T - REVIEW_MARGIN and down < CRUX_DOWN:
                review, reason = True, reason + "; towards the back above the crux: a subcarinal or hilar node?"
            if fraction > DEEP_REVIEW_FRACTION:
                review, reason = True, reason + f"; deep ({fraction:.2f} of the heart's radius): valve or annulus?"
            if t < 0.0:
                review, reason = True, reason + "; in front of the heart's section: a fragment of the sternum or cartilage?"
            if vessel_share > 0:
                review, reason = True, reason + "; touches a great vessel's wall: coronary ostium or aortic wall?"
            if point[2] > ostia_limit - OSTIA_REVIEW_MM:
                review, reason = True, reason + "; near the top of the heart's base: coronary ostium or hilar node?"
            if across >= THICK_REVIEW_ACROSS_MM:
                review, reason = True, reason + (f"; {across:.0f} mm across: thicker than a coronary's calcium usually "
                                                 "is: a calcified lymph node?")
            if label == LCX and volume >= MAC_REVIEW_MM3:
                review, reason = True, reason + (f"; large ({volume:.0f} mm3) in the left atrioventricular groove: "
                                                 "circumflex calcium, or mitral annular calcification (not coronary)?")
            if at_edge:
                review, reason = True, reason + ("; pokes a voxel out of the heart search region over the lung: "
                                                 "coronary plaque on the heart's surface, or lung or pleural calcium?")
            if back_unbounded and t > 1.0 - BACK_REVIEW_SHARE:
                review, reason = True, reason + ("; at the back of a region no spine bounds: the descending aorta's "
                                                 "wall?")
        labels[box][inside_box] = label
        if at_edge and label in (LAD, LCX, RCA):  # scored on its voxels in the region: none outside it is coronary
            labels[box][inside_box & ~heart_region[box]] = OUTSIDE_HEART
        entries.append({"candidate": index, "label": label, "reason": reason, "review": bool(review),
                        "volume_mm3": volume, "point_lps_mm": point, "box": box,
                        "depth_fraction": fraction if label in (LAD, LCX, RCA) else None})
    _flag_left_main(entries, labels, components, smallest_lesion_mm3=1.0 * float(spacing[2]))
    return Assignment(labels, entries, components)


def across_mm(inside_box: np.ndarray, spacing) -> float:
    """How thick a candidate (`inside_box`, [k, j, i]) is in plane, in mm: across its narrowest way on the slice
    where it is thickest, as twice the distance from its innermost pixel to the nearest pixel outside it, less a
    pixel. Exact for a bar (3 pixels wide: 3); a disk reads 1-2 pixels under its diameter (9 pixels: 7.2), so the
    rules err towards calling a calcification coronary."""
    pixel = (float(spacing[1]), float(spacing[0]))
    deepest = max(float(ndimage.distance_transform_edt(np.pad(plane, 1), sampling=pixel).max())
                  for plane in inside_box if plane.any())
    return 2.0 * deepest - min(pixel)


def _under_noise_floor(hu, inside_box, box, spacing, floor: noise.NoiseFloor | None) -> str | None:
    """The reason a candidate could be noise (under the scan's noise floor, or under the higher floor at the lung's
    border and touching it), None where it is brighter."""
    if floor is None or hu is None:
        return None
    bright = noise.brightest_footprint(hu, inside_box, box, spacing)
    if bright < floor.floor_hu:
        return (f"{POSSIBLE_NOISE}: its brightest 1 mm2 mean, {bright:.0f} HU, is under the scan's noise floor "
                f"({floor.floor_hu:.0f} HU)")
    tissue = noise.surrounding_hu(hu, inside_box, box, spacing)
    if bright < (tissue_floor := floor.floor_in(tissue)):
        return (f"{POSSIBLE_NOISE} in tissue brighter than blood: its brightest 1 mm2 mean, {bright:.0f} HU, is under "
                f"{floor.floor_sd:g} noise SD above the {tissue:.0f} HU tissue around it ({tissue_floor:.0f} HU; the "
                "liver dome under the heart, dense with amiodarone or iron?)")
    if bright < floor.lung_border_hu and _within_in_plane(hu, inside_box, box, spacing, noise.LUNG_BORDER_MM,
                                                           lambda near: near < noise.LUNG_HU):
        return (f"{FAINT_AT_LUNG}, could be noise: its brightest 1 mm2 mean, {bright:.0f} HU, is under the "
                f"floor of {floor.lung_border_hu:.0f} HU within {noise.LUNG_BORDER_MM:g} mm of the lung (hilum, "
                "pulmonary veins)")
    return None


def _within_in_plane(hu: np.ndarray, inside_box: np.ndarray, box, spacing, reach_mm: float, is_target) -> bool:
    """Whether a candidate (`inside_box`: its voxels within `box`) lies within `reach_mm`, in plane, of a voxel
    where `is_target(hu around it)` holds."""
    around, candidate = noise.around_candidate(hu, inside_box, box,
                                               [int(np.ceil(reach_mm / s)) for s in (spacing[1], spacing[0])])
    target = is_target(around)
    if not target.any():
        return False
    return bool((in_plane_distance(~candidate, spacing)[target] <= reach_mm).any())


def _epicardial_fat(hu: np.ndarray, spacing) -> np.ndarray:
    """Fat over the area rule's ~1 mm2 (a single voxel of blood or muscle can read -30 HU in noise, 1 mm2 of it
    hardly ever). Tissue blurred with the lung's air reads as fat too: a candidate there is judged by the lung
    border's floor instead."""
    means = noise.footprint_mean(hu, spacing)
    return (means >= FAT_HU[0]) & (means <= FAT_HU[1])


def heart_base_s_mm(tubes: list[dict]) -> float | None:
    """S (mm) where the great vessels join the heart: the highest lower end of their tubes (anatomy.HeartAnatomy.
    great_vessel_tubes) but those in the posterior mediastinum (the descending aorta, which does not join the
    heart); None without such a tube (then no height limit applies)."""
    return max((tube["from_s_mm"] for tube in tubes if not tube["posterior_mediastinum"]), default=None)


def _at_the_regions_edge(heart_region: np.ndarray, box, inside_box: np.ndarray, hu: np.ndarray | None,
                         spacing) -> bool:
    """A candidate partly outside the heart search region lies at its edge against the lung, rather than running
    out of it, when at least EDGE_SHARE of it is inside, what is outside touches the region (26-connected) and lies
    within noise.LUNG_BORDER_MM of the lung's air: a plaque on the heart's surface against the lung, blurred past the
    region's lung border. Bone, cartilage and calcium of the chest wall or the mediastinum run out of the region
    into soft tissue, never into the lung. Without HU, none."""
    poking_out = inside_box & ~heart_region[box]
    if hu is None or 1.0 - poking_out.sum() / inside_box.sum() < EDGE_SHARE:
        return False
    grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
    near_region = ndimage.binary_dilation(heart_region[grown], structure=np.ones((3, 3, 3), bool))
    offset = tuple(b.start - g.start for b, g in zip(box, grown, strict=True))
    kk, jj, ii = np.nonzero(poking_out)
    if not near_region[kk + offset[0], jj + offset[1], ii + offset[2]].all():
        return False
    return _within_in_plane(hu, poking_out, box, spacing, noise.LUNG_BORDER_MM, lambda near: near < noise.LUNG_HU)


def _near_the_field_of_views_rim(hu: np.ndarray | None, shape, spacing, voxel_to_lps, box,
                                 inside_box: np.ndarray) -> bool:
    """Whether a candidate in the heart search region lies within BONE_GAP_MM in plane of the field of view's edge
    (the image's first or last row or column, or the scanner's padding outside its reconstruction circle, below
    NO_DATA_HU) where that edge lies in front of it or behind it (the nearest edge point more front-to-back than
    right-to-left from it, in patient axes). There the field of view cuts the chest in front of the heart or behind
    it, and what lies at the edge is bone cut by it, the sternum, costal cartilage or spine running on out of view,
    whose fragments sit on it as they do on a bone in view. On the contrast chest CT framed as a 150 mm cardiac
    field of view whose front edge cut through the sternum, its cortex was scored as LAD and RCA. At the sides a
    tight field of view cuts the lungs, and the region reaches the edge there on a third of the gated COCA scans'
    slices, with the heart's borders and their coronaries near it: those edges are left alone."""
    reach = [max(1, int(np.ceil(BONE_GAP_MM / s))) for s in (spacing[1], spacing[0])]
    kk, jj, ii = np.nonzero(inside_box)
    kk, jj, ii = kk + box[0].start, jj + box[1].start, ii + box[2].start
    nearest = []  # (k, j, i) of the candidate voxel and of the edge point nearest to it, per edge within reach
    for axis, (index, limit) in enumerate(((jj, shape[1] - 1), (ii, shape[2] - 1))):
        for end in (0, limit):
            gaps = np.abs(index - end)
            if gaps.min() < reach[axis]:
                at = int(np.argmin(gaps))
                edge = [kk[at], jj[at], ii[at]]
                edge[1 + axis] = end
                nearest.append(((kk[at], jj[at], ii[at]), tuple(edge)))
    if hu is not None and not nearest:
        nearest = _nearest_padding(hu, spacing, box, inside_box, reach)
    return any(_in_front_or_behind(voxel_to_lps, voxel, edge) for voxel, edge in nearest)


def _nearest_padding(hu: np.ndarray, spacing, box, inside_box: np.ndarray, reach) -> list:
    """[((k, j, i) of the candidate voxel nearest to the scanner's padding, (k, j, i) of that padding)] when the
    padding lies within BONE_GAP_MM in plane of the candidate (in the box grown by `reach`), else []."""
    around = (box[0], slice(box[1].start - reach[0], box[1].stop + reach[0]),
              slice(box[2].start - reach[1], box[2].stop + reach[1]))
    padding = hu[around] <= NO_DATA_HU
    if not padding.any():
        return []
    inside = np.pad(inside_box, ((0, 0), (reach[0], reach[0]), (reach[1], reach[1])))
    best = None
    for k in np.nonzero(inside.any(axis=(1, 2)))[0]:
        distance, (rows, cols) = ndimage.distance_transform_edt(~padding[k], sampling=spacing[1::-1],
                                                                 return_indices=True)
        distance = np.where(inside[k], distance, np.inf)
        j, i = np.unravel_index(int(np.argmin(distance)), distance.shape)
        if distance[j, i] <= BONE_GAP_MM and (best is None or distance[j, i] < best[0]):
            best = (distance[j, i], (k, j, i), (k, rows[j, i], cols[j, i]))
    if best is None:
        return []
    offset = np.array([around[0].start, around[1].start, around[2].start])
    return [(tuple(np.array(best[1]) + offset), tuple(np.array(best[2]) + offset))]


def _in_front_or_behind(voxel_to_lps, voxel, edge) -> bool:
    """Whether `edge` lies more front-to-back than right-to-left from `voxel` (both (k, j, i)), in patient axes."""
    a, b = voxel_to_lps(np.array([[voxel[2], voxel[1], voxel[0]], [edge[2], edge[1], edge[0]]], float))
    return bool(abs(b[1] - a[1]) >= abs(b[0] - a[0]))


def _bone_gap_lookup(components: np.ndarray, heart_region: np.ndarray, voxel_mm3: float, grid: _Subsample):
    """`gap(k, j, i)`: mm from those voxels to the nearest bone, i.e. a bone-sized candidate that runs out of the
    heart search region (sternum, ribs, costal cartilage, spine; on the ~2 mm subsample)."""
    # Candidate voxels only: counting over the whole grid made a 64-bit copy of it (0.6 GB for 512 x 512 x 300).
    candidate = components > 0
    sizes = np.bincount(components[candidate]) * voxel_mm3
    running_out = np.unique(components[candidate & ~heart_region])
    bones = running_out[sizes[running_out] >= BONE_VOLUME_MM3]
    if bones.size == 0:
        return lambda _k, _j, _i: np.inf
    small = np.isin(grid.take(components)[0], bones)
    gap = ndimage.distance_transform_edt(~small, sampling=grid.sampling).astype(np.float32)
    return lambda k, j, i: float(grid.at(gap, k, j, i).min())


def _metal_gap_lookup(metal_voxels: np.ndarray, voxel_to_lps):
    """`gap(k, j, i)`: mm from the nearest of those voxels to metal (`metal_voxels`, >= METAL_HU), at full
    resolution: a lead or a clip is thinner than a subsample's step. Measured from the metal itself, not from the
    candidate it belongs to, whose streaks can reach far beyond it."""
    kk, jj, ii = np.nonzero(metal_voxels)
    tree = cKDTree(voxel_to_lps(np.column_stack([ii, jj, kk])))

    def gap(k, j, i):
        distances, _ = tree.query(voxel_to_lps(np.column_stack([i, j, k])), distance_upper_bound=4 * METAL_REACH_MM)
        return float(distances.min())
    return gap


def _share_in(mask: np.ndarray | None, box, inside_box) -> float:
    """Share of a candidate's voxels inside `mask` (0 without a mask)."""
    return 0.0 if mask is None else float(mask[box][inside_box].mean())


def _large_lumen_lookup(hu: np.ndarray, grid: _Subsample):
    """CTA: `touches(k, j, i)`, whether those voxels lie within one 2 mm cell of an iodine-filled lumen at least
    LARGE_LUMEN_RADIUS_MM in radius (the aorta, the chambers): a coronary lumen is 1-2.5 mm in radius, and a
    plaque on it is 3 mm or more from any chamber's blood (myocardium and epicardial fat in between)."""
    iodine = grid.take(hu)[0] >= IODINE_HU
    core = ndimage.distance_transform_edt(iodine, sampling=grid.sampling) >= LARGE_LUMEN_RADIUS_MM
    # Back out to the lumen's edge: every iodine cell within the core's radius of a core cell, then one cell more.
    reach = ndimage.distance_transform_edt(~core, sampling=grid.sampling) <= LARGE_LUMEN_RADIUS_MM
    wall = ndimage.binary_dilation(reach & iodine)
    return lambda k, j, i: bool((grid.at(wall, k, j, i) > 0).any())


def _wrapped_in_iodine(hu, components, index, box) -> bool:
    """At least IODINE_SHELL_SHARE of the in-plane ring (2 voxels) around the candidate is iodine-bright: a
    coronary plaque touches the lumen on one side and the wall and fat on the other, a chamber's noise peak or a
    dense contrast jet has blood all round."""
    grown = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in box)
    inside = components[grown] == index
    ring = ndimage.binary_dilation(inside, structure=np.ones((1, 5, 5), bool)) & ~inside & (components[grown] == 0)
    return bool(ring.any()) and float(np.mean(hu[grown][ring] >= IODINE_HU)) >= IODINE_SHELL_SHARE


def _flag_left_main(entries, labels, components, smallest_lesion_mm3: float) -> None:
    """Left-system lesions within LEFT_SYSTEM_TOP_MM of its highest scorable lesion (>= 1 mm2 on one slice) lie
    at the level of the left main and its bifurcation, where the cross-section cannot tell LM, proximal LAD and
    proximal LCX apart: they are flagged. Those lying as deep as the left main (LEFT_MAIN_DEPTH_FRACTION) are
    scored with the LAD (with which orCaScore folds the LM, and the most often calcified of the three); a
    circumflex lesion out in its groove keeps its LCX."""
    left = [e for e in entries if e["label"] in (LAD, LCX)]
    scorable = [e for e in left if e["volume_mm3"] >= smallest_lesion_mm3]  # specks the area rule will drop
    if not scorable:
        return
    top = max(e["point_lps_mm"][2] for e in scorable)
    for entry in left:
        if entry["point_lps_mm"][2] >= top - LEFT_SYSTEM_TOP_MM:
            if entry["label"] == LCX and entry["depth_fraction"] >= LEFT_MAIN_DEPTH_FRACTION:
                entry["label"] = LAD
                box = entry["box"]
                labels[box][(components[box] == entry["candidate"]) & (labels[box] == LCX)] = LAD
            entry["review"] = True
            entry["reason"] += ("; at the left main's level: LM, proximal LAD or LCX (scored as "
                                + ("LAD)" if entry["label"] == LAD else "LCX: out in its groove, not as deep as the LM)"))
