"""AHA 17-segment model on a short-axis stack (docs/REFERENCE.md section 3).

Slices with myocardium are ordered base to apex (the base has the larger cavity) and split into basal, mid and
apical thirds; slices with myocardium but no cavity form the apex cap (17). Basal and mid rings have six 60-degree
segments starting at the anterior RV insertion point and running through the septum (anteroseptal, inferoseptal,
inferior, inferolateral, anterolateral, anterior: 2, 3, 4, 5, 6, 1 / 8, 9, 10, 11, 12, 7); the apical ring has four
90-degree segments centred on the anterior, septal, inferior and lateral walls (13-16).
The insertion point is an angle about the LV centre (degrees counter-clockwise from image up as displayed) and a
direction (+1 when the septum lies counter-clockwise of it, as in the conventional display with the RV on the image
left). The automatic estimate (`estimate_rv_insertion`) finds the RV as an arc of blood-bright signal just outside
the LV epicardium; the anterior insertion is the end of that arc from which the septum runs in `direction`.
When the stack carries its orientation (`orientation_prior`: real short-axis direction cosines), anatomy says where
the RV lies (anterior and to the patient's right of the LV) and which end of its arc is anterior, so the image only
has to place the edge; without an orientation the widest bright arc is taken, and without such an arc the
conventional display is assumed (insertion at 60 degrees).
"""

from __future__ import annotations

import numpy as np

from .quantify import angle_about, lv_centre, pixel_angles
from .settings import DEFAULT_SEPTUM_DIRECTION

TERRITORIES = {"LAD": [1, 2, 7, 8, 13, 14, 17], "RCA": [3, 4, 9, 10, 15], "LCX": [5, 6, 11, 12, 16]}
NAMES = {1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
         5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
         9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
         13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex"}
DEFAULT_INSERTION_DEG = 60.0
DEFAULT_DIRECTION = DEFAULT_SEPTUM_DIRECTION  # a setting (scar/settings.py)
# The RV meets the LV over about 100 degrees of its circumference (the septum between the two insertions; 70-125
# degrees in the MyoPS labels): the insertion lies about half that from the RV's centre.
RV_HALF_ARC_DEG = 50.0
PRIOR_REACH_DEG = (45.0, 30.0)  # a bright arc counts when its centre and its insertion edge lie this near the prior

# Patient directions (LPS) whose projection onto the short-axis plane anatomy fixes: the RV lies anterior and to the
# right of the LV (normal situs); the anterior insertion is the end of its arc towards anterior-superior.
_RV_SIDE = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)
_ANTERIOR_SUPERIOR = np.array([0.0, -1.0, 1.0]) / np.sqrt(2.0)
# The LV's long axis runs from the base to the apex towards the patient's left, front and feet (LPS); the 30 MyoPS
# stacks' slice normals lie within 30 degrees of it (cosines 0.87-1.00).
_BASE_TO_APEX = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)


def slice_rings(cavity: np.ndarray, myocardium: np.ndarray, apex_first: bool | None = None) -> dict[int, str]:
    """slice index -> 'basal' | 'mid' | 'apical' | 'apex'. Which end of the stack is the base: from the scan's
    orientation when it has one (`apex_first`, stack_runs_apex_first), else the end with the larger cavity (on 2 of
    the 30 MyoPS stacks, whose end slices' cavities are alike, that put the apex at the base)."""
    slices = [k for k in range(myocardium.shape[0]) if myocardium[k].any()]
    if not slices:
        return {}
    areas = [cavity[k].sum() for k in slices]
    if apex_first if apex_first is not None else areas[0] < areas[-1]:  # make the list run base -> apex
        slices, areas = slices[::-1], areas[::-1]
    ring_slices = [k for k, a in zip(slices, areas, strict=True) if a > 0]
    out = {k: "apex" for k, a in zip(slices, areas, strict=True) if a == 0}
    n = len(ring_slices)
    for position, k in enumerate(ring_slices):
        third = min(position * 3 // max(n, 1), 2)
        out[k] = ("basal", "mid", "apical")[third]
    return out


def segment_of(angle_from_insertion: np.ndarray, ring: str) -> np.ndarray:
    """Segment number for angles measured from the anterior RV insertion towards the septum."""
    a = angle_from_insertion % 360.0
    if ring in ("basal", "mid"):
        order = np.array([2, 3, 4, 5, 6, 1]) + (0 if ring == "basal" else 6)
        return order[(a // 60).astype(int) % 6]
    if ring == "apical":
        # 90-degree segments centred on the septum (60 deg past the insertion, the 2/3 boundary), the inferior
        # wall (150), the lateral wall (240) and the anterior wall (330): septal starts at 15 deg.
        shifted = (a - 15.0) % 360.0
        return np.array([14, 15, 16, 13])[(shifted // 90).astype(int) % 4]
    return np.full(a.shape, 17)


def segment_map(cavity: np.ndarray, myocardium: np.ndarray, insertion_deg: float = DEFAULT_INSERTION_DEG,
                direction: int = DEFAULT_DIRECTION, apex_first: bool | None = None) -> np.ndarray:
    """Segment number (1-17, 0 outside the myocardium) for every myocardial pixel."""
    angles = pixel_angles(myocardium.shape, lv_centre(cavity, myocardium))
    out = np.zeros(myocardium.shape, np.uint8)
    for k, ring in slice_rings(cavity, myocardium, apex_first).items():
        relative = direction * (angles[k] - insertion_deg)
        segments = segment_of(np.nan_to_num(relative), ring)
        out[k][myocardium[k]] = segments[myocardium[k]]
    return out


def _circular_runs(present: np.ndarray) -> list[tuple[int, int]]:
    """(first bin, length) of each run of True in a circular boolean array."""
    n = present.size
    if present.all():
        return [(0, n)]
    start = int(np.argmin(present))  # a False bin: runs cannot wrap past it
    runs: list[tuple[int, int]] = []
    first, length = 0, 0
    for step in range(1, n + 1):
        b = (start + step) % n
        if present[b]:
            first = b if length == 0 else first
            length += 1
        elif length:
            runs.append((first, length))
            length = 0
    return runs


def rv_blood_fraction(signal: np.ndarray, cavity: np.ndarray, myocardium: np.ndarray, pixel_mm: tuple[float, float],
                      band_mm=(2.0, 12.0), bin_deg: float = 5.0, apex_first: bool | None = None) -> np.ndarray | None:
    """Per angle bin, the share of pixels 2-12 mm outside the epicardium that are as bright as blood (above the
    midpoint of myocardium and cavity medians of their slice), averaged over the basal and mid slices."""
    centres = lv_centre(cavity, myocardium)
    angles = pixel_angles(myocardium.shape, centres)
    rows, cols = np.indices(myocardium.shape[1:])
    bins = int(round(360 / bin_deg))
    total, count = np.zeros(bins), np.zeros(bins)
    for k, ring in slice_rings(cavity, myocardium, apex_first).items():
        if ring not in ("basal", "mid") or cavity[k].sum() < 10:
            continue
        radius = np.hypot((rows - centres[k][0]) * pixel_mm[0], (cols - centres[k][1]) * pixel_mm[1])
        which = (np.nan_to_num(angles[k]) // bin_deg).astype(int) % bins
        epicardium = np.zeros(bins)
        np.maximum.at(epicardium, which[myocardium[k]], radius[myocardium[k]])
        threshold = 0.5 * (np.median(signal[k][myocardium[k]]) + np.median(signal[k][cavity[k]]))
        outside = ~(myocardium[k] | cavity[k])
        band = outside & (radius >= epicardium[which] + band_mm[0]) & (radius <= epicardium[which] + band_mm[1])
        band &= epicardium[which] > 0
        np.add.at(total, which[band], signal[k][band] > threshold)
        np.add.at(count, which[band], 1)
    return total / np.maximum(count, 1) if count.any() else None  # bins without samples (image edge): no RV


def degrees_apart(a, b):
    """The angle between two directions in degrees (0-180), for numbers or arrays."""
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


def orientation_prior(direction_matrix: np.ndarray) -> tuple[float, int] | None:
    """From a 3D stack's direction cosines (LPS; columns: the image's column, row and slice axes): the angle
    (counter-clockwise from image up, about the LV centre) towards which the RV lies, and the septum direction (+1
    when the septum runs counter-clockwise from the anterior insertion). None when the stack has no orientation of
    its own (identity: a 2D image, or a file without one) or its plane holds too little of those directions."""
    if direction_matrix.shape != (3, 3) or np.allclose(direction_matrix, np.eye(3)):
        return None
    columns, rows = direction_matrix[:, 0], direction_matrix[:, 1]
    in_plane = [(float(v @ rows), float(v @ columns)) for v in (_RV_SIDE, _ANTERIOR_SUPERIOR)]
    if min(np.hypot(*v) for v in in_plane) < 0.5:
        return None
    rv, anterior = (float(angle_about(row, col, (0.0, 0.0))) for row, col in in_plane)
    # The anterior insertion is the RV arc's end on the anterior-superior side; the septum runs from it away from
    # that side.
    direction = -1 if (anterior - rv) % 360.0 < 180.0 else +1
    return rv, direction


def stack_runs_apex_first(direction_matrix: np.ndarray) -> bool | None:
    """From a 3D stack's direction cosines (LPS; columns: the column, row and slice axes): True when its slices run
    from the apex to the base, False when from the base to the apex; None when the stack has no orientation of its
    own (identity) or its slices are too far from short-axis to tell (the slice axis over 60 degrees off the LV's
    long axis)."""
    if direction_matrix.shape != (3, 3) or np.allclose(direction_matrix, np.eye(3)):
        return None
    towards_apex = float(direction_matrix[:, 2] @ _BASE_TO_APEX)
    return None if abs(towards_apex) < 0.5 else towards_apex < 0


def degrees_from_long_axis(direction_matrix: np.ndarray) -> float:
    """The angle between a stack's slice axis (direction cosines, LPS) and the LV's usual long axis: 0-30 degrees
    for short-axis stacks (MyoPS's 30: 2-29), 54.7 for any axial, sagittal or coronal stack, near 90 for long-axis
    views."""
    return float(np.degrees(np.arccos(min(1.0, abs(float(direction_matrix[:, 2] @ _BASE_TO_APEX))))))


def estimate_rv_insertion(signal: np.ndarray, cavity: np.ndarray, myocardium: np.ndarray,
                          pixel_mm: tuple[float, float], direction: int = DEFAULT_DIRECTION,
                          bin_deg: float = 5.0, arc_deg=(60.0, 240.0), rv_side_deg: float | None = None,
                          apex_first: bool | None = None) -> float | None:
    """Anterior RV insertion angle: the end (from which the septum runs in `direction`) of an arc where blood-bright
    signal lies just outside the epicardium (the RV cavity across the septum).

    With `rv_side_deg` (the RV's side from the scan's orientation, `orientation_prior`) the arc is the one centred
    near that side, and its edge is taken where it lies near the insertion anatomy expects (`expected_insertion`).
    Without it the widest arc of 60-240 degrees is taken. None when the image shows no such arc
    (`automatic_rv_insertion` then falls back)."""
    fraction = rv_blood_fraction(signal, cavity, myocardium, pixel_mm, bin_deg=bin_deg, apex_first=apex_first)
    runs = _circular_runs(fraction > 0.5) if fraction is not None else []
    runs = [(first, length) for first, length in runs if arc_deg[0] <= length * bin_deg <= arc_deg[1]]
    edge = lambda first, length: (first if direction > 0 else first + length) * bin_deg % 360.0  # noqa: E731
    if rv_side_deg is None:
        return float(edge(*max(runs, key=lambda run: run[1]))) if runs else None
    expected = expected_insertion(rv_side_deg, direction)
    edges = [edge(first, length) for first, length in runs
             if degrees_apart((first + length / 2) * bin_deg, rv_side_deg) <= PRIOR_REACH_DEG[0]]
    edges = [e for e in edges if degrees_apart(e, expected) <= PRIOR_REACH_DEG[1]]
    return float(min(edges, key=lambda e: degrees_apart(e, expected))) if edges else None


def expected_insertion(rv_side_deg: float, direction: int) -> float:
    """The anterior insertion anatomy expects from the RV's side alone: RV_HALF_ARC_DEG from the RV's centre."""
    return float((rv_side_deg - direction * RV_HALF_ARC_DEG) % 360.0)


# How the automatic insertion was found (the JSON's rv_insertion.basis): the RV blood's edge in the image; the
# scan's orientation alone, the image showing no RV blood against the septum (on MyoPS these were the cases with
# the largest errors: the RV's position about the LV varies from patient to patient); neither.
FROM_IMAGE, FROM_ORIENTATION, ASSUMED = "image", "orientation alone", "conventional display assumed"


def insertion_of_rv_label(rv: np.ndarray, cavity: np.ndarray, myocardium: np.ndarray, pixel_mm: tuple[float, float],
                          direction: int = DEFAULT_DIRECTION, apex_first: bool | None = None) -> float | None:
    """The anterior insertion a labelled RV gives (a reader's labels, MyoPS's 600): its edge against the septum,
    found as the image's RV blood is (estimate_rv_insertion, the label as the bright signal); None where it meets
    no septum."""
    return estimate_rv_insertion(rv.astype(np.float32), cavity, myocardium, pixel_mm, direction, apex_first=apex_first)


def automatic_rv_insertion(signal: np.ndarray, cavity: np.ndarray, myocardium: np.ndarray,
                           pixel_mm: tuple[float, float], direction: int = DEFAULT_DIRECTION,
                           rv_side_deg: float | None = None, apex_first: bool | None = None) -> tuple[float, str]:
    """(angle, basis): `estimate_rv_insertion`; else, with the scan's orientation, the insertion it gives
    (`expected_insertion`); else DEFAULT_INSERTION_DEG. The basis is FROM_IMAGE, FROM_ORIENTATION or ASSUMED."""
    angle = estimate_rv_insertion(signal, cavity, myocardium, pixel_mm, direction, rv_side_deg=rv_side_deg,
                                  apex_first=apex_first)
    if angle is not None:
        return angle, FROM_IMAGE
    if rv_side_deg is not None:
        return expected_insertion(rv_side_deg, direction), FROM_ORIENTATION
    return DEFAULT_INSERTION_DEG, ASSUMED


def angle_of_point(row: float, col: float, slice_index: int, cavity: np.ndarray, myocardium: np.ndarray) -> float:
    """Angle (counter-clockwise from image up) of a point about the LV centre of its slice (or the nearest slice
    with myocardium), e.g. an insertion point the reader placed."""
    centres = lv_centre(cavity, myocardium)
    valid = np.flatnonzero(np.isfinite(centres[:, 0]))
    if valid.size == 0:
        raise ValueError("no myocardium")
    k = valid[np.argmin(np.abs(valid - slice_index))]
    return float(angle_about(row, col, centres[k]))


def insertion_marker(angle_deg: float, cavity: np.ndarray, myocardium: np.ndarray,
                     apex_first: bool | None = None) -> tuple[float, float, int]:
    """(row, col, slice) of a point on the epicardium at `angle_deg` in the middle ring slice: where the panel
    puts the adjustable insertion point."""
    rings = slice_rings(cavity, myocardium, apex_first)
    middle = [k for k, ring in rings.items() if ring == "mid"] or list(rings)
    k = sorted(middle)[len(middle) // 2]
    centre = lv_centre(cavity, myocardium)[k]
    rows, cols = np.indices(myocardium.shape[1:])
    angles = angle_about(rows, cols, centre)
    near = myocardium[k] & (degrees_apart(angles, angle_deg) <= 5.0)
    radius = np.hypot(rows - centre[0], cols - centre[1])[near].max() if near.any() else 0.0
    theta = np.radians(angle_deg)
    return float(centre[0] - radius * np.cos(theta)), float(centre[1] - radius * np.sin(theta)), int(k)


def per_segment(segments: np.ndarray, myocardium: np.ndarray, scar_total: np.ndarray, spacing) -> dict:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = {}
    for number in range(1, 18):
        mask = segments == number
        myo = int((mask & myocardium).sum())
        scar = int((mask & scar_total).sum())
        out[str(number)] = {"name": NAMES[number], "myocardium_ml": myo * voxel_ml, "scar_ml": scar * voxel_ml,
                            "lge_percent": 100.0 * scar / myo if myo else None, "present": bool(myo)}
    return out


def territories(segment_figures: dict) -> dict:
    out = {}
    for name, members in TERRITORIES.items():
        myo = sum(segment_figures[str(m)]["myocardium_ml"] for m in members)
        scar = sum(segment_figures[str(m)]["scar_ml"] for m in members)
        out[name] = {"segments": members, "lge_percent": 100.0 * scar / myo if myo else None}
    return out


def transmurality(segments: np.ndarray, myocardium: np.ndarray, scar_total: np.ndarray, cavity: np.ndarray,
                  bin_deg: float = 6.0) -> dict:
    """Mean and maximum transmural extent (%) per segment: share of scar along each 6-degree ray bin."""
    angles = pixel_angles(myocardium.shape, lv_centre(cavity, myocardium))
    extent: dict[int, list[float]] = {n: [] for n in range(1, 18)}
    for k in range(myocardium.shape[0]):
        if not myocardium[k].any():
            continue
        bins = (np.nan_to_num(angles[k]) // bin_deg).astype(int)
        for b in np.unique(bins[myocardium[k]]):
            ray = myocardium[k] & (bins == b)
            segment = int(np.bincount(segments[k][ray]).argmax())
            extent[segment].append(100.0 * (scar_total[k] & ray).sum() / ray.sum())
    return {str(n): {"mean": float(np.mean(v)) if v else None, "max": float(np.max(v)) if v else None}
            for n, v in extent.items()}
