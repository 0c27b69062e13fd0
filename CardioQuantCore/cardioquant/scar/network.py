"""The LGE segmentation network: 2D MONAI UNet on short-axis slices, classes 0 background, 1 LV cavity,
2 myocardium, 3 scar (infarct), 4 microvascular obstruction (EMIDEC's labels).

Per-slice normalisation makes it independent of the intensity range (8-bit PNG, 12-bit DICOM, NIfTI floats):
signal is scaled so the 1st..99.5th percentiles of the slice map to 0..1. Slices are resampled to the grid the
network was trained on (1.5 mm pixels assumed for EMIDEC) and padded to a multiple of 16.
"""

from __future__ import annotations

import numpy as np

MODEL_NAME = "lge_segmenter"


def normalise_slice(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, [1.0, 99.5])
    return np.clip((plane - low) / max(high - low, 1e-6), 0.0, 1.5).astype(np.float32)


def normalise_stack(stack: np.ndarray) -> np.ndarray:
    return np.stack([normalise_slice(p) for p in stack])


def pad16(stack: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    rows, cols = stack.shape[-2:]
    pr, pc = (-rows) % 16, (-cols) % 16
    padded = np.pad(stack, [(0, 0)] * (stack.ndim - 2) + [(pr // 2, pr - pr // 2), (pc // 2, pc - pc // 2)])
    return padded, (slice(pr // 2, pr // 2 + rows), slice(pc // 2, pc // 2 + cols))


CROP = 128  # the network is trained on 128 x 128 crops around the heart


FLIPS = ((), (-1,), (-2,), (-2, -1))  # test-time augmentation of the second pass: mirror images, averaged


def _run(network, stack: np.ndarray, device, batch: int, flips=((),)) -> np.ndarray:
    """Class map; with several `flips` the softmax of each mirrored input (mirrored back) is averaged."""
    import torch

    padded, crop = pad16(stack)
    out = np.zeros(padded.shape, np.uint8)
    with torch.inference_mode():
        for start in range(0, padded.shape[0], batch):
            x = torch.from_numpy(np.ascontiguousarray(padded[start:start + batch, None])).to(device)
            probability = sum(torch.softmax(network(x.flip(f)), 1).flip(f) for f in flips)  # flip(()) is identity
            out[start:start + batch] = probability.argmax(1).cpu().numpy()
    return out[(slice(None),) + crop]


def predict(network, stack: np.ndarray, device, progress=None, batch: int = 8, flips=FLIPS) -> np.ndarray:
    """Label map [slices, rows, cols] for a normalised short-axis stack, in two passes: the whole slices find
    the LV (largest connected cavity + myocardium over the stack), then 128 x 128 crops centred on it are
    segmented (the field of view the network was trained on), averaged over mirrored copies (`flips`)."""
    from scipy import ndimage

    if progress:
        progress.update(0.0, "locating the LV")
    first = _run(network, stack, device, batch)
    labels, count = ndimage.label(first > 0)
    if count == 0:
        return first
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    _, rows, cols = np.nonzero(largest)
    centre = (int(np.median(rows)), int(np.median(cols)))
    half = CROP // 2
    padded = np.pad(stack, ((0, 0), (half, half), (half, half)))
    r0, c0 = centre[0], centre[1]  # in padded coordinates the crop starts at the centre
    if progress:
        progress.update(0.5, "segmenting the LV")
    cropped = _run(network, padded[:, r0:r0 + CROP, c0:c0 + CROP], device, batch, flips)
    out = np.zeros((stack.shape[0], stack.shape[1] + CROP, stack.shape[2] + CROP), np.uint8)
    out[:, r0:r0 + CROP, c0:c0 + CROP] = cropped
    if progress:
        progress.update(1.0, "segmented")
    return out[:, half:half + stack.shape[1], half:half + stack.shape[2]]
