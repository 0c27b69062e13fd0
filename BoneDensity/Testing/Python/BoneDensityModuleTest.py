"""Slicer unit test: runs the module's own self-test (the BoneDensityTest class) inside Slicer."""

import unittest

from BoneDensity import BoneDensityTest


class BoneDensityModuleTest(unittest.TestCase):
    def test_module_self_test(self):
        test = BoneDensityTest()
        test.runTest()
