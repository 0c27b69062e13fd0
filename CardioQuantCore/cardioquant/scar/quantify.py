"""Scar quantification inside the LV myocardium: n-SD, FWHM or the model's own scar; volumes, %LGE, gray zone,
MVO (docs/REFERENCE.md section 3).

Arrays are short-axis stacks [slice, row, column]; masks: cavity, myocardium (the whole LV myocardium,
scar included). Definitions:
- remote myocardium: automatic = the 60-degree sector (about the LV centre, per slice) with the lowest mean
  signal among sectors of at least `min_sector_pixels`; or a user mask.
- n-SD: scar = myocardium with signal > mean_remote + n x SD_remote (n = 2..6).
- FWHM: scar = myocardium with signal at or above half the maximum of the enhanced region, the maximum taken as
  the 99.5th percentile of myocardial signal (robust to single hot pixels). Half is measured from the remote
  myocardium's mean: T = remote + 0.5 x (max - remote). On nulled LGE (remote ~ 0) this is the usual 0.5 x max;
  on images with an intensity offset (8-bit exports such as EMIDEC's, where nulled myocardium reads ~140 of 255)
  0.5 x max would call the whole myocardium scar. Without remote statistics: 0.5 x max.
- MVO: myocardium enclosed by scar in a slice but below threshold (the dark core of an infarct).
- gray zone: myocardium with mean_remote + 2 SD < signal <= mean_remote + 3 SD (stated in every result).
- %LGE = (scar + MVO) / myocardium x 100; mass = volume x 1.05 g/mL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..geometry import fill_holes_in_plane

MYOCARDIUM_DENSITY_G_ML = 1.05
GRAY_ZONE = (2.0, 3.0)


@dataclass
class RemoteStats:
    mean: float
    sd: float
    pixels: int
    source: str


@dataclass
class ScarResult:
    scar: np.ndarray            # bool, enhanced myocardium (MVO excluded)
    mvo: np.ndarray             # bool
    gray_zone: np.ndarray       # bool
    threshold: float | None
    remote: RemoteStats | None
    method: str
    figures: dict = field(default_factory=dict)


def lv_centre(cavity: np.ndarray, myocardium: np.ndarray) -> np.ndarray:
    """(row, col) LV centre per slice: centroid of cavity + myocardium."""
    centres = np.zeros((cavity.shape[0], 2))
    for k in range(cavity.shape[0]):
        rows, cols = np.nonzero(cavity[k] | myocardium[k])
        centres[k] = (rows.mean(), cols.mean()) if rows.size else (np.nan, np.nan)
    return centres


def angle_about(rows, cols, centre) -> np.ndarray:
    """Angle (degrees, 0-360, counter-clockwise from image 'up' as displayed) of (row, col) about `centre`."""
    return np.degrees(np.arctan2(-(np.asarray(cols) - centre[1]), -(np.asarray(rows) - centre[0]))) % 360.0


def pixel_angles(shape, centres: np.ndarray) -> np.ndarray:
    """Angle (degrees, 0-360, counter-clockwise from image 'up' as displayed) of every pixel about the LV centre."""
    rows, cols = np.indices(shape[1:])
    out = np.zeros(shape)
    for k, centre in enumerate(centres):
        out[k] = angle_about(rows, cols, centre) if np.isfinite(centre[0]) else np.nan
    return out


def automatic_remote(signal: np.ndarray, myocardium: np.ndarray, cavity: np.ndarray, min_sector_pixels: int = 20) -> RemoteStats:
    angles = pixel_angles(signal.shape, lv_centre(cavity, myocardium))
    best = None
    for k in range(signal.shape[0]):
        for sector in range(6):
            mask = myocardium[k] & (angles[k] >= 60 * sector) & (angles[k] < 60 * (sector + 1))
            if mask.sum() < min_sector_pixels:
                continue
            values = signal[k][mask]
            if best is None or values.mean() < best.mean:
                best = RemoteStats(float(values.mean()), float(values.std()), int(values.size),
                                   f"automatic: slice {k}, sector {sector * 60}-{sector * 60 + 60} deg (lowest mean)")
    if best is None:
        raise InputError("the myocardium is too small to find remote myocardium (no 60-degree sector with "
                         f"{min_sector_pixels} pixels); give a remote ROI or check the myocardium mask.")
    return best


def remote_from_mask(signal: np.ndarray, remote_mask: np.ndarray) -> RemoteStats:
    values = signal[remote_mask.astype(bool)]
    if values.size < 10:
        raise InputError("the remote myocardium ROI has fewer than 10 pixels")
    return RemoteStats(float(values.mean()), float(values.std()), int(values.size), "user remote ROI")


def _mvo(scar: np.ndarray, myocardium: np.ndarray) -> np.ndarray:
    enclosed = fill_holes_in_plane(scar)
    return enclosed & myocardium & ~scar


def _gray_zone(signal, myocardium, remote: RemoteStats | None) -> np.ndarray:
    if remote is None:
        return np.zeros(signal.shape, bool)
    low, high = (remote.mean + n * remote.sd for n in GRAY_ZONE)
    return myocardium & (signal > low) & (signal <= high)


def n_sd(signal: np.ndarray, myocardium: np.ndarray, remote: RemoteStats, n: float) -> ScarResult:
    if not 2 <= n <= 6:
        raise InputError(f"n for n-SD must be between 2 and 6 (got {n:g})")
    threshold = remote.mean + n * remote.sd
    scar = myocardium & (signal > threshold)
    mvo = _mvo(scar, myocardium)
    return ScarResult(scar, mvo, _gray_zone(signal, myocardium, remote), threshold, remote, f"{n:g}-SD")


def fwhm(signal: np.ndarray, myocardium: np.ndarray, remote: RemoteStats | None = None) -> ScarResult:
    maximum = float(np.percentile(signal[myocardium], 99.5))
    baseline = remote.mean if remote is not None else 0.0
    threshold = baseline + 0.5 * (maximum - baseline)
    scar = myocardium & (signal >= threshold)
    mvo = _mvo(scar, myocardium)
    return ScarResult(scar, mvo, _gray_zone(signal, myocardium, remote), threshold, remote, "FWHM")


def from_model(labels: np.ndarray, signal: np.ndarray, remote: RemoteStats | None) -> ScarResult:
    myocardium = labels >= 2
    return ScarResult(labels == 3, labels == 4, _gray_zone(signal, myocardium, remote), None, remote, "model")


def figures(result: ScarResult, myocardium: np.ndarray, spacing) -> dict:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    myo_ml = float(myocardium.sum() * voxel_ml)
    scar_ml = float(result.scar.sum() * voxel_ml)
    mvo_ml = float(result.mvo.sum() * voxel_ml)
    lge = 100.0 * (scar_ml + mvo_ml) / myo_ml if myo_ml else 0.0
    return {
        "myocardium_ml": myo_ml,
        "scar_ml": scar_ml,
        "mvo_ml": mvo_ml,
        "lge_percent": lge,
        "scar_mass_g": (scar_ml + mvo_ml) * MYOCARDIUM_DENSITY_G_ML,
        "myocardium_mass_g": myo_ml * MYOCARDIUM_DENSITY_G_ML,
        "gray_zone_ml": float(result.gray_zone.sum() * voxel_ml),
        "gray_zone_definition": f"mean_remote + {GRAY_ZONE[0]:g} SD < signal <= mean_remote + {GRAY_ZONE[1]:g} SD",
        "hcm_high_risk": lge >= 15.0,
    }
