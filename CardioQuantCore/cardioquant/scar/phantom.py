"""Synthetic short-axis LGE stacks: LV ring with a scar sector of known extent, an MVO core and noise.

Optionally an RV cavity lies against the septum. Signal levels (arbitrary units, as LGE has no absolute scale):
nulled myocardium 40, blood pool 120, scar 300, MVO 30, background 10. Truth labels use EMIDEC values (1 cavity,
2 myocardium, 3 scar, 4 MVO). Angles are counter-clockwise from image up about the LV centre (the convention of
cardioquant.scar.aha).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIGNAL = {"background": 10.0, "blood": 120.0, "myocardium": 40.0, "scar": 300.0, "mvo": 30.0}


@dataclass
class LgePhantom:
    signal: np.ndarray     # [slices, rows, cols]
    labels: np.ndarray     # uint8, EMIDEC values
    spacing: tuple         # (col, row, slice) mm


def make_lge_phantom(slices: int = 9, size: int = 128, cavity_radius: float = 18.0, wall: float = 8.0,
                     scar_sector=(40.0, 130.0), scar_slices=None, transmural: float = 1.0, mvo: bool = True,
                     noise: float = 4.0, seed: int = 0, spacing=(1.5, 1.5, 8.0), rv_arc=None) -> LgePhantom:
    """`rv_arc` (from, to) degrees: an RV cavity (blood signal, label 0) against the epicardium over that arc,
    counter-clockwise from `from`, 15 pixels deep."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size))
    centre = (size - 1) / 2
    radius = np.hypot(rows - centre, cols - centre)
    angle = np.degrees(np.arctan2(-(cols - centre), -(rows - centre))) % 360
    signal = np.full((slices, size, size), SIGNAL["background"])
    labels = np.zeros((slices, size, size), np.uint8)
    scar_slices = range(slices) if scar_slices is None else scar_slices
    for k in range(slices):
        taper = 1.0 - 0.5 * k / max(slices - 1, 1)  # base (k = 0) to apex: the LV narrows
        r_cavity = cavity_radius * taper
        cavity = radius <= r_cavity
        myocardium = (radius > r_cavity) & (radius <= r_cavity + wall)
        if rv_arc is not None:
            lo, hi = rv_arc
            in_arc = (angle >= lo) & (angle < hi) if lo < hi else (angle >= lo) | (angle < hi)
            signal[k][in_arc & (radius > r_cavity + wall) & (radius <= r_cavity + wall + 15)] = SIGNAL["blood"]
        signal[k][cavity] = SIGNAL["blood"]
        signal[k][myocardium] = SIGNAL["myocardium"]
        labels[k][cavity], labels[k][myocardium] = 1, 2
        if k in scar_slices:
            lo, hi = scar_sector
            in_sector = (angle >= lo) & (angle < hi) if lo < hi else (angle >= lo) | (angle < hi)
            depth = (radius - r_cavity) / wall  # 0 endocardium .. 1 epicardium
            scar = myocardium & in_sector & (depth <= transmural)
            signal[k][scar] = SIGNAL["scar"]
            labels[k][scar] = 3
            if mvo:
                mid = (lo + hi) / 2 if lo < hi else ((lo + hi + 360) / 2) % 360
                core = scar & (np.abs(((angle - mid + 180) % 360) - 180) <= 8) & (depth > 0.25) & (depth < 0.6)
                signal[k][core] = SIGNAL["mvo"]
                labels[k][core] = 4
    signal = signal + rng.normal(0, noise, signal.shape)
    return LgePhantom(signal.astype(np.float32), labels, tuple(spacing))


def write_lge_phantom(folder, seed: int = 0) -> tuple[str, str, float]:
    """A phantom stack (lge.nrrd, modality MR; the RV against the septum as conventionally displayed, 60-180
    degrees) and the reader's LV mask without scar (lv.nrrd); returns the paths and the true %LGE (scar + MVO over
    myocardium, counted from the truth labels)."""
    import os

    import SimpleITK as sitk

    case = make_lge_phantom(noise=3.0, seed=seed, rv_arc=(60.0, 180.0))
    scan = sitk.GetImageFromArray(case.signal)
    scan.SetSpacing(case.spacing)
    scan.SetMetaData("modality", "MR")
    lv = np.where(case.labels >= 2, 2, case.labels).astype(np.uint8)
    mask = sitk.GetImageFromArray(lv)
    mask.CopyInformation(scan)
    paths = os.path.join(folder, "lge.nrrd"), os.path.join(folder, "lv.nrrd")
    sitk.WriteImage(scan, paths[0], True)
    sitk.WriteImage(mask, paths[1], True)
    return paths[0], paths[1], float(100.0 * (case.labels >= 3).sum() / (case.labels >= 2).sum())
