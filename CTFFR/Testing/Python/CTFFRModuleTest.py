"""Slicer unit test: runs the module's own self-test (the CTFFRTest class) inside Slicer."""

import unittest

from CTFFR import CTFFRTest


class CTFFRModuleTest(unittest.TestCase):
    def test_module_self_test(self):
        test = CTFFRTest()
        test.runTest()
