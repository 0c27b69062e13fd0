"""Vertebral body heights as Genant's semiquantitative method reads them (pipeline.deformed_bodies names the
fractures they show).

Genant et al. (J Bone Miner Res 1993) grade a vertebral fracture by the loss of its anterior, middle or posterior
height: a wedge fracture loses the front (anterior against posterior height), a biconcave one the middle (the end
plates pushed in), a crush the whole body (against the neighbours: pipeline.shorter_than_neighbours). Grade 1 is a
20-25 % loss, grade 2 (moderate) 25-40 %, grade 3 (severe) over 40 %. Half of all osteoporotic vertebral fractures are
wedges, and a wedge keeps the back of the body, so the body's overall height does not show it.

The heights are read along the spine's own axis at the body (from its neighbours' centres; the spine is tilted
against the slices by its kyphosis and lordosis), on the body's mid-sagittal slab, at the front, the middle and the
back of the body: each the median over the columns there of the body outline's extent along the axis (a network's
or a given mask's), or, where it differs from that by more than OUTLINE_TOLERANCE_MM, the height between the end
plates the scan shows in those columns. A network that learnt no fractured spine draws a squeezed body at about its
old height, and one that leaves a body's corner out draws a wedge: the outline alone names fractures that are not
there and misses those that are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry

# Where the heights are read, as shares of the body's depth (front to back) and width on its mid-sagittal slab:
# inside the cortex's rounded edge at the front and back, and the middle fifth.
EDGE_BAND = (0.05, 0.20)
MIDDLE_BAND = 0.10
MID_SAGITTAL_HALF_WIDTH = 0.20
COLUMN_MM = 1.0  # the columns' cross-section: the in-plane pixel size of most CTs


@dataclass(frozen=True)
class BodyHeights:
    """Anterior, middle and posterior heights of one vertebral body (mm), along the spine's axis there, and which
    of them were read between the end plates the scan shows (the others are the outline's)."""

    anterior: float
    middle: float
    posterior: float
    read_on_scan: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"anterior": round(self.anterior, 1), "middle": round(self.middle, 1),
                "posterior": round(self.posterior, 1)}


def spine_axis(centre, above=None, below=None) -> np.ndarray:
    """The spine's direction at a body (x, y, z, pointing to the head) from the centres (x, y, z in mm) of the bodies
    above and below it (one of them at the ends of the spine in view, with the body's own); the slice axis with
    neither."""
    top = centre if above is None else above
    bottom = centre if below is None else below
    axis = np.asarray(top, float) - np.asarray(bottom, float)
    if np.linalg.norm(axis) == 0:
        return np.array([0.0, 0.0, 1.0])
    axis = axis / np.linalg.norm(axis)
    return axis if axis[2] >= 0 else -axis


def body_heights(body: np.ndarray, spacing, axis: np.ndarray, hu: np.ndarray | None = None,
                 every_body: np.ndarray | None = None) -> BodyHeights | None:
    """Anterior, middle and posterior heights of a body mask ([slices, rows, columns] of a scan turned to LPS:
    columns to the left, rows to the back, slices to the head; `spacing` x, y, z in mm) along `axis` (x, y, z).
    With the scan's HU (`hu`, and `every_body`: the bodies found, this one among them), each height's end plates are
    then found on the scan itself (_end_plates_on_the_scan). None when the body's mid-sagittal slab holds no column
    at the front, middle or back (a sliver)."""
    whole = geometry.bounding_box(body)
    if whole[0].stop == whole[0].start:
        return None
    # Read on the body's box (with a voxel of margin for the interpolation; along the spine, room for the discs when
    # the scan is read too), not on the whole scan.
    reach = np.ones(3, int) if hu is None else 1 + np.ceil(SCAN_MARGIN_MM / np.asarray(spacing[::-1])).astype(int)
    box = tuple(slice(max(side.start - r, 0), side.stop + r) for side, r in zip(whole, reach, strict=True))
    inside, depth, width, sample = _along_the_spine(body[box], spacing, axis, 0.0 if hu is None else SCAN_MARGIN_MM)
    # A column's height runs from its lowest to its highest sample inside the body: a gap the network left in the
    # trabecular bone (a vein, a lesion) does not shorten it.
    present = inside >= 0.5
    lowest = np.argmax(present, axis=0)
    highest = present.shape[0] - 1 - np.argmax(present[::-1], axis=0)
    heights = np.where(present.any(0), (highest - lowest + 1) * COLUMN_MM, 0.0)  # [depth (to the front), width]
    # The body's outline is read at its mid-height: end-plate rims and osteophytes reach beyond it in the slices by
    # the discs, and the front and back bands would land on them.
    spans = np.nonzero(inside.max((1, 2)) >= 0.5)[0]
    if spans.size == 0:
        return None
    quarter = max(1, (spans[-1] - spans[0]) // 4)
    footprint = inside[spans[0] + quarter:spans[-1] - quarter + 1].mean(0) >= 0.5
    if not footprint.any():
        return None
    across = np.nonzero(footprint.any(0))[0]
    middle_w = 0.5 * (width[across[0]] + width[across[-1]])
    slab = np.abs(width - middle_w) <= MID_SAGITTAL_HALF_WIDTH * (width[across[-1]] - width[across[0]])
    rows = np.nonzero(footprint[:, slab].any(1))[0]
    back, ahead = depth[rows[0]], depth[rows[-1]]
    extent = ahead - back
    middle_at = back + 0.5 * extent
    bands = {"anterior": (ahead - EDGE_BAND[1] * extent, ahead - EDGE_BAND[0] * extent),
             "middle": (middle_at - MIDDLE_BAND * extent, middle_at + MIDDLE_BAND * extent),
             "posterior": (back + EDGE_BAND[0] * extent, back + EDGE_BAND[1] * extent)}
    columns = {part: np.outer((depth >= nearest) & (depth <= furthest), slab) & footprint
               for part, (nearest, furthest) in bands.items()}
    if not all(chosen.any() for chosen in columns.values()):
        return None
    read = {part: float(np.median(heights[chosen])) for part, chosen in columns.items()}
    if hu is not None:
        others = None if every_body is None else every_body[box] & ~body[box]
        ends = {part: (float(np.median(lowest[chosen])), float(np.median(highest[chosen])))
                for part, chosen in columns.items()}
        # Each band's median HU profile along the spine, and where another body's outline holds it.
        profiles = {part: (np.median(sample(hu[box], chosen), axis=1),
                           None if others is None else np.median(sample(others, chosen), axis=1) >= 0.5)
                    for part, chosen in columns.items()}
        on_scan = _end_plates_on_the_scan(profiles, ends, read)
        return BodyHeights(on_scan["anterior"], on_scan["middle"], on_scan["posterior"],
                           tuple(part for part in on_scan if on_scan[part] != read[part]))
    return BodyHeights(read["anterior"], read["middle"], read["posterior"])


# Where the end plates are looked for on the scan, along each band's median HU profile: beyond each end of the
# network's outline as far as a grade 3 fracture's lost height (40 % of a 30-35 mm lumbar body) and the disc beyond
# it, and never further inside the outline than INWARD_SHARE of its height (the basivertebral vein, dark on a scan
# without contrast, enters at mid-height). An end plate is cortical bone, PLATE_OVER_CORE_HU or more over the body's
# core: the real CTs' end plates read 170-390 HU, their cores 95-140 and their discs 60-145 (a thin disc between two
# plates on 2 mm slices); trabecular bone reads within BONE_UNDER_CORE_HU under the core, a disc below that.
DISC_SEARCH_MM = 20.0
INWARD_SHARE = 0.4
SCAN_MARGIN_MM = DISC_SEARCH_MM + 5.0  # the scan read around the body: the disc search and the spine's tilt
PLATE_OVER_CORE_HU = 40.0
BONE_UNDER_CORE_HU = 15.0
PLATE_PEAK_MM = 3.0  # the plate's brightest sample is looked for this far either side of where it is reached
END_PLATE_CONTRAST_HU = 50.0  # less between end plate and disc (a scan too smooth or too noisy): the outline's height
# An outline's height stands within this of the height between the end plates the scan shows: a 2-3 mm slice blurs
# a plate by a millimetre or more each way, and the network's outlines, redrawn to the cortex, end within a sample
# or two of it.
OUTLINE_TOLERANCE_MM = 3.0
# A grade 3 fracture loses 40 % or more of its height, and the network may draw the squeezed body taller than it was
# (the chest CT's T12 squeezed to 15 mm at its front: outlined 30 mm): down to this share of the outline's height.
MIN_SHARE_OF_OUTLINE = 0.4


def _end_plates_on_the_scan(profiles: dict, ends: dict, outline_heights: dict) -> dict:
    """part -> height (mm) in that band's columns: the outline's (`outline_heights`; `ends`: the band's median lowest
    and highest samples of the outline), or the height between the two end plates the scan shows there (`profiles`:
    part -> (the band's median HU profile along the spine, where another body's outline holds it or None)) where
    that differs from it by more than OUTLINE_TOLERANCE_MM. So a body's corner a network left out does not read as a
    wedge, nor does a squeezed body a network drew at its old height keep it; within the tolerance the outline
    stands, and bodies whose plates the scan does not show (a thin disc; no disc search enters another body) are
    read as the bodies beside them are."""
    read = {}
    for part, (profile, elsewhere) in profiles.items():
        outline = outline_heights[part]
        elsewhere = np.zeros(len(profile), bool) if elsewhere is None else elsewhere
        low, high = (int(round(end)) for end in ends[part])
        core = float(np.nanmedian(profile[low + (high - low) // 4:high - (high - low) // 4 + 1]))
        inward = INWARD_SHARE * (high - low + 1)  # in samples
        bottom = _end_plate(profile, elsewhere, low, -1, core, inward)
        top = _end_plate(profile, elsewhere, high, +1, core, inward)
        scanned = None if bottom is None or top is None else float(top - bottom) * COLUMN_MM
        # A height under MIN_SHARE_OF_OUTLINE of the outline's is no body's (the chest CT's T1, read 40 degrees off
        # its slices, whose posterior band runs through pedicles and ribs: 3 mm against 9.5).
        read[part] = (scanned if scanned is not None and abs(scanned - outline) > OUTLINE_TOLERANCE_MM
                      and scanned >= MIN_SHARE_OF_OUTLINE * outline else outline)
    return read


def _end_plate(profile: np.ndarray, elsewhere: np.ndarray, end: int, outwards: int, core: float,
               inward: float) -> float | None:
    """The outer edge of the body's end plate at one end of a band, in samples along the profile: where the profile
    falls halfway from the plate's brightest to the disc beyond it. None where the scan does not show it (the scan's
    end, no plate bright enough over the core and the disc). From the outline's end (`end`; `outwards` +1 at the
    top, -1 at the bottom) the plate is looked for outwards through bone (a corner the network left out), else
    inwards (an outline that ends in disc: a squeezed body drawn at its old height), never into another body
    (`elsewhere`)."""
    n, search, peak_reach = len(profile), DISC_SEARCH_MM / COLUMN_MM, int(round(PLATE_PEAK_MM / COLUMN_MM))
    plate_hu, bone_hu = core + PLATE_OVER_CORE_HU, core - BONE_UNDER_CORE_HU

    def on_scan(u: int) -> bool:
        return 0 <= u < n and not elsewhere[u] and not np.isnan(profile[u])

    u = end
    while on_scan(u) and bone_hu <= profile[u] < plate_hu and abs(u - end) <= search:
        u += outwards  # through bone towards a plate beyond the outline
    if not (on_scan(u) and profile[u] >= plate_hu):
        u = end
        while on_scan(u) and profile[u] < plate_hu and (end - u) * outwards <= inward:
            u -= outwards  # back into the outline
        if not (on_scan(u) and profile[u] >= plate_hu):
            return None
    around = [v for v in range(u - peak_reach, u + peak_reach + 1) if on_scan(v)]
    brightest = max(around, key=lambda v: profile[v])
    # The disc: the darkest sample beyond the plate, before the next plate (the neighbour's) or the search's end.
    disc, dipped, v = np.inf, False, brightest + outwards
    while on_scan(v) and abs(v - end) <= search and not (dipped and profile[v] >= plate_hu):
        disc, dipped = min(disc, float(profile[v])), dipped or profile[v] < plate_hu
        v += outwards
    if not np.isfinite(disc) or profile[brightest] - disc < END_PLATE_CONTRAST_HU:
        return None
    edge_hu = 0.5 * (float(profile[brightest]) + disc)
    edge = brightest
    while on_scan(edge + outwards) and profile[edge + outwards] >= edge_hu:
        edge += outwards
    if not on_scan(edge + outwards):
        return float(edge)
    # Between the samples (1 mm apart): where the profile crosses the edge's level.
    return edge + outwards * float((profile[edge] - edge_hu) / (profile[edge] - profile[edge + outwards]))


def _along_the_spine(body: np.ndarray, spacing, axis: np.ndarray, along_margin_mm: float = 0.0) -> tuple:
    """(the body mask (its box) resampled linearly onto a COLUMN_MM grid [along the axis, to the front, to the side],
    the grid's positions to the front and to the side in mm, sample(array, columns): another array of the same box
    along the grid's `columns` (a [front, side] mask), [along, column], NaN off the box (0 for a mask)): the end
    plates placed between slices, not rounded to them. The grid reaches `along_margin_mm` beyond the body along the
    axis."""
    from scipy import ndimage

    k, j, i = np.nonzero(body)
    spacing = np.asarray(spacing, float)
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    front = np.array([0.0, -1.0, 0.0]) + axis * axis[1]  # LPS y points to the back; anterior, square to the axis
    front /= np.linalg.norm(front)
    frame = np.stack([axis, front, np.cross(axis, front)])  # rows: along the spine, to the front, to the side
    points = np.stack([i, j, k], 1) * spacing
    centre = points.mean(0)
    local = (points - centre) @ frame.T
    margin = 2 * spacing.max() + np.array([along_margin_mm, 0.0, 0.0])
    low, high = local.min(0) - margin, local.max(0) + margin
    along, depth, width = (np.arange(a, b + COLUMN_MM, COLUMN_MM) for a, b in zip(low, high, strict=True))

    def voxels(grid_mm: np.ndarray) -> np.ndarray:  # (..., 3) positions in the frame -> slice, row, column indices
        return ((grid_mm @ frame + centre) / spacing)[..., ::-1].transpose(-1, *range(grid_mm.ndim - 1))

    grid = np.stack(np.meshgrid(along, depth, width, indexing="ij"), -1)
    inside = ndimage.map_coordinates(body.astype(np.float32), voxels(grid), order=1, mode="constant", cval=0.0)

    def sample(array: np.ndarray, columns: np.ndarray) -> np.ndarray:
        d, w = np.nonzero(columns)
        at = np.stack(np.broadcast_arrays(along[:, None], depth[d][None, :], width[w][None, :]), -1)
        return ndimage.map_coordinates(array.astype(np.float32), voxels(at), order=1, mode="constant",
                                       cval=0.0 if array.dtype == bool else np.nan)

    return inside, depth, width, sample
