"""The Slicer modules' self-tests, run here on slicer-core: each module's `*Test` class and this file call the same
body (CardioQuantCoreLib/selftests.py) with the same Logic, so what Slicer's headless self-test checks is checked
on every `make test`."""

import re
import unittest
from pathlib import Path

import pytest

from CardioQuantCoreLib import logic, selftests

ROOT = Path(__file__).resolve().parents[1]

BODIES = {"CalciumScoring": (selftests.calcium, logic.CalciumLogic),
          "ScarQuantification": (selftests.scar, logic.ScarLogic),
          "BoneDensity": (selftests.bone_density, logic.BMDLogic),
          "CTFFR": (selftests.ctffr, logic.FFRLogic)}


@pytest.mark.usefixtures("slicer_scene")
@pytest.mark.parametrize("module", BODIES)
def test_module_self_test(module):
    body, logic_class = BODIES[module]
    body(unittest.TestCase(), logic_class())


@pytest.mark.parametrize("module", BODIES)
def test_the_slicer_self_test_runs_the_same_body(module):
    """The module's *Test class calls this body with the module's Logic, which derives from the same logic class."""
    body, logic_class = BODIES[module]
    source = (ROOT / module / f"{module}.py").read_text()
    assert re.search(rf"selftests\.{body.__name__}\(self, {module}Logic\(\)\)", source)
    assert re.search(rf"^class {module}Logic\({logic_class.__name__}, CardioQuantLogic\):", source, re.M)
