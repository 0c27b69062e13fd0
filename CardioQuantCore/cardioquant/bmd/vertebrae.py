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

from ..dicomseg import segment_labels
from ..errors import InputError
from ..geometry import (
    bounding_box,
    close_in_plane,
    fill_holes,
    fill_holes_in_plane,
    label_values,
    largest_component,
)
from ..imageio import read_labelled_mask, read_mask, slicer_segments
from .levels import LEVELS, VALUE_TO_LEVEL, level_from_name, level_from_segment_label

# Vertebroplasty and kyphoplasty cement (PMMA with barium sulphate) reads 1000-3000 HU. A vertebral body's thin
# cortex and its trabecular bone stay under that: on the real CTs here at most 0.3 % of a body's voxels reach 1000
# HU (partial volume at the end plates). A body with DENSE_BODY_SHARE of its voxels there holds cement or a
# sclerotic lesion: its trabecular figure is not bone's, and the network's view of it and its ribs is unsure.
DENSER_THAN_BONE_HU = 1000.0
DENSE_BODY_SHARE = 0.05


def cut_by_scan_range(body: np.ndarray) -> bool:
    """Whether the scan's first or last slice cuts the body (its height there is not its own)."""
    return bool(body[0].any() or body[-1].any())


def share_denser_than_bone(body: np.ndarray, hu: np.ndarray) -> float:
    """The share of a body's voxels at DENSER_THAN_BONE_HU or more."""
    return float((hu[body] >= DENSER_THAN_BONE_HU).mean()) if body.any() else 0.0


def from_totalsegmentator(path: str | Path, reference: sitk.Image) -> dict[str, np.ndarray]:
    """level -> whole-vertebra mask on the reference grid, from a TotalSegmentator folder or multilabel file, or a
    DICOM SEG whose segments name their levels."""
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
        image, names = read_labelled_mask(path, reference)
        labels = sitk.GetArrayFromImage(image)
        # A DICOM SEG names its segments (their numbers are only an order); a label map uses TotalSegmentator's values.
        level_of = ({number: level for number, name in names.items() if (level := level_from_segment_label(name))}
                    if names else VALUE_TO_LEVEL)
        masks = {level_of[v]: labels == v for v in sorted(label_values(labels)) if v in level_of}
        if names and not level_of:
            raise InputError(f"{path}: none of this segmentation's segments ({segment_labels(names)}) names a vertebral "
                             "level; name them as TotalSegmentator does (vertebrae_L1) or as 'L1 vertebra'.")
    if not masks:
        raise InputError(f"no vertebra found in {path}: the field of view holds no labelled vertebra")
    return dict(sorted(masks.items(), key=lambda item: LEVELS.index(item[0])))


VERTEBRAL_BODY_CODE = "51282000"  # SNOMED CT "Vertebral body": how CardioQuant's DICOM SEG types its bodies


def given_as_bodies(path: str | Path) -> bool:
    """Whether a vertebra mask holds vertebral bodies, not whole vertebrae: a segmentation (a DICOM SEG, or a
    Slicer .seg.nrrd) whose level segments are typed as vertebral bodies (SNOMED CT 51282000, as CardioQuant's own
    segmentations type them) or labelled so ('vertebral body L1', 'L1 body'). A body taken for a whole vertebra has
    no canal to cut it at, and its front 45 % was measured: CardioQuant's own SEG read back read 40-55 HU high on a
    phantom. A plain label map says nothing of it."""
    from ..dicomseg import is_dicom_seg, segment_descriptions

    path = Path(path)
    if not path.is_file():
        return False
    if is_dicom_seg(path):
        described = segment_descriptions(path)
    else:
        header = sitk.ImageFileReader()
        header.SetFileName(str(path))
        try:
            header.ReadImageInformation()
        except RuntimeError:
            return False
        described = slicer_segments(header)
    levels = [(label, kind) for label, kind in described.values() if level_from_segment_label(label)]
    return bool(levels) and all(kind == VERTEBRAL_BODY_CODE or "body" in label.lower() for label, kind in levels)


def body_slices(body: np.ndarray) -> slice:
    """The slices a (non-empty) body mask spans."""
    spanned = np.flatnonzero(body.any(axis=(1, 2)))
    return slice(int(spanned[0]), int(spanned[-1]) + 1)


def vertebral_body(vertebra: np.ndarray, posterior_sign: int = +1, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """The body of a whole-vertebra mask: the part in front of the spinal canal.

    The canal is found on the vertebra seen from above (the mask's union over its slices), where pedicles and
    laminae of different slices close the ring that single slices leave open; if it is still open, the ring is
    closed morphologically (up to 15 mm gaps). The body is the largest 3D piece of the mask in front of the
    canal's anterior edge, without the slices where that piece is under 30 % of its largest cross-section (tips
    of the articular processes above and below the body). On the real TotalSegmentator CT this gives the same
    trabecular HU as TotalSegmentator's body mask to within 5 HU (T12-L5); a per-slice rule gave 35-50 HU more.
    Without a canal (a cut or atypical vertebra, the sacrum) it falls back to the per-slice rule. Worked out in the
    vertebra's bounding box, the same body: over a whole 512 x 512 x 300 chest CT, 1.1 s a vertebra.
    """
    body = np.zeros(vertebra.shape, bool)
    box = bounding_box(vertebra)
    if all(side.stop > side.start for side in box):
        body[box] = _body_in_box(vertebra[box], posterior_sign, spacing)
    return body


def _body_in_box(vertebra: np.ndarray, posterior_sign: int, spacing) -> np.ndarray:
    """vertebral_body of a vertebra mask cropped to its bounding box."""
    canal = _canal_from_above(vertebra.any(axis=0), spacing)
    if canal is None:
        return _vertebral_body_per_slice(vertebra, posterior_sign)
    rows = np.nonzero(canal.any(axis=1))[0]
    front = rows[0] if posterior_sign > 0 else rows[-1]
    jj = np.arange(vertebra.shape[1])[None, :, None]
    in_front = vertebra & ((jj < front) if posterior_sign > 0 else (jj > front))
    body = largest_component(in_front)
    if not body.any():
        return _vertebral_body_per_slice(vertebra, posterior_sign)
    area = body.sum(axis=(1, 2))
    return body & (area >= 0.3 * area.max())[:, None, None]


def _canal_from_above(outline: np.ndarray, spacing, max_gap_mm: float = 15.0) -> np.ndarray | None:
    """The spinal canal in a vertebra's outline seen from above: its largest hole, after closing gaps in the ring
    with growing discs (None when no hole appears)."""
    radius = 0
    while radius * min(spacing[0], spacing[1]) <= max_gap_mm:
        closed = outline
        if radius:
            closed = close_in_plane(outline, radius)
        hole = fill_holes(closed) & ~closed
        if hole.any():
            return largest_component(hole)
        radius += 1
    return None


def _vertebral_body_per_slice(vertebra: np.ndarray, posterior_sign: int) -> np.ndarray:
    """Per slice: the part anterior to the slice's canal (its largest hole), or where the ring is open the anterior
    45 % of the vertebra's AP extent (typical body share)."""
    body = np.zeros_like(vertebra, dtype=bool)
    for k in np.nonzero(vertebra.any(axis=(1, 2)))[0]:
        plane = vertebra[k]
        holes = fill_holes(plane) & ~plane
        rows = np.nonzero(plane.any(axis=1))[0]
        if holes.any():
            canal_rows = np.nonzero(largest_component(holes).any(axis=1))[0]
            limit = canal_rows[0] if posterior_sign > 0 else canal_rows[-1]
        else:
            extent = rows[-1] - rows[0] + 1
            limit = rows[0] + 0.45 * extent if posterior_sign > 0 else rows[-1] - 0.45 * extent
        jj = np.arange(plane.shape[0])[:, None]
        anterior = jj < limit if posterior_sign > 0 else jj > limit
        body[k] = largest_component(plane & anterior)
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
    kk, jj, ii = np.ogrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    sphere = ((((kk - seed_kji[0]) * spacing[2]) / half_height_mm) ** 2
              + (((jj - seed_kji[1]) * spacing[1]) ** 2 + ((ii - seed_kji[2]) * spacing[0]) ** 2) / radius_mm ** 2) <= 1.0
    candidate = sphere & (hu >= low) & (hu <= 2000)
    labels, _ = ndimage.label(candidate)
    if labels[seed_kji] == 0:
        raise InputError("region growing found nothing at the seed point; click inside a vertebral body")
    grown = labels == labels[seed_kji]
    grown = ndimage.binary_closing(grown, iterations=2) & sphere
    return fill_holes_in_plane(grown)
