"""Procedural spine CT phantom with known trabecular BMD (tests, benchmarks, network training).

Torso with subcutaneous fat and muscle, air outside, a blood-filled aorta in retroperitoneal fat left-anterior of
the spine, and a column of vertebrae: elliptic bodies growing from T1 to L5 (textbook sizes), a 1.5 mm cortical
shell, a trabecular core of known density, a basivertebral vein, posterior arch and spinous process, discs, ribs
on T1-T12 and a sacrum below L5 when S1 is in the field of view; a gentle sagittal curvature. True HU follow the
calibration module's nominal values; the scanner adds a gain/offset drift (what phantomless calibration undoes),
blur and noise. Coordinates: LPS, identity direction, array [k, j, i] = (z, y, x); j increases posteriorly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import calibration
from .levels import LEVELS

BODY, POSTERIOR, SACRUM, RIB = 1, 2, 3, 4  # network classes (0 = background)


@dataclass
class SpinePhantom:
    hu: np.ndarray
    spacing: tuple
    origin: tuple
    kvp: float
    bodies: np.ndarray            # uint8: index+1 (into `levels`) of the vertebral body covering the voxel
    vertebrae: np.ndarray         # uint8: same, whole vertebra (body + arch)
    classes: np.ndarray           # uint8: 0 background, 1 body, 2 posterior elements, 3 sacrum, 4 rib
    levels: list                  # level name of index 1, 2, ... (inferior first)
    bmd_mg_cm3: dict              # level -> true trabecular density
    drift: tuple                  # (gain, offset) applied by the "scanner"


def _size(level: str) -> tuple[float, float, float, float]:
    """(half LR, half AP, body height, disc height) in mm, interpolated from T1 to L5."""
    position = LEVELS.index(level) - LEVELS.index("T1")
    t = min(max(position / (LEVELS.index("L5") - LEVELS.index("T1")), 0.0), 1.0)
    return 14 + 10 * t, 11 + 6 * t, 17 + 9 * t, 4 + 5 * t


def make_spine_phantom(seed: int = 0, spacing=(0.7, 0.7, 1.5), kvp: float = 120.0, levels=("T11", "T12", "L1", "L2", "L3"),
                       bmd=None, noise_hu: float = 12.0, drift=None, blur_mm: float = 0.6, fov_mm: float = 300.0,
                       ribs: bool = True, curvature_mm: float | None = None, crushed=None,
                       wedged=None) -> SpinePhantom:
    """A spine phantom; `crushed`: {level: the share of its body's height lost} for crush fractures; `wedged`:
    {level: the share of its body's height lost at the front}, none at the back, for wedge fractures (the upper end
    plate tilted down to the front; soft tissue above it)."""
    rng = np.random.default_rng(seed)
    levels = sorted(levels, key=LEVELS.index)
    if bmd is None:
        base = rng.uniform(50, 200)
        bmd = {level: float(base + rng.normal(0, 8)) for level in levels}
    gain, offset = drift if drift is not None else (float(rng.uniform(0.95, 1.05)), float(rng.uniform(-25, 25)))
    curvature = rng.uniform(-8, 8) if curvature_mm is None else curvature_mm
    scale = rng.uniform(0.92, 1.08)
    sizes = {level: tuple(v * scale for v in _size(level)) for level in levels}
    for level, share in (crushed or {}).items():
        half_lr, half_ap, height, disc = sizes[level]
        sizes[level] = (half_lr, half_ap, height * (1.0 - share), disc)
    order = levels[::-1]  # inferior first: k increases superiorly
    z_extent = sum(sizes[lv][2] + sizes[lv][3] for lv in order) + 12.0
    shape = (int(round(z_extent / spacing[2])), int(round(240 / spacing[1])), int(round(fov_mm / spacing[0])))
    origin = np.array([-fov_mm / 2, -120.0, -z_extent / 2])
    z = origin[2] + (np.arange(shape[0]) + 0.5) * spacing[2]
    y = origin[1] + np.arange(shape[1]) * spacing[1]
    x = origin[0] + np.arange(shape[2]) * spacing[0]
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    hu = np.full(shape, calibration.nominal_hu("air", kvp))
    ax, ay = rng.uniform(125, 145), rng.uniform(92, 110)
    body = (X / ax) ** 2 + (Y / ay) ** 2 <= 1
    muscle = (X / (ax - 18)) ** 2 + (Y / (ay - 18)) ** 2 <= 1
    hu[np.broadcast_to(body, shape)] = calibration.nominal_hu("fat", kvp)
    hu[np.broadcast_to(muscle, shape)] = calibration.nominal_hu("muscle", kvp)
    visceral = (X / (ax - 40)) ** 2 + ((Y + 20) / (ay - 45)) ** 2 <= 1
    hu[np.broadcast_to(visceral, shape)] = calibration.nominal_hu("fat", kvp) * 0.3 + 30 * 0.7
    spine_y = ay - 55.0 + curvature * np.sin(np.pi * (Z - origin[2]) / z_extent)  # (k, 1, 1)
    aorta_r2 = (X - 22) ** 2 + (Y - (spine_y - 32)) ** 2
    hu[np.broadcast_to(aorta_r2 <= 15.0 ** 2, shape)] = calibration.nominal_hu("fat", kvp)  # retroperitoneal fat
    hu[np.broadcast_to(aorta_r2 <= 11.0 ** 2, shape)] = calibration.nominal_hu("blood", kvp)
    bodies = np.zeros(shape, np.uint8)
    vertebrae = np.zeros(shape, np.uint8)
    classes = np.zeros(shape, np.uint8)
    slope = calibration.ha_slope(kvp)
    z0 = origin[2] + 6.0
    for index, level in enumerate(order):
        half_lr, half_ap, height, disc = sizes[level]
        z0 += disc / 2
        in_z = (z0 <= Z) & (z0 + height > Z)
        dy = Y - spine_y
        # The body's top: level, or for a wedge fracture lower by `wedged` of its height at the front (dy = -half_ap)
        # and not at the back (dy = +half_ap).
        top = z0 + height - (wedged or {}).get(level, 0.0) * height * np.clip((half_ap - dy) / (2 * half_ap), 0, 1)
        in_body = (z0 <= Z) & (top > Z)
        body_mask = in_body & ((X / half_lr) ** 2 + (dy / half_ap) ** 2 <= 1)
        core = in_body & ((X / (half_lr - 1.5)) ** 2 + (dy / (half_ap - 1.5)) ** 2 <= 1) & (z0 + 1.5 <= Z) & (
            top - 1.5 > Z)
        canal_dy = half_ap + 9
        if level == "S1":  # sacrum: wide alae, no disc below, no spinous process
            alae = in_z & ((X / (half_lr + 30)) ** 2 + ((dy - 8) / (half_ap + 2)) ** 2 <= 1)
            hu[alae] = slope * 350.0
            classes[alae] = SACRUM
            vertebrae[alae] = index + 1
        hu[body_mask] = slope * 700.0  # cortical shell
        hu[core] = slope * bmd[level]
        vein = core & (np.abs(X) <= 2.5) & (dy >= half_ap - 8) & (np.abs(Z - (z0 + height / 2)) <= 2.5)
        hu[vein] = calibration.nominal_hu("blood", kvp)
        arch = in_z & ((X / 14) ** 2 + ((dy - canal_dy) / 10) ** 2 <= 1) & ~((X / 8) ** 2 + ((dy - canal_dy) / 6) ** 2 <= 1)
        spinous = in_z & (np.abs(X) <= 3) & (dy > canal_dy + 8) & (dy < canal_dy + 35) & (level != "S1")
        posterior = arch | spinous
        hu[posterior] = slope * 500.0
        if ribs and level.startswith("T"):
            rib = _rib(X, dy, Z, z0 + height * 0.6, half_lr, half_ap, ax, ay, spine_y)
            rib &= ~body_mask & ~posterior
            hu[rib] = slope * 450.0
            classes[rib] = RIB
        classes[posterior] = POSTERIOR
        classes[body_mask] = SACRUM if level == "S1" else BODY
        bodies[body_mask] = index + 1
        vertebrae[body_mask | posterior] = index + 1
        z0 += height + disc / 2
    if blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, [blur_mm / s for s in spacing[::-1]])
    measured = gain * hu + offset + rng.normal(0, noise_hu, shape)
    return SpinePhantom(hu=measured.astype(np.float32), spacing=tuple(spacing), origin=tuple(origin.tolist()), kvp=kvp,
                        bodies=bodies, vertebrae=vertebrae, classes=classes, levels=list(order), bmd_mg_cm3=dict(bmd),
                        drift=(gain, offset))


def _rib(X, dy, Z, z_level, half_lr, half_ap, ax, ay, spine_y):
    """A pair of ribs leaving the body's posterolateral corners, running along the chest wall, 5 mm thick."""
    angle = np.arctan2(dy + 10, np.abs(X) + 1e-6)
    wall = np.sqrt((X / (ax - 22)) ** 2 + ((dy + spine_y) / (ay - 22)) ** 2)
    near_spine = (np.abs(X) >= half_lr + 2) & (np.abs(X) <= half_lr + 45) & (np.abs(dy - half_ap * 0.6) <= 5)
    along_wall = (np.abs(wall - 1.0) * (ay - 22) <= 4.5) & (angle > -1.2)
    rib_z = z_level - 0.25 * np.abs(X)  # ribs slope down laterally and anteriorly
    return (near_spine | along_wall) & (np.abs(Z - rib_z) <= 4.5)


def totalsegmentator_labels(case: SpinePhantom) -> np.ndarray:
    """The phantom's vertebrae as a TotalSegmentator `total` multilabel map."""
    from .levels import TOTALSEGMENTATOR_VALUES

    out = np.zeros(case.vertebrae.shape, np.uint8)
    for index, level in enumerate(case.levels, start=1):
        out[case.vertebrae == index] = TOTALSEGMENTATOR_VALUES[level]
    return out


def write_spine_phantom(folder, seed: int = 7) -> tuple[str, str, dict]:
    """ct.nrrd (modality CT, 120 kVp) and TotalSegmentator-style vertebrae.nrrd for L1-L2 of known BMD."""
    import os

    import SimpleITK as sitk

    case = make_spine_phantom(seed=seed, spacing=(1.0, 1.0, 2.0), levels=("L1", "L2"), bmd={"L1": 110.0, "L2": 104.0},
                              fov_mm=290.0)
    scan = sitk.GetImageFromArray(case.hu)
    scan.SetSpacing(case.spacing)
    scan.SetOrigin(case.origin)
    scan.SetMetaData("modality", "CT")
    scan.SetMetaData("kvp", "120")
    labels = sitk.GetImageFromArray(totalsegmentator_labels(case))
    labels.CopyInformation(scan)
    paths = os.path.join(folder, "ct.nrrd"), os.path.join(folder, "vertebrae.nrrd")
    sitk.WriteImage(scan, paths[0], True)
    sitk.WriteImage(labels, paths[1], True)
    return paths[0], paths[1], dict(case.bmd_mg_cm3)
