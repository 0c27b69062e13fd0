"""Automatic artery labelling of calcium candidates.

Candidates are 3D-connected (26) regions of voxels at or above the calcium threshold. A MONAI UNet looks at the
scan on a coarse grid (2 x 2 x 3 mm: the whole heart fits in one window and inference takes well under a second
on a CPU) with two channels, the clipped HU image and the candidate mask, and predicts for every coarse voxel one
of: background, LM, LAD, LCX, RCA, not coronary. Each candidate takes the class with the highest mean probability
over the coarse voxels it touches; background means not coronary. Very large candidates (bone: spine, ribs,
sternum) are not coronary without asking the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

COARSE_SPACING = (2.0, 2.0, 3.0)  # (i, j, k) mm
HU_WINDOW = (-300.0, 900.0)
CLASSES = ("background", "LM", "LAD", "LCX", "RCA", "not coronary")
BONE_VOLUME_MM3 = 3000.0  # no coronary lesion is this large; spine, ribs and sternum are


@dataclass
class Candidates:
    components: np.ndarray   # int32 [k, j, i], 0 = none, 1..n candidate regions
    count: int
    volumes_mm3: np.ndarray  # per candidate


def find_candidates(mask: np.ndarray, spacing) -> Candidates:
    """3D-connected (26) candidate regions of a boolean candidate mask, with their volumes."""
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    voxel = float(np.prod(spacing))
    volumes = np.bincount(components.ravel(), minlength=count + 1)[1:] * voxel
    return Candidates(components.astype(np.int32), count, volumes)


def coarse_shape(shape_kji, spacing) -> tuple[int, int, int]:
    return tuple(int(np.ceil(n * s / c)) for n, s, c in zip(shape_kji, spacing[::-1], COARSE_SPACING[::-1], strict=True))


def coarse_index(shape_kji, spacing) -> list[np.ndarray]:
    """For each native axis, the coarse index of every native index (nearest coarse cell by position)."""
    out = []
    for n, s, c, m in zip(shape_kji, spacing[::-1], COARSE_SPACING[::-1], coarse_shape(shape_kji, spacing), strict=True):
        out.append(np.minimum(((np.arange(n) + 0.5) * s / c).astype(np.int64), m - 1))
    return out


def coarse_image(hu: np.ndarray, spacing) -> np.ndarray:
    """Block mean of the clipped HU on the coarse grid (anti-aliased downsampling), one axis at a time."""
    shape = coarse_shape(hu.shape, spacing)
    out = np.clip(hu, *HU_WINDOW).astype(np.float32)
    # Reduce the longest (finest) axes first so later passes touch fewer voxels.
    for axis, idx in reversed(list(enumerate(coarse_index(hu.shape, spacing)))):
        counts = np.bincount(idx, minlength=shape[axis])
        starts = np.searchsorted(idx, np.arange(shape[axis]))
        filled = counts > 0
        sums = np.add.reduceat(out, np.minimum(starts[filled], idx.size - 1), axis=axis)
        means = sums / np.expand_dims(counts[filled], tuple(a for a in range(3) if a != axis))
        # Coarse cells no native slice falls into (native spacing coarser than the grid) copy their neighbour.
        nearest = np.maximum(np.cumsum(filled) - 1, 0)
        out = np.take(means, nearest, axis=axis)
    return out.astype(np.float32)


def coarse_mask(mask: np.ndarray, spacing) -> np.ndarray:
    """1 where any native voxel of the coarse cell is set (max pooling)."""
    shape = coarse_shape(mask.shape, spacing)
    index = coarse_index(mask.shape, spacing)
    k, j, i = np.nonzero(mask)
    out = np.zeros(shape, np.float32)
    out[index[0][k], index[1][j], index[2][i]] = 1.0
    return out


def network_input(hu: np.ndarray, spacing, candidate_mask: np.ndarray) -> np.ndarray:
    """(2, K, J, I) float32: normalised HU and candidate mask on the coarse grid."""
    image = coarse_image(hu, spacing)
    image = (image - 100.0) / 300.0
    return np.stack([image, coarse_mask(candidate_mask, spacing)]).astype(np.float32)


def coarse_target(vessel_labels: np.ndarray, truth_labels: np.ndarray, candidate_mask: np.ndarray, spacing) -> np.ndarray:
    """Training target: artery territories, overwritten by the truth label of every candidate voxel."""
    shape = coarse_shape(vessel_labels.shape, spacing)
    index = coarse_index(vessel_labels.shape, spacing)
    target = np.zeros(shape, np.int64)
    k, j, i = np.nonzero(vessel_labels)
    target[index[0][k], index[1][j], index[2][i]] = vessel_labels[k, j, i]
    labelled = candidate_mask & (truth_labels > 0)
    k, j, i = np.nonzero(labelled)
    order = np.argsort(truth_labels[k, j, i] == 5)  # coronary labels win ties over "not coronary"
    k, j, i = k[order[::-1]], j[order[::-1]], i[order[::-1]]
    target[index[0][k], index[1][j], index[2][i]] = truth_labels[k, j, i]
    return target


def assign(candidates: Candidates, probabilities: np.ndarray, spacing) -> np.ndarray:
    """Artery label (1-5) per candidate from the coarse class probabilities (C, K, J, I)."""
    labels = np.full(candidates.count + 1, 5, dtype=np.uint8)
    labels[0] = 0
    if candidates.count == 0:
        return labels
    index = coarse_index(candidates.components.shape, spacing)
    k, j, i = np.nonzero(candidates.components)
    ids = candidates.components[k, j, i]
    probs = probabilities[:, index[0][k], index[1][j], index[2][i]]  # (C, n voxels)
    mean = np.stack([np.bincount(ids, weights=p, minlength=candidates.count + 1) for p in probs])
    mean /= np.maximum(np.bincount(ids, minlength=candidates.count + 1), 1)
    best = mean.argmax(axis=0)
    labels[1:] = np.where(best[1:] == 0, 5, best[1:])
    labels[1:][candidates.volumes_mm3 >= BONE_VOLUME_MM3] = 5
    return labels


def label_volume(candidates: Candidates, per_candidate: np.ndarray) -> np.ndarray:
    return per_candidate[candidates.components].astype(np.uint8)
