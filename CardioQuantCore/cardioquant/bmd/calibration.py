"""Phantomless (internal) calibration and conversion of trabecular HU to BMD.

Two steps, each with documented settings:
1. HU recalibration against reference tissues measured in the same scan (robust medians):
   - "two-point" (Comp2Comp): air = -1000 HU and fat = nominal fat HU,
     s = (fat_nominal - air_nominal) / (fat_meas - air_meas), HU_cal = s x HU + (air_nominal - s x air_meas);
   - "multi-material": least-squares line through (measured, nominal) of every available reference
     (air, fat, muscle, blood) - the most accurate when the ROIs are clean (Michalski 2020).
2. BMD (mg/cm^3 hydroxyapatite-equivalent) = (HU_cal - HU_water) / slope(kVp), slope = HU per mg/cm^3 HA.
Nominal HU values and slopes are literature-typical and UNVERIFIED (docs/REFERENCE.md section 2): every one is a setting.
"Asynchronous" calibration replaces step 1 and 2 by a line fitted to a phantom scanned on the same scanner
(user-entered pairs of measured HU and known density).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

# Nominal (true) HU of the reference tissues, by kVp. Unverified literature-typical values: settings.
NOMINAL_HU = {
    "air": {80: -1000.0, 100: -1000.0, 120: -1000.0, 140: -1000.0},
    "fat": {80: -110.0, 100: -100.0, 120: -95.0, 140: -90.0},
    "muscle": {80: 55.0, 100: 52.0, 120: 50.0, 140: 48.0},
    "blood": {80: 42.0, 100: 41.0, 120: 40.0, 140: 39.0},
}
# HU per mg/cm^3 of hydroxyapatite by kVp (bone brightens at low kVp). Unverified: setting.
HA_SLOPE_HU_PER_MG = {80: 1.36, 100: 1.12, 120: 1.0, 140: 0.91}
WATER_HU = 0.0


def _by_kvp(table: dict, kvp: float) -> float:
    keys = sorted(table)
    return float(np.interp(kvp, keys, [table[k] for k in keys]))


def nominal_hu(tissue: str, kvp: float) -> float:
    return _by_kvp(NOMINAL_HU[tissue], kvp)


def ha_slope(kvp: float) -> float:
    return _by_kvp(HA_SLOPE_HU_PER_MG, kvp)


@dataclass
class Calibration:
    method: str
    scale: float                 # HU_cal = scale x HU + offset
    offset: float
    kvp: float
    references: dict = field(default_factory=dict)   # tissue -> {"measured_hu", "nominal_hu", "voxels", "used"}
    ha_slope: float = 1.0
    phantom_points: list | None = None
    notes: list = field(default_factory=list)         # references left out, doubts about the line
    plausible: bool = True                            # False: the line is outside what drift does; BMD not trusted

    def calibrated_hu(self, hu):
        return self.scale * np.asarray(hu, dtype=float) + self.offset

    def bmd(self, hu):
        """mg/cm^3 HA-equivalent from measured HU."""
        if self.method == "asynchronous":
            return self.scale * np.asarray(hu, dtype=float) + self.offset
        return (self.calibrated_hu(hu) - WATER_HU) / self.ha_slope

    def to_json(self) -> dict:
        return {"method": self.method, "line": {"scale": self.scale, "offset": self.offset,
                                                "meaning": "BMD = scale x HU + offset" if self.method == "asynchronous"
                                                else "HU_calibrated = scale x HU + offset"},
                "kvp": self.kvp, "ha_slope_hu_per_mg_cm3": self.ha_slope, "references": self.references,
                "phantom_points": self.phantom_points, "notes": self.notes, "plausible": self.plausible}


def two_point(references: dict, kvp: float) -> Calibration:
    for tissue in ("air", "fat"):
        if tissue not in references:
            raise InputError(f"two-point calibration needs a {tissue} reference ROI, which could not be placed")
    air, fat = references["air"]["measured_hu"], references["fat"]["measured_hu"]
    if fat - air < 300:
        raise InputError(f"air ({air:.0f} HU) and fat ({fat:.0f} HU) references are too close for a calibration")
    air_n, fat_n = nominal_hu("air", kvp), nominal_hu("fat", kvp)
    scale = (fat_n - air_n) / (fat - air)
    return Calibration("two-point (air, fat)", scale, air_n - scale * air, kvp, _with_nominal(references, kvp),
                       ha_slope(kvp))


# A scanner's drift moves the line's gain by a few per cent and its tissues by tens of HU; a gain outside this range
# or a tissue this far off the line is a reference ROI that caught something else (bone at the edge of a field of
# view that cuts the back muscles, lung taken for air).
PLAUSIBLE_SCALE = (0.85, 1.15)
MAX_RESIDUAL_HU = 30.0
# The line is fitted knowing that: its gain is drawn towards 1 as by GAIN_SD of drift against REFERENCE_SD_HU of error
# in a reference's median (one tissue read a little off in one patient). With air among the references, 1000 HU from
# the soft tissues, the data decide the gain (COCA-like cut fields of view aside, the prior moves it by < 0.01).
# With soft tissues alone, fat to muscle or blood 150 HU apart (a calcium scan's field of view holds no air outside
# the body), 10 HU of error in one tissue would tilt the gain by 7 % and move a vertebra reading 100 HU by 15 mg/cm3.
GAIN_SD = 0.05
REFERENCE_SD_HU = 10.0


def multi_material(references: dict, kvp: float) -> Calibration:
    """Least-squares line through the references. With three or more, one that lies over MAX_RESIDUAL_HU off the
    (plausible) line through the others is left out first, said in `notes` and kept in `references` with `used`
    false: least squares would spread its error over every tissue and every vertebra."""
    if len(references) < 2:
        found = ", ".join(references) or "none"
        raise InputError(f"phantomless calibration needs two reference tissues beside the vertebrae (air outside the "
                         f"body, fat, muscle, blood without contrast) and this field of view holds too few (found: "
                         f"{found}); give the scanner's phantom line with --phantom HU:density pairs")
    used, notes = consistent_references(references, kvp)
    # Plausibility is judged on what the references alone say; the line used is the one fitted with the prior.
    data_scale, _, residuals = _line(used, kvp)
    plausible = _plausible(data_scale, residuals)
    if not plausible:
        notes = notes + [f"the calibration line is implausible (gain {data_scale:.2f}, a reference "
                         f"{np.abs(residuals).max():.0f} HU off it): check the reference ROIs, or calibrate with a "
                         "phantom (--phantom)"]
    scale, offset = _line_with_gain_prior(used, kvp)
    described = {t: {**r, "used": t in used} for t, r in _with_nominal(references, kvp).items()}
    return Calibration(f"multi-material ({', '.join(used)})", scale, offset, kvp, described, ha_slope(kvp),
                       notes=notes, plausible=plausible)


def consistent_references(references: dict, kvp: float) -> tuple[dict, list[str]]:
    """(The references the line is fitted to, notes): all of them, or all but the one furthest off the line
    through the others when that is over MAX_RESIDUAL_HU and that line is plausible. A reference is judged only
    where the others' line reaches it without a long extrapolation (within their own HU span beyond them): a line
    through fat, muscle and blood, 150 HU apart, says little about air 900 HU away."""
    if len(references) < 3:
        return references, []
    candidates = []  # (how far the left-out reference is off the line through the others, its name)
    for left_out, values in references.items():
        rest = {t: r for t, r in references.items() if t != left_out}
        scale, offset, residuals = _line(rest, kvp)
        measured = [r["measured_hu"] for r in rest.values()]
        low, high = min(measured), max(measured)
        reached = low - (high - low) <= values["measured_hu"] <= high + (high - low)
        if reached and _plausible(scale, residuals):
            candidates.append((abs(nominal_hu(left_out, kvp) - (scale * values["measured_hu"] + offset)), left_out))
    miss, worst = max(candidates, default=(0.0, None))
    if miss <= MAX_RESIDUAL_HU:
        return references, []
    kept = {t: r for t, r in references.items() if t != worst}
    return kept, [f"{worst} reference ({references[worst]['measured_hu']:.0f} HU) left out of the calibration: it "
                  f"lies {miss:.0f} HU off the line through {', '.join(kept)}; its ROI probably caught another tissue"]


def _points(references: dict, kvp: float) -> tuple[np.ndarray, np.ndarray]:
    """(measured, nominal) HU of the references, in their order."""
    return (np.array([r["measured_hu"] for r in references.values()]),
            np.array([nominal_hu(t, kvp) for t in references]))


def _line(references: dict, kvp: float) -> tuple[float, float, np.ndarray]:
    """(scale, offset, nominal - calibrated per reference) of the least-squares line measured -> nominal HU."""
    measured, nominal = _points(references, kvp)
    scale, offset = np.polyfit(measured, nominal, 1)
    return float(scale), float(offset), nominal - (scale * measured + offset)


def _line_with_gain_prior(references: dict, kvp: float) -> tuple[float, float]:
    """(scale, offset) of the least-squares line measured -> nominal HU with one more equation, weighted
    REFERENCE_SD_HU / GAIN_SD: scale = 1 (module comment above)."""
    measured, nominal = _points(references, kvp)
    weight = REFERENCE_SD_HU / GAIN_SD
    design = np.vstack([np.column_stack([measured, np.ones_like(measured)]), [weight, 0.0]])
    (scale, offset), *_ = np.linalg.lstsq(design, np.append(nominal, weight), rcond=None)
    return float(scale), float(offset)


def _plausible(scale: float, residuals: np.ndarray) -> bool:
    return PLAUSIBLE_SCALE[0] <= scale <= PLAUSIBLE_SCALE[1] and float(np.abs(residuals).max()) <= MAX_RESIDUAL_HU


def asynchronous(points: list[tuple[float, float]], kvp: float) -> Calibration:
    """Line BMD = a x HU + b from phantom measurements (HU measured, density mg/cm^3) on the same scanner."""
    if len(points) < 2:
        raise InputError("asynchronous calibration needs at least two phantom (HU, density) pairs")
    hu, density = np.array(points, dtype=float).T
    scale, offset = np.polyfit(hu, density, 1)
    return Calibration("asynchronous", float(scale), float(offset), kvp, {}, 1.0, [list(p) for p in points])


def _with_nominal(references: dict, kvp: float) -> dict:
    return {t: {**r, "nominal_hu": nominal_hu(t, kvp)} for t, r in references.items()}


def robust_stats(values: np.ndarray) -> dict:
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return {"measured_hu": median, "mad_hu": mad, "mean_hu": float(values.mean()), "voxels": int(values.size)}
