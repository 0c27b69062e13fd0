"""Synthetic coronary trees with known geometry (tapering, bifurcations, stenoses of given area reduction) as
centerline paths, and their voxelised lumen and CTA image for end-to-end tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .tree import Path


@dataclass
class Branch:
    name: str
    direction: tuple
    length_mm: float
    radius_start: float
    radius_end: float
    stenosis: tuple | None = None  # (position mm from branch start, half length mm, area fraction at the throat)


def _profile(branch: Branch, s: np.ndarray) -> np.ndarray:
    radius = branch.radius_start + (branch.radius_end - branch.radius_start) * s / branch.length_mm
    if branch.stenosis:
        centre, half, fraction = branch.stenosis
        x = np.clip(np.abs(s - centre) / half, 0, 1)
        narrowing = 1 - (1 - np.sqrt(fraction)) * 0.5 * (1 + np.cos(np.pi * x))  # smooth cosine-shaped lesion
        radius = radius * narrowing
    return radius


def left_tree(stenosis_area_fraction: float | None = 0.3, step: float = 0.5, origin=(0.0, 0.0, 0.0)) -> list[Path]:
    """Left coronary tree in RAS mm: LM -> LAD (diagonals D1, D2; a mid-LAD lesion between them) and LCX (OM1).

    Textbook calibres (LM 4.6 mm, proximal LAD 3.8 mm tapering to 2.5 mm) so that without a lesion the distal FFR
    is >= 0.95 under the default hyperemic conditions. Paths share their common points exactly (vmtk convention).
    """
    lesion = (25.0, 5.0, stenosis_area_fraction) if stenosis_area_fraction else None
    branches = {  # name: (parent, branch point mm along the parent, Branch)
        "LM": (None, 0.0, Branch("LM", (1, 0, -0.3), 10.0, 2.3, 2.2)),
        "LAD": ("LM", 10.0, Branch("LAD", (0.5, -0.4, -1), 75.0, 1.9, 1.25, lesion)),
        "D1": ("LAD", 15.0, Branch("D1", (1, -0.6, -0.6), 40.0, 1.35, 0.95)),
        "D2": ("LAD", 45.0, Branch("D2", (1, -0.3, -0.8), 35.0, 1.3, 1.0)),
        "LCX": ("LM", 10.0, Branch("LCX", (0.6, 0.6, -0.6), 60.0, 1.8, 1.25)),
        "OM1": ("LCX", 20.0, Branch("OM1", (1, 0.2, -1), 40.0, 1.35, 0.95)),
    }
    geometry: dict[str, tuple] = {}  # name -> (points, radii) of the branch alone, first point at its branch point

    def sampled(name):
        if name in geometry:
            return geometry[name]
        parent, at, branch = branches[name]
        if parent is None:
            start = np.asarray(origin, float)
            s = np.arange(0, branch.length_mm + 1e-9, step)
        else:
            parent_points, _ = sampled(parent)
            start = parent_points[int(round(at / step))]
            s = np.arange(step, branch.length_mm + 1e-9, step)
        direction = np.asarray(branch.direction, float) / np.linalg.norm(branch.direction)
        geometry[name] = (start + s[:, None] * direction, _profile(branch, s))
        return geometry[name]

    def chain(name):
        parent, at, _ = branches[name]
        points, radii = sampled(name)
        if parent is None:
            return points, radii
        parent_points, parent_radii = chain(parent)
        cut = len(parent_points) - len(sampled(parent)[0]) + int(round(at / step)) + 1
        return np.vstack([parent_points[:cut], points]), np.r_[parent_radii[:cut], radii]

    return [Path(name, *chain(name)) for name in ("LAD", "D1", "D2", "LCX", "OM1")]  # every branch end is an outlet


def voxelise(paths: list[Path], spacing: float = 0.4, margin: float = 6.0, lumen_hu: float = 420.0,
             background_hu: float = 40.0, noise: float = 15.0, seed: int = 0):
    """(CTA image, lumen mask image): union of spheres along the paths on an axis-aligned LPS grid."""
    points_ras = np.vstack([p.points for p in paths])
    radii = np.concatenate([p.radii for p in paths])
    lps = points_ras * [-1, -1, 1]
    low, high = lps.min(0) - margin, lps.max(0) + margin
    size = np.ceil((high - low) / spacing).astype(int)
    mask = np.zeros(size[::-1], bool)
    for centre, radius in zip(lps, radii, strict=True):
        lo = np.maximum(np.floor((centre - radius - low) / spacing).astype(int) - 1, 0)
        hi = np.minimum(np.ceil((centre + radius - low) / spacing).astype(int) + 2, size)
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
        inside = np.linalg.norm(low + grid * spacing - centre, axis=-1) <= radius
        mask[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] |= inside.transpose(2, 1, 0)
    rng = np.random.default_rng(seed)
    hu = np.where(mask, lumen_hu, background_hu) + rng.normal(0, noise, mask.shape)
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin(tuple(low))
    image.SetMetaData("modality", "CT")
    lumen = sitk.GetImageFromArray(mask.astype(np.uint8))
    lumen.CopyInformation(image)
    return image, lumen


def write_tree_phantom(folder) -> tuple[str, str, list[float]]:
    """cta.nrrd and lumen.nrrd of the left tree with a 70 % area LAD lesion at 0.3 mm; returns the paths and the
    distal FFR of every vessel computed on the true geometry with default boundary conditions."""
    import os

    from .model import solve_tree
    from .physics import BoundaryConditions

    paths = left_tree(0.3)
    image, lumen = voxelise(paths, spacing=0.3)
    out = os.path.join(folder, "cta.nrrd"), os.path.join(folder, "lumen.nrrd")
    sitk.WriteImage(image, out[0], True)
    sitk.WriteImage(lumen, out[1], True)
    truth = solve_tree(paths, BoundaryConditions())
    return out[0], out[1], [float(f[-1]) for f in truth.ffr]
