"""The memory budget of the CT analyses (--memory-limit-gb, default 4 GB).

Each analysis knows roughly what it needs per voxel of the grid it works on. When the whole scan would need more
than the budget, it works on part of it instead: the anatomy it reads (calcium: the heart and great vessels;
CT-FFR: the heart), or a block-averaged copy where a mean over millilitres is what is measured (BMD). When even
that would not fit, the run is refused in one line, before the heavy work, with the size it would need.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import NO_DATA_HU, PADDING_HU
from .imageio import LoadedImage
from .settings import setting

DEFAULT_LIMIT_GB = 4.0
BASE_GB = 0.6  # Python, NumPy, SciPy, SimpleITK, VTK and the report's Matplotlib, before any image


def memory_setting(what: str):
    """The --memory-limit-gb field of an analysis's settings; `what` says what happens to a larger scan."""
    return setting(DEFAULT_LIMIT_GB, f"memory the analysis may use; {what} [{DEFAULT_LIMIT_GB:g}]",
                   limits=(1.0, 1024.0, True))


def limit_gb(options) -> float:
    return float(getattr(options, "memory_limit_gb", None) or DEFAULT_LIMIT_GB)


def voxels(image: sitk.Image) -> int:
    return int(np.prod(image.GetSize(), dtype=np.int64))


def needed_gb(working_voxels: float, bytes_per_voxel: float, resident_gb: float = 0.0) -> float:
    """Peak memory of an analysis working on `working_voxels`, with `resident_gb` held besides (the scan as read,
    the label map on its grid)."""
    return BASE_GB + resident_gb + working_voxels * bytes_per_voxel / 1e9


# The label map on the scan's grid, and what writing it as a Slicer segmentation holds besides (VTK's copy, the
# segmentation's, the writer's): a 1024 x 1024 x 600 BMD result added 1.7 GB to the analysis's peak while written.
OUTPUT_BYTES_PER_VOXEL = 4.0


def resident_gb(image: sitk.Image, output_bytes_per_voxel: float = OUTPUT_BYTES_PER_VOXEL) -> float:
    """The scan as read and its results on its grid: held whatever part of it is analysed."""
    return voxels(image) * (image.GetSizeOfPixelComponent() + output_bytes_per_voxel) / 1e9


@dataclass(frozen=True)
class Box:
    """A box of voxels of the scan: first index and size (i, j, k), as SimpleITK orders them."""
    index: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))

    def size_mm(self, image: sitk.Image) -> list[float]:
        return [n * s for n, s in zip(self.size, image.GetSpacing(), strict=True)]

    def slices_kji(self) -> tuple[slice, ...]:
        return tuple(slice(start, start + n) for start, n in zip(self.index[::-1], self.size[::-1], strict=True))

    def describe(self, image: sitk.Image) -> str:
        return " x ".join(f"{mm:.0f}" for mm in self.size_mm(image)) + " mm"


def box_around(mask: sitk.Image, image: sitk.Image, margin_mm: float) -> Box | None:
    """The box of `image`'s voxels holding every voxel of `mask` (on any grid of the same space) grown by
    `margin_mm` on each side; None for an empty mask."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    if not stats.HasLabel(1):
        return None
    i0, j0, k0, ni, nj, nk = stats.GetBoundingBox(1)
    corners = [(i, j, k) for i in (i0 - 0.5, i0 + ni - 0.5) for j in (j0 - 0.5, j0 + nj - 0.5)
               for k in (k0 - 0.5, k0 + nk - 0.5)]
    points = np.array([image.TransformPhysicalPointToContinuousIndex(mask.TransformContinuousIndexToPhysicalPoint(c))
                       for c in corners])
    reach = np.array([margin_mm / s for s in image.GetSpacing()])
    # Voxels whose centre lies within the mask's outer faces (grown by the margin).
    low = np.maximum(np.ceil(points.min(axis=0) - reach - 1e-6), 0).astype(int)
    high = np.minimum(np.floor(points.max(axis=0) + reach + 1e-6), np.array(image.GetSize()) - 1).astype(int)
    if np.any(high < low):
        return None
    return Box(tuple(int(v) for v in low), tuple(int(v) for v in high - low + 1))


def union(boxes: list[Box]) -> Box:
    low = np.min(np.array([b.index for b in boxes]), axis=0)
    high = np.max(np.array([np.add(b.index, b.size) for b in boxes]), axis=0)
    return Box(tuple(int(v) for v in low), tuple(int(v) for v in high - low))


def crop(loaded: LoadedImage, box: Box) -> LoadedImage:
    """The part of the scan in `box`, same spacing and direction, its origin moved, its DICOM attributes kept."""
    image = loaded.image
    if image is None:
        raise ValueError("nothing to crop: this input has no image")
    return dataclasses.replace(loaded, image=_with_metadata(sitk.RegionOfInterest(image, box.size, box.index), image))


def _with_metadata(target: sitk.Image, source: sitk.Image) -> sitk.Image:
    """`target` with `source`'s key/value fields (kVp, modality: SimpleITK's filters drop them)."""
    for key in source.GetMetaDataKeys():
        target.SetMetaData(key, source.GetMetaData(key))
    return target


def paste(labels: sitk.Image, image: sitk.Image, box: Box) -> sitk.Image:
    """A label map found on the box, on the whole scan's grid (0 outside the box)."""
    whole = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    whole.CopyInformation(image)
    return sitk.Paste(whole, sitk.Cast(labels, sitk.sitkUInt8), box.size, [0, 0, 0], box.index)


def shrink_to_fit(image: sitk.Image, bytes_per_voxel: float, limit: float, coarsest_mm: float) -> tuple[list[int], float]:
    """Whole-number block sizes (i, j, k) that bring the analysis within `limit` GB, coarsening the finest axis
    first and no axis beyond `coarsest_mm` ([1, 1, 1] when the scan fits as it is), and the GB they need: over
    `limit` when even the coarsest blocks do not fit."""
    factors = [1, 1, 1]
    needed = needed_gb(voxels(image), bytes_per_voxel)  # (bytes_per_voxel covers the whole-grid results)
    if needed <= limit:
        return factors, needed
    spacing = list(image.GetSpacing())
    held = resident_gb(image)
    while (needed := needed_gb(voxels(image) / np.prod(factors), bytes_per_voxel, held)) > limit:
        candidates = [a for a in range(3) if spacing[a] * (factors[a] + 1) <= coarsest_mm]
        if not candidates:
            break
        axis = min(candidates, key=lambda a: spacing[a] * factors[a])
        factors[axis] += 1
    return factors, needed


def block_average(image: sitk.Image, factors: list[int], start: tuple[int, ...] = (0, 0, 0),
                  outside: np.ndarray | None = None) -> sitk.Image:
    """Means over blocks of `factors` voxels (i, j, k) from `start` (leftover voxels at the far end are dropped), as
    float32, averaged slab by slab so that no float copy of the whole scan is ever held. The scanner's padding outside
    the reconstruction circle (NO_DATA_HU and below, and the pixels [j, i] of `outside`: a fill stored as air,
    geometry.outside_the_reconstruction) is no tissue: a block's mean is that of its voxels in view, and a block
    wholly outside reads PADDING_HU. Averaged in, padding (-3024 HU) and the tissue at the circle's edge made a
    ring of "air" (-900 to -1500 HU) around the field of view: on a gated CT given a round field of view, that ring
    joined the lungs, and the heart region took in the chest wall inside it (COCA 1: 120 % per-artery error)."""
    size = np.array(image.GetSize()) - np.array(start)
    usable = [int(n - n % f) for n, f in zip(size, factors, strict=True)]
    step = factors[2] * max(1, 32 // factors[2])
    slabs, grids = [], []
    in_plane = (slice(start[1], start[1] + usable[1]), slice(start[0], start[0] + usable[0]))
    outside_here = None if outside is None else outside[in_plane]
    for k in range(0, usable[2], step):
        slab = sitk.RegionOfInterest(image, [usable[0], usable[1], min(step, usable[2] - k)],
                                     [start[0], start[1], start[2] + k])
        shrunk = _mean_in_view(sitk.Cast(slab, sitk.sitkFloat32), factors, outside_here)
        grids.append(shrunk[0:1, 0:1, 0:1])  # the geometry, without the voxels
        slabs.append(sitk.GetArrayFromImage(shrunk))
    first = grids[0]
    averaged = sitk.GetImageFromArray(np.concatenate(slabs))
    averaged.SetOrigin(first.GetOrigin())
    averaged.SetSpacing(first.GetSpacing())
    averaged.SetDirection(first.GetDirection())
    return _with_metadata(averaged, image)


def _mean_in_view(slab: sitk.Image, factors: list[int], outside: np.ndarray | None = None) -> sitk.Image:
    """BinShrink's block means of a float32 slab, over the voxels in view only (above NO_DATA_HU, not in the [j, i]
    pixels of `outside`, and not on a slice of one value throughout: a blank slice, as a resampled or padded volume
    may end with, is no slice of the patient. Averaged in, the blank last slice of the real chest CT resampled to
    300 slices made its top 2 mm slice air from edge to edge, which joined the lungs to the air around the patient:
    no lungs were found, and "no heart in the field of view")."""
    planes = sitk.GetArrayViewFromImage(slab).reshape(slab.GetSize()[2], -1)
    lowest = planes.min(axis=1)
    blank = lowest == planes.max(axis=1)
    if lowest.min() > NO_DATA_HU and outside is None and not blank.any():  # the plain means (most scans)
        return sitk.BinShrink(slab, factors)
    in_view = sitk.Cast(slab > NO_DATA_HU, sitk.sitkFloat32)
    if blank.any():
        shown = sitk.GetImageFromArray(np.broadcast_to(~blank[:, None, None], planes.shape[:1] + tuple(
            slab.GetSize()[1::-1])).astype(np.float32))
        shown.CopyInformation(slab)
        in_view = in_view * shown
    if outside is not None:
        beyond = sitk.GetImageFromArray(np.broadcast_to(~outside, (slab.GetSize()[2],) + outside.shape).astype(np.float32))
        beyond.CopyInformation(slab)
        in_view = in_view * beyond
    share = sitk.BinShrink(in_view, factors)
    means = sitk.BinShrink(slab * in_view, factors) / sitk.Maximum(share, 1e-6)
    return sitk.Mask(means, share > 0, outsideValue=PADDING_HU)


def refusal(what: str, needed: float, limit: float, advice: str) -> InputError:
    return InputError(f"{what} would need about {needed:.1f} GB (--memory-limit-gb {limit:g}): {advice}")
