"""CardioQuant: quantitative cardiac and opportunistic imaging for 3D Slicer and the command line.

The science (this package) imports neither Slicer nor Qt; `cardioquant.scene` works on MRML nodes
through slicer-core, so the same code runs inside Slicer and in plain Python.
"""

import os
import sys

__version__ = "0.1.0"


def _small_pages_for_numpy() -> None:
    """Ask NumPy, when it has not been imported yet, not to mark its large arrays for transparent huge pages.

    NumPy marks every array of 4 MB or more MADV_HUGEPAGE. Where the kernel's THP defrag setting is `madvise` (a
    common default), the first touch of such an array may stall while the kernel compacts memory for fresh 2 MB
    pages (numpy/numpy#31590), and in a virtual machine whose memory the host backs on first use it touches
    untouched memory: on the 2-core benchmark machine (`make bench`) the first 300 MB array of a process took 1.7 s
    instead of 0.15 s, and the calcium command on a 512 x 512 x 300 CT 20.5-22 s instead of 16.5 s, BoneDensity's
    33-34 s instead of 29 s. An analysis allocates each large array once or twice, so huge pages' fewer TLB
    misses gain it little. A NUMPY_MADVISE_HUGEPAGE the user set is kept; inside Slicer NumPy is already loaded and
    nothing changes. The variable passes to the processes this one starts (the panels' background run, cohort
    workers)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


_small_pages_for_numpy()
