"""CalciumScoring pipeline: input checks, candidates, artery assignment (user label map or network), scores.

`cardioquant calcium INPUT [--labels L] [--roi M] [--heart-mask M] [--kvp N] [--mode auto|noncontrast|cta]`
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import budget, geometry, tissue, totalsegmentator
from ..dicomseg import segment_labels
from ..errors import InputError
from ..imageio import (
    LoadedImage,
    check_hounsfield,
    read_image,
    read_label_image,
    read_labelled_mask,
    read_mask,
    read_one_structure,
    tube_voltage,
)
from ..labels import MORPHOLOGICALLY_ALTERED, LabelTable, SegmentSpec
from ..progress import Progress
from ..results import ModuleResult
from . import anatomy, cta, noise, scoring, territories
from .settings import MIN_AREA_PRESETS, SETTINGS, CalciumSettings  # noqa: F401  (SETTINGS: the Pipeline contract)

TITLE = "Coronary artery calcium (CalciumScoring)"
ALLOW_2D = False
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "calcium_phantom.nrrd"

CALCIFICATION = ("SCT", "75753009", "Calcification")
LABEL_TABLE = LabelTable([
    SegmentSpec(1, "LM", (0.95, 0.75, 0.10), MORPHOLOGICALLY_ALTERED, CALCIFICATION,
                ("SCT", "3227004", "Left main coronary artery"), "calcium in the left main coronary artery"),
    SegmentSpec(2, "LAD", (0.90, 0.20, 0.20), MORPHOLOGICALLY_ALTERED, CALCIFICATION,
                ("SCT", "59438005", "Anterior descending branch of left coronary artery"), "calcium in the LAD"),
    SegmentSpec(3, "LCX", (0.20, 0.45, 0.95), MORPHOLOGICALLY_ALTERED, CALCIFICATION,
                ("SCT", "57396003", "Circumflex branch of left coronary artery"), "calcium in the circumflex"),
    SegmentSpec(4, "RCA", (0.20, 0.80, 0.30), MORPHOLOGICALLY_ALTERED, CALCIFICATION,
                ("SCT", "13647002", "Right coronary artery"), "calcium in the right coronary artery"),
    SegmentSpec(5, "not coronary", (0.70, 0.70, 0.70), MORPHOLOGICALLY_ALTERED, CALCIFICATION, None,
                "candidate in the heart region that is not coronary (bone running into it, bone-sized)"),
    SegmentSpec(6, "outside heart", (0.55, 0.45, 0.30), MORPHOLOGICALLY_ALTERED, CALCIFICATION, None,
                "candidate above threshold outside the heart search region (bone, aortic arch, other organs)"),
    SegmentSpec(7, "heart search region", (0.95, 0.60, 0.60), ("SCT", "91723000", "Anatomical structure"),
                ("SCT", "80891009", "Heart"), None,
                "where coronary calcium was looked for: the mediastinum between the lungs, or the given heart mask"),
    SegmentSpec(8, "aorta or valve", (0.85, 0.55, 0.95), MORPHOLOGICALLY_ALTERED, CALCIFICATION,
                ("SCT", "15825003", "Aorta"),
                "calcium deep inside the heart (aortic valve, aortic root, mitral annulus), in the wall of the "
                "ascending aorta or another great vessel, or on an iodine-filled aorta or chamber: not coronary, "
                "kept for review"),
])
HEART_REGION = 7

MIN_VOXELS_IN_PLANE, MIN_SLICES = 32, 3
# Peak memory of a run: about 22 bytes per voxel scored (the scan as float, candidates, components, the heart's
# masks, the label map): a 1024 x 1024 x 600 chest CT peaked at 13.8 GB before scans were cropped to the heart.
BYTES_PER_VOXEL = 22.0
HEART_MARGIN_MM = 10.0  # around the heart region and great vessels: candidates running out of them stay whole


def add_arguments(parser: argparse.ArgumentParser) -> None:
    CalciumSettings.add_arguments(parser.add_argument_group("calcium scoring"))


# --- input checks -----------------------------------------------------------------------------------------

def check_options(settings: CalciumSettings) -> None:
    """One line naming the option when a value is out of its range (nan included), a file it names is not there, or
    options that go together are not given together."""
    settings.check()
    min_area_rule(settings.min_area)
    if bool(settings.calibration_rod_mask) != bool(settings.water_mask):
        raise InputError("--calibration-rod-mask and --water-mask go together (the rod's HU is read against water's "
                         "to measure the mass calibration factor): give both, or --mass-calibration.")
    if settings.calibration_rod_mask and settings.mass_calibration is not None:
        raise InputError("--mass-calibration and the calibration rod's masks both set the mass calibration factor: "
                         "give one of them.")


def read_input(path: str, series: str | None = None) -> LoadedImage:
    return read_image(path, allow_2d=ALLOW_2D, series=series)


def check_input(loaded: LoadedImage) -> list[str]:
    """Refuse what cannot be scored; return warnings for what can, with caveats."""
    image = loaded.volume
    modality = (loaded.modality or "").upper()
    if modality and modality != "CT":
        raise InputError(f"calcium scoring needs CT; this series is {modality}.")
    check_hounsfield(image, "calcium scoring")
    size = image.GetSize()
    if min(size[0], size[1]) < MIN_VOXELS_IN_PLANE or size[2] < MIN_SLICES:
        raise InputError(f"volume {size} is too small for calcium scoring (at least {MIN_VOXELS_IN_PLANE}x"
                         f"{MIN_VOXELS_IN_PLANE} pixels and {MIN_SLICES} slices).")
    if not geometry.is_axis_aligned(image) or geometry.slice_axis(image) != 2:
        raise InputError("the slices are not axial (oblique or reformatted acquisition): Agatston scoring is defined "
                         "on axial slices. Reformat to axial slices (e.g. Slicer's Resample Scalar Volume) and rerun.")
    return _check_spacing(image.GetSpacing())


PIXEL_MM = (0.1, 5.0)       # CT pixels: 0.2-1 mm in practice (resampled research copies up to ~3 mm)
SLICE_MM = (0.2, 6.0)       # calcium scans 3 mm, chest CT 0.5-5 mm
AGATSTON_SLICE_MM = 3.0


def _check_spacing(spacing) -> list[str]:
    pixel, thickness = max(spacing[0], spacing[1]), spacing[2]
    if not (PIXEL_MM[0] <= min(spacing[0], spacing[1]) and pixel <= PIXEL_MM[1]):
        raise InputError(f"pixel spacing {spacing[0]:.3g} x {spacing[1]:.3g} mm is outside {PIXEL_MM[0]:g}-"
                         f"{PIXEL_MM[1]:g} mm: the header's spacing is wrong or this is not a diagnostic CT.")
    warnings = []
    if pixel > 1.0:
        warnings.append(f"pixels of {pixel:.2g} mm: calcium scanners reconstruct at 0.3-0.8 mm; small lesions are "
                        "blurred below the threshold and scores run low")
    if not SLICE_MM[0] <= thickness <= SLICE_MM[1]:
        raise InputError(f"slice spacing {thickness:.3g} mm is outside {SLICE_MM[0]:g}-{SLICE_MM[1]:g} mm: Agatston "
                         f"scoring needs slices of at most {SLICE_MM[1]:g} mm (3 mm is the standard); give the thin-"
                         "slice reconstruction or fix the header.")
    if thickness > AGATSTON_SLICE_MM + 0.5:
        warnings.append(f"slices of {thickness:g} mm: Agatston is defined on 3 mm slices; small lesions are missed "
                        "and the score is scaled by increment / 3 mm, so compare it only with scans of the same "
                        "thickness")
    return warnings


def candidate_threshold(hu: np.ndarray, spacing, mode: str, kvp: float, k: float,
                        lumen_mask: np.ndarray | None = None, upper_third: np.ndarray | None = None,
                        blood_pool: Callable[[], np.ndarray | None] | None = None) -> tuple[float, dict]:
    if mode == "cta":
        stats = cta.lumen_statistics(hu, spacing, lumen_mask, upper_third, blood_pool)
        threshold = max(stats.threshold(k), scoring.kvp_boundaries(kvp)[0][0])
        return threshold, {"method": "adaptive CTA threshold: lumen mean + k x SD", "k": k, "lumen": asdict(stats),
                           "threshold_hu": threshold}
    threshold = scoring.kvp_boundaries(kvp)[0][0]
    return threshold, {"method": "kVp-adjusted Agatston threshold", "threshold_hu": threshold}


def min_area_rule(value) -> tuple[float | None, int | None]:
    """--min-area as (mm2, pixels): a vendor preset or a number of mm2 from 0 to 100."""
    preset = str(value).lower()
    if preset in MIN_AREA_PRESETS:
        return MIN_AREA_PRESETS[preset]
    try:
        area = float(preset)
    except ValueError as exc:
        raise InputError(f"--min-area must be a number (mm2) or one of {', '.join(MIN_AREA_PRESETS)}") from exc
    if not (np.isfinite(area) and 0.0 <= area <= 100.0):
        raise InputError(f"--min-area {preset} is out of range: give 0 to 100 mm2 or a vendor preset.")
    return area, None


def settings_from(options, kvp: float) -> scoring.ScoringSettings:
    area, pixels = min_area_rule(options.min_area)
    return scoring.ScoringSettings(kvp=kvp, min_area_mm2=area, min_area_pixels=pixels,
                                   connectivity=options.connectivity, slice_increment_mm=options.slice_increment,
                                   increment_scaling=not options.no_increment_scaling,
                                   mass_calibration=options.mass_calibration)


# --- assignment ---------------------------------------------------------------------------------------------

def region_mask(loaded: LoadedImage, options) -> np.ndarray:
    """--roi: where candidates may be looked for at all."""
    region = read_one_structure(options.roi, loaded.volume)
    if not region.any():
        raise InputError("the region of interest mask is empty on this scan's grid")
    return region


def labels_from_user(loaded: LoadedImage, path: str, candidates: np.ndarray) -> np.ndarray:
    """A candidate voxel belongs to the artery whose label covers it; unlabelled candidates are not coronary. A
    DICOM SEG's segments are read by their labels where they are this module's segment names (LAD, ...: its own
    export, edited in a PACS), else by their numbers."""
    image, names = read_labelled_mask(path, loaded.volume)
    user = sitk.GetArrayFromImage(image)
    if values := LABEL_TABLE.values_of_labels(names):
        user = LABEL_TABLE.renumbered(user, values)
    labels = np.where(candidates, scoring.NOT_CORONARY, 0).astype(np.uint8)
    coronary = candidates & (user >= 1) & (user <= 4)
    labels[coronary] = user[coronary]
    return labels


def heart_anatomy(loaded: LoadedImage, options, required: bool, on_scan_grid: bool = True) -> anatomy.HeartAnatomy | None:
    """The heart search region: from --heart-mask when given, else found in the scan. With `required` (automatic
    assignment) no heart is an InputError; otherwise None. With `on_scan_grid` False its masks stay on a ~2 mm grid
    (a scan too large to hold them whole)."""
    grid = loaded.volume if on_scan_grid else anatomy.coarse_grid(loaded.volume)
    if options.heart_mask:
        heart, aorta, source = given_heart(options, loaded.volume, grid)
        return anatomy.heart_from_mask(grid, heart, source=source, great_vessels=aorta)
    try:
        return anatomy.find_heart(loaded.volume, on_scan_grid)
    except InputError:
        if required:
            raise
        return None


def part_to_score(loaded: LoadedImage, options, heart: anatomy.HeartAnatomy | None) -> budget.Box | None:
    """None when the whole scan fits in the memory budget; else the box around the heart region, great vessels
    and the reader's label map (HEART_MARGIN_MM more), or an InputError when even that does not fit. Coronary
    calcium lies on the heart, so nothing is lost for the score; candidates outside the box are not shown."""
    image, limit = loaded.volume, budget.limit_gb(options)
    if whole_scan_fits(image, options):
        return None
    boxes = []
    if heart is not None:
        region = heart.heart_region if heart.great_vessels is None else heart.heart_region | heart.great_vessels
        found_on = heart.grid if heart.grid is not None else image  # the grid its masks are on
        boxes.append(budget.box_around(geometry.image_from_array(region.astype(np.uint8), found_on), image,
                                       HEART_MARGIN_MM))
    if options.labels:
        boxes.append(budget.box_around(read_label_image(options.labels), image, HEART_MARGIN_MM))
    around = [box for box in boxes if box is not None]
    box = budget.union(around) if around else None
    scored = box.voxels if box is not None else budget.voxels(image)
    needed = budget.needed_gb(scored, BYTES_PER_VOXEL, budget.resident_gb(image))
    if needed > limit:
        what = f"scoring the heart region, {box.describe(image)}," if box else "scoring the whole scan (no heart found)"
        raise budget.refusal(what, needed, limit, "raise --memory-limit-gb, or reconstruct the scan with fewer, "
                                                  "thicker slices (3 mm is the Agatston standard).")
    return box


def whole_scan_fits(image: sitk.Image, options) -> bool:
    return budget.needed_gb(budget.voxels(image), BYTES_PER_VOXEL) <= budget.limit_gb(options)


def _upper_third_over(image: sitk.Image, box: budget.Box) -> np.ndarray:
    """The upper third of the whole scan's slices (where the CTA threshold's aorta is looked for), over the box's
    rows and columns only: the box around the heart may not reach that high."""
    start = cta.upper_third_start(image.GetSize()[2])
    region = sitk.RegionOfInterest(image, [box.size[0], box.size[1], image.GetSize()[2] - start],
                                   [box.index[0], box.index[1], start])
    return geometry.float_array(region)


def _scan_indices(lesions: list[dict], box: budget.Box) -> None:
    """The JSON's lesion slices and centroids, found on the box, as indices of the whole scan (the report, drawn
    from the box, keeps the box's)."""
    for lesion in lesions:
        lesion["slices"] = (lesion["slices"][0] + box.index[2], lesion["slices"][1] + box.index[2])
        lesion["centroid_ijk"] = tuple(c + o for c, o in zip(lesion["centroid_ijk"], box.index, strict=True))


AORTA_WALL_MM = 2.0  # TotalSegmentator's aorta is its lumen and wall; calcium on the wall's outer edge is held too


def heart_and_aorta(folder: Path, grid: sitk.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(heart, aorta or None) on `grid` from a folder as TotalSegmentator writes it (heart.nii.gz, and aorta.nii.gz
    when it is there). The aorta (root, ascending, arch, descending) is the great vessel whose wall calcium is kept
    apart from the coronaries; grown AORTA_WALL_MM."""
    masks = {name: sitk.GetArrayFromImage(read_mask(path, grid)) > 0
             for name in ("heart", "aorta") if (path := folder / f"{name}.nii.gz").exists()}
    if "heart" not in masks:
        raise InputError(f"{folder} holds no heart.nii.gz (TotalSegmentator's heart class): no heart in the field of "
                         "view, or its run failed; give a heart mask file instead.")
    aorta = masks.get("aorta")
    return masks["heart"], anatomy.grown(aorta, grid.GetSpacing(), AORTA_WALL_MM) if aorta is not None and aorta.any() else None


def given_heart(options, image: sitk.Image, grid: sitk.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(heart, aorta or None, where they came from) on `grid` for --heart-mask: TotalSegmentator run on the scan
    (its heart and aorta classes), a folder of its output, or one heart mask file."""
    option = options.heart_mask
    if option == totalsegmentator.OPTION_VALUE:
        heart, aorta = totalsegmentator.segment(image, "--heart-mask", lambda folder: heart_and_aorta(folder, grid),
                                                device=options.device, roi_subset=["heart", "aorta"])
        if not heart.any():
            raise InputError(anatomy.NO_HEART_MESSAGE + " (TotalSegmentator found none)")
        return heart, aorta, "TotalSegmentator heart"
    if Path(option).is_dir():
        return heart_and_aorta(Path(option), grid) + ("given heart mask",)
    mask, names = read_labelled_mask(option, grid)
    labels = sitk.GetArrayFromImage(mask)
    if len(names) > 1:  # a DICOM SEG of several structures (TotalSegmentator's --output_type dicom holds them all)
        return heart_and_aorta_segments(labels, names, grid, option) + ("given heart mask",)
    return heart_of_label_map(labels, grid, option)


def heart_of_label_map(labels: np.ndarray, grid: sitk.Image, path: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(heart, aorta or None, where they came from) of a label map given as --heart-mask: a mask of one value is the
    heart; one of TotalSegmentator's `total` task holds every structure (its --ml file): its heart and aorta values
    are read. Any other map of several labels is refused: the whole of TotalSegmentator's map taken as the heart made
    an 8085 mL "heart" of the contrast chest CT, its bones scored as coronary calcium (Agatston 6357)."""
    values = geometry.label_values(labels)
    if len(values) <= 1:
        return labels > 0, None, "given heart mask"
    if totalsegmentator.TOTAL_HEART in values:
        aorta = labels == totalsegmentator.TOTAL_AORTA
        return (labels == totalsegmentator.TOTAL_HEART,
                anatomy.grown(aorta, grid.GetSpacing(), AORTA_WALL_MM) if aorta.any() else None,
                f"given label map, TotalSegmentator's values (heart {totalsegmentator.TOTAL_HEART}, aorta "
                f"{totalsegmentator.TOTAL_AORTA})")
    shown = ", ".join(str(v) for v in sorted(values)[:8]) + (", ..." if len(values) > 8 else "")
    raise InputError(f"--heart-mask {path} holds {len(values)} labels ({shown}) and none is TotalSegmentator's heart "
                     f"({totalsegmentator.TOTAL_HEART}): give a heart mask of one label (TotalSegmentator's "
                     "heart.nii.gz), its output folder, or its `total` label map")


def heart_and_aorta_segments(labels: np.ndarray, names: dict[int, str], grid: sitk.Image,
                             path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(heart, aorta or None) from a DICOM SEG's segments named as TotalSegmentator names them: the heart ("heart",
    or its chambers and myocardium "heart_..."), the aorta ("aorta"), grown AORTA_WALL_MM. Its other segments (lungs,
    bones, vessels) are not the heart."""
    keys = {number: name.strip().lower().replace(" ", "_") for number, name in names.items()}

    def numbers(wanted: str) -> list[int]:
        return [number for number, key in keys.items() if key == wanted or key.startswith(wanted + "_")]

    heart_numbers = numbers("heart")
    if not heart_numbers:
        raise InputError(f"{path}: none of this segmentation's {len(names)} segments is the heart (labels "
                         f"{segment_labels(names)}); give one with a 'heart' segment, or a heart mask of one segment.")
    heart = np.isin(labels, heart_numbers)
    aorta = np.isin(labels, numbers("aorta"))
    return heart, anatomy.grown(aorta, grid.GetSpacing(), AORTA_WALL_MM) if aorta.any() else None


def scan_type(options, heart: anatomy.HeartAnatomy | None) -> tuple[str, dict]:
    """CTA or non-contrast, and what decided it (the JSON and the report say which)."""
    if options.mode != "auto":
        return options.mode, {"mode": options.mode, "decided_by": "--mode"}
    if heart is None:
        return "noncontrast", {"mode": "noncontrast", "decided_by": "default: no heart found to measure the blood"}
    mode = "cta" if heart.contrast else "noncontrast"
    return mode, {"mode": mode, "decided_by": f"blood inside the heart: median {heart.blood_hu:.0f} HU "
                                              f"({'>=' if heart.contrast else '<'} {anatomy.CONTRAST_BLOOD_HU:.0f})",
                  "blood_hu": heart.blood_hu, "blood_measured_at_lps_mm": list(heart.blood_centre_lps)}


def _blood_warning(mode: str, heart: anatomy.HeartAnatomy | None) -> list[str]:
    """Scored as non-contrast while the heart's blood reads brighter than unenhanced blood: iodine may be in it (a
    late or weak phase), and Agatston, defined without contrast, would count enhanced blood and walls as calcium."""
    if mode != "noncontrast" or heart is None or not heart.blood_hu >= tissue.UNENHANCED_BLOOD_MAX_HU:
        return []
    return [f"the blood inside the heart reads {heart.blood_hu:.0f} HU, brighter than unenhanced blood (30-60 HU, "
            "up to about 70 with a high haematocrit): contrast may be present (a late or weak phase). Agatston is "
            "defined without contrast: check the scan's phase before reading the score"]


def labels_from_anatomy(loaded: LoadedImage, candidates: np.ndarray, heart: anatomy.HeartAnatomy, hu: np.ndarray,
                        mode: str, floor: noise.NoiseFloor | None = None):
    image = loaded.volume
    return territories.assign(candidates, heart.heart_region, lambda ijk: geometry.voxels_to_lps(image, ijk),
                              image.GetSpacing(), hu=hu, contrast=mode == "cta", great_vessels=heart.great_vessels,
                              heart_base_s_mm=territories.heart_base_s_mm(heart.great_vessel_tubes),
                              floor=floor, back_unbounded=heart.spine_cut_away)


def _set_aside(found: territories.Assignment, spacing, why: str) -> int:
    """How many candidates of scorable size (1 mm2 on one slice) were set aside for `why` (the start of their
    reason: territories.POSSIBLE_NOISE, FAINT_AT_LUNG, METAL, BESIDE_METAL or AT_VIEW_EDGE)."""
    smallest = 1.0 * float(spacing[2])
    return sum(1 for e in found.per_candidate if e["reason"].startswith(why) and e["volume_mm3"] >= smallest)


def _metal_warning(metal: int, beside: int, mode: str) -> list[str]:
    if not metal and not beside:
        return []
    return [f"metal ({territories.METAL_HU:.0f} HU or more: a pacemaker or ICD lead, clip, sternal wire, stent or "
            f"valve prosthesis{territories.UNDILUTED_CONTRAST if mode == 'cta' else ''}): {metal} such object(s) in "
            f"the heart search region and {beside} candidate(s) within "
            f"{territories.METAL_REACH_MM:g} mm of metal (streaks, blooming, a stented segment) were not scored; "
            "they are in the 'not coronary' segment for review"]


def _view_edge_warning(count: int) -> list[str]:
    if not count:
        return []
    return [f"{count} candidate(s) in the heart search region within {territories.BONE_GAP_MM:g} mm of the field of "
            "view's edge were not scored (the sternum, costal cartilage or spine running out of view, or a lesion the "
            "field of view cuts); they are in the 'not coronary' segment for review"]


def _noise_warning(count: int, floor: noise.NoiseFloor) -> list[str]:
    if not count:
        return []
    return [f"noisy scan (noise SD {floor.noise_sd_hu:.0f} HU in the blood over 1 mm2): {count} candidate(s) in the "
            f"heart under the noise floor of {floor.floor_hu:.0f} HU were not scored as coronary; they are in the "
            "'not coronary' segment for review"]


# --- run ----------------------------------------------------------------------------------------------------

def run(loaded: LoadedImage, options, progress: Progress) -> ModuleResult:
    check_options(options)
    if options.heart_mask == totalsegmentator.OPTION_VALUE:
        totalsegmentator.api("--heart-mask")
    if options.weights:
        raise InputError("--weights does not apply to calcium scoring: it runs no network (the arteries come from "
                         "the heart's anatomy); leave --weights out.")
    warnings = check_input(loaded)
    kvp, kvp_warnings = tube_voltage(loaded, options.kvp, "thresholds")
    warnings += kvp_warnings
    automatic = not options.labels
    whole_scan = loaded.volume
    progress.update(0.02, "finding the heart")
    heart = heart_anatomy(loaded, options, required=automatic, on_scan_grid=whole_scan_fits(whole_scan, options))
    box = part_to_score(loaded, options, heart)
    if box is not None:
        loaded = budget.crop(loaded, box)
        heart = heart.regrid(loaded.volume) if heart is not None else None
        warnings.append(f"scored around the heart only ({box.describe(whole_scan)}): the whole scan would need more "
                        f"than --memory-limit-gb {budget.limit_gb(options):g}; candidates outside it are not shown")
    image = loaded.volume
    spacing = image.GetSpacing()
    if heart is not None:
        warnings += heart.warnings
    mode, scan_info = scan_type(options, heart)
    warnings += _blood_warning(mode, heart)
    fill = geometry.outside_the_reconstruction(whole_scan)  # stored as air: no data
    hu = geometry.as_padding(geometry.float_array(image),
                             fill[box.slices_kji()[1:]] if fill is not None and box is not None else fill)
    lumen_mask = read_one_structure(options.lumen_mask, image) if options.lumen_mask else None
    upper_third = _upper_third_over(whole_scan, box) if box is not None and mode == "cta" else None
    blood_pool = (lambda: heart.blood_pool_on(image)) if heart is not None and heart.contrast else None
    threshold, threshold_info = candidate_threshold(hu, spacing, mode, kvp, options.k, lumen_mask, upper_third,
                                                    blood_pool)
    progress.update(0.3, "finding candidates")
    candidates = hu >= threshold
    if options.roi:
        candidates &= region_mask(loaded, options)
    found = None
    if automatic:
        assert heart is not None  # heart_anatomy(required=True) refuses a scan with no heart
        floor = (noise.noise_floor(hu, heart.heart_region, spacing, options.noise_floor_sd)
                 if mode == "noncontrast" and options.noise_floor_sd > 0 else None)
        found = labels_from_anatomy(loaded, candidates, heart, hu, mode, floor)
        if floor is not None:
            count = _set_aside(found, spacing, territories.POSSIBLE_NOISE)
            threshold_info["noise"] = {**floor.describe(), "set_aside": count, "set_aside_at_lung_border":
                                       _set_aside(found, spacing, territories.FAINT_AT_LUNG)}
            warnings += _noise_warning(count, floor)
        warnings += _metal_warning(_set_aside(found, spacing, territories.METAL),
                                   _set_aside(found, spacing, territories.BESIDE_METAL), mode)
        warnings += _view_edge_warning(_set_aside(found, spacing, territories.AT_VIEW_EDGE))
        artery_labels = found.labels
        assignment = "automatic (heart anatomy)"
    else:
        artery_labels = labels_from_user(loaded, options.labels, candidates)
        assignment = "user label map"
    settings = settings_from(options, kvp)
    settings.threshold_hu = threshold
    mass_calibration_info = _mass_calibration(hu, image, options, settings)
    if mode == "cta":
        settings.score_scale = options.cta_scale if options.cta_scale is not None else cta.DEFAULT_SCALE
        if settings.mass_calibration:
            warnings.append("mass score on CTA is not defined (iodine); reported as null")
            settings.mass_calibration = None
    progress.update(0.8, "scoring")
    result = scoring.score(hu, artery_labels, spacing, settings, geometry.ijk_to_ras(image))
    warnings += result.notes
    flagged = _lesions_to_review(result, found) if found is not None else []
    if flagged:
        warnings.append(f"{len(flagged)} lesion(s) flagged for review: artery assignment uncertain (lesion ids "
                        f"{', '.join(str(i) for i in flagged)})")
    label_map = artery_labels.copy()
    if found is not None:  # the artery segments show what was scored: specks under the area rule are no lesions
        label_map[(label_map >= 1) & (label_map <= 4) & ~result.scored_mask] = 0
    if heart is not None:
        label_map[(label_map == 0) & heart.heart_region] = HEART_REGION
    progress.update(1.0, "done")
    scored = _module_result(loaded, result, label_map, mode, threshold_info, assignment, mass_calibration_info,
                            settings, [], warnings, kvp, scan_info, heart.describe() if heart is not None else None)
    if box is not None and scored.label_image is not None:
        scored.label_image = budget.paste(scored.label_image, whole_scan, box)
        _scan_indices(scored.summary["lesions"], box)
    return scored


def _lesions_to_review(result, found: territories.Assignment) -> list[int]:
    """Mark each scored lesion whose candidate was flagged; returns the flagged lesion ids."""
    reasons = {e["candidate"]: e["reason"] for e in found.per_candidate if e["review"] and 1 <= e["label"] <= 4}
    flagged = []
    for lesion in result.lesions:
        i, j, k = (int(round(c)) for c in lesion.centroid_ijk)
        box = tuple(slice(max(c - 3, 0), c + 4) for c in (k, j, i))
        ids = found.components[box][(found.labels[box] == lesion.label) & (found.components[box] > 0)]
        lesion.review = reasons.get(int(np.bincount(ids).argmax()) if ids.size else 0)
        if lesion.review:
            flagged.append(lesion.id)
    return flagged


def _mass_calibration(hu, image, options, settings) -> dict | None:
    if options.calibration_rod_mask and options.water_mask:
        rod = read_one_structure(options.calibration_rod_mask, image)
        water = read_one_structure(options.water_mask, image)
        if not rod.any() or not water.any():
            raise InputError("the calibration rod or water mask is empty on this scan's grid")
        settings.mass_calibration = scoring.calibration_factor_from_rois(hu, rod, water, options.rod_density)
        return {"source": "calibration rod ROI", "rod_hu": float(np.median(hu[rod])), "water_hu": float(np.median(hu[water])),
                "rod_density_mg_cm3": options.rod_density, "c_mg_per_mm3_hu": settings.mass_calibration}
    if settings.mass_calibration:
        return {"source": "given", "c_mg_per_mm3_hu": settings.mass_calibration}
    return None


def _module_result(loaded, result, artery_labels, mode, threshold_info, assignment, mass_info, settings, models,
                   warnings, kvp, scan_info, heart) -> ModuleResult:
    risk = scoring.risk(result)
    lesions = [asdict(lesion) for lesion in result.lesions]
    method = ("Agatston" if mode == "noncontrast" else
              "CTA Agatston-equivalent: lesions at the adaptive threshold (lumen mean + k SD), Agatston weights from "
              f"their peak HU, times a calibration scale {settings.score_scale:g} fitted on paired phantoms; not "
              "interchangeable with non-contrast Agatston")
    summary = {
        "total": {k: result.total[k] for k in ("agatston", "volume_mm3", "mass_mg")},
        "arteries": _left_main_said(result.arteries, artery_labels, assignment),
        "risk": risk,
        "lesions": lesions,
        "mode": mode,
        "scan_type": scan_info,
        "heart": heart,  # the heart region's description (the run's, for an edited result)
        "method": method,
        "threshold": threshold_info,
        "assignment": assignment,
        "mass_calibration": mass_info,
        "kvp": kvp,
    }
    rows = [{"artery": name, **values} for name, values in summary["arteries"].items()]  # the LM's scored_with too
    rows.append({"artery": "total", **{k: result.total[k] for k in ("agatston", "volume_mm3", "mass_mg", "lesions")}})
    label_image = geometry.image_from_array(artery_labels.astype(np.uint8), loaded.volume)
    settings_json = {**result.settings, "mode": mode, "assignment": assignment}

    def report(path, warnings):
        from .report import draw_report

        draw_report(path, loaded, artery_labels, result, summary, settings_json, models, warnings)

    return ModuleResult(module="calcium", summary=summary, label_image=label_image, label_table=LABEL_TABLE,
                        table_rows=rows, settings=settings_json, models=models, warnings=warnings, report=report)


def _left_main_said(arteries: dict, artery_labels: np.ndarray, assignment: str) -> dict:
    """The automatic path scores the left main with the LAD (territories: its level cannot be told from the proximal
    LAD's by position), so its LM figure of 0 would read as "no left-main calcium". Until the reader labels a lesion
    LM, the JSON says where the left main's calcium went: `scored_with` "LAD"."""
    if not assignment.startswith("automatic") or (artery_labels == territories.LM).any():
        return arteries
    return {**arteries, "LM": {**arteries["LM"], "scored_with": "LAD"}}


def edited_result(loaded: LoadedImage, label_map: np.ndarray, run_document: dict) -> ModuleResult:
    """The results of the segmentation as the reader left it, for Export: the edited label map re-scored with the
    run's own settings (its JSON), the run's scan type, heart and threshold kept, review flags carried to the
    lesions that stayed where they were, and a warning that the figures come from the reader's edits."""
    settings = scoring.ScoringSettings.from_json(run_document["settings"])
    hu = geometry.float_array(loaded.volume)
    arteries = np.where((label_map >= 1) & (label_map <= 4), label_map, 0).astype(np.uint8)
    result = scoring.score(hu, arteries, loaded.volume.GetSpacing(), settings, geometry.ijk_to_ras(loaded.volume))
    for lesion, carried in zip(result.lesions, carry_review_flags([asdict(les) for les in result.lesions],
                                                                  run_document.get("lesions", [])), strict=True):
        lesion.review = carried["review"]
    warnings = [*run_document.get("warnings", []),
                "edited by the reader after the automatic run: the figures are recomputed from the edited segmentation"]
    edited = _module_result(loaded, result, label_map, run_document["mode"], run_document.get("threshold"),
                            f"{run_document.get('assignment', 'automatic')}, edited by the reader",
                            run_document.get("mass_calibration"), settings, [], warnings, run_document.get("kvp"),
                            run_document.get("scan_type"), run_document.get("heart"))
    edited.options = run_document.get("options", {})
    return edited


def sample_input() -> Path:
    return SAMPLE


def sample_options() -> dict:
    return {}


def summary_line(result: ModuleResult) -> str:
    s = result.summary
    per = ", ".join(f"{k} with {v['scored_with']}" if v.get("scored_with") else f"{k} {v['agatston']:.0f}"
                    for k, v in s["arteries"].items())
    return (f"Agatston {s['total']['agatston']:.1f} ({per}); risk {s['risk']['classic']}, CAC-DRS "
            f"{s['risk']['cac_drs']} [{s['mode']}, {s['assignment']}]")


# --- review and correction (used by the Slicer panel after every edit) ---------------------------------------

def reassign_lesion(artery_labels: np.ndarray, seed_kji: tuple[int, int, int], artery: int) -> np.ndarray:
    """Move the whole lesion (26-connected labelled voxels) containing `seed_kji` to `artery` (1-4, 5 = not coronary)."""
    if artery not in (1, 2, 3, 4, 5):
        raise InputError("artery must be 1 LM, 2 LAD, 3 LCX, 4 RCA or 5 not coronary")  # 6 and 8 are found, not chosen
    candidates = (artery_labels > 0) & (artery_labels != HEART_REGION)
    if not candidates[seed_kji]:
        raise InputError("no lesion at the selected point")
    components, _ = ndimage.label(candidates, structure=np.ones((3, 3, 3), bool))
    updated = artery_labels.copy()
    updated[components == components[seed_kji]] = artery
    return updated


def carry_review_flags(lesions: list[dict], run_lesions: list[dict], reach_voxels: float = 2.0) -> list[dict]:
    """The run's review reasons on the lesions of a re-score: a lesion keeps its flag while it is still the same
    artery's at the same place (centroid within `reach_voxels`); a lesion the reader reassigned loses it."""
    flagged = [les for les in run_lesions if les.get("review")]
    for lesion in lesions:
        lesion["review"] = next((run["review"] for run in flagged if run["artery"] == lesion["artery"] and
                                 np.linalg.norm(np.subtract(run["centroid_ijk"], lesion["centroid_ijk"])) <= reach_voxels),
                                None)
    return lesions


def rescore(image: sitk.Image, artery_labels: np.ndarray, run_settings: dict | None = None,
            **setting_overrides) -> dict:
    """Scores of an (edited) label map on its image: the numbers the panel shows after each correction.
    `run_settings` is the run's JSON "settings": the kVp, the CTA threshold and scale, the minimum area, the
    connectivity and the increment the run scored with are kept, so an unedited label map gives the run's figures.
    Without it, scoring's defaults (120 kV, non-contrast) apply."""
    stored = scoring.ScoringSettings.from_json(run_settings) if run_settings else scoring.ScoringSettings()
    settings = replace(stored, **setting_overrides)
    result = scoring.score(geometry.float_array(image), artery_labels, image.GetSpacing(),
                           settings, geometry.ijk_to_ras(image))
    return {"total": result.total, "arteries": result.arteries, "risk": scoring.risk(result),
            "lesions": [asdict(lesion) for lesion in result.lesions]}
