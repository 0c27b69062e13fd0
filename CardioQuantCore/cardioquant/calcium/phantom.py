"""Procedural cardiac CT phantom: thorax, heart, aortic root, coronary tree (LM, LAD, LCX, RCA), calcifications,
ribs, spine and sternum, with partial volume, a scanner point-spread function, noise, 1-3 mm slices and
80-140 kVp. The same seed with `contrast=True` gives the paired CTA (same anatomy and calcifications; iodine in
the lumen, the chambers and the aorta).

Coordinates are LPS millimetres (x to the patient's left, y posterior, z superior); the image has an identity
direction, so array [k, j, i] is (z, y, x). Truth returned with each case: the artery of every calcification
voxel (1 LM, 2 LAD, 3 LCX, 4 RCA, 5 not coronary incl. bone above threshold) and the vessel territories.

Nothing here is fitted to patients: it exists because no labelled patient calcium CT is available to the
project. Sizes follow textbook anatomy (heart long axis ~10-12 cm, coronary diameter 3-4 mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .scoring import kvp_boundaries

LM, LAD, LCX, RCA, NOT_CORONARY = 1, 2, 3, 4, 5

HU = {"fat": -95.0, "lung": -850.0, "soft": 45.0, "blood": 40.0, "myocardium": 45.0, "air": -1000.0,
      "trabecular": 190.0, "cortical": 650.0, "rib": 420.0}


@dataclass
class Calcification:
    artery: int
    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray
    hu: float


@dataclass
class CardiacPhantom:
    hu: np.ndarray                  # [k, j, i] float32, HU
    spacing: tuple                  # (i, j, k) mm
    origin: tuple                   # LPS mm of voxel (0, 0, 0)
    kvp: float
    contrast: bool
    calcium_labels: np.ndarray      # uint8 artery label of each calcification footprint voxel (5 = not coronary)
    vessel_labels: np.ndarray       # uint8 artery territory: lumen tube dilated by 2 mm
    lumen_mask: np.ndarray          # bool coronary lumen (for CTA lumen statistics)
    calcifications: list = field(default_factory=list)

    def truth_labels(self, threshold_hu: float | None = None) -> np.ndarray:
        """Artery label for every voxel a reader would assign: calcifications plus bone above threshold."""
        threshold = threshold_hu if threshold_hu is not None else kvp_boundaries(self.kvp)[0][0]
        labels = self.calcium_labels.copy()
        labels[(labels == 0) & (self.hu >= threshold)] = NOT_CORONARY
        return labels


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


class _Anatomy:
    """All random choices of one case, drawn in a fixed order so the paired CTA gets the same anatomy."""

    def __init__(self, rng: np.random.Generator, n_calcifications: int | None, calcium_scale: float):
        self.body_axes = np.array([rng.uniform(140, 170), rng.uniform(100, 125)])
        self.subcutaneous = rng.uniform(8, 20)
        self.heart_centre = np.array([rng.uniform(5, 25), rng.uniform(-30, -10), 0.0])
        self.apex_dir = _unit(np.array([0.55, -0.5, -0.62]) + rng.normal(0, 0.08, 3))
        self.long_axis = rng.uniform(48, 58)
        self.short_axes = np.array([rng.uniform(38, 46), rng.uniform(38, 46)])
        anterior = np.array([0.0, -1.0, 0.0])
        self.e1 = _unit(anterior - anterior.dot(self.apex_dir) * self.apex_dir)
        self.e2 = np.cross(self.apex_dir, self.e1)
        if self.e2[0] < 0:  # phi = +90 deg points to the patient's left
            self.e2 = -self.e2
        self.fat_scale = rng.uniform(1.08, 1.14)
        base = self.heart_centre - 0.9 * self.long_axis * self.apex_dir
        self.aorta_base = base + np.array([rng.uniform(-14, -6), rng.uniform(0, 8), rng.uniform(-2, 6)])
        self.aorta_radius = rng.uniform(12, 16)
        self.descending = np.array([rng.uniform(18, 30), rng.uniform(45, 60)])
        self.spine = np.array([rng.uniform(-5, 5), rng.uniform(60, 75)])
        self.rib_phases = rng.uniform(0, 40, size=8)
        self.vessel_radius = {LM: rng.uniform(1.8, 2.3), LAD: rng.uniform(1.5, 2.0), LCX: rng.uniform(1.4, 1.9),
                              RCA: rng.uniform(1.6, 2.1)}
        self.av_t = rng.uniform(-0.62, -0.5)
        self.lad_phi = np.deg2rad(rng.uniform(15, 35))
        self.lcx_end = np.deg2rad(rng.uniform(120, 170))
        self.rca_end = np.deg2rad(rng.uniform(-200, -160))
        self.lm_length = rng.uniform(6, 14)
        self.paths = self._paths()
        self.calcifications = self._calcifications(rng, n_calcifications, calcium_scale)

    def inside_heart(self, point) -> float:
        """The ellipsoid radius of a point, squared: 1 on the myocardium's outer surface, 0.62 on the chambers'."""
        local = (np.asarray(point) - self.heart_centre) @ np.column_stack([self.apex_dir, self.e1, self.e2])
        return float(((local / np.array([self.long_axis, *self.short_axes])) ** 2).sum())

    def surface(self, phi, t, scale=1.04):
        t = np.asarray(t, dtype=float)
        phi = np.asarray(phi, dtype=float)
        radial = np.sqrt(np.clip(1 - t ** 2, 0, 1))[..., None]
        return self.heart_centre + scale * (t[..., None] * self.long_axis * self.apex_dir
                                            + radial * (self.short_axes[0] * np.cos(phi)[..., None] * self.e1
                                                        + self.short_axes[1] * np.sin(phi)[..., None] * self.e2))

    def _paths(self) -> dict:
        n = 120
        bifurcation = self.surface(self.lad_phi + 0.35, self.av_t)
        lm_start = bifurcation - self.lm_length * _unit(bifurcation - self.aorta_base - np.array([0, 0, 10]))
        paths = {LM: np.linspace(lm_start, bifurcation, 24)}
        lad_t = np.linspace(self.av_t, 0.92, n)
        lad_phi = np.linspace(self.lad_phi + 0.35, self.lad_phi, n)
        paths[LAD] = np.vstack([bifurcation, self.surface(lad_phi, lad_t)])
        paths[LCX] = np.vstack([bifurcation, self.surface(np.linspace(self.lad_phi + 0.5, self.lcx_end, n),
                                                          np.full(n, self.av_t))])
        rca_start = self.surface(-0.35, self.av_t)
        paths[RCA] = np.vstack([self.aorta_base + np.array([-self.aorta_radius * 0.6, -self.aorta_radius * 0.6, 6]),
                                self.surface(np.linspace(-0.35, self.rca_end, n), np.full(n, self.av_t))])
        del rca_start
        return {k: _resample_path(v, 0.5) for k, v in paths.items()}

    def _calcifications(self, rng, n_calcifications, calcium_scale) -> list:
        if n_calcifications is None:
            n_calcifications = int(rng.choice([0, 0, 1, 2, 3, 4, 6, 8, 12]))
        # Proximal segments calcify more often: weight arteries and positions accordingly.
        arteries = rng.choice([LM, LAD, LCX, RCA], size=n_calcifications, p=[0.1, 0.4, 0.2, 0.3])
        out = []
        for artery in arteries:
            path = self.paths[artery]
            position = int(min(len(path) - 1, rng.beta(1.2, 2.5) * len(path)))
            tangent = _unit(path[min(position + 2, len(path) - 1)] - path[max(position - 2, 0)])
            normal = _unit(np.cross(tangent, rng.normal(size=3)))
            centre = path[position] + normal * self.vessel_radius[artery] * rng.uniform(0.3, 1.0)
            out.append(self._blob(rng, artery, centre, tangent, calcium_scale))
        for _ in range(int(rng.integers(0, 4))):  # aortic wall, mitral annulus, aortic valve
            kind = rng.integers(0, 3)
            if kind == 0:
                angle = rng.uniform(0, 2 * np.pi)
                centre = self.aorta_base + np.array([np.cos(angle) * self.aorta_radius, np.sin(angle) * self.aorta_radius,
                                                     rng.uniform(5, 40)])
            elif kind == 1:
                centre = self.surface(rng.uniform(1.8, 3.2), self.av_t + 0.05, scale=0.9)
            else:
                centre = self.aorta_base + rng.normal(0, 4, 3)
            out.append(self._blob(rng, NOT_CORONARY, centre, _unit(rng.normal(size=3)), calcium_scale))
        return out

    @staticmethod
    def _blob(rng, artery, centre, tangent, calcium_scale):
        along = rng.uniform(0.6, 3.5) * calcium_scale
        across = rng.uniform(0.5, min(2.2, along + 0.3)) * calcium_scale
        other = _unit(np.cross(tangent, rng.normal(size=3)))
        rotation = np.column_stack([tangent, other, np.cross(tangent, other)])
        # Material attenuation of the deposit: what a voxel fully inside it reads (120 kVp): 350-700 HU for a third
        # (low-density calcium), 600-1500 HU otherwise. Small lesions read lower through partial volume.
        hu = float(rng.uniform(350, 700) if rng.random() < 1 / 3 else rng.uniform(600, 1500))
        return Calcification(artery, centre, np.array([along, across, across * rng.uniform(0.7, 1.0)]), rotation, hu)


def _resample_path(points: np.ndarray, step: float) -> np.ndarray:
    lengths = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    samples = np.arange(0, lengths[-1], step)
    return np.column_stack([np.interp(samples, lengths, points[:, d]) for d in range(3)])


def make_cardiac_phantom(seed: int, spacing=(0.5, 0.5, 3.0), fov_mm: float = 220.0, z_extent_mm: float = 150.0,
                         kvp: float = 120.0, contrast: bool = False, noise_hu: float | None = None,
                         n_calcifications: int | None = None, calcium_scale: float = 1.0,
                         blur_mm: float = 0.5, pacemaker_lead: bool = False,
                         contrast_hu: float | None = None) -> CardiacPhantom:
    """A generated case (see the module's docstring); with `pacemaker_lead` a transvenous lead (SVC, right
    atrium, right ventricle) with its streaks, on a scale that ends at 3071 HU as a 12-bit CT's does. With
    `contrast`, the blood reads `contrast_hu` at 120 kV (drawn from 330-480 HU, an arterial phase, when None)."""
    rng = np.random.default_rng(seed)
    anatomy = _Anatomy(rng, n_calcifications, calcium_scale)
    noise_rng = np.random.default_rng(seed + 1_000_003)
    if noise_hu is None:
        noise_hu = float(rng.uniform(10, 28))
    drawn_hu = float(rng.uniform(330, 480))  # drawn either way: the rest of the case stays the same
    contrast_hu = drawn_hu if contrast_hu is None else float(contrast_hu)
    factor = kvp_boundaries(kvp)[0][0] / 130.0  # calcium, bone and iodine brighten at low kVp (published ratio)

    spacing = tuple(float(s) for s in spacing)
    shape = (int(round(z_extent_mm / spacing[2])), int(round(fov_mm / spacing[1])), int(round(fov_mm / spacing[0])))
    centre = anatomy.heart_centre + np.array([-10.0, 10.0, 15.0])
    origin = centre - np.array([fov_mm / 2, fov_mm / 2, z_extent_mm / 2])
    z = origin[2] + np.arange(shape[0]) * spacing[2]
    y = origin[1] + np.arange(shape[1]) * spacing[1]
    x = origin[0] + np.arange(shape[2]) * spacing[0]
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]

    hu = np.full(shape, HU["air"], np.float32)
    body = ((X / anatomy.body_axes[0]) ** 2 + ((Y - 10) / anatomy.body_axes[1]) ** 2) <= 1
    inner = ((X / (anatomy.body_axes[0] - anatomy.subcutaneous)) ** 2
             + ((Y - 10) / (anatomy.body_axes[1] - anatomy.subcutaneous)) ** 2) <= 1
    hu[np.broadcast_to(body, shape)] = HU["fat"]
    hu[np.broadcast_to(inner, shape)] = HU["soft"]
    for side in (-1, 1):
        lung = (((X - side * 72) / 58) ** 2 + ((Y - 12) / 72) ** 2 + ((Z - anatomy.heart_centre[2] - 20) / 140) ** 2) <= 1
        hu[lung & np.broadcast_to(inner, shape)] = HU["lung"]

    points = np.stack(np.broadcast_arrays(X, Y, Z), axis=-1)
    local = (points - anatomy.heart_centre) @ np.column_stack([anatomy.apex_dir, anatomy.e1, anatomy.e2])
    radius2 = ((local[..., 0] / anatomy.long_axis) ** 2 + (local[..., 1] / anatomy.short_axes[0]) ** 2
               + (local[..., 2] / anatomy.short_axes[1]) ** 2)
    del points, local
    hu[radius2 <= anatomy.fat_scale ** 2] = HU["fat"]
    hu[radius2 <= 1.0] = HU["myocardium"] + (60.0 if contrast else 0.0)
    hu[radius2 <= 0.62] = contrast_hu * factor if contrast else HU["blood"]  # chambers

    aorta_hu = contrast_hu * factor * 1.05 if contrast else HU["blood"]
    ascending = ((X - anatomy.aorta_base[0]) ** 2 + (Y - anatomy.aorta_base[1]) ** 2 <= anatomy.aorta_radius ** 2) & (
        anatomy.aorta_base[2] - 4 <= Z)
    hu[ascending] = aorta_hu
    descending = (X - anatomy.descending[0]) ** 2 + (Y - anatomy.descending[1]) ** 2 <= 11.0 ** 2
    hu[np.broadcast_to(descending, shape)] = aorta_hu

    bone = _render_bones(hu, X, Y, Z, anatomy, factor)

    vessel_labels, lumen = _render_vessels(hu, origin, spacing, anatomy, contrast_hu * factor * 0.95 if contrast else None)
    lead = _render_lead(hu, origin, spacing, anatomy, z[-1]) if pacemaker_lead else None
    hu_clean = hu
    if blur_mm > 0:  # scanner point-spread function: in-plane blur and the slice profile
        sigma = [max(spacing[2] / 2.355, blur_mm) / spacing[2], blur_mm / spacing[1], blur_mm / spacing[0]]
        hu_clean = ndimage.gaussian_filter(hu, sigma).astype(np.float32)
    calcium_labels = np.zeros(shape, np.uint8)
    _render_calcifications(hu_clean, calcium_labels, origin, spacing, anatomy.calcifications, factor, blur_mm)
    threshold = kvp_boundaries(kvp)[0][0]
    calcium_labels[(calcium_labels == 0) & bone & (hu_clean >= threshold)] = NOT_CORONARY
    if lead is not None:
        _add_metal_streaks(hu_clean, lead, spacing, np.random.default_rng(seed + 2_000_003))
    noisy = hu_clean + noise_rng.normal(0, noise_hu, shape).astype(np.float32)
    if lead is not None:
        noisy = np.minimum(noisy, TOP_OF_SCALE_HU)
    return CardiacPhantom(hu=noisy.astype(np.float32), spacing=spacing, origin=tuple(origin.tolist()), kvp=kvp,
                          contrast=contrast, calcium_labels=calcium_labels, vessel_labels=vessel_labels,
                          lumen_mask=lumen, calcifications=anatomy.calcifications)


def _render_bones(hu, X, Y, Z, anatomy, factor) -> np.ndarray:
    shape = hu.shape
    r2 = (X - anatomy.spine[0]) ** 2 + (Y - anatomy.spine[1]) ** 2
    vertebra = np.broadcast_to(r2 <= 20.0 ** 2, shape)
    hu[vertebra] = HU["trabecular"] * factor
    hu[np.broadcast_to((r2 <= 20.0 ** 2) & (r2 >= 18.0 ** 2), shape)] = HU["cortical"] * factor
    sternum = (np.abs(X) <= 14) & (np.abs(Y - (10 - anatomy.body_axes[1] + anatomy.subcutaneous + 8)) <= 6)
    hu[np.broadcast_to(sternum, shape)] = HU["rib"] * factor
    bone = vertebra | np.broadcast_to(sternum, shape)
    # Ribs: tubes just inside the chest wall, one pair every ~25 mm, sloping down anteriorly.
    angle = np.arctan2((Y - 10) / anatomy.body_axes[1], X / anatomy.body_axes[0])
    ellipse = np.sqrt((X / anatomy.body_axes[0]) ** 2 + ((Y - 10) / anatomy.body_axes[1]) ** 2)
    in_wall = np.abs(ellipse - 0.86) * min(anatomy.body_axes) <= 5.0
    for n, phase in enumerate(anatomy.rib_phases):
        level = -110 + 28 * n + phase * 0.3
        rib_z = level - 18 * np.sin(angle)  # lower anteriorly (angle -90 deg is anterior)
        rib = in_wall & (np.abs(Z - rib_z) <= 5.0) & (np.abs(np.sin(angle) + 0.95) > 0.05)
        hu[rib] = HU["rib"] * factor
        bone |= rib
    return bone


def _near_path(shape, origin, spacing, path, reach):
    """(box, distance, nearest) for the voxels of the path's bounding box grown by `reach` + 0.5 mm: each one's
    distance in mm to the nearest path point (inf beyond `reach`) and that point's index; None outside the image."""
    spacing_zyx = np.array(spacing[::-1])
    origin_zyx = np.array(origin[::-1])
    lo = np.maximum(np.floor((path[:, ::-1].min(0) - reach - 0.5 - origin_zyx) / spacing_zyx).astype(int), 0)
    hi = np.minimum(np.ceil((path[:, ::-1].max(0) + reach + 0.5 - origin_zyx) / spacing_zyx).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
    coords = (origin_zyx + idx * spacing_zyx)[..., ::-1].reshape(-1, 3)
    distance, nearest = cKDTree(path).query(coords, distance_upper_bound=reach)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return box, distance.reshape(idx.shape[:-1]), nearest.reshape(idx.shape[:-1])


def _render_vessels(hu, origin, spacing, anatomy, lumen_hu):
    """Coronary lumen tubes (40 HU in fat without contrast, iodine with) and 2-mm-dilated artery territories."""
    shape = hu.shape
    vessel_labels = np.zeros(shape, np.uint8)
    lumen = np.zeros(shape, bool)
    for artery, path in anatomy.paths.items():
        radius = anatomy.vessel_radius[artery]
        taper = np.linspace(1.0, 0.55, len(path))
        near_path = _near_path(shape, origin, spacing, path, radius + 2.5)
        if near_path is None:
            continue
        box, distance, nearest = near_path
        near = np.isfinite(distance)
        local_radius = np.where(near, radius * taper[np.minimum(nearest, len(path) - 1)], 0)
        inside = near & (distance <= local_radius)
        territory = near & (distance <= local_radius + 2.0)
        vessel_labels[box][territory & (vessel_labels[box] == 0)] = artery
        lumen[box] |= inside
        hu[box][inside] = lumen_hu if lumen_hu is not None else HU["blood"]
    return vessel_labels, lumen


# A transvenous pacemaker lead: 2 mm across, its conductor far denser than bone; a 12-bit CT scale ends at 3071 HU.
LEAD_RADIUS_MM = 1.0
LEAD_HU = 8000.0
TOP_OF_SCALE_HU = 3071.0


def _render_lead(hu, origin, spacing, anatomy, top_z: float) -> np.ndarray:
    """A pacemaker lead down the superior vena cava into the right atrium, across the tricuspid valve to the right
    ventricle's apex, drawn into `hu`; returns its voxels."""
    # The vena cava runs down to the right of the ascending aorta into the right atrium, below the aortic root.
    cava = anatomy.aorta_base + np.array([-anatomy.aorta_radius - 4.0, 4.0, 0.0])
    atrium = cava - np.array([0.0, 0.0, 20.0])
    while anatomy.inside_heart(atrium) > 0.45:              # into the chambers, towards the heart's centre
        atrium = atrium + 0.05 * (anatomy.heart_centre - atrium)
    apex = anatomy.surface(-0.5, 0.62, scale=0.72)          # the right ventricle's apex, inside the chamber
    path = _resample_path(np.array([[cava[0], cava[1], top_z + 5.0], cava, atrium, apex]), 0.25)
    lead = np.zeros(hu.shape, bool)
    near_path = _near_path(hu.shape, origin, spacing, path, LEAD_RADIUS_MM)
    if near_path is not None:
        box, distance, _ = near_path
        lead[box] = distance <= LEAD_RADIUS_MM
        hu[lead] = LEAD_HU
    return lead


def _add_metal_streaks(hu, lead, spacing, rng, amplitude_hu=(150.0, 300.0), decay_mm: float = 15.0) -> None:
    """Streaks as filtered back-projection leaves them around dense metal: in each slice through the lead, three
    lines through it at random angles, alternately bright and dark, fading with distance."""
    rows, cols = np.indices(hu.shape[1:])
    for k in np.flatnonzero(lead.any(axis=(1, 2))):
        jj, ii = np.nonzero(lead[k])
        for n, angle in enumerate(rng.uniform(0, np.pi, 3)):
            along = (rows - jj.mean()) * spacing[1] * np.sin(angle) + (cols - ii.mean()) * spacing[0] * np.cos(angle)
            across = (rows - jj.mean()) * spacing[1] * np.cos(angle) - (cols - ii.mean()) * spacing[0] * np.sin(angle)
            sign = 1.0 if n % 2 == 0 else -1.0
            hu[k] += (sign * rng.uniform(*amplitude_hu) * np.exp(-np.abs(along) / decay_mm)
                      * np.exp(-(across / 0.6) ** 2)).astype(np.float32)


def _render_calcifications(hu, labels, origin, spacing, calcifications, factor, blur_mm, supersample=3):
    """Ellipsoids with exact partial volume (supersampled), blurred with the same PSF, blended into the image."""
    spacing_zyx = np.array(spacing[::-1])
    origin_zyx = np.array(origin[::-1])
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    best = np.zeros(hu.shape, np.float32)
    for calc in calcifications:
        reach = calc.semi_axes.max() + 3 * max(blur_mm, spacing[2] / 2.355) + max(spacing)
        centre_zyx = calc.centre[::-1]
        lo = np.maximum(np.floor((centre_zyx - reach - origin_zyx) / spacing_zyx).astype(int), 0)
        hi = np.minimum(np.ceil((centre_zyx + reach - origin_zyx) / spacing_zyx).astype(int) + 1, hu.shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1)
        fraction = np.zeros(grid.shape[:-1])
        for dz in offsets:
            for dy in offsets:
                for dx in offsets:
                    zyx = origin_zyx + (grid + [dz, dy, dx]) * spacing_zyx
                    local = (zyx[..., ::-1] - calc.centre) @ calc.rotation / calc.semi_axes
                    fraction += (local ** 2).sum(-1) <= 1.0
        fraction /= supersample ** 3
        if blur_mm > 0:
            sigma = [max(spacing[2] / 2.355, blur_mm) / spacing[2], blur_mm / spacing[1], blur_mm / spacing[0]]
            fraction = ndimage.gaussian_filter(fraction, sigma, mode="constant")
        target = calc.hu * factor
        # Mixture of deposit and whatever it displaces (tissue, fat or iodinated lumen): f x deposit + (1 - f) x rest.
        hu[box] = hu[box] + fraction * (target - hu[box])
        footprint = fraction >= 0.02
        stronger = footprint & (fraction > best[box])
        labels[box][stronger] = calc.artery
        best[box][stronger] = fraction[stronger]


def block_phantom():
    """Tiny voxel-built case for self-tests: (CT image, artery label image). Exact truth, worked by hand:
    LAD 2x4x2 block at 400 HU (2 mm2 per slice x weight 4 x 2 slices = 16), RCA 3x4 at 250 HU (3 mm2 x 2 = 6),
    one unlabelled 900 HU candidate (not coronary). 0.5 x 0.5 x 3 mm voxels, 120 kVp: Agatston 22."""
    import SimpleITK as sitk

    hu = np.full((8, 64, 64), -1000.0, np.float32)
    hu[:, 4:60, 4:60] = 40.0
    labels = np.zeros(hu.shape, np.uint8)
    hu[2:4, 10:14, 10:12] = 400
    labels[2:4, 8:16, 8:14] = LAD
    hu[5, 30:33, 30:34] = 250
    labels[5, 28:36, 28:36] = RCA
    hu[6, 50:52, 50:52] = 900
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 0.5, 3.0))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return image, label_image


def write_block_phantom(folder) -> tuple[str, str]:
    """`block_phantom` written as ct.nrrd and labels.nrrd in `folder`; returns their paths."""
    import os

    import SimpleITK as sitk

    image, labels = block_phantom()
    paths = os.path.join(folder, "ct.nrrd"), os.path.join(folder, "labels.nrrd")
    sitk.WriteImage(image, paths[0], True)
    sitk.WriteImage(labels, paths[1], True)
    return paths
