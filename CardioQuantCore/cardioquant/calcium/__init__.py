"""Coronary artery calcium: scoring engine, phantoms, candidate detection, artery labelling, pipeline."""
