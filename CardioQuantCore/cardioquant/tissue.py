"""Attenuation of tissues that more than one CT analysis relies on."""

# Unenhanced blood reads 30-60 HU with its haematocrit (about 40 at 45 %, up to about 70 with a high haematocrit);
# more is iodine. A late or portal-venous phase leaves the aorta at 80-150 HU, an arterial phase at 200-600.
UNENHANCED_BLOOD_MAX_HU = 80.0
