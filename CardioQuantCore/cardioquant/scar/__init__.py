"""Myocardial scar on late-gadolinium-enhancement MRI: segmentation model, n-SD / FWHM thresholds, AHA segments."""
