"""Slicer-side helpers shared by the four CardioQuant modules (needs Slicer; the science does not)."""
