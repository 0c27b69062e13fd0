"""Vertebrae from the project's network: body / posterior elements / sacrum / rib classes on a 2 mm grid, then
bodies split at the discs and levels assigned by anatomy.

Level rules: with a sacrum in view the body resting on it is L5 and levels count upwards; otherwise the lowest
body that carries ribs is T12; without either, the user gives the lowest level (`--lowest-level`). The rules
are stated in every result (`settings.source`) because a wrong count shifts every level.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..geometry import resample_isotropic
from .levels import LEVELS

MODEL_NAME = "vertebra_segmenter"
GRID_MM = 2.0
HU_WINDOW = (-200.0, 1200.0)
CLASSES = ("background", "body", "posterior", "sacrum", "rib")


def to_grid(image: sitk.Image, is_label: bool = False) -> sitk.Image:
    return resample_isotropic(image, GRID_MM, is_label, default=0.0 if is_label else -1000.0)


def normalise(array: np.ndarray) -> np.ndarray:
    return ((np.clip(array, *HU_WINDOW) - 200.0) / 400.0).astype(np.float32)


def predict_classes(image: sitk.Image, network, device, roi, progress=None) -> sitk.Image:
    """Class map on the network's 2 mm grid (a SimpleITK image with that grid's geometry)."""
    import torch

    from ..models.runtime import sliding_window_predict

    grid = to_grid(image)
    x = torch.from_numpy(normalise(sitk.GetArrayFromImage(grid)))[None, None]
    logits = sliding_window_predict(network, x, roi, device, sw_batch_size=1, overlap=0.25, progress=progress)
    classes = sitk.GetImageFromArray(logits.argmax(1)[0].cpu().numpy().astype(np.uint8))
    classes.CopyInformation(grid)
    return classes


def to_native(labels: sitk.Image, image: sitk.Image) -> np.ndarray:
    """A label image on the 2 mm grid brought to the scan's grid (nearest neighbour)."""
    return sitk.GetArrayFromImage(sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def cut_at_discs(body: np.ndarray, spacing, ratio: float = 0.35, reach_mm: float = 15.0) -> np.ndarray:
    """The body mask with the slices of discs removed: a disc shows as a slice whose body area is a local
    minimum below `ratio` x the largest area within `reach_mm` on both sides (the network sometimes bridges a
    disc with a thin layer of "body", which erosion alone does not open)."""
    area = body.sum(axis=(1, 2)).astype(float)
    reach = max(1, int(round(reach_mm / spacing[2])))
    cut = body.copy()
    for k in range(1, len(area) - 1):
        if area[k] == 0 or area[k] > area[k - 1] or area[k] > area[k + 1]:
            continue
        below, above = area[max(0, k - reach):k].max(), area[k + 1:k + 1 + reach].max()
        if area[k] < ratio * min(below, above):
            cut[k] = False
    return cut


def split_bodies(body: np.ndarray, spacing, min_volume_ml: float = 3.0) -> list[np.ndarray]:
    """Individual vertebral bodies, inferior first: cut at disc slices, erode across the discs, label, grow back
    inside the mask."""
    body = cut_at_discs(body, spacing)
    iterations = max(1, int(round(2.0 / spacing[2])))
    structure = np.zeros((3, 3, 3), bool)
    structure[:, 1, 1] = True  # erode along z only: discs are thin in z
    cores, count = ndimage.label(ndimage.binary_erosion(body, structure, iterations=iterations))
    if count == 0:
        return []
    _, (kk, jj, ii) = ndimage.distance_transform_edt(cores == 0, sampling=spacing[::-1], return_indices=True)
    grown = np.where(body, cores[kk, jj, ii], 0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    out = [grown == n for n in range(1, count + 1) if (grown == n).sum() * voxel_ml >= min_volume_ml]
    return sorted(out, key=lambda mask: np.nonzero(mask)[0].mean())


def assign_levels(bodies: list[np.ndarray], classes: np.ndarray, spacing, lowest_level: str | None = None) -> tuple[dict, str]:
    if not bodies:
        raise InputError("no vertebral body found in the field of view.")
    if lowest_level:
        rule = f"user: lowest vertebra is {lowest_level}"
        start = LEVELS.index(lowest_level)
    else:
        voxel_ml = float(np.prod(spacing)) / 1000.0
        sacrum = classes == 3
        above = []
        if sacrum.sum() * voxel_ml >= 5.0:  # nothing below the sacrum is a vertebral body (pelvis, femoral heads)
            sacrum_z = np.nonzero(sacrum)[0].mean()
            above = [mask for mask in bodies if np.nonzero(mask)[0].mean() > sacrum_z]
        if above:
            bodies = above
            rule, start = "sacrum in view: the body resting on it is L5", LEVELS.index("L5")
        else:
            with_ribs = [n for n, mask in enumerate(bodies) if _has_ribs(mask, classes, spacing)]
            if not with_ribs:
                raise InputError("cannot tell the vertebral levels (no sacrum and no ribs in view): give the lowest "
                                 "level with --lowest-level, or give vertebra masks.")
            lowest_thoracic = with_ribs[0]
            rule = "lowest rib-bearing vertebra is T12"
            start = LEVELS.index("T12") + lowest_thoracic
    levels = {}
    for n, mask in enumerate(bodies):
        index = start - n
        if 0 <= index < len(LEVELS) and LEVELS[index] != "S1":
            levels[LEVELS[index]] = mask
    return levels, rule


def _has_ribs(body: np.ndarray, classes: np.ndarray, spacing) -> bool:
    """Rib voxels beside the body (its slices, within 30 mm of its sides): rib heads articulate there, while
    the sloping shafts of higher ribs reach lower slices only far laterally."""
    ks, js, is_ = np.nonzero(body)
    half_width = (is_.max() - is_.min()) / 2 * spacing[0]
    centre = is_.mean()
    band = classes[ks.min():ks.max() + 1] == 4
    x = np.abs(np.arange(classes.shape[2]) - centre) * spacing[0]
    band &= (x <= half_width + 30.0)[None, None, :]
    return band.sum() * float(np.prod(spacing)) / 1000.0 >= 0.3
