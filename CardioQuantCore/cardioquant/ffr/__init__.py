"""CT-derived fractional flow reserve: centerline tree, stenoses, reduced-order (0D) hemodynamics with svZeroD."""
