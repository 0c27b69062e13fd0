"""Semi-automatic coronary lumen from user seed points: the ostium first, then one point at the distal end of each
vessel to follow.

Method (a discrete fast-marching / minimal-path extraction in the spirit of vmtk's colliding fronts):
1. every seed must sit in contrast-filled lumen (its brightest voxel within 1 mm reads >= 150 HU);
2. lumen threshold at half maximum between the dimmest seed's lumen value and the surrounding tissue, so that
   small distal vessels (dimmed by partial volume) still pass;
3. minimal paths from the ostium to every end point through above-threshold voxels (Dijkstra, costs that favour
   the vessel centre), which fails clearly when an end point is not connected to the ostium;
4. the lumen is the above-threshold voxels within geodesic reach of those paths (1.5 x the largest vessel radius
   on the path), which keeps side branches, veins and chambers that touch the vessel out of the model.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.sparse import csgraph

from .. import geometry
from ..errors import InputError
from ..markups import parse_points
from .centerlines import skeleton_graph

MIN_LUMEN_HU = 150.0
MARGIN_MM = 15.0
CORONARY_MAX_RADIUS_MM = 3.0  # deeper voxels belong to the aorta or a chamber


def parse_seeds(value: str) -> np.ndarray:
    """Seeds as 'x,y,z;x,y,z;...' (RAS mm) or a Slicer markups file (.mrk.json, LPS or RAS; or .fcsv)."""
    points = parse_points(value, "--seeds")
    if len(points) < 2:
        raise InputError("--seeds needs at least two points: the ostium first, then the distal end of each vessel")
    return points


def lumen_from_seeds(image: sitk.Image, seeds_ras: np.ndarray) -> tuple[sitk.Image, dict]:
    """(lumen mask on the image grid, details: threshold, seed values). seeds_ras[0] is the ostium."""
    hu_full = sitk.GetArrayViewFromImage(image)
    spacing = np.array(image.GetSpacing()[::-1])
    ras_to_ijk = np.linalg.inv(geometry.ijk_to_ras(image))
    kji = np.array([(ras_to_ijk @ np.r_[p, 1.0])[:3][::-1] for p in seeds_ras])
    for n, (index, point) in enumerate(zip(kji, seeds_ras, strict=True)):
        if np.any(index < -0.5) or np.any(index > np.array(hu_full.shape) - 0.5):
            raise InputError(f"seed {n + 1} at RAS ({_fmt(point)}) lies outside the image")
    pad = np.ceil(MARGIN_MM / spacing).astype(int)
    lo = np.maximum(np.floor(kji.min(0)).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(kji.max(0)).astype(int) + pad + 1, hu_full.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    hu = hu_full[box].astype(np.float32)
    local = np.round(kji - lo).astype(int)
    snapped, peaks = [], []
    for n, index in enumerate(local):
        index, peak = _brightest_near(hu, index, spacing, 1.0)
        if peak < MIN_LUMEN_HU:
            role = "the ostium" if n == 0 else f"end point {n}"
            raise InputError(f"seed {n + 1} ({role}) at RAS ({_fmt(seeds_ras[n])}) reads {peak:.0f} HU: place it inside "
                             f"the contrast-filled lumen (>= {MIN_LUMEN_HU:.0f} HU)")
        snapped.append(index)
        peaks.append(peak)
    tissue = float(np.clip(np.median(hu), -100.0, 100.0))
    threshold = tissue + 0.5 * (min(peaks) - tissue)
    candidate = hu >= threshold
    pieces, _ = ndimage.label(candidate, structure=np.ones((3, 3, 3), bool))
    component = pieces == pieces[tuple(snapped[0])]
    for n, index in enumerate(snapped[1:], start=1):
        if not component[tuple(index)]:
            raise InputError(f"end point {n} at RAS ({_fmt(seeds_ras[n])}) is not connected to the ostium through lumen "
                             f"brighter than {threshold:.0f} HU (an occlusion, a gap in the contrast, or a seed in "
                             "another vessel)")
    lumen = _lumen_along_paths(component, snapped, spacing)
    mask = np.zeros(hu_full.shape, np.uint8)
    mask[box] = lumen
    return geometry.image_from_array(mask, image), {"threshold_hu": round(threshold, 1), "tissue_hu": round(tissue, 1),
                                                    "seed_peak_hu": [round(p, 1) for p in peaks]}


def _lumen_along_paths(component: np.ndarray, seeds, spacing) -> np.ndarray:
    plain, coords = skeleton_graph(component, spacing)
    index_map = -np.ones(component.shape, np.int64)
    index_map[tuple(coords.T)] = np.arange(len(coords))
    depth = ndimage.distance_transform_edt(component, sampling=spacing)[tuple(coords.T)]
    # favour the centre of the vessel: edge cost grows where the lumen boundary is near
    centred = plain.tocoo(copy=True)
    centred.data = centred.data * (1.0 + 1.0 / np.maximum(0.5 * (depth[centred.row] + depth[centred.col]), 0.05))
    source = int(index_map[tuple(seeds[0])])
    _, predecessors = csgraph.dijkstra(centred.tocsr(), indices=source, return_predecessors=True)
    on_path = np.zeros(len(coords), bool)
    for end in seeds[1:]:
        current = int(index_map[tuple(end)])
        while current >= 0:
            on_path[current] = True
            current = predecessors[current]
    vessel_depth = depth[on_path & (depth <= CORONARY_MAX_RADIUS_MM)]
    reach_mm = 1.5 * float(vessel_depth.max() if vessel_depth.size else CORONARY_MAX_RADIUS_MM) + float(spacing.max())
    reach = csgraph.dijkstra(plain, indices=np.nonzero(on_path)[0], min_only=True, limit=reach_mm)
    lumen = np.zeros(component.shape, np.uint8)
    lumen[tuple(coords[np.isfinite(reach)].T)] = 1
    return lumen


def _brightest_near(hu: np.ndarray, index, spacing, radius_mm: float) -> tuple[np.ndarray, float]:
    reach = np.ceil(radius_mm / spacing).astype(int)
    lo = np.maximum(index - reach, 0)
    hi = np.minimum(index + reach + 1, hu.shape)
    window = hu[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    offset = np.unravel_index(int(np.argmax(window)), window.shape)
    return lo + np.array(offset), float(window.max())


def _fmt(point) -> str:
    return ", ".join(f"{v:.1f}" for v in point)
