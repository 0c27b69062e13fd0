"""Vertebral body heights as Genant's semiquantitative method reads them (pipeline.deformed_bodies names the
fractures they show).

Genant et al. (J Bone Miner Res 1993) grade a vertebral fracture by the loss of its anterior, middle or posterior
height: a wedge fracture loses the front (anterior against posterior height), a biconcave one the middle (the end
plates pushed in), a crush the whole body (against the neighbours: pipeline.shorter_than_neighbours). Grade 1 is a
20-25 % loss, grade 2 (moderate) 25-40 %, grade 3 (severe) over 40 %. Half of all osteoporotic vertebral fractures are
wedges, and a wedge keeps the back of the body, so the body's overall height does not show it.

The heights are read along the spine's own axis at the body (from its neighbours' centres; the spine is tilted
against the slices by its kyphosis and lordosis), on the body's mid-sagittal slab, at the front, the middle and the
back of the body: each the median over the columns there of the body's extent along the axis.
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
    """Anterior, middle and posterior heights of one vertebral body (mm), along the spine's axis there."""

    anterior: float
    middle: float
    posterior: float

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


def body_heights(body: np.ndarray, spacing, axis: np.ndarray) -> BodyHeights | None:
    """Anterior, middle and posterior heights of a body mask ([slices, rows, columns] of a scan turned to LPS:
    columns to the left, rows to the back, slices to the head; `spacing` x, y, z in mm) along `axis` (x, y, z).
    None when the body's mid-sagittal slab holds no column at the front, middle or back (a sliver)."""
    whole = geometry.bounding_box(body)
    if whole[0].stop == whole[0].start:
        return None
    # Read on the body's box (with a voxel of margin for the interpolation), not on the whole scan.
    box = tuple(slice(max(side.start - 1, 0), side.stop + 1) for side in whole)
    inside, depth, width = _along_the_spine(body[box], spacing, axis)
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

    def median_height(nearest: float, furthest: float) -> float | None:
        band = (depth >= nearest) & (depth <= furthest)
        chosen = heights[np.ix_(band, slab)][footprint[np.ix_(band, slab)]]
        return float(np.median(chosen)) if chosen.size else None

    middle_at = back + 0.5 * extent
    anterior = median_height(ahead - EDGE_BAND[1] * extent, ahead - EDGE_BAND[0] * extent)
    middle = median_height(middle_at - MIDDLE_BAND * extent, middle_at + MIDDLE_BAND * extent)
    posterior = median_height(back + EDGE_BAND[0] * extent, back + EDGE_BAND[1] * extent)
    if anterior is None or middle is None or posterior is None:
        return None
    return BodyHeights(anterior, middle, posterior)


def _along_the_spine(body: np.ndarray, spacing, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the mask (its box) resampled linearly onto a COLUMN_MM grid [along the axis, to the front, to the side], the
    grid's positions to the front and to the side in mm): the end plates placed between slices, not rounded to
    them."""
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
    low, high = local.min(0) - 2 * spacing.max(), local.max(0) + 2 * spacing.max()
    along, depth, width = (np.arange(a, b + COLUMN_MM, COLUMN_MM) for a, b in zip(low, high, strict=True))
    grid = np.stack(np.meshgrid(along, depth, width, indexing="ij"), -1) @ frame + centre  # x, y, z in mm
    voxel = (grid / spacing)[..., ::-1].transpose(3, 0, 1, 2)  # slice, row, column indices
    inside = ndimage.map_coordinates(body.astype(np.float32), voxel, order=1, mode="constant", cval=0.0)
    return inside, depth, width
