"""Coronary lumen and aorta from the project's network (0.5 mm grid), then one lumen tree per coronary ostium.

The network labels coronary lumen and aorta. A tree is a connected piece of lumen that joins the aorta; its
ostium is the centre of its contact with the aorta, and its side (left/right coronary tree) is where that contact
lies relative to the aortic axis (patient left: smaller RAS x). Lumen pieces that do not reach the aorta are left
out of the flow model and counted in the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import geometry
from ..errors import InputError
from ..models.manifest import preprocessing

MODEL_NAME = "coronary_lumen"
# The network's preprocessing, read from its manifest entry (the one source; training uses the same values).
_INPUT = preprocessing(MODEL_NAME)
GRID_MM = float(_INPUT["spacing_mm"][0])
HU_WINDOW = tuple(_INPUT["normalisation"]["clip_hu"])
HU_OFFSET, HU_SCALE = _INPUT["normalisation"]["offset_hu"], _INPUT["normalisation"]["scale_hu"]
LUMEN_PROBABILITY = _INPUT["cut_offs"]["lumen_probability"]
ORIENTATION = _INPUT["orientation"]["axes"]  # "LPS": the axes the scan is read in; the manifest says why
CLASSES = ("background", "coronary lumen", "aorta")
MIN_TREE_ML = 0.02        # smaller lumen pieces are noise, not a coronary tree
# The coronaries leave the aortic root, 25-40 mm across at its sinuses: the aorta-labelled piece a tree joins holds
# 15 mL or more in a coronary CTA's heart region (17-39 mL on the held-out phantoms). A piece under MIN_ROOT_ML, a
# third of that, is a fragment the network took for aorta: on the real non-gated contrast chest CT, resampled to
# 1 mm slices, both "trees" joined pieces of 2 mL in all, and the path on one read a distal FFR of 0.80.
MIN_ROOT_ML = 5.0
CONTACT_MM = 1.5          # lumen within this distance of the aorta joins it


def normalise(hu: np.ndarray) -> np.ndarray:
    return ((np.clip(hu, *HU_WINDOW) - HU_OFFSET) / HU_SCALE).astype(np.float32)


def predict(image: sitk.Image, network, device, roi, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(coronary lumen, aorta) boolean arrays on the scan's grid.

    The lumen probability is interpolated linearly from the 0.5 mm grid to the scan's grid before thresholding at
    0.5, so the lumen edge is not stair-stepped by the network grid (radius enters resistance to the 4th power).
    """
    import torch

    from ..models.runtime import sliding_window_predict

    grid = geometry.resample_isotropic(image, GRID_MM, is_label=False, default=-1000.0)
    x = torch.from_numpy(normalise(sitk.GetArrayFromImage(grid)))[None, None]
    logits = sliding_window_predict(network, x, roi, device, sw_batch_size=1, overlap=0.25, progress=progress)
    probabilities = torch.softmax(logits[0].float(), 0).cpu().numpy()
    del logits
    native = []
    for channel in (1, 2):
        probability = sitk.GetImageFromArray(probabilities[channel])
        probability.CopyInformation(grid)
        native.append(sitk.GetArrayFromImage(sitk.Resample(probability, image, sitk.Transform(), sitk.sitkLinear, 0.0)) >= LUMEN_PROBABILITY)
    return native[0], native[1]


@dataclass
class LumenTree:
    side: str               # "left" or "right"
    mask: sitk.Image        # this tree's lumen (uint8) on the scan's grid
    ostium_ras: np.ndarray  # centre of the contact with the aorta
    volume_ml: float


def split_trees(lumen: np.ndarray, aorta: np.ndarray, reference: sitk.Image) -> tuple[list[LumenTree], dict, np.ndarray]:
    """The largest lumen tree joining the aorta on each side, what was left out, and the aorta they join.

    Every aorta-labelled piece of MIN_ROOT_ML or more is considered (a contrast-filled ventricle can be labelled
    aorta too and may be the larger piece); a coronary tree belongs to the piece it touches, and only touched pieces
    are returned as aorta.
    """
    spacing = np.array(reference.GetSpacing()[::-1])
    voxel_ml = float(np.prod(spacing)) / 1000.0
    aorta_labels, count = ndimage.label(aorta)
    aorta_ml = np.bincount(aorta_labels.ravel()) * voxel_ml
    if count == 0:
        raise InputError("no contrast-filled aorta found: the coronary network needs a contrast-enhanced coronary CTA "
                         "with the aortic root in the field of view (or give --lumen-mask, --seeds or --centerlines)")
    near_aorta = geometry.within(aorta, CONTACT_MM, spacing)
    pieces, n_pieces = ndimage.label(lumen, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1) * voxel_ml
    touching = np.unique(pieces[near_aorta & (pieces > 0)])
    ijk_to_ras = geometry.ijk_to_ras(reference)
    best: dict[str, LumenTree] = {}
    joined: dict[str, int] = {}
    for piece in touching:
        if piece == 0 or sizes[piece] < MIN_TREE_ML:
            continue
        contact = np.argwhere((pieces == piece) & near_aorta)
        ostium = (ijk_to_ras @ np.r_[contact.mean(0)[::-1], 1.0])[:3]
        root = _nearest_piece(aorta_labels, contact, spacing)
        if aorta_ml[root] < MIN_ROOT_ML:  # not an aortic root
            continue
        root_kji = np.argwhere(aorta_labels == root)
        level = np.abs(root_kji[:, 0] - contact[:, 0].mean()) <= 10  # the aortic axis near the ostium's slices
        axis = (ijk_to_ras @ np.r_[root_kji[level].mean(0)[::-1] if level.any() else root_kji.mean(0)[::-1], 1.0])[:3]
        side = "left" if ostium[0] < axis[0] else "right"
        if side not in best or sizes[piece] > best[side].volume_ml:
            mask = geometry.image_from_array((pieces == piece).astype(np.uint8), reference)
            best[side] = LumenTree(side, mask, ostium, float(sizes[piece]))
            joined[side] = root
    if not best:
        raise InputError("no coronary artery found joining the aorta (the network found "
                         f"{float(lumen.sum()) * voxel_ml:.2f} mL of lumen-like voxels, none connected to the aortic root); is this a "
                         "contrast-enhanced coronary CTA with the aortic root in view? Otherwise give seed points")
    used = sum(tree.volume_ml for tree in best.values())
    left_out = {"pieces": int(max(n_pieces - len(best), 0)), "volume_ml": round(float(sizes[1:].sum()) - used, 3)}
    root_mask = np.isin(aorta_labels, list(set(joined.values())))
    return [best[side] for side in ("left", "right") if side in best], left_out, root_mask


def _nearest_piece(labels: np.ndarray, contact: np.ndarray, spacing) -> int:
    """The labelled piece with the most voxels within reach of the contact voxels."""
    reach = np.ceil(CONTACT_MM / spacing).astype(int) + 1
    lo = np.maximum(contact.min(0) - reach, 0)
    hi = np.minimum(contact.max(0) + reach + 1, labels.shape)
    window = labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    counts = np.bincount(window.ravel(), minlength=2)
    counts[0] = 0
    return int(np.argmax(counts))


