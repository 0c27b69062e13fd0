"""CardioQuant: quantitative cardiac and opportunistic imaging for 3D Slicer and the command line.

The science (this package) imports neither Slicer nor Qt; `cardioquant.scene` works on MRML nodes
through slicer-core, so the same code runs inside Slicer and in plain Python.
"""

__version__ = "0.1.0"
