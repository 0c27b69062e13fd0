"""Vertebrae from any source, reduced to what BMD needs: a vertebral-body mask per level.

Sources share the downstream code: TotalSegmentator output (folder of `vertebrae_L1.nii.gz` files or a `total`
multilabel file), a segmentation whose segments are named like TotalSegmentator's, a user click (seeded region
growing), or the project's network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from ..imageio import read_mask
from .levels import LEVELS, VALUE_TO_LEVEL, level_from_name


def from_totalsegmentator(path: str | Path, reference: sitk.Image) -> dict[str, np.ndarray]:
    """level -> whole-vertebra mask on the reference grid, from a TotalSegmentator folder or multilabel file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("vertebrae_*.nii*")) + sorted(path.glob("vertebrae_*.nrrd"))
        masks = {}
        for file in files:
            level = level_from_name(file.name)
            if level:
                mask = sitk.GetArrayFromImage(read_mask(file, reference)) > 0
                if mask.any():
                    masks[level] = mask
        if not files:
            raise InputError(f"{path} holds no vertebrae_<LEVEL>.nii.gz files (TotalSegmentator output expected)")
    else:
        labels = sitk.GetArrayFromImage(read_mask(path, reference))
        masks = {VALUE_TO_LEVEL[v]: labels == v for v in np.unique(labels) if v in VALUE_TO_LEVEL}
    if not masks:
        raise InputError(f"no vertebra found in {path}: the field of view holds no labelled vertebra")
    return dict(sorted(masks.items(), key=lambda item: LEVELS.index(item[0])))


def from_named_labels(label_array: np.ndarray, names: dict[int, str]) -> dict[str, np.ndarray]:
    """level -> mask from a label array whose values are named like TotalSegmentator's segments."""
    out = {}
    for value, name in names.items():
        level = level_from_name(name)
        if level and (label_array == value).any():
            out[level] = label_array == value
    return out


def vertebral_body(vertebra: np.ndarray, posterior_sign: int = +1) -> np.ndarray:
    """The body of a whole-vertebra mask: per slice, the part anterior to the spinal canal.

    The canal is the largest hole of the slice's mask (the closed ring of body, pedicles and lamina); where the
    ring is open, the body is taken as the anterior 45 % of the vertebra's AP extent (typical body share).
    """
    body = np.zeros_like(vertebra, dtype=bool)
    for k in np.nonzero(vertebra.any(axis=(1, 2)))[0]:
        plane = vertebra[k]
        holes = ndimage.binary_fill_holes(plane) & ~plane
        rows = np.nonzero(plane.any(axis=1))[0]
        if holes.any():
            labels, _ = ndimage.label(holes)
            canal = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
            canal_rows = np.nonzero(canal.any(axis=1))[0]
            limit = canal_rows[0] if posterior_sign > 0 else canal_rows[-1]
        else:
            extent = rows[-1] - rows[0] + 1
            limit = rows[0] + 0.45 * extent if posterior_sign > 0 else rows[-1] - 0.45 * extent
        jj = np.arange(plane.shape[0])[:, None]
        anterior = jj < limit if posterior_sign > 0 else jj > limit
        part = plane & anterior
        labels, count = ndimage.label(part)
        if count:
            body[k] = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return body


def grow_from_seed(hu: np.ndarray, spacing, seed_kji: tuple[int, int, int], radius_mm: float = 25.0,
                   half_height_mm: float = 13.0) -> np.ndarray:
    """Vertebral body grown from a click in its middle: bone-range voxels connected to the seed, inside an
    ellipsoid of 25 mm in-plane and 13 mm up and down (a body is ~25 mm high; discs and neighbours stay out),
    closed and hole-filled. Osteoporotic bone near disc attenuation relies on that shape limit (stated)."""
    if not all(0 <= s < n for s, n in zip(seed_kji, hu.shape, strict=True)):
        raise InputError("the vertebra seed point is outside the image")
    seed_value = float(np.median(hu[tuple(slice(max(s - 1, 0), s + 2) for s in seed_kji)]))
    if seed_value < 20:
        raise InputError(f"the seed point is not in bone ({seed_value:.0f} HU); click inside a vertebral body")
    low = max(seed_value * 0.4, 20.0)
    kk, jj, ii = np.indices(hu.shape, sparse=True)
    sphere = ((((kk - seed_kji[0]) * spacing[2]) / half_height_mm) ** 2
              + (((jj - seed_kji[1]) * spacing[1]) ** 2 + ((ii - seed_kji[2]) * spacing[0]) ** 2) / radius_mm ** 2) <= 1.0
    candidate = sphere & (hu >= low) & (hu <= 2000)
    labels, _ = ndimage.label(candidate)
    if labels[seed_kji] == 0:
        raise InputError("region growing found nothing at the seed point; click inside a vertebral body")
    grown = labels == labels[seed_kji]
    grown = ndimage.binary_closing(grown, iterations=2) & sphere
    return np.stack([ndimage.binary_fill_holes(plane) for plane in grown])
