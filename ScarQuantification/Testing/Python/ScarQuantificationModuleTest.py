"""Slicer unit test: runs the module's own self-test (the ScarQuantificationTest class) inside Slicer."""

import unittest

from ScarQuantification import ScarQuantificationTest


class ScarQuantificationModuleTest(unittest.TestCase):
    def test_module_self_test(self):
        test = ScarQuantificationTest()
        test.runTest()
