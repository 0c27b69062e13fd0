"""TotalSegmentator (Wasserthal et al., 2023) as an optional provider of masks, when it is installed: the heart and
aorta for calcium scoring (`--heart-mask totalsegmentator`) and the vertebrae for bone density (`--vertebra-mask
totalsegmentator`). Its Python API is run on the scan in a temporary folder, and its output is read as the files a
reader would give. CardioQuant never needs it: without it these options stop before any work with how to get it.
TotalSegmentator fetches its weights on first use (internet), which CardioQuant itself never does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError

OPTION_VALUE = "totalsegmentator"  # the mask option's value that runs TotalSegmentator instead of reading a file
# Values of the heart and the aorta in a label map of TotalSegmentator's `total` task (version 2; its --ml output, and
# the label maps tools convert its output into). bmd/levels.py holds the vertebrae's.
TOTAL_HEART, TOTAL_AORTA = 51, 52


def api(option: str) -> Callable:
    """TotalSegmentator's Python API function, or an InputError naming `option` and how to get it (checked before
    any work)."""
    try:
        from totalsegmentator.python_api import totalsegmentator
    except ImportError as exc:
        raise InputError(f"{option} {OPTION_VALUE}: TotalSegmentator is not installed (pip install TotalSegmentator; "
                         "it fetches its weights on first use); or give a mask file.") from exc
    return totalsegmentator


def segment[T](image: sitk.Image, option: str, read: Callable[[Path], T], device: str = "auto", **task) -> T:
    """`read(folder)` of TotalSegmentator's output folder for the scan, run with `task` (its API's keywords:
    roi_subset, task, ...) on the analysis's device (--device: TotalSegmentator names a GPU "gpu"); the folder is
    removed afterwards."""
    from .models.runtime import select_device

    run = api(option)
    chosen = select_device(device)
    where = "cpu" if chosen.type != "cuda" else "gpu" if chosen.index is None else f"gpu:{chosen.index}"
    with tempfile.TemporaryDirectory(prefix="cardioquant-totalseg-") as folder:
        scan, output = Path(folder) / "ct.nii.gz", Path(folder) / "segmentations"
        sitk.WriteImage(image, str(scan))
        try:
            run(str(scan), str(output), device=where, **task)
        except (Exception, SystemExit) as exc:  # its command-line code exits on some errors
            raise InputError(f"{option} {OPTION_VALUE}: TotalSegmentator failed ({type(exc).__name__}: {exc}); on "
                             "first use it fetches its weights from the internet. Run it once where it can, or give "
                             "a mask file.") from exc
        return read(output)
