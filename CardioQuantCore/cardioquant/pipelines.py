"""Registry of the four module pipelines, as the command line, the demo and batch runs see them.

A pipeline is a Python module exposing:
  TITLE: str, ALLOW_2D: bool
  add_arguments(parser)                      its own command-line options
  run(loaded, options, progress) -> ModuleResult
  sample_input() -> Path                     bundled sample data for `cardioquant demo`
  summary_line(result) -> str                one line for the demo table
A module whose issue has not landed yet is listed with `None` and reported as not yet available.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PIPELINES: dict[str, str | None] = {
    "calcium": "cardioquant.calcium.pipeline",
    "scar": "cardioquant.scar.pipeline",
    "bmd": "cardioquant.bmd.pipeline",
    "ffr": "cardioquant.ffr.pipeline",
}

TITLES = {
    "calcium": "Coronary artery calcium (CalciumScoring)",
    "scar": "Myocardial scar on LGE MRI (ScarQuantification)",
    "bmd": "Vertebral bone mineral density (BoneDensity)",
    "ffr": "CT-derived fractional flow reserve (CTFFR)",
}


def get(name: str) -> ModuleType | None:
    """The pipeline module, or None while the module is not yet available."""
    path = PIPELINES[name]
    return importlib.import_module(path) if path else None
