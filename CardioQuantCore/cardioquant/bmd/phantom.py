"""Procedural spine CT phantom with known trabecular BMD (for tests, benchmarks and training).

Torso with subcutaneous fat and muscle, air outside, a blood-filled aorta left-anterior of the spine, and a
column of vertebrae (elliptic bodies with a 1.5 mm cortical shell, a trabecular core of known density, a
posterior arch and a basivertebral vein) separated by discs. True HU follow the calibration module's nominal
values; the scanner adds a gain/offset drift (what phantomless calibration must undo), blur and noise.
Coordinates: LPS, identity direction, array [k, j, i] = (z, y, x); j increases towards posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import calibration


@dataclass
class SpinePhantom:
    hu: np.ndarray
    spacing: tuple
    origin: tuple
    kvp: float
    bodies: np.ndarray            # uint8: index+1 of the vertebra whose body covers the voxel
    vertebrae: np.ndarray         # uint8: same, whole vertebra (body + arch)
    levels: list                  # level name of index 1, 2, ...
    bmd_mg_cm3: dict              # level -> true trabecular density
    drift: tuple                  # (gain, offset) applied by the "scanner"


def make_spine_phantom(seed: int = 0, spacing=(0.7, 0.7, 1.5), kvp: float = 120.0, levels=("T11", "T12", "L1", "L2", "L3"),
                       bmd=None, noise_hu: float = 12.0, drift=None, blur_mm: float = 0.6,
                       fov_mm: float = 300.0) -> SpinePhantom:
    rng = np.random.default_rng(seed)
    if bmd is None:
        base = rng.uniform(60, 200)
        bmd = {level: float(base + rng.normal(0, 8)) for level in levels}
    gain, offset = drift if drift is not None else (float(rng.uniform(0.95, 1.05)), float(rng.uniform(-25, 25)))
    body_height, disc = 24.0, 8.0
    z_extent = len(levels) * (body_height + disc) + disc
    shape = (int(round(z_extent / spacing[2])), int(round(240 / spacing[1])), int(round(fov_mm / spacing[0])))
    origin = np.array([-fov_mm / 2, -120.0, -z_extent / 2])
    z = origin[2] + (np.arange(shape[0]) + 0.5) * spacing[2]
    y = origin[1] + np.arange(shape[1]) * spacing[1]
    x = origin[0] + np.arange(shape[2]) * spacing[0]
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    hu = np.full(shape, calibration.nominal_hu("air", kvp))
    ax, ay = rng.uniform(130, 145), rng.uniform(95, 110)
    body = (X / ax) ** 2 + (Y / ay) ** 2 <= 1
    muscle = (X / (ax - 18)) ** 2 + (Y / (ay - 18)) ** 2 <= 1
    hu[np.broadcast_to(body, shape)] = calibration.nominal_hu("fat", kvp)
    hu[np.broadcast_to(muscle, shape)] = calibration.nominal_hu("muscle", kvp)
    visceral = (X / (ax - 40)) ** 2 + ((Y + 20) / (ay - 45)) ** 2 <= 1  # abdominal cavity: fat, lower part muscle
    hu[np.broadcast_to(visceral, shape)] = calibration.nominal_hu("fat", kvp) * 0.3 + 30 * 0.7
    spine_y = ay - 55.0  # vertebral body centre, posterior half of the torso
    aorta_r2 = (X - 22) ** 2 + (Y - (spine_y - 32)) ** 2
    hu[np.broadcast_to(aorta_r2 <= 15.0 ** 2, shape)] = calibration.nominal_hu("fat", kvp)  # retroperitoneal fat
    hu[np.broadcast_to(aorta_r2 <= 11.0 ** 2, shape)] = calibration.nominal_hu("blood", kvp)
    bodies = np.zeros(shape, np.uint8)
    vertebrae = np.zeros(shape, np.uint8)
    slope = calibration.ha_slope(kvp)
    for index, level in enumerate(levels[::-1]):  # inferior first: k increases superiorly
        z0 = origin[2] + disc + index * (body_height + disc)
        in_z = (Z >= z0) & (Z < z0 + body_height)
        half_lr, half_ap = rng.uniform(19, 23), rng.uniform(14, 17)
        r = ((X / half_lr) ** 2 + ((Y - spine_y) / half_ap) ** 2)
        body_mask = in_z & (r <= 1)
        core = in_z & ((X / (half_lr - 1.5)) ** 2 + ((Y - spine_y) / (half_ap - 1.5)) ** 2 <= 1) & (
            Z >= z0 + 1.5) & (Z < z0 + body_height - 1.5)
        hu[body_mask] = slope * 700.0  # cortical shell (cortex ~700 mg/cm^3)
        hu[core] = slope * bmd[level]
        vein = core & (np.abs(X) <= 2.5) & (Y >= spine_y + half_ap - 8) & (np.abs(Z - (z0 + body_height / 2)) <= 2.5)
        hu[vein] = calibration.nominal_hu("blood", kvp)
        canal_y = spine_y + half_ap + 9
        arch = in_z & ((X / 14) ** 2 + ((Y - canal_y) / 10) ** 2 <= 1) & ~((X / 8) ** 2 + ((Y - canal_y) / 6) ** 2 <= 1)
        spinous = in_z & (np.abs(X) <= 3) & (Y > canal_y + 8) & (Y < canal_y + 35)
        hu[arch | spinous] = slope * 500.0
        bodies[body_mask] = index + 1
        vertebrae[body_mask | arch | spinous] = index + 1
    if blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, [blur_mm / s for s in spacing[::-1]])
    measured = gain * hu + offset + rng.normal(0, noise_hu, shape)
    # bodies were numbered inferior-first; report levels in the same order as the labels
    ordered = list(levels[::-1])
    return SpinePhantom(hu=measured.astype(np.float32), spacing=tuple(spacing), origin=tuple(origin.tolist()), kvp=kvp,
                        bodies=bodies, vertebrae=vertebrae, levels=ordered, bmd_mg_cm3=dict(bmd), drift=(gain, offset))


def totalsegmentator_labels(case: SpinePhantom) -> np.ndarray:
    """The phantom's vertebrae as a TotalSegmentator `total` multilabel map."""
    from .levels import TOTALSEGMENTATOR_VALUES

    out = np.zeros(case.vertebrae.shape, np.uint8)
    for index, level in enumerate(case.levels, start=1):
        out[case.vertebrae == index] = TOTALSEGMENTATOR_VALUES[level]
    return out

