"""The LGE segmentation network: MONAI's residual UNet (models/unet.py; 2D convolutions, 2.5D input) on short-axis
slices, classes 0 background, 1 LV cavity, 2 myocardium, 3 scar (infarct), 4 microvascular obstruction (EMIDEC's labels).

With more than one input channel the network is 2.5D: each slice is given with its neighbours above and below
(the edge slice repeated at the ends of the stack), the context a reader uses to tell scar from blood pool.

Per-slice normalisation makes it independent of the intensity range (8-bit PNG, 12-bit DICOM, NIfTI floats):
signal is scaled so the 1st..99.5th percentiles of the slice map to 0..1. Slices are resampled to the pixel size
the network was trained on (1.5 mm, as assumed for EMIDEC) and padded to a multiple of 16; the class probabilities
are resampled back to the input grid.
"""

from __future__ import annotations

import numpy as np

from ..geometry import largest_component
from ..models.manifest import preprocessing

MODEL_NAME = "lge_segmenter"
REFINER_NAME = "lge_scar_refiner"
# The cascade's preprocessing and cut-offs, read from the two manifest entries (the one source; the training
# script uses the same values through this module).
_INPUT, _REFINER_INPUT = preprocessing(MODEL_NAME), preprocessing(REFINER_NAME)
PERCENTILES = tuple(_INPUT["normalisation"]["percentiles"])
FIRST_SLICE = _INPUT["slice_order"]["first"]  # "apex": the stacks both networks learnt ran from the apex to the base
CLIP = tuple(_INPUT["normalisation"]["clip"])


def normalise_slice(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, PERCENTILES)
    return np.clip((plane - low) / max(high - low, 1e-6), *CLIP).astype(np.float32)


def normalise_stack(stack: np.ndarray) -> np.ndarray:
    return np.stack([normalise_slice(p) for p in stack])


def input_channels(network) -> int:
    """How many slices the network reads per prediction (1: 2D, 3: the slice and its two neighbours)."""
    import torch

    return next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def with_neighbours(stack: np.ndarray, channels: int) -> np.ndarray:
    """[slices, rows, cols] -> [slices, channels, rows, cols]: each slice centred among its neighbours."""
    half = channels // 2
    index = np.clip(np.arange(len(stack))[:, None] + np.arange(-half, half + 1), 0, len(stack) - 1)
    return stack[index]


def pad16(stack: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    rows, cols = stack.shape[-2:]
    pr, pc = (-rows) % 16, (-cols) % 16
    padded = np.pad(stack, [(0, 0)] * (stack.ndim - 2) + [(pr // 2, pr - pr // 2), (pc // 2, pc - pc // 2)])
    return padded, (slice(pr // 2, pr // 2 + rows), slice(pc // 2, pc // 2 + cols))


# EMIDEC's PNG slices carry no spacing: the networks were trained on them at this assumed spacing (the EMIDEC
# loader, a development module, reads it from here; runtime code never imports the loader).
ASSUMED_SPACING = (1.5, 1.5, 10.0)
TRAINED_PIXEL_MM = float(_INPUT["spacing_mm"][0])  # slices are resampled to this pixel size
CROP = int(_INPUT["patch_size"][0])  # the network is trained on crops of this size around the heart


_MIRRORS = ((), (-1,), (-2,), (-2, -1))
FLIPS = _MIRRORS[:_INPUT["test_time_mirrors"]]  # test-time augmentation of the second pass: mirror images, averaged
# The refiner reads its crop once: on the training split two or four mirrored copies changed its scar Dice by
# 0.003 or less and cost 4-12 ms per slice on 2 CPU cores (the target is 50 ms for the whole cascade).
REFINER_FLIPS = _REFINER_INPUT["test_time_mirrors"]


def refiner_inputs(stack: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The scar refiner's input [slices, 5, rows, cols]: each slice between its neighbours, then the first stage's
    P(LV cavity) and P(myocardium + scar + MVO)."""
    wall = probability[:, 2:].sum(1, keepdims=True)
    return np.concatenate([with_neighbours(stack, 3), probability[:, 1:2], wall], 1).astype(np.float32)


def _run(network, inputs: np.ndarray, device, batch: int, flips=((),)) -> np.ndarray:
    """Class probabilities [slices, classes, rows, cols] for `inputs` [slices, channels, rows, cols]; with several
    `flips` the softmax of each mirrored input (mirrored back) is averaged."""
    import torch

    padded, crop = pad16(inputs)
    out = []
    with torch.inference_mode():
        for start in range(0, padded.shape[0], batch):
            x = torch.from_numpy(np.ascontiguousarray(padded[start:start + batch])).to(device)
            # The mirrored copies go through the network as one batch (faster on a CPU than one after another).
            mirrored = torch.softmax(network(torch.cat([x.flip(f) for f in flips])), 1)  # flip(()) is identity
            copies = [p.flip(f) for p, f in zip(mirrored.split(len(x)), flips, strict=True)]
            probability = sum(copies[1:], copies[0]) / len(flips)
            out.append(probability.cpu().numpy())
    return np.concatenate(out)[(slice(None), slice(None)) + crop]


def _background(shape) -> np.ndarray:
    """Probabilities [slices, classes, rows, cols] that say background everywhere."""
    probability = np.zeros(shape, np.float32)
    probability[:, 0] = 1.0
    return probability


def _resize(array: np.ndarray, shape) -> np.ndarray:
    """Bilinear resize of the last two axes of [n, channels, rows, cols] to `shape` (pixel centres aligned)."""
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(array)), size=tuple(shape), mode="bilinear",
                            align_corners=False, antialias=shape[0] < array.shape[-2])
    return resized.numpy()


def predict(network, stack: np.ndarray, device, progress=None, batch: int = 8, flips=FLIPS,
            pixel_mm: tuple[float, float] | None = None, refiner=None, apex_first: bool | None = None) -> np.ndarray:
    """Label map [slices, rows, cols] for a normalised short-axis stack with (row, col) pixel size `pixel_mm`
    (None: the training size), from `probabilities` by `labels_from_probabilities`."""
    return labels_from_probabilities(probabilities(network, stack, device, progress, batch, flips, pixel_mm, refiner,
                                                   apex_first))


# Thin and small classes come out too small from the most probable class of a network trained with Dice + CE;
# these cut-offs were chosen on the training split (not the validation split).
MYOCARDIUM_PROBABILITY = _INPUT["cut_offs"]["myocardium_probability"]  # P(myocardium + scar + MVO): the wall
SCAR_PROBABILITY = _REFINER_INPUT["cut_offs"]["scar_share_of_wall"]    # P(scar + MVO) as a share of the wall's


def labels_from_probabilities(probability: np.ndarray) -> np.ndarray:
    """[slices, 5, rows, cols] -> labels: myocardium (with scar and MVO) where their summed probability (the wall's)
    exceeds MYOCARDIUM_PROBABILITY, scar or MVO (the likelier) inside it where theirs exceeds SCAR_PROBABILITY of
    the wall's, elsewhere the likelier of cavity and background."""
    wall = probability[:, 2:].sum(1)
    myocardium = wall > MYOCARDIUM_PROBABILITY
    scar = myocardium & (probability[:, 3:].sum(1) > SCAR_PROBABILITY * wall)
    labels = np.where(probability[:, 1] > probability[:, 0], 1, 0)
    labels[myocardium] = 2
    labels[scar] = np.where(probability[:, 4] > probability[:, 3], 4, 3)[scar]
    return labels.astype(np.uint8)


# Scar (+ MVO) blobs the network leaves in normal hearts are small: on the EMIDEC training split none exceeds
# 70 pixels (1.6 mL at the assumed 1.5 x 1.5 x 10 mm), while every infarct there has a blob of 133 pixels (3 mL)
# or more. Dropping face-connected blobs under 80-120 pixels gave the best training-split figures (normal hearts
# reported scar-free, infarct Dice unchanged); 2 mL lies inside that range. A setting (0: keep every blob),
# applied to the network's scar only, never to a reader's mask or edits.
MIN_SCAR_COMPONENT_ML = _REFINER_INPUT["cut_offs"]["min_scar_component_ml"]


def drop_small_scar(labels: np.ndarray, voxel_ml: float, min_ml: float = MIN_SCAR_COMPONENT_ML) -> np.ndarray:
    """Labels [slices, rows, cols] with every face-connected scar + MVO blob smaller than `min_ml` turned into
    myocardium (2); the wall is unchanged. Returns a new array."""
    blobs, volumes = _scar_blobs(labels, voxel_ml)
    out = labels.copy()
    if min_ml > 0:
        out[(volumes < min_ml)[blobs] & (blobs > 0)] = 2
    return out


def small_scar_blobs_ml(labels: np.ndarray, voxel_ml: float, min_ml: float = MIN_SCAR_COMPONENT_ML) -> list[float]:
    """The volumes (mL, largest first) of the blobs `drop_small_scar` turns into myocardium: the reader is told
    what the clean-up left out (small true foci, or the network's specks in a normal heart)."""
    _, volumes = _scar_blobs(labels, voxel_ml)
    return sorted((float(v) for v in volumes[1:] if v < min_ml), reverse=True) if min_ml > 0 else []


def _scar_blobs(labels: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, np.ndarray]:
    """(blob index per voxel, 0 outside scar; volume in mL per index, index 0 the rest) of the face-connected scar +
    MVO blobs."""
    from scipy import ndimage

    blobs, _ = ndimage.label(labels >= 3)
    return blobs, np.bincount(blobs.ravel()) * voxel_ml


def refine(probability: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Split the first stage's P(myocardium + scar + MVO) into myocardium, scar and MVO by the refiner's
    (other, scar, MVO) probabilities: the wall stays the first stage's, its scar is the refiner's."""
    wall = probability[:, 2:].sum(1)
    out = probability.copy()
    out[:, 2:] = wall[:, None] * refined
    return out


LOCATE_STEP = _INPUT["locate_slice_step"]  # the first pass reads every n-th slice (with its neighbours)


def _locate_lv(network, inputs: np.ndarray, device, batch: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The first pass: the largest connected heart (cavity and wall) the network sees on whole slices, read on
    every LOCATE_STEP-th slice, the LV running through the stack (this pass reads 4 times a crop's pixels: on every
    slice it was 40 % of the time); on every slice when those show none (a short stack). Also its cavity on those
    slices and the network's number of classes."""
    for step in dict.fromkeys((LOCATE_STEP, 1)):
        probability = _run(network, inputs[::step], device, batch)
        classes = probability.argmax(1)
        largest = largest_component(classes > 0)
        if largest.any():
            break
    return largest, largest & (classes == 1), probability.shape[1]


def apex_first_by_cavity(cavity: np.ndarray) -> bool | None:
    """Whether a stack runs from the apex (True) or from the base (False), told by its LV cavity [slices, rows,
    cols] (the base has the larger cavity: its area's trend along the stack); None when fewer than three slices
    show a cavity."""
    areas = cavity.reshape(len(cavity), -1).sum(1)
    shown = np.flatnonzero(areas)
    if shown.size < 3:
        return None
    return bool(np.polyfit(shown, areas[shown], 1)[0] > 0)


def probabilities(network, stack: np.ndarray, device, progress=None, batch: int = 8, flips=FLIPS,
                  pixel_mm: tuple[float, float] | None = None, refiner=None, apex_first: bool | None = None) -> np.ndarray:
    """Class probabilities [slices, classes, rows, cols] for a normalised short-axis stack. Slices are resampled
    to the training pixel size, then segmented in two passes: whole slices find the LV (largest connected
    cavity + myocardium over the stack; `_locate_lv`), then 128 x 128 crops centred on it are segmented (the
    field of view the network was trained on), averaged over mirrored copies (`flips`). With a `refiner` (the cascade's second
    stage) the scar inside the wall comes from it: it reads the crop with the first stage's cavity and wall
    probabilities, a task narrower than the first stage's five classes. The probabilities are resampled back to
    the input grid. Both networks read each slice between its neighbours and learnt stacks running apex first
    (FIRST_SLICE): a stack running from the base (`apex_first` False: from the scan's orientation; None: told by
    the first pass's cavity, `apex_first_by_cavity`) is read reversed, its probabilities put back in its order."""

    shape = stack.shape[1:]
    grid = shape if pixel_mm is None else tuple(max(16, round(n * mm / TRAINED_PIXEL_MM)) for n, mm in zip(shape, pixel_mm, strict=True))
    if grid != shape:
        stack = _resize(stack[:, None], grid)[:, 0]
    if progress:
        progress.update(0.0, "locating the LV")
    channels = input_channels(network)
    located = None
    if apex_first is None:  # the first pass, read in the file's order, says which end is the apex
        located = _locate_lv(network, with_neighbours(stack, channels), device, batch)
        apex_first = apex_first_by_cavity(located[1])
    order = slice(None)
    if apex_first is not None and apex_first != (FIRST_SLICE == "apex"):  # read as the networks learnt, put back below
        stack, located, order = np.ascontiguousarray(stack[::-1]), None, slice(None, None, -1)
    largest, _, classes = located or _locate_lv(network, with_neighbours(stack, channels), device, batch)
    if not largest.any():  # no heart found: background everywhere
        return _background((len(stack), classes) + shape)
    _, rows, cols = np.nonzero(largest)
    r0, c0 = int(np.median(rows)), int(np.median(cols))  # the crop's corner in padded coordinates
    half = CROP // 2
    padded = np.pad(stack, ((0, 0), (half, half), (half, half)))
    if progress:
        progress.update(0.5, "segmenting the LV")
    window = padded[:, r0:r0 + CROP, c0:c0 + CROP]
    cropped = _run(network, with_neighbours(window, channels), device, batch, flips)
    if refiner is not None:
        if progress:
            progress.update(0.75, "segmenting the scar")
        refined = _run(refiner, refiner_inputs(window, cropped), device, batch, flips[:REFINER_FLIPS])
        cropped = refine(cropped, refined)
    probability = _background((len(stack), cropped.shape[1]) + padded.shape[1:])  # outside the crop
    probability[:, :, r0:r0 + CROP, c0:c0 + CROP] = cropped
    probability = probability[order, :, half:half + grid[0], half:half + grid[1]]  # in the stack's own order
    if grid != shape:
        probability = _resize(probability, shape)
    if progress:
        progress.update(1.0, "segmented")
    return probability
