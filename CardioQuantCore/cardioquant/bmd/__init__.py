"""Opportunistic vertebral bone mineral density: vertebrae, trabecular ROI, phantomless calibration, BMD."""
