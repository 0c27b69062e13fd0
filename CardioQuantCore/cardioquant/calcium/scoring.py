"""Agatston, volume and mass scores, total and per artery, with a per-lesion list.

Definitions (docs/REFERENCE.md section 1): candidate voxels are >= the kVp-dependent threshold (130 HU at 120 kVp);
a *scored region* is a connected set of candidate voxels of one artery inside one axial slice (2D
connectivity, default 8) or the slice cross-section of a 3D-connected region (3D connectivity); regions below
the minimum area are dropped; each region scores area_mm2 x weight(peak HU of that region), weights switching at
the kVp-dependent boundaries; the Agatston total is multiplied by (slice increment / 3 mm). Volume = voxels x
voxel volume. Mass = c x sum over voxels of (HU x voxel volume), c from a calibration rod.

The label array assigns candidate voxels to arteries (1 LM, 2 LAD, 3 LCX, 4 RCA, 5 not coronary, 0 none);
only labels 1-4 are scored. The input array must be axial (k = slice index, slices along the S-I axis).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from scipy import ndimage

from .. import geometry
from .settings import CONNECTIVITY  # declared with the options

ARTERIES = {1: "LM", 2: "LAD", 3: "LCX", 4: "RCA"}
NOT_CORONARY = 5

# kVp -> (threshold, weight-2 from, weight-3 from, weight-4 from) in HU (Graeni, EHJ-CVI 2018).
KVP_TABLE: dict[float, tuple[float, float, float, float]] = {
    70: (207, 318, 477, 636),
    80: (177, 271, 408, 544),
    100: (145, 222, 334, 446),
    120: (130, 200, 300, 400),
    135: (119, 183, 274, 364),
}

# Minimum lesion area presets: (mm^2, pixels). Literature/GE/TeraRecon 1 mm^2, Philips 0.5 mm^2, Canon 3 pixels.


def kvp_boundaries(kvp: float) -> tuple[tuple[float, float, float, float], str | None]:
    """HU boundaries for a tube voltage: exact table rows; linear interpolation between rows; clamped outside."""
    rows = sorted(KVP_TABLE)
    if kvp in KVP_TABLE:
        return KVP_TABLE[kvp], None
    if kvp < rows[0] or kvp > rows[-1]:
        nearest = rows[0] if kvp < rows[0] else rows[-1]
        return KVP_TABLE[nearest], f"{kvp:g} kVp is outside the published table ({rows[0]}-{rows[-1]}); used {nearest} kVp values"
    upper = next(r for r in rows if r > kvp)
    lower = max(r for r in rows if r < kvp)
    t = (kvp - lower) / (upper - lower)
    a0, a1, a2, a3 = (round(a + t * (b - a)) for a, b in zip(KVP_TABLE[lower], KVP_TABLE[upper], strict=True))
    return (a0, a1, a2, a3), f"{kvp:g} kVp is not in the published table; thresholds interpolated between {lower} and {upper} kVp"


@dataclass
class ScoringSettings:
    kvp: float = 120.0
    min_area_mm2: float | None = 1.0          # None: no area rule (or pixel rule below)
    min_area_pixels: int | None = None        # vendor pixel rule (Canon: 3); used when min_area_mm2 is None
    connectivity: str = "2d8"
    slice_increment_mm: float | None = None   # None: the image's slice spacing
    increment_scaling: bool = True            # multiply Agatston by increment / 3 mm
    reference_increment_mm: float = 3.0
    mass_calibration: float | None = None     # c in mg/mm^3 per HU (e.g. 0.2 / 230); None: no mass score
    threshold_hu: float | None = None         # override of the kVp threshold (e.g. adaptive CTA threshold)
    score_scale: float = 1.0                  # CTA Agatston-equivalent calibration (1 for non-contrast)

    def boundaries(self) -> tuple[tuple[float, float, float, float], str | None]:
        values, note = kvp_boundaries(self.kvp)
        if self.threshold_hu is not None:
            values = (self.threshold_hu, *values[1:])
        return values, note

    def min_pixels(self, pixel_area_mm2: float) -> int:
        """Smallest region (pixels) that counts: ceil(area / pixel area), with a tolerance for float noise."""
        if self.min_area_mm2 is not None:
            return max(1, int(np.ceil(self.min_area_mm2 / pixel_area_mm2 - 1e-9)))
        return self.min_area_pixels or 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict) -> ScoringSettings:
        """The settings a run stored in its JSON (other keys there, e.g. the mode, are the run's, not scoring's)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in names})


def weight_for_peak(peak_hu: np.ndarray, boundaries) -> np.ndarray:
    """Density weight 1-4 from the peak HU (0 below threshold)."""
    return np.searchsorted(np.asarray(boundaries, dtype=float), peak_hu, side="right")


@dataclass
class Lesion:
    id: int
    artery: str
    label: int
    slices: tuple[int, int]
    area_mm2: float           # largest slice area
    peak_hu: float
    mean_hu: float
    volume_mm3: float
    mass_mg: float | None
    agatston: float
    centroid_ijk: tuple[float, float, float]
    centroid_ras: tuple[float, float, float] | None = None
    review: str | None = None  # why the artery assignment should be checked by a reader (automatic path)


@dataclass
class ScoreResult:
    total: dict
    arteries: dict
    lesions: list[Lesion]
    scored_mask: np.ndarray = field(repr=False)  # voxels that contributed (after threshold and area rules)
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _structure(connectivity: str) -> np.ndarray:
    if connectivity not in CONNECTIVITY:
        raise ValueError(f"connectivity must be one of {CONNECTIVITY}")
    if connectivity.startswith("2d"):
        plane = ndimage.generate_binary_structure(2, 1 if connectivity == "2d4" else 2)
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = plane  # no neighbours across slices: regions stay inside one slice
        return structure
    return ndimage.generate_binary_structure(3, 1 if connectivity == "3d6" else 3)


def score(hu: np.ndarray, artery_labels: np.ndarray, spacing_ijk: tuple[float, float, float],
          settings: ScoringSettings | None = None, ijk_to_ras: np.ndarray | None = None) -> ScoreResult:
    """Score `hu` [k, j, i] given the artery assignment of each voxel; spacing is (i, j, k) in mm."""
    settings = settings or ScoringSettings()
    if hu.shape != artery_labels.shape:
        raise ValueError(f"label shape {artery_labels.shape} differs from image shape {hu.shape}")
    boundaries, note = settings.boundaries()
    notes = [note] if note else []
    pixel_area = float(spacing_ijk[0] * spacing_ijk[1])
    voxel_volume = pixel_area * float(spacing_ijk[2])
    increment = settings.slice_increment_mm or float(spacing_ijk[2])
    scale = (increment / settings.reference_increment_mm if settings.increment_scaling else 1.0) * settings.score_scale

    coronary = hu >= boundaries[0]
    coronary &= (artery_labels >= 1) & (artery_labels <= 4)
    # Work inside the candidates' bounding box: labelling is the cost, and calcium is a tiny part of a scan.
    box = geometry.bounding_box(coronary)
    hu_box, labels_box, coronary_box = hu[box], artery_labels[box], coronary[box]
    regions = _regions(coronary_box, labels_box, settings.connectivity)
    n = int(regions.max()) if regions.size else 0
    flat_regions = regions[coronary_box]
    counts = np.bincount(flat_regions, minlength=n + 1)[1:]

    # Per slice cross-section of each region: area and peak (for 3D regions a region spans several slices).
    k_index = np.nonzero(coronary_box)[0]
    keys = flat_regions.astype(np.int64) * hu_box.shape[0] + k_index
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    part_area_px = np.bincount(inverse)
    part_peak = np.full(unique_keys.size, -np.inf)
    np.maximum.at(part_peak, inverse, hu_box[coronary_box])
    part_region = unique_keys // hu_box.shape[0]

    min_px = settings.min_pixels(pixel_area)
    if settings.connectivity.startswith("2d"):
        keep_region = counts >= min_px
    else:  # a 3D region counts when its largest slice cross-section passes the area rule
        largest = np.zeros(n + 1, dtype=np.int64)
        np.maximum.at(largest, part_region, part_area_px)
        keep_region = largest[1:] >= min_px
    keep_part = keep_region[part_region - 1]
    part_score = part_area_px * pixel_area * weight_for_peak(part_peak, boundaries) * keep_part
    region_agatston = np.bincount(part_region, weights=part_score, minlength=n + 1)[1:] * scale

    scored_box = keep_region[np.maximum(regions, 1) - 1] & (regions > 0) if n else np.zeros(regions.shape, bool)
    scored_mask = np.zeros(hu.shape, bool)
    scored_mask[box] = scored_box
    offset = np.array([b.start for b in box][::-1], dtype=float)  # (i, j, k) of the box corner
    lesions = _lesions(hu_box, scored_box, regions, labels_box, region_agatston, pixel_area, voxel_volume, settings,
                       ijk_to_ras, offset)
    arteries: dict[str, dict[str, Any]] = {}
    for value, name in ARTERIES.items():
        members = [les for les in lesions if les.label == value]
        arteries[name] = {
            "agatston": float(sum(les.agatston for les in members)),
            "volume_mm3": float(sum(les.volume_mm3 for les in members)),
            "mass_mg": float(sum(les.mass_mg for les in members)) if settings.mass_calibration else None,
            "lesions": len(members),
        }
    total = {
        "agatston": float(sum(a["agatston"] for a in arteries.values())),
        "volume_mm3": float(sum(a["volume_mm3"] for a in arteries.values())),
        "mass_mg": float(sum(a["mass_mg"] for a in arteries.values())) if settings.mass_calibration else None,
        "lesions": len(lesions),
    }
    return ScoreResult(total=total, arteries=arteries, lesions=lesions, scored_mask=scored_mask,
                       settings={**settings.to_json(), "boundaries_hu": list(boundaries),
                                 "min_area_pixels": min_px, "increment_mm": increment, "increment_factor": scale},
                       notes=notes)


def _regions(candidates: np.ndarray, artery_labels: np.ndarray, connectivity: str):
    """Connected regions that never mix arteries."""
    return _label_within_arteries(candidates, artery_labels, _structure(connectivity))


def _label_within_arteries(mask: np.ndarray, artery_labels: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """`mask` labelled 1..n into connected regions of one artery each. The mask is labelled once and only the
    regions that touch two arteries' voxels are split, in their own box (labelling is the scoring's cost: once per
    artery over the candidates' box took 8 passes over it)."""
    if mask.size == 0:  # no candidate: the candidates' box is empty
        return np.zeros(mask.shape, np.int32)
    regions, count = ndimage.label(mask, structure=structure)
    regions = regions.astype(np.int32, copy=False)
    for index, box in enumerate(ndimage.find_objects(regions), start=1):
        inside = regions[box] == index
        values = np.unique(artery_labels[box][inside])
        if values.size < 2:
            continue
        for value in values:  # the first part keeps the region's number, the others are numbered after the last
            parts, found = ndimage.label(inside & (artery_labels[box] == value), structure=structure)
            for part in range(1, found + 1):
                if value != values[0] or part > 1:
                    count += 1
                    regions[box][parts == part] = count
    return regions


def _lesions(hu, scored_mask, regions, artery_labels, region_agatston, pixel_area, voxel_volume, settings,
             ijk_to_ras, offset):
    """Lesions as a reader sees them: 3D-connected (26) groups of scored voxels of one artery."""
    lesions = []
    if not scored_mask.any():
        return lesions
    groups = _label_within_arteries(scored_mask, artery_labels, ndimage.generate_binary_structure(3, 3))
    for group_index, box in enumerate(ndimage.find_objects(groups), start=1):
        inside = groups[box] == group_index
        kk, jj, ii = np.nonzero(inside)
        value = int(artery_labels[box][kk[0], jj[0], ii[0]])
        values = hu[box][inside]
        region_ids = np.unique(regions[box][inside])
        agatston = float(region_agatston[region_ids - 1].sum())
        centroid = (float(ii.mean() + box[2].start + offset[0]), float(jj.mean() + box[1].start + offset[1]),
                    float(kk.mean() + box[0].start + offset[2]))
        areas = np.bincount(kk)
        lesion = Lesion(
            id=0, artery=ARTERIES[value], label=value,
            slices=(int(box[0].start + offset[2]), int(box[0].stop - 1 + offset[2])),
            area_mm2=float(areas.max() * pixel_area), peak_hu=float(values.max()), mean_hu=float(values.mean()),
            volume_mm3=float(values.size * voxel_volume),
            mass_mg=float(settings.mass_calibration * values.sum() * voxel_volume) if settings.mass_calibration else None,
            agatston=agatston, centroid_ijk=centroid,
            centroid_ras=tuple(float(v) for v in (ijk_to_ras @ [*centroid, 1.0])[:3]) if ijk_to_ras is not None else None,
        )
        lesions.append(lesion)
    lesions.sort(key=lambda les: (les.label, les.slices[0], les.centroid_ijk))
    for number, lesion in enumerate(lesions, start=1):
        lesion.id = number
    return lesions


def classic_category(agatston: float) -> str:
    if agatston <= 0:
        return "0"
    if agatston <= 10:
        return "1-10"
    if agatston <= 100:
        return "11-100"
    if agatston <= 400:
        return "101-400"
    return ">400"


def cac_drs(agatston: float, vessels_with_calcium: int) -> str:
    """CAC-DRS (Hecht, JCCT 2018): A0 = 0, A1 1-99, A2 100-299, A3 >= 300, plus N = vessels with calcium."""
    if agatston <= 0:
        return "A0"
    grade = 1 if agatston < 100 else 2 if agatston < 300 else 3
    return f"A{grade}/N{vessels_with_calcium}"


def risk(result: ScoreResult) -> dict:
    vessels = sum(1 for a in result.arteries.values() if a["agatston"] > 0)
    total = result.total["agatston"]
    return {"classic": classic_category(total), "cac_drs": cac_drs(total, vessels)}


def calibration_factor(rod_hu: float, water_hu: float, rod_density_mg_cm3: float = 200.0) -> float:
    """Mass calibration c (mg/mm^3 per HU) from a hydroxyapatite rod and water (McCollough 2007)."""
    if rod_hu <= water_hu:
        raise ValueError("the calibration rod must be denser than water")
    return (rod_density_mg_cm3 / 1000.0) / (rod_hu - water_hu)


def calibration_factor_from_rois(hu: np.ndarray, rod_mask: np.ndarray, water_mask: np.ndarray,
                                 rod_density_mg_cm3: float = 200.0) -> float:
    """c measured in the image: median HU inside a calcium-rod ROI and a water ROI."""
    return calibration_factor(float(np.median(hu[rod_mask])), float(np.median(hu[water_mask])), rod_density_mg_cm3)
