"""Procedural coronary CT angiography phantoms for training and testing the coronary lumen network.

A case is an aortic root with its sinus, a left tree (LM -> LAD with diagonals, LCX with an obtuse marginal) and a
right coronary artery with marginal branches, all with curved courses, tapering calibres and random stenoses of
20-90 % area, some with calcified plaque beside the throat. Around them: epicardial fat, myocardium and contrast-filled
ventricles (bright distractors kept a few millimetres away from the arteries), coronary veins (less opacified tubes),
a random fat / soft-tissue background, then partial volume, the scanner's blur, motion blur along one axis and
correlated noise. Labels: 1 coronary lumen, 2 aorta (ascending aorta and root). The true centerlines come with the
case, so FFR on the true geometry is known exactly.

Coordinates: centerlines in RAS millimetres (+x is the patient's right, +y anterior), origin at the aortic root.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .phantom import Branch, _profile
from .tree import Path

LUMEN, AORTA = 1, 2
CLASSES = ("background", "coronary lumen", "aorta")


@dataclass
class CoronaryCase:
    image: sitk.Image        # HU, LPS grid
    labels: sitk.Image       # 0 background, 1 coronary lumen, 2 aorta
    trees: dict              # "left"/"right" -> list[Path] (vmtk convention: one path per outlet, shared trunks)
    ostia: dict              # "left"/"right" -> RAS point of the ostium
    lesions: list            # (branch name, area stenosis %, calcified)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _course(start, direction, length, step, bend_deg_per_mm, rng) -> np.ndarray:
    """Points every `step` mm along a smoothly curving course (direction random walk, bounded turning)."""
    n = int(round(length / step))
    direction = _unit(direction)
    drift = _unit(rng.normal(size=3))
    points = [np.asarray(start, float)]
    for _ in range(n):
        kick = 0.7 * drift + 0.3 * rng.normal(size=3)
        kick -= kick @ direction * direction
        direction = _unit(direction + np.deg2rad(bend_deg_per_mm) * step * kick)
        drift = _unit(drift + 0.15 * rng.normal(size=3))
        points.append(points[-1] + step * direction)
    return np.array(points)


def _jitter(direction, rng, amount=0.25) -> np.ndarray:
    return _unit(_unit(direction) + rng.normal(0, amount, 3))


def _tree(spec: dict, origin, step: float, rng) -> tuple[list[Path], dict]:
    """spec: name -> (parent, position along the parent (fraction), Branch). Returns paths per outlet and branches."""
    courses = {}

    def course(name):
        if name not in courses:
            parent, fraction, branch = spec[name]
            if parent is None:
                start = np.asarray(origin, float)
            else:
                parent_points = course(parent)
                start = parent_points[int(round(fraction * (len(parent_points) - 1)))]
            points = _course(start, branch.direction, branch.length_mm, step, rng.uniform(0.5, 2.0), rng)
            courses[name] = points if parent is None else points[1:]
        return courses[name]

    def chain(name):
        parent, fraction, branch = spec[name]
        points = course(name)
        s = np.arange(len(points)) * step + (0.0 if parent is None else step)
        radii = _profile(branch, s)
        if parent is None:
            return points, radii
        parent_points, parent_radii = chain(parent)
        own = len(course(parent))
        cut = len(parent_points) - own + int(round(fraction * (own - 1))) + 1
        return np.vstack([parent_points[:cut], points]), np.r_[parent_radii[:cut], radii]

    # every branch end is an outlet, except a trunk that ends where its children start (the LM)
    trunks = {parent for parent, fraction, _ in spec.values() if parent and fraction >= 1.0}
    outlets = [name for name in spec if name not in trunks]
    return [Path(name, *chain(name)) for name in outlets], {name: b for name, (_, _, b) in spec.items()}


def _lesion(length, rng) -> tuple:
    area_fraction = rng.uniform(0.1, 0.8)  # 20-90 % area stenosis
    return (rng.uniform(0.2, 0.7) * length, rng.uniform(2.0, 7.0), area_fraction)


SINUS_EXTRA_MM, SINUS_CENTRE_Z = 3.0, 2.0


def root_radius(z: float, aortic_radius: float) -> float:
    """Radius of the aortic root (tube plus the sinus bulge) at height z (mm)."""
    sinus = (aortic_radius + SINUS_EXTRA_MM) ** 2 - (z - SINUS_CENTRE_Z) ** 2
    return max(aortic_radius, float(np.sqrt(sinus)) if sinus > 0 else 0.0)


def _on_root_wall(direction_xy, z: float, aortic_radius: float, offset: float = 0.0) -> np.ndarray:
    """Point on the root's wall (plus `offset` mm outwards) in the horizontal direction given; the coronary starts
    0.6 mm inside the wall so that its lumen joins the aortic lumen."""
    d = _unit([*direction_xy, 0.0])
    return d * (root_radius(z, aortic_radius) + offset) + [0.0, 0.0, z]


def random_trees(rng, step: float = 0.5, aortic_radius: float = 14.0, lesion_rate: float = 0.35):
    """Left and right trees with textbook calibres and random courses, branch points and lesions."""
    left_ostium = _on_root_wall((-0.95, -0.3), rng.uniform(2, 8), aortic_radius)
    right_ostium = _on_root_wall((0.5, 0.85), rng.uniform(0, 5), aortic_radius)
    lm_r = rng.uniform(1.9, 2.5)

    def branch(name, direction, length, r0, r1):
        stenosis = _lesion(length, rng) if rng.random() < lesion_rate else None
        return Branch(name, tuple(direction), length, r0, r1, stenosis)

    lad_dir, lcx_dir = _jitter((-0.4, 0.8, -0.6), rng), _jitter((-0.5, -0.6, -0.6), rng)
    left = {
        "LM": (None, 0, Branch("LM", tuple(_jitter((-1, 0, -0.2), rng, 0.15)), rng.uniform(6, 14), lm_r, lm_r * 0.95)),
        "LAD": ("LM", 1.0, branch("LAD", lad_dir, rng.uniform(80, 120), lm_r * rng.uniform(0.78, 0.88), rng.uniform(0.9, 1.2))),
        "D1": ("LAD", rng.uniform(0.15, 0.3), branch("D1", _jitter(lad_dir + (-0.8, 0, 0), rng), rng.uniform(30, 50),
                                                      rng.uniform(0.9, 1.3), rng.uniform(0.6, 0.8))),
        "LCX": ("LM", 1.0, branch("LCX", lcx_dir, rng.uniform(50, 80), lm_r * rng.uniform(0.7, 0.82), rng.uniform(0.9, 1.2))),
        "OM1": ("LCX", rng.uniform(0.25, 0.5), branch("OM1", _jitter(lcx_dir + (-0.6, 0, -0.4), rng), rng.uniform(30, 45),
                                                      rng.uniform(0.9, 1.3), rng.uniform(0.6, 0.8))),
    }
    if rng.random() < 0.6:
        left["D2"] = ("LAD", rng.uniform(0.4, 0.6), branch("D2", _jitter(lad_dir + (-0.7, 0, -0.2), rng),
                                                             rng.uniform(25, 40), rng.uniform(0.8, 1.1), rng.uniform(0.6, 0.75)))
    rca_dir = _jitter((0.7, 0.5, -0.5), rng)
    rca_r = rng.uniform(1.6, 2.1)
    right = {
        "RCA": (None, 0, branch("RCA", rca_dir, rng.uniform(90, 140), rca_r, rng.uniform(0.9, 1.2))),
        "AM": ("RCA", rng.uniform(0.35, 0.6), branch("AM", _jitter(rca_dir + (0, 0.6, -0.6), rng), rng.uniform(25, 40),
                                                      rng.uniform(0.8, 1.1), rng.uniform(0.55, 0.75))),
    }
    if rng.random() < 0.5:
        right["RV"] = ("RCA", rng.uniform(0.15, 0.3), branch("RV", _jitter(rca_dir + (0, 0.8, 0), rng),
                                                              rng.uniform(20, 35), rng.uniform(0.7, 0.95), 0.55))
    left_paths, left_branches = _tree(left, _on_root_wall((-0.95, -0.3), left_ostium[2], aortic_radius, -0.6), step, rng)
    right_paths, right_branches = _tree(right, _on_root_wall((0.5, 0.85), right_ostium[2], aortic_radius, -0.6), step, rng)
    return {"left": left_paths, "right": right_paths}, {"left": left_ostium, "right": right_ostium}, \
        {**left_branches, **right_branches}


def _signed_distance(points_lps, radii, low, spacing, shape, band: float) -> np.ndarray:
    """min over spheres of (|x - c| - r), clipped to `band` mm: the union of spheres' signed distance."""
    field = np.full(shape, band, np.float32)
    for centre, radius in zip(points_lps, radii, strict=True):
        lo = np.maximum(np.floor((centre - radius - band - low) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((centre + radius + band - low) / spacing).astype(int) + 1, shape[::-1])
        if np.any(hi <= lo):
            continue
        axes = [low[d] + np.arange(lo[d], hi[d]) * spacing - centre[d] for d in range(3)]
        distance = np.sqrt(axes[2][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[0][None, None, :] ** 2) - radius
        box = field[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        np.minimum(box, distance, out=box)
    return field


def _ellipsoid(grid_lps, centre_ras, semi_axes) -> np.ndarray:
    centre = np.asarray(centre_ras) * [-1, -1, 1]
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid_lps, centre, semi_axes, strict=True)) <= 1.0


def make_case(seed: int, spacing: float = 0.5, margin: float = 10.0) -> CoronaryCase:
    rng = np.random.default_rng(seed)
    aortic_radius = rng.uniform(12, 16)
    trees, ostia, branches = random_trees(rng, aortic_radius=aortic_radius)
    paths = trees["left"] + trees["right"]
    lps_points = np.vstack([p.points for p in paths]) * [-1, -1, 1]
    low = np.minimum(lps_points.min(0), [-aortic_radius - 4, -aortic_radius - 4, 0]) - margin
    high = np.maximum(lps_points.max(0), [aortic_radius + 4, aortic_radius + 4, 25]) + margin
    shape = tuple(np.ceil((high - low) / spacing).astype(int)[::-1])  # (k, j, i)
    axes = np.meshgrid(*[low[d] + np.arange(shape[2 - d]) * spacing for d in range(3)], indexing="ij")
    grid = [g.transpose(2, 1, 0).astype(np.float32) for g in axes]  # x, y, z arrays in (k, j, i) order

    radii = np.concatenate([p.radii for p in paths])
    vessel_sd = _signed_distance(lps_points, radii, low, spacing, shape, band=8.0)
    aorta_sd = np.maximum(np.hypot(grid[0], grid[1]) - aortic_radius, -8.0 - grid[2])
    sinus_sd = np.sqrt(grid[0] ** 2 + grid[1] ** 2 + (grid[2] - SINUS_CENTRE_Z) ** 2) - (aortic_radius + SINUS_EXTRA_MM)
    aorta_sd = np.minimum(aorta_sd, np.maximum(sinus_sd, -6.0 - grid[2]))

    lumen_hu = rng.uniform(250, 600)
    tissue = _background(rng, shape, spacing)
    away = vessel_sd > rng.uniform(4.0, 7.0)  # ventricles and myocardium keep clear of the epicardial arteries
    lv_centre = np.array([-45, 25, -60]) + rng.normal(0, 8, 3)
    lv_axes = rng.uniform(20, 30, 3)
    myocardium = _ellipsoid(grid, lv_centre, lv_axes + rng.uniform(8, 12)) & away
    tissue[myocardium] = rng.uniform(80, 140)
    tissue[_ellipsoid(grid, lv_centre, lv_axes) & away] = lumen_hu * rng.uniform(0.85, 1.1)
    rv_centre = np.array([5, 45, -55]) + rng.normal(0, 8, 3)
    tissue[_ellipsoid(grid, rv_centre, rng.uniform(18, 28, 3)) & away] = lumen_hu * rng.uniform(0.6, 1.0)
    tissue[(vessel_sd > 0) & (vessel_sd < rng.uniform(1.5, 3.5))] = rng.uniform(-110, -60)  # epicardial fat sheath
    _add_veins(rng, tissue, trees, low, spacing, shape, vessel_sd)
    lesions = _add_calcium(rng, tissue, branches, trees, low, spacing, shape)

    # Partial volume from the signed distances, then blur (scanner PSF, motion) and correlated noise
    fraction = np.clip(0.5 - np.minimum(vessel_sd, aorta_sd) / spacing, 0, 1)
    hu = tissue * (1 - fraction) + lumen_hu * fraction
    psf = rng.uniform(0.3, 0.6) / spacing
    sigma = np.full(3, psf)
    sigma[rng.integers(3)] = np.hypot(psf, rng.uniform(0, 0.8) / spacing)  # motion blur along one axis
    hu = ndimage.gaussian_filter(hu.astype(np.float32), sigma)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 0.6)
    hu += noise * (rng.uniform(15, 45) / noise.std())

    labels = np.zeros(shape, np.uint8)
    labels[aorta_sd <= 0] = AORTA
    labels[(vessel_sd <= 0) & (aorta_sd > 0)] = LUMEN
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin(tuple(float(v) for v in low))
    image.SetMetaData("modality", "CT")
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return CoronaryCase(image, label_image, trees, ostia, lesions)


def _background(rng, shape, spacing) -> np.ndarray:
    """Mediastinal fat and soft tissue in smooth random patches."""
    field = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 6.0 / spacing)
    fat = field < np.quantile(field, rng.uniform(0.3, 0.6))
    return np.where(fat, rng.uniform(-110, -70), rng.uniform(20, 60)).astype(np.float32)


def _add_veins(rng, tissue, trees, low, spacing, shape, vessel_sd) -> None:
    """One or two coronary veins running beside arteries, less opacified in the arterial phase (not labelled)."""
    for _ in range(rng.integers(1, 3)):
        path = rng.choice(trees["left"] + trees["right"])
        offset = _unit(rng.normal(size=3)) * rng.uniform(5.0, 8.0)
        start = path.points[len(path.points) // 4] + offset
        direction = path.points[-1] - path.points[len(path.points) // 4]
        points = _course(start, direction, min(60.0, np.linalg.norm(direction)), 0.5, 3.0, rng)
        vein = _signed_distance(points * [-1, -1, 1], np.full(len(points), rng.uniform(1.5, 2.8)), low, spacing, shape, 1.0)
        tissue[(vein <= 0) & (vessel_sd > 1.5)] = rng.uniform(120, 250)


def _add_calcium(rng, tissue, branches, trees, low, spacing, shape) -> list:
    """Calcified plaque beside half of the lesions' throats, outside the lumen (dense, not labelled)."""
    lesions = []
    paths = {p.name: p for tree in trees.values() for p in tree}
    for name, branch in branches.items():
        if branch.stenosis is None:
            continue
        calcified = rng.random() < 0.5
        lesions.append((name, round(100 * (1 - branch.stenosis[2]), 1), calcified))
        if not calcified or name not in paths:
            continue
        path = paths[name]
        tail = len(path.points) - int(round(branch.length_mm / 0.5))
        throat = min(len(path.points) - 1, tail + int(round(branch.stenosis[0] / 0.5)))
        tangent = _unit(path.points[min(throat + 2, len(path.points) - 1)] - path.points[max(throat - 2, 0)])
        side = _unit(np.cross(tangent, rng.normal(size=3)))
        radius = rng.uniform(0.7, 1.5)
        centre = path.points[throat] + side * (path.radii[throat] + 0.8 * radius)
        plaque = _signed_distance((centre * [-1, -1, 1])[None], [radius], low, spacing, shape, 1.0) <= 0
        tissue[plaque] = rng.uniform(600, 1200)
    return lesions
