"""BoneDensity pipeline: vertebrae -> bodies -> trabecular ROIs -> reference ROIs -> calibration -> BMD.

`cardioquant bmd INPUT [--vertebra-mask M] [--vertebra-body-mask B] [--seed L1:x,y,z] [--levels L1,L2] [--kvp N]
                 [--calibration multi-material|two-point] [--phantom HU:density,...]`
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import reduce
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import budget, geometry, totalsegmentator
from ..errors import InputError
from ..imageio import LoadedImage, check_hounsfield, read_image, read_mask, read_one_structure, tube_voltage
from ..labels import ANATOMICAL_STRUCTURE, TISSUE, LabelTable, SegmentSpec
from ..progress import Progress
from ..results import ModuleResult
from . import calibration, morphometry, references, roi, vertebrae
from .levels import LEVELS, PREFERRED, UNDETERMINED, is_determined
from .settings import COARSEST_MM, SETTINGS, BoneDensitySettings  # noqa: F401  (SETTINGS: the Pipeline contract)

TITLE = "Vertebral bone mineral density (BoneDensity)"
ALLOW_2D = False
ORIENTATION = "LPS"  # the order every step reads the scan in: DICOM's (columns to the left, rows to the back, upwards)

# Label values are fixed by level so a value means the same vertebra in every output; bodies whose level is not
# determined (V1 = the lowest in view) have values of their own, never a level's.
BODY_VALUE = {level: i + 1 for i, level in enumerate(LEVELS)}           # 1..25
ROI_VALUE = {level: i + 31 for i, level in enumerate(LEVELS)}           # 31..55
BODY_VALUE |= {name: i + 71 for i, name in enumerate(UNDETERMINED)}     # 71..95
ROI_VALUE |= {name: i + 101 for i, name in enumerate(UNDETERMINED)}     # 101..125
REFERENCE_VALUE = {"air": 61, "fat": 62, "muscle": 63, "blood": 64}
VERTEBRA_CODE = ("SCT", "51282000", "Vertebral body")
TRABECULAR_CODE = ("SCT", "6540004", "Cancellous bone")
REFERENCE_CODES = {"air": ("SCT", "261746005", "Air"), "fat": ("SCT", "68544003", "Subcutaneous fat"),
                   "muscle": ("SCT", "91747007", "Muscle"), "blood": ("SCT", "87612001", "Blood")}


def _label_table() -> LabelTable:
    segments = []
    for i, level in enumerate(LEVELS):
        shade = 0.35 + 0.6 * i / len(LEVELS)
        segments.append(SegmentSpec(BODY_VALUE[level], f"vertebrae_{level}", (0.95, shade, 0.45), ANATOMICAL_STRUCTURE,
                                    VERTEBRA_CODE, None, f"{level} vertebral body"))
        segments.append(SegmentSpec(ROI_VALUE[level], f"{level} trabecular ROI", (0.2, 0.55, 0.95), TISSUE,
                                    TRABECULAR_CODE, None, f"{level} trabecular region of interest"))
    for n, name in enumerate(UNDETERMINED, start=1):
        unknown = f"vertebra {name} ({_ordinal(n)} from the lowest in view, level not determined)"
        segments.append(SegmentSpec(BODY_VALUE[name], f"vertebra_{name}", (0.75, 0.75, 0.45), ANATOMICAL_STRUCTURE,
                                    VERTEBRA_CODE, None, f"{unknown} body"))
        segments.append(SegmentSpec(ROI_VALUE[name], f"{name} trabecular ROI", (0.35, 0.55, 0.75), TISSUE,
                                    TRABECULAR_CODE, None, f"{unknown} trabecular region of interest"))
    colours = {"air": (0.6, 0.9, 1.0), "fat": (0.95, 0.85, 0.3), "muscle": (0.8, 0.3, 0.3), "blood": (0.7, 0.0, 0.1)}
    for tissue, value in REFERENCE_VALUE.items():
        segments.append(SegmentSpec(value, f"reference {tissue}", colours[tissue], TISSUE, REFERENCE_CODES[tissue], None,
                                    f"calibration reference ROI: {tissue}"))
    # 104 entries (every level, V1-V24, their ROIs): only the segments found are put in the scene. A reader
    # who adds a missed body names the new segment as its level's entry (e.g. vertebrae_T7).
    return LabelTable(segments, offer_empty=False)


def _ordinal(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


LABEL_TABLE = _label_table()


# Peak memory: about BYTES_PER_VOXEL per voxel measured (the scan as float, a body and an ROI mask per vertebra,
# the reference tissues, the label map); a 1024 x 1024 x 600 chest CT peaked at 12 GB before block averaging (19
# bytes per voxel: the margin holds the turned copy of a scan not stored LPS, 2-4 bytes per voxel).
BYTES_PER_VOXEL = 24.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    BoneDensitySettings.add_arguments(parser.add_argument_group("bone density"))


def check_options(settings: BoneDensitySettings) -> None:
    settings.check()


def read_input(path: str, series: str | None = None) -> LoadedImage:
    return read_image(path, allow_2d=ALLOW_2D, series=series)


# Opportunistic BMD is read on CT reconstructed at 5 mm or less. The trabecular ROI lies in a body's middle third,
# 8-10 mm of a 25-30 mm body: on thicker slices its one or two slices average the end plates and discs. The contrast
# chest CT here (L1-L2 77 mg/cm3 on its 2.5 mm slices) read 80-86 at 5 mm, 88 at 6, 104-107 at 7-7.5 and 147 at 10.
MAX_SLICE_MM = 5.0


def check_input(loaded: LoadedImage) -> list[str]:
    modality = (loaded.modality or "").upper()
    if modality and modality != "CT":
        raise InputError(f"bone density needs CT; this series is {modality}.")
    image = loaded.volume
    check_hounsfield(image, "bone density")
    if not geometry.is_axis_aligned(image):
        raise InputError("the scan is tilted against the patient's axes (oblique slices); reformat it to axial "
                         "slices and rerun.")
    spine_axis = int(np.argmax(np.abs(geometry.direction_matrix(image))[2]))
    # Axial slices are as thick as the DICOM says where it says more than their spacing (overlapping slices).
    along_spine = loaded.slice_thickness_mm if spine_axis == 2 else image.GetSpacing()[spine_axis]
    if along_spine > MAX_SLICE_MM * 1.01:
        raise InputError(f"slices {along_spine:.3g} mm thick along the spine: vertebral BMD needs slices of at most "
                         f"{MAX_SLICE_MM:g} mm (the trabecular ROI in a body's middle third would average its end "
                         "plates and discs); give a thinner reconstruction of the scan.")
    return []


def posterior_sign(image: sitk.Image) -> int:
    """+1 when the j index runs towards posterior (LPS y increases posterior)."""
    return 1 if geometry.direction_matrix(image)[1, 1] > 0 else -1


def left_sign(image: sitk.Image) -> int:
    """+1 when the i index runs to the patient's left (LPS x increases to the left), as a DICOM series stores it;
    -1 for a file stored with its columns the other way (many NIfTI files: RAS)."""
    return 1 if geometry.direction_matrix(image)[0, 0] > 0 else -1


def _seed_to_kji(image: sitk.Image, text: str) -> tuple[str, tuple[int, int, int]]:
    try:
        level, coords = text.split(":")
        r, a, s = (float(v) for v in coords.split(","))
    except ValueError as exc:
        raise InputError(f"--seed '{text}' must be LEVEL:x,y,z in RAS millimetres, e.g. L1:0,-20,100") from exc
    if level not in LEVELS:
        raise InputError(f"--seed level '{level}' is not a vertebral level (C1-C7, T1-T12, L1-L5, S1)")
    i, j, k = image.TransformPhysicalPointToIndex((-r, -a, s))
    return level, (k, j, i)


def vertebral_body_mask(path: str, image: sitk.Image) -> np.ndarray:
    """--vertebra-body-mask on the scan's grid: TotalSegmentator's vertebrae_body task labels the bodies 1 and the
    discs 2 in its label map; in a DICOM SEG, whose numbers are only an order, the segment labelled as the bodies
    (`vertebrae_body`), or its only segment."""
    from ..dicomseg import is_dicom_seg

    if is_dicom_seg(path):
        return read_one_structure(path, image, called=("vertebrae_body", "vertebral body", "vertebral bodies"))
    return sitk.GetArrayFromImage(read_mask(path, image)) == 1


def collect_bodies(loaded: LoadedImage, options, hu: np.ndarray, sign: int) -> tuple[dict, str, dict, list]:
    """(level -> body mask, source, how the levels were named, warnings)."""
    image = loaded.volume
    spacing = image.GetSpacing()
    naming: dict = {"rule": "named by the source", "determined": True}
    warnings: list[str] = []
    if options.vertebra_mask:
        run_here = options.vertebra_mask == totalsegmentator.OPTION_VALUE
        whole = (totalsegmentator_vertebrae(image, options.device) if run_here
                 else vertebrae.from_totalsegmentator(options.vertebra_mask, image))
        if options.vertebra_body_mask:
            body_mask = vertebral_body_mask(options.vertebra_body_mask, image)
            bodies = {level: mask & body_mask for level, mask in whole.items()}
        elif not run_here and vertebrae.given_as_bodies(options.vertebra_mask):
            # CardioQuant's own bodies carry their ROI as another segment: the body is what its segment encloses.
            bodies = {level: geometry.fill_holes_in_plane(mask) for level, mask in whole.items()}
        else:
            bodies = {level: vertebrae.vertebral_body(mask, sign, spacing) for level, mask in whole.items()}
        source = "TotalSegmentator masks" + (" (TotalSegmentator run on the scan)" if run_here else "")
    elif options.seed:
        bodies = {}
        for text in options.seed:
            level, seed = _seed_to_kji(image, text)
            bodies[level] = vertebrae.grow_from_seed(hu, spacing, seed)
        source = "seeded region growing"
    else:
        bodies, source, naming, warnings = bodies_from_network(image, options, hu)
    bodies = {level: mask for level, mask in bodies.items() if mask.any()}
    if options.levels:
        bodies = chosen_levels(bodies, options.wanted_levels())
    if not bodies:
        raise InputError("no vertebra in the field of view: nothing to measure.")
    return bodies, source, naming, warnings


def chosen_levels(bodies: dict, wanted: list[str]) -> dict:
    """The bodies --levels asks for, or the one line saying which are not there. Where no level could be named
    (bodies V1, V2, ... from the lowest up), it says so and how to choose: a cardiac CT's "T7 not found (found: V1,
    ..., V6)" left the reader guessing."""
    missing = [level for level in wanted if level not in bodies]
    if not missing:
        return {level: bodies[level] for level in wanted}
    found = ', '.join(bodies) or 'none'
    unnamed = bool(bodies) and all(name in UNDETERMINED for name in bodies)
    how = ("the levels of this scan could not be named (no sacrum and no rib transition in view, as on a cardiac CT) "
           "and its bodies are V1, V2, ... from the lowest up: choose those (--levels V2,V3), or click in each body "
           "to measure, naming its level (--seed T8:x,y,z)")
    raise InputError(f"level(s) {', '.join(missing)} not found in the vertebra masks (found: {found})"
                     + (f": {how}" if unnamed and not set(missing) <= set(UNDETERMINED) else ""))


def totalsegmentator_vertebrae(image: sitk.Image, device: str = "auto") -> dict:
    """level -> whole-vertebra mask from TotalSegmentator's `total` classes vertebrae_C1 ... vertebrae_S1, run on the
    scan (its roi_subset: only the vertebrae are kept). Their bodies are cut in front of the canal as for any given
    vertebra mask without a body mask: TotalSegmentator's own body model (its `vertebrae_body` task) needs a licence."""
    return totalsegmentator.segment(image, "--vertebra-mask", lambda folder: vertebrae.from_totalsegmentator(folder, image),
                                    device=device, roi_subset=[f"vertebrae_{level}" for level in LEVELS])


def bodies_from_network(image: sitk.Image, options, hu: np.ndarray,
                        progress: Progress | None = None) -> tuple[dict, str, dict, list]:
    """(level -> body mask on the scan's grid, source, level naming for the JSON, warnings)."""
    from ..models.runtime import load_named_model, select_device
    from . import network, outline

    device = select_device(options.device)
    model, entry, _ = load_named_model(network.MODEL_NAME, options.weights, device)
    grid = network.to_grid(image)
    coarse = network.predict_classes(grid, model, device, tuple(entry.input["patch_size"]), progress)
    classes = sitk.GetArrayFromImage(coarse)
    # Bodies are split, checked and counted on the 2 mm grid (cheap), then each is brought to the scan's grid.
    bodies = network.split_bodies(classes == 1, coarse.GetSpacing(), disc=classes == network.DISC)
    coarse_hu = sitk.GetArrayFromImage(grid)
    found, grid_sign = len(bodies), posterior_sign(coarse)  # the grid's rows may run the other way from the scan's
    arch = classes == network.CLASSES.index("posterior")
    bodies, merged, dropped = network.on_the_spine(bodies, coarse_hu, coarse.GetSpacing(), grid_sign, arch=arch,
                                                   disc=classes == network.DISC)
    from_network = {id(mask) for mask in bodies}
    bodies, grown = network.fill_missed_bodies(bodies, coarse_hu, coarse.GetSpacing(), grid_sign, merged, arch)
    if found and not bodies:
        proposed = ("the body the network proposed is not" if found == 1
                    else f"none of the {found} bodies the network proposed is")
        raise InputError(f"no vertebral body found on the spine: {proposed} a vertebral body (in front of or beside the "
                         "spine, not bone, or with no vertebral arch behind it); give vertebra masks (--vertebra-mask, "
                         "e.g. TotalSegmentator's) or click the bodies (--seed).")
    naming = network.assign_levels(bodies, classes, coarse.GetSpacing(), getattr(options, "lowest_level", None),
                                   merged, grid_sign, hu=coarse_hu)
    # One label image brought to the scan's grid (one full-size resampling): the bodies numbered 1, 2, ..., and what
    # the network sees as bone or disc that is not a body, which the redrawing below must not take.
    not_a_body = np.iinfo(np.uint8).max
    indexed = np.where(network.not_body(classes), not_a_body, 0).astype(np.uint8)
    for number, mask in enumerate(naming.levels.values(), start=1):
        indexed[mask] = number
    indexed_image = sitk.GetImageFromArray(indexed)
    indexed_image.CopyInformation(coarse)
    native = network.to_native(indexed_image, image)
    levels = dict(zip(naming.levels, geometry.masks_of_labels(native, len(naming.levels)), strict=True))
    # Each body is redrawn on the scan's pixels, out to its cortical shell.
    levels = outline.to_cortical_shell(levels, hu, image.GetSpacing(), posterior_sign(image), barrier=native == not_a_body)
    described = {"rule": naming.rule, "determined": naming.determined, "notes": naming.warnings,
                 "dropped": dropped, "grown_where_missed": grown, "missed_below": naming.missed_below,
                 "grown_levels": [name for name, mask in naming.levels.items() if id(mask) not in from_network]}
    warnings = dropped + grown + naming.warnings
    if not naming.determined:
        warnings.append("vertebral level not determined for " + ", ".join(n for n in naming.levels if not is_determined(n))
                        + f" ({naming.rule}); give --lowest-level or vertebra masks to name them")
    return levels, f"network {entry.name} {entry.version} ({naming.rule})", described, warnings


def run(loaded: LoadedImage, options, progress: Progress) -> ModuleResult:
    check_options(options)
    if options.vertebra_mask == totalsegmentator.OPTION_VALUE:
        totalsegmentator.api("--vertebra-mask")  # installed? before any work
    check_input(loaded)
    as_stored = loaded.volume
    # Every step measures the scan turned to one orientation (the same voxels, no interpolation), so that a file whose
    # rows, columns or slices run the other way, or that stores sagittal slices, gives the same vertebrae, ROIs and
    # BMD; the label map goes back to the file's own grid at the end.
    loaded = dataclasses.replace(loaded, image=geometry.turned_to(as_stored, ORIENTATION))
    whole_scan = loaded.volume
    loaded, budget_warnings = _within_budget(loaded, options)
    image = loaded.volume
    spacing = image.GetSpacing()
    # A fill stored as air is no data, and no air reference.
    hu = geometry.as_padding(geometry.float_array(image), geometry.outside_the_reconstruction(image))
    kvp, warnings = tube_voltage(loaded, options.kvp, "calibration values")
    warnings += budget_warnings
    sign = posterior_sign(image)
    bodies, source, naming, naming_warnings = collect_bodies(loaded, options, hu, sign)
    warnings += naming_warnings
    progress.update(0.3, "trabecular ROIs")
    all_bodies = reduce(np.logical_or, bodies.values())  # not np.stack: one mask at a time, not one per vertebra
    bodies, rois, cut, roi_warnings = _trabecular_rois(hu, bodies, spacing, sign)
    warnings += roi_warnings
    rois, dense_ml, dense_warnings = _without_dense_foci(hu, rois, spacing)
    warnings += dense_warnings
    progress.update(0.5, "reference tissues")
    slices = references.measurement_slices(reduce(np.logical_or, rois.values()))
    left = left_sign(image)
    reference_masks = references.reference_rois(hu, spacing, all_bodies, sign, slices, left)
    reference_stats = references.statistics(hu, reference_masks)
    contrast = references.contrast_enhanced(hu, spacing, slices, all_bodies, sign, left,
                                            reference_stats.get("blood", {}).get("measured_hu"))
    if contrast:
        warnings.append("contrast-enhanced scan (bright aorta): trabecular HU and BMD are biased upwards by iodine; "
                        "the aortic blood reference was not used")
        reference_masks.pop("blood", None)
        reference_stats.pop("blood", None)
    cal = _calibrate(options, reference_stats, kvp)
    warnings += cal.notes
    progress.update(0.8, "BMD")
    per_vertebra, centres = {}, {}
    for level, mask in bodies.items():
        # Read on the slices the body spans (its ROI lies inside it), not over the whole scan once per vertebra.
        span = vertebrae.body_slices(mask)
        body, where = mask[span], np.nonzero(rois[level][span])
        values = hu[span][where]
        centres[level] = (np.array([float(np.mean(axis)) for axis in where]) + (span.start, 0, 0)) * spacing[::-1]
        mean_hu = float(values.mean())
        per_vertebra[level] = {
            "trabecular_hu": mean_hu,
            "trabecular_hu_median": float(np.median(values)),
            "calibrated_hu": float(cal.calibrated_hu(mean_hu)) if cal.method != "asynchronous" else None,
            "bmd_mg_cm3": float(cal.bmd(mean_hu)),
            "roi_volume_ml": float(values.size * np.prod(spacing) / 1000.0),
            "dense_foci_left_out_ml": dense_ml[level],
            "body_volume_ml": float(body.sum() * np.prod(spacing) / 1000.0),
            "body_height_mm": body_height_mm(body, spacing),
            "body_share_denser_than_bone": vertebrae.share_denser_than_bone(body, hu[span]),
            "cut_by_scan_range": vertebrae.cut_by_scan_range(mask),
            "level_determined": is_determined(level),
            "cut_by_field_of_view": level in cut,
            "vertebra_missed_below": level in naming.get("missed_below", ()),
            "grown_where_network_missed": level in naming.get("grown_levels", ()),
            "possible_fracture": False,
            "possible_fracture_kind": None,
        }
        doubts = plausibility(per_vertebra[level])
        per_vertebra[level]["plausible"] = not doubts
        if doubts:
            warnings.append(f"{level}: {'; '.join(doubts)}: its BMD is not used for the patient figure")
    for level, heights in body_heights(bodies, centres, per_vertebra, spacing, hu, all_bodies).items():
        per_vertebra[level]["body_heights_mm"] = heights.to_json() if heights else None
        per_vertebra[level]["body_heights_read_on_scan"] = list(heights.read_on_scan) if heights else []
    for level, (kind, doubt) in possible_fractures(per_vertebra, centres, spacing[2]).items():
        per_vertebra[level].update({"plausible": False, "possible_fracture": True, "possible_fracture_kind": kind})
        warnings.append(f"{level}: {doubt}: its BMD is not used for the patient figure")
    for level, doubt in unlike_neighbours(per_vertebra, centres).items():
        per_vertebra[level]["plausible"] = False
        warnings.append(f"{level}: {doubt}: its BMD is not used for the patient figure")
    # A line outside what scanner drift does comes from a reference ROI that caught another tissue (a field of view
    # that cuts the back muscles and leaves no outside air): its BMDs make no patient category.
    patient = (patient_summary(per_vertebra) if cal.plausible
               else no_patient_figure(f"{cal.doubt}: calibrate with a phantom (--phantom)"))
    labels = _label_map(hu.shape, bodies, rois, reference_masks)
    progress.update(1.0, "done")
    if not cal.plausible:
        warnings.append(f"no patient BMD: {cal.doubt} (see above), so no BMD is trusted; the trabecular HU per "
                        "vertebra stand; calibrate with a phantom (--phantom)")
    elif patient["bmd_mg_cm3"] is None:
        warnings.append(f"no patient BMD: {patient['reason']} (see above); check the bodies, or give vertebra masks "
                        "(--vertebra-mask) or seeds (--seed)")
    elif caveat := category_caveat(patient):
        warnings.append(caveat)
    summary = {"vertebrae": per_vertebra, "patient": patient, "calibration": cal.to_json(), "contrast_enhanced": contrast,
               "source": source, "level_naming": naming, "kvp": kvp}
    settings = {"roi": vars(roi.RoiSettings()), "calibration": options.calibration, "kvp": kvp,
                "nominal_hu": calibration.NOMINAL_HU, "ha_slope_hu_per_mg_cm3": calibration.HA_SLOPE_HU_PER_MG,
                "source": source}
    rows = [{"level": level, **_table_columns(values)} for level, values in per_vertebra.items()]

    def report(path, warnings):
        from .report import draw_report

        draw_report(path, hu, spacing, labels, summary, warnings)

    label_image = geometry.image_from_array(labels, image)
    if image is not whole_scan:  # measured on block averages: the labels go back onto the scan's own grid
        label_image = sitk.Resample(label_image, whole_scan, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                    sitk.sitkUInt8)
    label_image = geometry.turned_back(label_image, as_stored)
    return ModuleResult(module="bmd", summary=summary, label_image=label_image,
                        label_table=LABEL_TABLE, table_rows=rows, settings=settings, warnings=warnings, report=report)


def _within_budget(loaded: LoadedImage, options) -> tuple[LoadedImage, list[str]]:
    """The scan as it is when it fits --memory-limit-gb; else its block averages (the coarsest axis no coarser than
    COARSEST_MM), with a warning; an InputError when even those would not fit."""
    image, limit = loaded.volume, budget.limit_gb(options)
    factors, needed = budget.shrink_to_fit(image, BYTES_PER_VOXEL, limit, COARSEST_MM)
    if needed > limit:
        raise budget.refusal(f"measuring this {' x '.join(map(str, image.GetSize()))} scan", needed, limit,
                             "raise --memory-limit-gb, or give the scan cropped to the spine.")
    if factors == [1, 1, 1]:
        return loaded, []
    averaged = budget.block_average(image, factors, outside=geometry.outside_the_reconstruction(image))
    grid = " x ".join(f"{s:.2f}" for s in averaged.GetSpacing())
    return dataclasses.replace(loaded, image=averaged), [
        f"measured on {grid} mm block averages of the scan: the whole scan would need more than --memory-limit-gb "
        f"{limit:g}; trabecular means are kept but for the ROI edges"]


def _calibrate(options, reference_stats, kvp) -> calibration.Calibration:
    if options.phantom:
        return calibration.asynchronous(options.phantom_points(), kvp)
    if options.calibration == "two-point":
        return calibration.two_point(reference_stats, kvp)
    return calibration.multi_material(reference_stats, kvp)


NOT_DETERMINED = "not determined"


def acr_category(bmd: float) -> str:
    """ACR QCT: > 120 mg/cm^3 normal, 80-120 osteopenia (low bone mass), < 80 osteoporosis."""
    if bmd > 120:
        return "normal"
    return "osteopenia" if bmd >= 80 else "osteoporosis"


def pickhardt_flags(l1_hu: float) -> dict:
    """Opportunistic L1 attenuation thresholds at 120 kVp (Pickhardt 2013), on uncalibrated HU."""
    return {"l1_hu": l1_hu, "le_160_sensitive_for_osteoporosis": l1_hu <= 160, "le_110_specific_for_osteoporosis": l1_hu <= 110,
            "gt_200_osteoporosis_unlikely": l1_hu > 200}


# Plausibility of one vertebra's measurement (docs/REFERENCE.md section 2). By this ROI rule a lumbar trabecular
# ROI holds 3-7 mL and a mid-thoracic one 1.5-4 mL; under 1 mL the body is cut by the scan range or only partly
# found (a chest CT gave figures of 67-371 mg/cm3 from 0.2-0.4 mL ROIs). Adult trabecular bone reads about 0-300 HU
# (fatty osteoporotic marrow the lowest); outside -50..400 HU the ROI holds air, fat, cortex, sclerosis, cement or
# iodine. Thoracic and lumbar bodies are 15-35 mm high and 8-60 mL.
MIN_ROI_ML = 1.0
TRABECULAR_HU = (-50.0, 400.0)
BODY_HEIGHT_MM = (10.0, 45.0)
BODY_ML = (5.0, 90.0)


def _table_columns(values: dict) -> dict:
    """A vertebra's figures as table columns: Genant's three heights each a numeric column of its own, and those
    read between the end plates on the scan named in one."""
    heights = values.get("body_heights_mm") or {}
    columns = {k: v for k, v in values.items() if k not in ("body_heights_mm", "body_heights_read_on_scan")}
    return columns | {f"body_height_{part}_mm": heights.get(part) for part in ("anterior", "middle", "posterior")} | {
        "body_heights_read_on_scan": " ".join(values.get("body_heights_read_on_scan") or [])}


def body_height_mm(body: np.ndarray, spacing) -> float:
    """The body's extent along the slices (the scan turned to LPS: head to feet)."""
    span = vertebrae.body_slices(body)
    return float((span.stop - span.start) * spacing[2])


def plausibility(measured: dict) -> list[str]:
    """What makes one vertebra's figure doubtful (empty when nothing does)."""
    doubts = []
    if measured["roi_volume_ml"] < MIN_ROI_ML:
        doubts.append(f"trabecular ROI only {measured['roi_volume_ml']:.1f} mL (under {MIN_ROI_ML:g} mL: body cut by "
                      "the scan range or only partly found)")
    if not TRABECULAR_HU[0] <= measured["trabecular_hu"] <= TRABECULAR_HU[1]:
        doubts.append(f"trabecular ROI reads {measured['trabecular_hu']:.0f} HU, outside {TRABECULAR_HU[0]:g} to "
                      f"{TRABECULAR_HU[1]:g} HU (cortex, sclerosis, cement, iodine or not bone)")
    height = measured["body_height_mm"]
    if not BODY_HEIGHT_MM[0] <= height <= BODY_HEIGHT_MM[1]:
        doubts.append(f"body {height:.0f} mm high, outside {BODY_HEIGHT_MM[0]:g}-{BODY_HEIGHT_MM[1]:g} mm (cut by the "
                      "scan range, or several vertebrae)")
    if not BODY_ML[0] <= measured["body_volume_ml"] <= BODY_ML[1]:
        doubts.append(f"body {measured['body_volume_ml']:.0f} mL, outside {BODY_ML[0]:g}-{BODY_ML[1]:g} mL")
    if (dense := measured.get("body_share_denser_than_bone", 0.0)) >= vertebrae.DENSE_BODY_SHARE:
        doubts.append(f"{100 * dense:.0f} % of the body reads {vertebrae.DENSER_THAN_BONE_HU:g} HU or more (vertebroplasty "
                      "cement or a sclerotic lesion): not trabecular bone")
    return doubts


# Trabecular BMD changes little from one vertebra to the next (the real CTs here: 2-19 % from the mean of the two
# neighbours, up the thoracic spine's gradient too). Like the adjacent-vertebra rule of spine densitometry (ISCD: a
# vertebra more than 1 T-score from its neighbours is excluded), a body that reads further from its neighbours than
# this is left out of the patient figure: a fracture, sclerosis, a bone island or haemangioma, or a body only partly
# found. The contrast chest CT's T12 reads 36 % above its neighbours, on its reference masks too; read from 5 mm
# slices, with L2 and L3 lost, it made the patient figure 121 against 80 mg/cm3.
NEIGHBOUR_DIFFERENCE = 0.25   # of the neighbours' mean
NEIGHBOUR_DIFFERENCE_MG = 20.0  # and at least this, so that low-density spines' noise is not called a lesion
MAX_DISC_MM = 15.0  # lumbar discs are 8-12 mm high: bodies further apart than that have a vertebra missed between


def unlike_neighbours(per_vertebra: dict, centres: dict) -> dict[str, str]:
    """level -> why, for plausible vertebrae whose BMD differs from the mean of their two neighbours' by more than
    NEIGHBOUR_DIFFERENCE (and NEIGHBOUR_DIFFERENCE_MG). Neighbours are the plausible bodies named (or numbered: V1,
    V2, ...) next to it whose centres (`centres`, mm) lie no further apart than the two bodies' half heights and a
    disc (MAX_DISC_MM): bodies numbered from the lowest in view run on across a missed vertebra. The most different
    is taken first and is then no one's neighbour, so that one dense body does not make its normal neighbours look
    wrong."""
    candidates = {level: v["bmd_mg_cm3"] for level, v in per_vertebra.items() if v.get("plausible", True)}
    next_to = _next_to(list(candidates), per_vertebra, centres)
    found = {}
    while (worst := _most_unlike(candidates, next_to)) is not None:
        level, share, neighbours = worst
        found[level] = (f"BMD {candidates[level]:.0f} mg/cm3, {100 * share:.0f} % from its neighbours' ("
                        + ", ".join(f"{other} {candidates[other]:.0f}" for other in neighbours)
                        + f"; over {100 * NEIGHBOUR_DIFFERENCE:.0f} %: a fracture, sclerosis, a focal lesion or a body "
                        "only partly found?)")
        del candidates[level]
    return found


def _next_to(levels: list[str], per_vertebra: dict, centres: dict) -> set[tuple[str, str]]:
    """The pairs of `levels` that are neighbours on the spine: next to each other in name (both named, or both
    numbered from the lowest) and no further apart than their half heights and a disc (no vertebra missed between)."""
    order = {level: n for n, level in enumerate(LEVELS)} | {level: -n for n, level in enumerate(UNDETERMINED)}
    height = {level: per_vertebra[level]["body_height_mm"] for level in levels}
    return {(a, b) for a in levels for b in levels
            if abs(order[a] - order[b]) == 1 and is_determined(a) == is_determined(b)
            and np.linalg.norm(centres[a] - centres[b]) <= (height[a] + height[b]) / 2 + MAX_DISC_MM}


# A vertebral fracture lowers the body: Genant's semiquantitative grades start at a 20 % loss of height against the
# expected (here the lower neighbour's), 25 % for grade 2 (moderate). Fractured vertebrae are left out of BMD (ACR-SPR-SSR
# practice parameter for QCT), and a fragility fracture is itself a sign of osteoporosis, whatever the BMD. The height
# is the body's extent along the spine as the network finds it, counted in slices: each end plate may gain or lose a
# slice, so the loss must also be FRACTURE_SLICES slices. Normal bodies of the real chest CT read up to 22 % lower than
# their neighbours on some runs (T8, 18 against 22 mm, with a crush three levels away): the rule starts at grade 2.
# The abdominal CT with 9 mm taken out of L3 (a crush fracture) read 27 % lower. A wedge fracture, which keeps the
# back of the body, keeps this height: deformed_bodies reads the body's shape. A mild one is within the network's
# noise.
FRACTURE_HEIGHT_LOSS = 0.25
FRACTURE_SLICES = 2


def shorter_than_neighbours(per_vertebra: dict, centres: dict, slice_mm: float) -> dict[str, str]:
    """level -> why, for bodies FRACTURE_HEIGHT_LOSS (and FRACTURE_SLICES slices) lower than each of their two
    neighbours (than the lower of them: a neighbour found over its disc, as the network's top body often is, made a
    normal T2 look 33 % low against the two's mean). Bodies the scan range cuts are not judged, nor used as
    neighbours: their height is not theirs. Nor are bodies grown where the network missed one: their height is the
    grower's. The chest CT's L1, found 17.5 mm high at the network's held-out lower end, was named a possible
    fracture against a grown neighbour's 27.5 mm, twice: T12 missed for its cement, L2 for the gas in its discs.
    None of the crushed bodies found as possible fractures (5 of 25 crushes tried) was grown or judged against a
    grown neighbour."""
    whole = [level for level, v in per_vertebra.items()
             if not v["cut_by_scan_range"] and not v.get("grown_where_network_missed", False)]
    next_to = _next_to(whole, per_vertebra, centres)
    height = {level: per_vertebra[level]["body_height_mm"] for level in whole}
    found = {}
    for level in whole:
        neighbours = [other for other in whole if (level, other) in next_to]
        if len(neighbours) < 2:
            continue
        expected = min(height[other] for other in neighbours)  # lower than each: one found too tall does not count
        shortfall = expected - height[level]
        if shortfall >= max(FRACTURE_HEIGHT_LOSS * expected, FRACTURE_SLICES * slice_mm):
            found[level] = (f"body {height[level]:.0f} mm high, {100 * shortfall / expected:.0f} % lower than its "
                            "neighbours (" + ", ".join(f"{other} {height[other]:.0f} mm" for other in neighbours)
                            + f"; {100 * FRACTURE_HEIGHT_LOSS:.0f} % or more: a vertebral fracture, or a body only "
                            "partly found? Review it on a sagittal view: a fractured vertebra is left out of BMD, and "
                            "a fragility fracture is a sign of osteoporosis whatever the BMD)")
    return found


def body_heights(bodies: dict, centres: dict, per_vertebra: dict, spacing, hu: np.ndarray | None = None,
                 every_body: np.ndarray | None = None) -> dict:
    """level -> its body's anterior, middle and posterior heights (morphometry.BodyHeights, or None), read along the
    spine's axis between the centres of its neighbours on the spine; with `hu`, read between the end plates the scan
    shows where the outline is more than morphometry.OUTLINE_TOLERANCE_MM off them (`every_body`: the bodies found,
    which no search enters)."""
    next_to = _next_to(list(per_vertebra), per_vertebra, centres)
    heights = {}
    for level in per_vertebra:
        neighbours = [other for other in per_vertebra if (level, other) in next_to]
        above = [centres[o][::-1] for o in neighbours if centres[o][0] > centres[level][0]]
        below = [centres[o][::-1] for o in neighbours if centres[o][0] < centres[level][0]]
        axis = morphometry.spine_axis(centres[level][::-1], above[0] if above else None, below[0] if below else None)
        heights[level] = morphometry.body_heights(bodies[level], spacing, axis, hu, every_body)
    return heights


def possible_fractures(per_vertebra: dict, centres: dict, slice_mm: float) -> dict[str, tuple[str, str]]:
    """level -> (kind, why): crushed bodies (shorter_than_neighbours), then wedge and biconcave ones
    (deformed_bodies)."""
    found = {level: ("crush", why) for level, why in shorter_than_neighbours(per_vertebra, centres, slice_mm).items()}
    return found | {level: kind_why for level, kind_why in deformed_bodies(per_vertebra, centres, slice_mm).items()
                    if level not in found}


# Genant's wedge and biconcave fractures: the front (wedge) or the middle (biconcave) of the body lower than its
# back, by FRACTURE_HEIGHT_LOSS (grade 2, moderate, or more) and FRACTURE_SLICES slices. The normal mid-thoracic
# spine is wedged a little (anterior against posterior height 0.87 +- 0.05 in normal T6-T9), and the network's
# bodies add their own noise: on the real CTs here normal bodies read 0.62-0.75 at worst (T1 and T3 on the chest CT,
# read 40 degrees off the slices; L1 of the abdominal CT, 3 mm voxels, 0.71 against 0.83 on TotalSegmentator's body
# mask; COCA 1's V5), at most 16 % under their neighbours' fronts. So the
# front (middle) must also be that much lower than the front (middle) of each whole neighbour: a fracture deforms
# one body, the spine's curve and a network's habits several. Genant's method reads T4-L4 (GENANT_LEVELS): the upper
# thoracic bodies are read far off the slices, L5 is wedged the other way,
# and the sacrum's S1 is no box (on TotalSegmentator's masks of the abdominal CT, front 16 against back 24 mm).
# Bodies whose level is not determined (V1, V2, ...) are not judged: any of them may be T1-T3 (the chest CT made
# unenhanced, its levels not determined: its top body, T1, read as a wedge).
GENANT_LEVELS = LEVELS[LEVELS.index("T4"):LEVELS.index("L4") + 1]


def deformed_bodies(per_vertebra: dict, centres: dict, slice_mm: float) -> dict[str, tuple[str, str]]:
    """level -> (kind, why) for bodies whose anterior ("wedge") or middle ("biconcave") height is lower than their
    posterior height and than the same height of each whole neighbour (at least one) by FRACTURE_HEIGHT_LOSS and
    FRACTURE_SLICES slices. Only bodies named GENANT_LEVELS are judged. Bodies cut by the scan range or grown where
    the network missed one are not judged, nor used as neighbours (as in shorter_than_neighbours)."""
    whole = [level for level, v in per_vertebra.items() if v.get("body_heights_mm") and not v["cut_by_scan_range"]
             and not v.get("grown_where_network_missed", False)]
    next_to = _next_to(whole, per_vertebra, centres)
    heights = {level: per_vertebra[level]["body_heights_mm"] for level in whole}
    found = {}
    for level in (level for level in whole if level in GENANT_LEVELS):
        neighbours = [other for other in whole if (level, other) in next_to]
        if not neighbours:
            continue
        for kind, part in (("wedge", "anterior"), ("biconcave", "middle")):
            own, back = heights[level][part], heights[level]["posterior"]
            expected = min(heights[other][part] for other in neighbours)
            if all(reference - own >= max(FRACTURE_HEIGHT_LOSS * reference, FRACTURE_SLICES * slice_mm)
                   for reference in (back, expected)):
                on_scan = " (between the end plates the scan shows)" if part in per_vertebra[level].get(
                    "body_heights_read_on_scan", ()) else ""
                found[level] = (kind, f"{part} height {own:.0f} mm{on_scan} against its posterior {back:.0f} mm and its "
                                f"neighbours' {part} ("
                                + ", ".join(f"{other} {heights[other][part]:.0f} mm" for other in neighbours)
                                + f"): {100 * (1 - own / back):.0f} % lower, a possible {kind} fracture (Genant grade "
                                "2 or more); review it on a sagittal view: a fractured vertebra is left out of BMD, and a "
                                "fragility fracture is a sign of osteoporosis whatever the BMD")
                break
    return found


def _most_unlike(candidates: dict, next_to: set) -> tuple[str, float, list] | None:
    """(level, its difference as a share of its neighbours' mean, the neighbours) of the body furthest from its two
    neighbours beyond the limits, or None. A body is judged only between neighbours that agree with each other
    within twice the limit: beside a body unlike the rest (the lowest in view, which has one neighbour and is not
    judged) who is different cannot be told."""
    worst = None
    for level, bmd in candidates.items():
        neighbours = [other for other in candidates if (level, other) in next_to]
        if len(neighbours) < 2:
            continue
        expected = float(np.mean([candidates[other] for other in neighbours]))
        if expected <= 0 or abs(candidates[neighbours[0]] - candidates[neighbours[1]]) > 2 * NEIGHBOUR_DIFFERENCE * expected:
            continue
        difference = abs(bmd - expected)
        if difference > max(NEIGHBOUR_DIFFERENCE * expected, NEIGHBOUR_DIFFERENCE_MG) and (
                worst is None or difference / expected > worst[1]):
            worst = (level, difference / expected, neighbours)
    return worst


CUT_BODY_ROI = roi.RoiSettings(centre_from_posterior=0.5)


def _trabecular_rois(hu, bodies: dict, spacing, sign: int) -> tuple[dict, dict, set, list]:
    """(bodies measured, their trabecular ROIs, the levels cut by the field of view, warnings).

    A body reaching the field of view's rim (a calcium scan's 150-200 mm field of view often keeps only the front of
    the thoracic bodies behind the heart) is measured with the same ellipse placed on its visible part, centred in
    it: the back of the body, where the basivertebral vein enters and which the usual centre (58 % from the back)
    keeps the ROI away from, is out of view, and 58 % from a cut edge put the ROI of a body half in view into its
    front cortex. On the real abdominal CT cut 15 or 25 mm behind the bodies' front (30-89 % of each body in view)
    the ellipse read each of 7 cut bodies within 5 HU of the whole scan's mask-based ROI; an ROI 3 mm inside the
    visible part's edge read 4-37 HU high (the front of a lumbar body is denser). A cut body with no ROI left is
    named and left out, and so is a body the scan's first or last slice cuts with too little of it in view (a
    TotalSegmentator map of a chest CT labels the sliver of C5 or L4 at its ends) and a body whose mask is too small
    for an ROI (a stray piece of a given mask), each named in a warning: the others are measured. A body the rim
    only grazes behind or beside its ellipse (a round field of view's circle at a corner) keeps its extents, and
    the usual ellipse (roi.cut_across_the_ellipse); it is still marked cut."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    rois, cut, too_little, scan_cut, too_small = {}, [], [], [], []
    for level, mask in bodies.items():
        on_rim = geometry.voxels_on_field_of_view_rim(mask, hu)
        placed = CUT_BODY_ROI if roi.cut_across_the_ellipse(mask, on_rim, spacing, sign) else None
        if (measured := roi.trabecular_roi(mask, spacing, sign, placed, hu)).any():
            rois[level] = measured
            if on_rim[0].size:
                cut.append(level)
        elif on_rim[0].size:
            too_little.append(level)
        elif vertebrae.cut_by_scan_range(mask):
            scan_cut.append(level)
        else:
            too_small.append(f"{level} ({mask.sum() * voxel_ml:.1f} mL)")
    if not rois:
        raise InputError("every vertebral body is cut by the field of view, with too little of it in view to measure: "
                         "give a scan whose field of view holds the spine" if not (scan_cut or too_small) else
                         "no vertebral body holds a trabecular ROI (each is cut by the field of view or the scan's "
                         "ends, or too small): give a scan, or masks, that hold whole vertebral bodies")
    warnings = []
    if too_little:
        warnings.append(f"{', '.join(too_little)}: body cut by the field of view, too little of it in view for a "
                        "trabecular ROI: not measured")
    if scan_cut:
        warnings.append(f"{', '.join(scan_cut)}: body cut by the scan's first or last slice, too little of it in view "
                        "for a trabecular ROI: not measured")
    if too_small:
        warnings.append(f"{', '.join(too_small)}: body too small for a trabecular ROI: not measured; review its mask")
    if cut:
        warnings.append(f"{', '.join(cut)}: body cut by the field of view: measured in its visible part")
    return {level: bodies[level] for level in rois}, rois, set(cut), warnings


DENSE_SHARE_TO_REVIEW = 0.05  # a reader is told when this share of an ROI was dense bone left out


def _without_dense_foci(hu, rois: dict, spacing) -> tuple[dict, dict, list]:
    """(the ROIs less their dense foci (roi.without_dense_foci; changed in place: a chest CT holds 15 full-size
    masks), the volume left out of each in mL, warnings naming the vertebrae that lost DENSE_SHARE_TO_REVIEW or more
    of their ROI)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    settings = roi.RoiSettings()
    left_out, warnings = {}, []
    for level, mask in rois.items():
        span = vertebrae.body_slices(mask)
        before = int(mask[span].sum())
        mask[span] = roi.without_dense_foci(mask[span], hu[span], settings)
        dropped = before - int(mask[span].sum())
        left_out[level] = dropped * voxel_ml
        if dropped >= DENSE_SHARE_TO_REVIEW * before:
            warnings.append(f"{level}: {dropped / before:.0%} of its trabecular ROI ({left_out[level]:.1f} mL) is dense "
                            f"bone, over {settings.dense_focus_above_median_hu:.0f} HU above the rest (a bone island, an end "
                            "plate or cortex), and was left out: review the ROI")
    return rois, left_out, warnings


def patient_summary(per_vertebra: dict) -> dict:
    """Patient BMD from the two preferred named levels; else the two lowest named bodies; else, when no level is
    determined, the lowest bodies in view (_lowest_pair; said so: `level_determined` false). Vertebrae whose figure is
    doubtful (`plausible` false) are left out; when every one is, there is no patient figure (a BMD and an ACR
    category from 0.3 mL ROIs of bodies the scan cuts would read as a diagnosis)."""
    per_vertebra = {level: v for level, v in per_vertebra.items() if v.get("plausible", True)}
    if not per_vertebra:
        return no_patient_figure("no vertebra gave a plausible figure")
    named = [level for level in per_vertebra if is_determined(level)]
    chosen = [level for level in PREFERRED if level in per_vertebra][:2] or named[:2] or _lowest_pair(per_vertebra)
    if not chosen:
        return no_patient_figure("the plausible bodies lie above two or more doubtful lower ones (density rises up "
                                 "the spine)")
    bmd = float(np.mean([per_vertebra[level]["bmd_mg_cm3"] for level in chosen]))
    out: dict = {"bmd_mg_cm3": bmd, "levels": chosen, "acr_category": acr_category(bmd),
           "level_determined": all(is_determined(level) for level in chosen)}
    if "L1" in per_vertebra:
        out["pickhardt"] = pickhardt_flags(per_vertebra["L1"]["trabecular_hu"])
    return out


def category_caveat(patient: dict) -> str | None:
    """What the ACR category of a patient figure must be read with when it does not come from named lumbar bodies
    (the categories are defined on L1-L2 QCT); None when it does."""
    levels = ", ".join(patient["levels"])
    if not patient["level_determined"]:
        return f"patient BMD from {levels}, whose levels are not determined: the ACR categories are defined on L1-L2"
    if not all(level.startswith("L") for level in patient["levels"]):
        return (f"patient BMD from {levels}: the ACR categories are defined on lumbar vertebrae (L1-L2), and thoracic "
                "bodies usually read higher; read the category with care")
    return None


def no_patient_figure(reason: str) -> dict:
    """The patient entry when no BMD or ACR category can be given, with why (JSON, report, panel)."""
    return {"bmd_mg_cm3": None, "levels": [], "acr_category": NOT_DETERMINED, "level_determined": False,
            "reason": reason}


def _lowest_pair(per_vertebra: dict) -> list[str]:
    """Of bodies named V1, V2, ... from the lowest in view, the lowest plausible one and, when plausible too and its
    neighbour (no vertebra missed between them), the one just above; none when two or more bodies below it are
    doubtful (density rises up the spine: a chest CT cut behind the spine left only T1 plausible above eleven
    doubtful bodies, 257 against L1-L2's 82 mg/cm3). Across a missed vertebra the pair is not neighbours: the chest
    CT made unenhanced, its L2 and L1 missed, averaged L3 with T12 (61 and 119: 90 against L1-L2's 77)."""
    lowest = min(per_vertebra, key=UNDETERMINED.index)
    if UNDETERMINED.index(lowest) > 1:
        return []
    above = UNDETERMINED[UNDETERMINED.index(lowest) + 1]
    neighbour = above in per_vertebra and not per_vertebra[above].get("vertebra_missed_below", False)
    return [lowest, above] if neighbour else [lowest]


def _label_map(shape, bodies, rois, reference_masks) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    for tissue, mask in reference_masks.items():
        labels[mask] = REFERENCE_VALUE[tissue]
    for level, mask in bodies.items():
        labels[mask] = BODY_VALUE[level]
    for level, mask in rois.items():
        labels[mask] = ROI_VALUE[level]
    return labels


def sample_input() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data" / "spine_phantom.nrrd"


def summary_line(result: ModuleResult) -> str:
    p = result.summary["patient"]
    per = ", ".join(f"{k} {v['bmd_mg_cm3']:.0f}" for k, v in result.summary["vertebrae"].items())
    if p["bmd_mg_cm3"] is None:
        return f"BMD not determined ({p.get('reason', 'no plausible vertebra')}) [{per}]"
    return f"BMD {p['bmd_mg_cm3']:.1f} mg/cm3 ({'+'.join(p['levels'])}): {p['acr_category']} [{per}]"


def sample_options() -> dict:
    """The bundled sample comes with TotalSegmentator-style vertebra labels."""
    return {"vertebra_mask": str(sample_input().with_name("spine_phantom_vertebrae.nrrd"))}
