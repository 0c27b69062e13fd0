"""QRM-style cardiac calcification insert: nine hydroxyapatite cylinders (diameter = length = 5, 3, 1 mm at
200, 400, 800 mg HA/cm^3) and water/200 mg calibration rods, rendered with partial volume on any grid.

Attenuation model: HU = water_hu + density_mg_cm3 x hu_per_mg at 120 kVp (1.15 HU per mg/cm^3, i.e. a
200 mg/cm^3 rod reads 230 HU above water, docs/REFERENCE.md section 1's example); other tube voltages scale HU by
threshold(kVp) / 130, the same ratio the published kVp threshold table uses. The body, the insert base
and the rod base are one soft-tissue-equivalent material (40 HU); the "water" calibration ROI is read in it, so
c = 0.2 / (HU_rod - HU_base) is the calibration a reader would measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .scoring import kvp_boundaries

DIAMETERS_MM = (5.0, 3.0, 1.0)
DENSITIES_MG_CM3 = (200.0, 400.0, 800.0)
HU_PER_MG_CM3_120KVP = 1.15


def hu_for_density(density_mg_cm3: float, kvp: float = 120.0, water_hu: float = 0.0) -> float:
    return water_hu + density_mg_cm3 * HU_PER_MG_CM3_120KVP * kvp_boundaries(kvp)[0][0] / 130.0


def true_mass_mg(diameter_mm: float, density_mg_cm3: float) -> float:
    """Cylinder with length = diameter."""
    return np.pi * (diameter_mm / 2) ** 2 * diameter_mm * density_mg_cm3 / 1000.0


@dataclass
class QrmPhantom:
    hu: np.ndarray                 # [k, j, i]
    spacing: tuple[float, float, float]
    inserts: dict                  # (diameter, density) -> boolean mask of the region around the insert
    rod_mask: np.ndarray           # calibration rod ROI (200 mg/cm^3)
    water_mask: np.ndarray         # water ROI


def _cylinder_fraction(shape, spacing, centre_mm, radius_mm, half_length_mm, supersample=4):
    """Fraction of each voxel inside a cylinder along k (exact up to the supersampling)."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fraction = np.zeros(shape)
    k, j, i = np.indices(shape, dtype=float)
    for dk in offsets:
        inside_z = np.abs((k + dk) * spacing[2] - centre_mm[2]) <= half_length_mm
        for dj in offsets:
            for di in offsets:
                r2 = ((i + di) * spacing[0] - centre_mm[0]) ** 2 + ((j + dj) * spacing[1] - centre_mm[1]) ** 2
                fraction += inside_z & (r2 <= radius_mm ** 2)
    return fraction / supersample ** 3


def make_qrm_phantom(spacing=(0.4, 0.4, 0.5), kvp: float = 120.0, noise_hu: float = 0.0, blur_mm: float = 0.3,
                     background_hu: float = 40.0, seed: int = 0) -> QrmPhantom:
    """Inserts on a 3x3 grid 15 mm apart, one slab; rods beside them. Exact partial volume, optional PSF and noise."""
    extent = np.array([70.0, 55.0, 12.0])  # mm (i, j, k)
    shape = tuple(int(round(e / s)) for e, s in zip(extent[::-1], spacing[::-1], strict=True))
    hu = np.full(shape, background_hu, dtype=float)
    inserts = {}
    for row, density in enumerate(DENSITIES_MG_CM3):
        for col, diameter in enumerate(DIAMETERS_MM):
            centre = (12.0 + 15.0 * col, 12.0 + 15.0 * row, extent[2] / 2)
            local = _local_box(shape, spacing, centre, diameter / 2 + 3.0)
            fraction = _cylinder_fraction(_box_shape(local), spacing, _shift(centre, local, spacing), diameter / 2,
                                          diameter / 2)
            hu[local] += fraction * hu_for_density(density, kvp)
            mask = np.zeros(shape, bool)
            mask[local] = True
            inserts[(diameter, density)] = mask
    rod_centre, water_centre = (60.0, 12.0, extent[2] / 2), (60.0, 42.0, extent[2] / 2)
    rod_local = _local_box(shape, spacing, rod_centre, 5.0)
    hu[rod_local] += _cylinder_fraction(_box_shape(rod_local), spacing, _shift(rod_centre, rod_local, spacing), 4.0,
                                        extent[2]) * hu_for_density(200.0, kvp)
    rod_mask = _disc_mask(shape, spacing, rod_centre, 2.5)
    water_mask = _disc_mask(shape, spacing, water_centre, 2.5)
    if blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, sigma=[blur_mm / s for s in spacing[::-1]])
    if noise_hu > 0:
        hu = hu + np.random.default_rng(seed).normal(0, noise_hu, shape)
    return QrmPhantom(hu=hu.astype(np.float32), spacing=tuple(spacing), inserts=inserts, rod_mask=rod_mask,
                      water_mask=water_mask)


def _local_box(shape, spacing, centre, half_mm):
    box = []
    for axis, (c, s, n) in enumerate(zip(centre[::-1], spacing[::-1], shape, strict=True)):
        del axis
        lo, hi = int(np.floor((c - half_mm) / s)), int(np.ceil((c + half_mm) / s)) + 1
        box.append(slice(max(lo, 0), min(hi, n)))
    return tuple(box)


def _box_shape(box):
    return tuple(b.stop - b.start for b in box)


def _shift(centre, box, spacing):
    """Centre in the local box's coordinates (voxel centres at index x spacing)."""
    return tuple(c - b.start * s for c, b, s in zip(centre, box[::-1], spacing, strict=True))


def _disc_mask(shape, spacing, centre, radius_mm):
    k, j, i = np.indices(shape, dtype=float)
    inside = (i * spacing[0] - centre[0]) ** 2 + (j * spacing[1] - centre[1]) ** 2 <= radius_mm ** 2
    return inside & (np.abs(k * spacing[2] - centre[2]) <= 2.0)
