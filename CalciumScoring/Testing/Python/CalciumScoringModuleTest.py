"""Slicer unit test: runs the module's own self-test (the CalciumScoringTest class) inside Slicer."""

import unittest

from CalciumScoring import CalciumScoringTest


class CalciumScoringModuleTest(unittest.TestCase):
    def test_module_self_test(self):
        test = CalciumScoringTest()
        test.runTest()
