"""MyoPS data access (30 real LGE MRI volumes of another centre: oblique short-axis stacks, the whole field of view,
about 0.73 mm pixels, 12-23 mm slices) and its fixed split. A development module: the pipelines never import it.

MyoPS labels -> the network's (EMIDEC's) classes: the scar pipeline's MYOPS_VALUES, by which a reader's MyoPS
labels given as --myocardium-mask are read too.
The validation split is fixed by case (never slices of one case on both sides): every fourth case in sorted
order starting with the third, i.e. 7 of 30 cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pipeline import emidec_values_of_myops


def cases(root: str | Path) -> dict[str, Path]:
    """case id ("Case3001") -> its folder."""
    return {p.name: p for p in sorted(Path(root).glob("Case*")) if p.is_dir() and any(p.glob("*_LGE.nii.gz"))}


def split(case_ids: list[str]) -> tuple[list[str], list[str]]:
    train: list[str] = []
    validation: list[str] = []
    for n, case in enumerate(sorted(case_ids)):
        (validation if n % 4 == 2 else train).append(case)
    return train, validation


def load_case(root: str | Path, case_id: str):
    """(signal [slices, rows, cols] float32, network classes [slices, rows, cols] uint8, the raw MyoPS labels,
    spacing (col, row, slice) mm) on the stack's own grid, as the pipeline reads it."""
    import SimpleITK as sitk

    folder = cases(root)[case_id]
    image = sitk.ReadImage(str(next(folder.glob("*_LGE.nii.gz"))))
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(next(folder.glob("*_gd.nii.gz")))))
    signal = sitk.GetArrayFromImage(image).astype(np.float32)
    return signal, emidec_values_of_myops(raw), raw, tuple(image.GetSpacing())


def on_training_grid(stack: np.ndarray, classes: np.ndarray, pixel_mm: tuple[float, float], size: int = 256):
    """A normalised stack and its classes resampled to the network's pixel size (as the pipeline resamples) and
    cut or padded to size x size around the LV's centre, like EMIDEC's heart-centred slices."""
    import torch
    import torch.nn.functional as F

    from .network import TRAINED_PIXEL_MM, _resize

    grid = tuple(max(16, round(n * mm / TRAINED_PIXEL_MM)) for n, mm in zip(stack.shape[1:], pixel_mm, strict=True))
    image = _resize(stack[:, None], grid)[:, 0]
    nearest = F.interpolate(torch.from_numpy(classes[:, None].astype(np.float32)), size=grid, mode="nearest")[:, 0]
    labels = nearest.numpy().astype(np.uint8)
    _, rows, cols = np.nonzero(labels >= 1)
    centre = (int(np.median(rows)), int(np.median(cols)))
    half = size // 2
    padded = [np.pad(a, ((0, 0), (half, half), (half, half))) for a in (image, labels)]
    window = (slice(None), slice(centre[0], centre[0] + size), slice(centre[1], centre[1] + size))
    return padded[0][window], padded[1][window]
