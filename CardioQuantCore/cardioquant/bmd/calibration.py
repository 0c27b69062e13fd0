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
    doubt: str = "the calibration line is implausible"  # why, when not plausible

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
# is a reference ROI that caught something else (bone at the edge of a field of view that cuts the back muscles, lung
# taken for air), or references that disagree.
PLAUSIBLE_SCALE = (0.85, 1.15)
# Each of three or more references counts by how far it lies off the fitted line, r: fully on it, less as r grows
# (Tukey's biweight, (1 - (r / OUTLIER_HU)^2)^2: 0.73 at 17 HU, 0.31 at 30 HU), not at all beyond OUTLIER_HU (a
# "muscle" ROI reading bone at a cut field of view's edge, 47 HU off). The hard 30 HU cut-off this replaces made the
# line jump: on the real abdominal CT muscle reads 20 HU under its nominal value and blood 17 HU over it (fatty
# muscle, the patient's haematocrit), each about 30 HU off the line through the others, and as slice thickness,
# pixel size or noise changed one or the other was dropped: the patient BMD moved between 109 and 130 mg/cm3.
OUTLIER_HU = 45.0
WEAK_WEIGHT = 0.5  # a reference counted at less than this is named in the notes
# The line is fitted knowing that: its gain is drawn towards 1 as by GAIN_SD of drift against REFERENCE_SD_HU of error
# in a reference's median (one tissue read a little off in one patient). With air among the references, 1000 HU from
# the soft tissues, the data decide the gain (COCA-like cut fields of view aside, the prior moves it by < 0.01).
# With soft tissues alone, fat to muscle or blood 150 HU apart (a calcium scan's field of view holds no air outside
# the body), 10 HU of error in one tissue would tilt the gain by 7 % and move a vertebra reading 100 HU by 15 mg/cm3.
# The prior also keeps the soft tissues from judging air by a long extrapolation: drawn towards gain 1, their line
# puts true air within a few HU of -1000 and lung taken for air (-850 HU) far off.
GAIN_SD = 0.05
REFERENCE_SD_HU = 10.0


def multi_material(references: dict, kvp: float) -> Calibration:
    """Line through the references, robust to one that caught another tissue: with three or more, each counts by
    how far it lies off the line (OUTLIER_HU); one left out, or counted at under WEAK_WEIGHT, is said in `notes` and
    kept in `references` with its `weight` (`used` false when 0). Least squares alone would spread a wrong
    reference's error over every tissue and every vertebra."""
    if len(references) < 2:
        return _too_few_references(references, kvp)
    weights, scale, offset = robust_line(references, kvp)
    notes = _weight_notes(references, weights, scale, offset, kvp)
    # Plausibility is judged on what the references alone say (their weighted line without the gain prior).
    counted = {t: r for t, r in references.items() if weights[t] > 0}
    measured, nominal = _points(counted, kvp)
    data_scale = (float(np.polyfit(measured, nominal, 1, w=np.sqrt([weights[t] for t in counted]))[0])
                  if len(counted) >= 2 else float("nan"))  # one reference left: no line of its own
    agreeing = sum(w >= WEAK_WEIGHT for w in weights.values())
    plausible = PLAUSIBLE_SCALE[0] <= data_scale <= PLAUSIBLE_SCALE[1] and agreeing >= 2
    if not plausible:
        notes = notes + [f"the calibration line is implausible (gain {data_scale:.2f}"
                         + ("" if agreeing >= 2 else ", fewer than two references agreeing")
                         + "): check the reference ROIs, or calibrate with a phantom (--phantom)"]
    described = {t: {**r, "used": weights[t] > 0, "weight": round(weights[t], 3)}
                 for t, r in _with_nominal(references, kvp).items()}
    used = [t for t in references if weights[t] > 0]
    return Calibration(f"multi-material ({', '.join(used)})", scale, offset, kvp, described, ha_slope(kvp),
                       notes=notes, plausible=plausible)


def _too_few_references(references: dict, kvp: float) -> Calibration:
    """A line no patient figure is drawn from: a field of view with fewer than two reference tissues (a cardiac crop
    of a contrast scan: no air outside the body, no back muscle, the aorta iodinated). The vertebrae keep their
    trabecular HU (and the opportunistic L1 thresholds, which are read on HU as measured); the line is drawn through
    the one reference at the prior's gain of 1 (the identity with none), and said to be no calibration. Until
    session 50 such a scan was refused after the network had found and measured its vertebrae."""
    found = ", ".join(references) or "none"
    _, scale, offset = robust_line(references, kvp) if references else ({}, 1.0, 0.0)
    note = (f"too few reference tissues beside the vertebrae for a phantomless calibration (air outside the body, fat, "
            f"muscle, blood without contrast; found: {found}): give the scanner's phantom line with --phantom "
            f"HU:density pairs")
    return Calibration(f"none (too few reference tissues: {found})", scale, offset, kvp,
                       {t: {**r, "used": True, "weight": 1.0} for t, r in _with_nominal(references, kvp).items()},
                       ha_slope(kvp), notes=[note], plausible=False,
                       doubt="too few reference tissues for a phantomless calibration")


def robust_line(references: dict, kvp: float) -> tuple[dict, float, float]:
    """(tissue -> weight, scale, offset) of the line measured -> nominal HU with the gain prior, each reference
    weighted by Tukey's biweight of its distance off the line (iteratively reweighted least squares). The fit starts
    from every reference and from each one left out, and the start reaching the lowest cost wins, so that a
    reference far off is left out whichever way the fit approaches it. Two references weigh 1 each: neither can be
    judged against the other."""
    measured, nominal = _points(references, kvp)
    if len(references) < 3:
        scale, offset = _line_with_gain_prior(measured, nominal, np.ones(len(references)))
        return dict.fromkeys(references, 1.0), scale, offset
    starts = [np.ones(len(references))] + list(1.0 - np.eye(len(references)))
    fits = [_reweighted(measured, nominal, start) for start in starts]
    scale, offset = min(fits, key=lambda fit: _robust_cost(nominal - (fit[0] * measured + fit[1]), fit[0]))
    weights = _biweight(nominal - (scale * measured + offset))
    return dict(zip(references, (float(w) for w in weights), strict=True)), scale, offset


def _reweighted(measured: np.ndarray, nominal: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(scale, offset) that iteratively reweighted least squares settles on from the starting `weights`."""
    scale, offset = _line_with_gain_prior(measured, nominal, weights)
    for _ in range(100):
        new_scale, new_offset = _line_with_gain_prior(measured, nominal, _biweight(nominal - (scale * measured + offset)))
        settled = abs(new_scale - scale) < 1e-10 and abs(new_offset - offset) < 1e-8
        scale, offset = new_scale, new_offset
        if settled:
            break
    return scale, offset


def _biweight(residuals: np.ndarray) -> np.ndarray:
    return np.where(np.abs(residuals) < OUTLIER_HU, (1.0 - (residuals / OUTLIER_HU) ** 2) ** 2, 0.0)


def _robust_cost(residuals: np.ndarray, scale: float) -> float:
    """Tukey's loss of the residuals (r^2 / 2 near the line, OUTLIER_HU^2 / 6 beyond it) plus the gain prior's."""
    bounded = np.minimum(np.abs(residuals) / OUTLIER_HU, 1.0)
    loss = OUTLIER_HU ** 2 / 6.0 * (1.0 - (1.0 - bounded ** 2) ** 3)
    return float(loss.sum() + 0.5 * (REFERENCE_SD_HU / GAIN_SD * (scale - 1.0)) ** 2)


def _weight_notes(references: dict, weights: dict, scale: float, offset: float, kvp: float) -> list[str]:
    notes = []
    for tissue, weight in weights.items():
        if weight >= WEAK_WEIGHT:
            continue
        measured = references[tissue]["measured_hu"]
        off = abs(nominal_hu(tissue, kvp) - (scale * measured + offset))
        others = ", ".join(t for t, w in weights.items() if t != tissue and w > 0)
        notes.append(f"{tissue} reference ({measured:.0f} HU) left out of the calibration: it lies {off:.0f} HU off "
                     f"the line through {others}; its ROI probably caught another tissue" if weight == 0 else
                     f"{tissue} reference ({measured:.0f} HU) counted at weight {weight:.2f}: it lies {off:.0f} HU "
                     f"off the line through {others}")
    return notes


def _points(references: dict, kvp: float) -> tuple[np.ndarray, np.ndarray]:
    """(measured, nominal) HU of the references, in their order."""
    return (np.array([r["measured_hu"] for r in references.values()]),
            np.array([nominal_hu(t, kvp) for t in references]))


def _line_with_gain_prior(measured: np.ndarray, nominal: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(scale, offset) of the weighted least-squares line measured -> nominal HU with one more equation, weighted
    REFERENCE_SD_HU / GAIN_SD: scale = 1 (module comment above)."""
    root = np.sqrt(weights)
    prior = REFERENCE_SD_HU / GAIN_SD
    design = np.vstack([np.column_stack([measured, np.ones_like(measured)]) * root[:, None], [prior, 0.0]])
    (scale, offset), *_ = np.linalg.lstsq(design, np.append(nominal * root, prior), rcond=None)
    return float(scale), float(offset)


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
