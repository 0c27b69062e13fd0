"""Coronary artery calcium: scoring engine, phantoms, heart anatomy, artery assignment, pipeline."""
