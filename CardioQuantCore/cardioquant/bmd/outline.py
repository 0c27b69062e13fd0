"""Vertebral bodies from the network's 2 mm grid redrawn on the scan's own pixels, out to their cortical shell.

On real scans it did not train on, the network often finds only part of a body: on the chest CT's held-out lumbar
bodies, 20-50 % of each. A vertebral body is trabecular bone inside a shell of cortical bone. On an axial slice the
shell is a ring, closed at the back by the posterior wall in front of the canal. Filling the ring around the
network's piece gives the whole body at the scan's resolution. The network still decides where a body is and which
vertebra it is. This step only decides how far the body reaches on each slice, and keeps the network's piece
wherever no ring is found.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..geometry import (
    bounding_box,
    close_in_plane,
    closings_in_plane,
    disk,
    fill_holes,
    largest_component,
    open_in_plane,
    parallel_map,
)

CORTEX_ABOVE_TRABECULAR_HU = 60.0  # cortical shell: at least this much above the body's own trabecular bone,
DIM_CORTEX_ABOVE_TRABECULAR_HU = 30.0  # or this much where it continues such cortex on the slice and the ring
                                       # is open without it (hysteresis)
REACH_MM = 30.0                    # the shell lies at most this far from the network's piece (a body is 30-50 mm wide)
MAX_GAP_MM = 4.0                   # gaps in the ring closed (basivertebral foramen, thin osteoporotic cortex)
THICK_BRIGHT_MM = 8.0              # bright parts holding a disk this wide (radius) are not cortex: an iodinated
                                   # aorta (20-30 mm) against the body; real cortex with end-plate bone is thinner
SMOOTHING_MM = 0.5                 # in-plane Gaussian against noise, finer than the thinnest cortex
MIN_SOLIDITY = 0.85                # a body's cross-section is near convex (0.85-0.97 on the labelled CTs' bodies)
MAX_AREA_MM2 = 3000.0              # larger than the largest lumbar end plates (~25 cm2)
END_PLATE_GROWTH = 1.1             # an end-plate slice is no larger than the body's ringed slices
PIECE_HOLDS_BODY = 0.75            # a slice where the network's piece is this share of the ring's inside is kept
RING_HOLDS_PIECE = 0.3             # a ring is the body's when its inside holds this share of the network's piece

END_PLATE = "end plate"            # a slice with no ring: bone all through


def to_cortical_shell(bodies: dict, hu: np.ndarray, spacing, posterior: int, barrier: np.ndarray) -> dict:
    """The bodies (level -> mask, changed in place and returned: a chest CT holds 15 full-size masks) each filled out
    to its cortical shell, slice by slice where a ring is found. `barrier`: voxels no body may take (what the
    network calls disc, rib or posterior elements: the rib heads and pedicles the ring touches); bodies never take
    each other's voxels. `posterior`: +1 when j runs towards the back."""
    for level, mask in bodies.items():
        box = _box(mask, spacing)
        blocked = barrier[box].copy()
        for other, other_mask in bodies.items():
            if other != level:
                blocked |= other_mask[box]
        mask[box] |= _body_to_shell(mask[box], hu[box], spacing, posterior, blocked & ~mask[box])
    return bodies


def _body_to_shell(piece: np.ndarray, hu: np.ndarray, spacing, posterior: int, blocked: np.ndarray) -> np.ndarray:
    """The network's piece of one body, in a box around it, filled out to its shell; `blocked` voxels are never
    taken."""
    allowed = ~blocked
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), (0, SMOOTHING_MM / spacing[1], SMOOTHING_MM / spacing[0]))
    inner = ndimage.binary_erosion(piece, iterations=2)
    trabecular = float(np.median(hu[inner if inner.sum() > 50 else piece]))
    cortex = smooth >= trabecular + CORTEX_ABOVE_TRABECULAR_HU
    with_dim_stretches = _with_dim_stretches(cortex, smooth, trabecular)
    rows = np.arange(piece.shape[1])[:, None]
    back = _back_row(piece, posterior)
    wall = rows == back
    in_front = rows <= back if posterior > 0 else rows >= back
    may_take = in_front & (rows != back) & allowed  # in front of the canal, and not blocked
    pixel = float(spacing[0])

    def section_at(z: int):
        """The body's section on slice z inside its ring; None: keep the network's piece; END_PLATE: no ring."""
        near = ndimage.distance_transform_edt(~piece[z], sampling=spacing[1::-1]) <= REACH_MM
        # The canal's front closes the ring at the back, where the posterior wall is thin or open. The cortex is thin:
        # a thick bright region (an iodinated aorta touching the body) is not part of the ring. Its dim stretches
        # count only where the bright cortex leaves the ring open: elsewhere they are the cortex's blurred outer edge.
        for bone in (cortex[z], with_dim_stretches[z]):
            bright = bone & near & in_front
            thick = open_in_plane(bright, THICK_BRIGHT_MM / pixel)
            filled = _inside_ring((bright & ~thick) | (wall & near), piece[z], spacing)
            if filled is not None:
                break
        else:
            return END_PLATE
        section = largest_component(ndimage.binary_opening(filled & may_take[z])) | piece[z]
        if piece[z].sum() >= PIECE_HOLDS_BODY * section.sum():
            return None  # the network found this slice's body: its split at tilted end plates beats a slice's ring
        return section if _plausible_section(section, pixel) else None

    out, end_plates = piece.copy(), []
    slices = np.nonzero(piece.any(axis=(1, 2)))[0]
    for z, section in zip(slices, parallel_map(section_at, slices), strict=True):
        if section is END_PLATE:
            end_plates.append(z)
        elif section is not None:
            out[z] = section
    ringed = [z for z in range(out.shape[0]) if out[z].any() and z not in end_plates]
    if ringed and end_plates:
        _fill_end_plates(out, piece, with_dim_stretches, may_take, end_plates, ringed, spacing)
    return out


def _with_dim_stretches(cortex: np.ndarray, smooth: np.ndarray, trabecular: float) -> np.ndarray:
    """The cortex with the pixels DIM_CORTEX_ABOVE_TRABECULAR_HU above the trabecular bone that join it on the slice
    (hysteresis, as in edge detection). Through 3 mm pixels partial volume dims stretches of a thin cortex: they
    close the ring, while isolated noise as bright does not (the real 3 mm abdominal CT's held-out L1: body Dice
    0.80 -> 0.86; on the 0.7 mm chest CT and the 0.7 mm phantoms nothing changes)."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True  # 8-connected: a cortex one pixel thick steps diagonally
    parts, _ = ndimage.label(smooth >= trabecular + DIM_CORTEX_ABOVE_TRABECULAR_HU, structure=in_plane)
    joined = np.unique(parts[cortex])
    return np.isin(parts, joined[joined > 0])


def _box(body: np.ndarray, spacing) -> tuple[slice, slice, slice]:
    """The body's slices, and its rows and columns widened by REACH_MM (found slab by slab: np.nonzero on a whole
    chest CT per body is slow)."""
    ks = np.flatnonzero(body.any(axis=(1, 2)))
    slab = body[ks[0]:ks[-1] + 1]
    js, is_ = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
    pad_j, pad_i = (int(np.ceil(REACH_MM / s)) + 2 for s in (spacing[1], spacing[0]))
    return (slice(ks[0], ks[-1] + 1), slice(max(js[0] - pad_j, 0), js[-1] + pad_j + 1),
            slice(max(is_[0] - pad_i, 0), is_[-1] + pad_i + 1))


def _back_row(piece: np.ndarray, posterior: int) -> int:
    """The row of the canal's front: the median over slices of the network piece's most posterior row (its
    extreme would reach into the pedicles on one slice)."""
    backs = []
    for z in np.nonzero(piece.any(axis=(1, 2)))[0]:
        rows = np.nonzero(piece[z].any(axis=1))[0]
        backs.append(rows[-1] if posterior > 0 else rows[0])
    return int(np.median(backs))


def _inside_ring(ring: np.ndarray, piece: np.ndarray, spacing) -> np.ndarray | None:
    """The filled ring around the network's piece, closing ever larger gaps up to MAX_GAP_MM, once its inside holds
    RING_HOLDS_PIECE of the piece; None when no such ring appears."""
    radii: list[float] = list(range(1, max(1, int(round(MAX_GAP_MM / spacing[0]))) + 1))
    if MAX_GAP_MM / spacing[0] < 2:
        # Pixels over 2 mm: a disk of 1 pixel is a cross, which bridges no gap in a ring one pixel thick that steps
        # diagonally; 1.5 pixels (a 3 x 3 square) is nearer MAX_GAP_MM there.
        radii.append(1.5)
    if not ring.any():
        return None
    # A closing and the holes it leaves lie inside the ring's bounding box: the work is done there, with a margin
    # that keeps every distance the same (the same result in half the pixels; the redrawing was a fifth of a chest
    # CT's analysis).
    crop = bounding_box(ring, margin=int(np.ceil(max(radii))) + 2)
    needed = RING_HOLDS_PIECE * piece.sum()
    for closed in closings_in_plane(ring[crop], radii):
        filled = _parts_holding(fill_holes(closed), piece[crop])
        inside = filled & ~closed
        if (inside & piece[crop]).sum() >= needed:
            whole = np.zeros_like(ring)
            whole[crop] = filled
            return whole
    return None


def _fill_end_plates(out, piece, cortex, may_take, end_plates, ringed, spacing) -> None:
    """End-plate slices are bone all through, with no ring to fill: there the bright bone at the network's piece
    (`cortex`, its dim stretches included), within the ringed slices' outline and no larger than their largest."""
    footprint = ndimage.binary_dilation(out[ringed].any(axis=0), disk(max(1, int(round(2.0 / spacing[0])))))
    largest_ringed = max(int(out[z].sum()) for z in ringed)
    for z in end_plates:
        bone = (fill_holes(close_in_plane(cortex[z] & may_take[z], 1)) & may_take[z]) | piece[z]
        section = _parts_holding(bone, piece[z]) & footprint
        section = largest_component(ndimage.binary_opening(section)) | piece[z]
        if section.sum() <= END_PLATE_GROWTH * largest_ringed and _plausible_section(section, spacing[0]):
            out[z] = section


def _parts_holding(mask: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """The connected parts of `mask` that hold some of the network's `piece`."""
    labels, _ = ndimage.label(mask)
    return np.isin(labels, np.unique(labels[piece])) & (labels > 0)


def _plausible_section(section: np.ndarray, pixel: float) -> bool:
    return bool(section.any()) and section.sum() * pixel ** 2 <= MAX_AREA_MM2 and _solidity(section) >= MIN_SOLIDITY


def _solidity(section: np.ndarray) -> float:
    """Area over convex-hull area (the hull of pixel centres widened by half a pixel all round)."""
    points = np.argwhere(section)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return 0.0
    return float(section.sum() / (hull.volume + 0.5 * hull.area + 1.0))
