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


def predict(network, stack: np.ndarray, device, progress=None, batch: int = 8) -> np.ndarray:
    """Label map [slices, rows, cols] for a normalised short-axis stack."""
    import torch

    padded, crop = pad16(stack)
    out = np.zeros(padded.shape, np.uint8)
    with torch.inference_mode():
        for start in range(0, padded.shape[0], batch):
            if progress:
                progress.update(start / padded.shape[0], "segmenting slices")
            x = torch.from_numpy(padded[start:start + batch, None]).to(device)
            out[start:start + batch] = network(x).argmax(1).cpu().numpy()
    if progress:
        progress.update(1.0, "segmented")
    return out[(slice(None),) + crop]
