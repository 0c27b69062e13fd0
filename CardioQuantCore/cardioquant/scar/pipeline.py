"""ScarQuantification pipeline: LGE stack -> myocardium (model or user mask) -> scar (model, n-SD or FWHM) ->
volumes, %LGE, AHA segments, bull's-eye.

`cardioquant scar INPUT [--method auto|model|nsd|fwhm] [--n-sd N] [--min-scar-ml V] [--myocardium-mask M] [--remote-mask M]
                   [--rv-insertion DEG | --rv-insertion-point X,Y,Z] [--septum-direction 0|1|-1]`
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import geometry, markups
from ..dicomseg import segment_labels
from ..errors import InputError
from ..imageio import LoadedImage, looks_like_label_map, read_image, read_labelled_mask, read_one_structure
from ..labels import ANATOMICAL_STRUCTURE, MORPHOLOGICALLY_ALTERED, LabelTable, SegmentSpec
from ..progress import Progress
from ..results import ModuleResult
from . import aha, network, quantify
from .settings import SETTINGS, ScarSettings  # noqa: F401  (SETTINGS: the Pipeline contract)

TITLE = "Myocardial scar on LGE MRI (ScarQuantification)"
ALLOW_2D = True

LABEL_TABLE = LabelTable([
    SegmentSpec(1, "LV cavity", (0.85, 0.35, 0.35), ANATOMICAL_STRUCTURE, ("SCT", "243951002", "Left ventricle cavity")),
    SegmentSpec(2, "myocardium", (0.8, 0.6, 0.45), ANATOMICAL_STRUCTURE, ("SCT", "74281007", "Myocardium"),
                None, "LV myocardium without scar"),
    SegmentSpec(3, "scar", (1.0, 1.0, 0.3), MORPHOLOGICALLY_ALTERED, ("SCT", "12402003", "Scar"),
                ("SCT", "74281007", "Myocardium"), "enhanced (scarred) myocardium"),
    SegmentSpec(4, "MVO", (0.3, 0.3, 1.0), MORPHOLOGICALLY_ALTERED, ("SCT", "40770002", "Microvascular obstruction"),
                ("SCT", "74281007", "Myocardium"), "microvascular obstruction (no-reflow), counted as scar"),
])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ScarSettings.add_arguments(parser.add_argument_group("scar quantification"))


def check_options(settings: ScarSettings) -> None:
    settings.check()
    if settings.rv_insertion_point:
        markups.parse_point(str(settings.rv_insertion_point), "--rv-insertion-point")


def read_input(path: str, series: str | None = None) -> LoadedImage:
    """A short-axis stack stored one series per slice (one breath-hold each) is read as one stack, and one with
    uneven slice positions (a breath-hold skipped or shifted) on a regular grid, its missing slices empty."""
    return read_image(path, allow_2d=ALLOW_2D, series=series, stack_single_slices=True, allow_slice_gaps=True)


def check_input(loaded: LoadedImage) -> list[str]:
    """CT is refused: by its modality, or, where the file does not say (NIfTI, NRRD), by intensities reaching air's
    -1000 HU. A series that says MR is MR whatever its values: phase-sensitive (PSIR) LGE is stored signed, often
    with an offset of -2048 or -4096."""
    modality = (loaded.modality or "").upper()
    if modality and modality != "MR":
        raise InputError(f"scar quantification needs LGE MRI; this series is {modality}.")
    if not modality and np.percentile(sitk.GetArrayViewFromImage(loaded.volume), 0.5) < -500:
        raise InputError("intensities reach -1000 like CT in Hounsfield units; scar quantification needs LGE MRI.")
    if looks_like_label_map(loaded.volume):
        raise InputError("this image is a label map (whole-number values in flat regions), not an LGE image: give "
                         "the LGE series, and a myocardium segmentation with --myocardium-mask.")
    return []


def stack_of(loaded: LoadedImage) -> tuple[np.ndarray, tuple, bool]:
    """(signal [slices, rows, cols], spacing (col, row, slice) mm, spacing_assumed)."""
    image = loaded.volume
    array = geometry.float_array(image)
    if image.GetDimension() == 2:
        array = array[None]
    spacing = tuple(image.GetSpacing()) + ((network.ASSUMED_SPACING[2],) if image.GetDimension() == 2 else ())
    # Whether the spacing is known comes from the file, never from its value: a real 1.0 mm scan is 1.0 mm.
    pixel_unknown = pixel_spacing_unknown(loaded)
    if pixel_unknown:
        spacing = (network.ASSUMED_SPACING[0], network.ASSUMED_SPACING[1], spacing[2])
    return array, spacing, pixel_unknown or image.GetDimension() == 2


def pixel_spacing_unknown(loaded: LoadedImage) -> bool:
    """A DICOM series without Pixel Spacing (0028,0030) and a picture (PNG) have no pixel size (SimpleITK then says
    1 mm); every other format this reads stores its spacing in the header."""
    return (loaded.format == "dicom" and "pixel_spacing" not in loaded.dicom) or loaded.format == "png"


def spacing_warning(spacing: tuple, loaded: LoadedImage) -> str:
    """The warning for a stack whose volumes rest on an assumed spacing: the pixel size or a 2D image's slice."""
    if loaded.format == "png":
        what = "pixel spacing and slice thickness (a PNG picture carries neither)"
    elif pixel_spacing_unknown(loaded):
        what = "pixel spacing (no Pixel Spacing in the DICOM)"
    else:
        what = "slice thickness (a 2D image)"
    return f"{what} unknown: {spacing[0]:g} x {spacing[1]:g} x {spacing[2]:g} mm assumed for volumes"


# The network reads whole slices at 1.5 mm through four halvings: 32 pixels (48 mm) is the least it can read, and
# an LV with its wall is 50-100 mm across.
MIN_FIELD_OF_VIEW_MM = 48.0


def check_field_of_view(stack: np.ndarray, spacing: tuple) -> None:
    """Refuse, before the network, a slice too small to hold an LV (a localizer's crop, a thumbnail)."""
    rows_mm, cols_mm = stack.shape[1] * spacing[1], stack.shape[2] * spacing[0]
    if min(rows_mm, cols_mm) < MIN_FIELD_OF_VIEW_MM:
        raise InputError(f"the field of view is {cols_mm:.0f} x {rows_mm:.0f} mm, too small to hold the LV (50-100 mm "
                         "across with its wall): give the short-axis stack with its whole field of view, or "
                         "--myocardium-mask.")


def readers_labels(path: str, reference: sitk.Image) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(the reader's LV labels (EMIDEC values: 1 cavity, 2 myocardium, 3 scar, 4 MVO) on the scan's grid [k, j, i],
    what to tell the reader of how they were read, the right ventricle where the labels hold it). A mask of one value
    (1, or 255 as some tools save masks) is the myocardium; MyoPS's label values are read as such
    (emidec_values_of_myops), its RV too; other values are refused. A segmentation (DICOM SEG, .seg.nrrd) is read by
    its segments' labels (values_of_segments). Where no cavity is drawn, the cavity is what the wall encloses: the
    RV insertion, the AHA segments and the remote myocardium are found from it."""
    image, names = read_labelled_mask(path, reference)
    drawn = sitk.GetArrayFromImage(image)
    if drawn.ndim == 2:
        drawn = drawn[None]
    notes, rv = [], None
    if names:
        mask = LABEL_TABLE.renumbered(drawn, values_of_segments(names, path))
    elif len(values := geometry.label_values(drawn)) <= 1:
        mask = np.where(drawn > 0, 2, 0)
    elif values <= {1, 2, 3, 4}:
        mask = drawn
    elif values <= set(MYOPS_VALUES) and values & {MYOPS_MYOCARDIUM, MYOPS_SCAR}:
        mask = emidec_values_of_myops(drawn)
        rv = drawn == MYOPS_RV if MYOPS_RV in values else None
        notes.append(f"--myocardium-mask {Path(path).name} read with MyoPS's label values (200 myocardium, 1220 edema "
                     "as myocardium, 2221 scar, 500 LV blood pool, 600 the RV, which places the RV insertion)")
    else:
        raise InputError(f"--myocardium-mask {path} holds the values {', '.join(str(v) for v in sorted(values)[:8])}"
                         f"{', ...' if len(values) > 8 else ''}: give the myocardium as 1 (a binary mask), EMIDEC's "
                         "values (1 LV cavity, 2 myocardium, 3 scar, 4 MVO) or MyoPS's (200 myocardium, 500 LV blood "
                         "pool, 600 RV, 1220 edema, 2221 scar)")
    mask = mask.astype(np.uint8)
    if not (mask == 1).any():
        wall = mask >= 2
        mask[geometry.fill_holes_in_plane(wall) & ~wall] = 1
    return mask, notes, rv


# MyoPS 2020's label values (its challenge data, and what models trained on it write) -> EMIDEC's: edema is
# myocardium on LGE (a T2 finding, not enhanced), the RV is not the LV's. MyoPS has no MVO: its scar holds any
# no-reflow core.
MYOPS_MYOCARDIUM, MYOPS_EDEMA, MYOPS_SCAR, MYOPS_CAVITY, MYOPS_RV = 200, 1220, 2221, 500, 600
MYOPS_VALUES = {MYOPS_CAVITY: 1, MYOPS_MYOCARDIUM: 2, MYOPS_EDEMA: 2, MYOPS_SCAR: 3, MYOPS_RV: 0}


def emidec_values_of_myops(labels: np.ndarray) -> np.ndarray:
    """MyoPS label values -> 0 background, 1 LV cavity, 2 myocardium, 3 scar."""
    return LABEL_TABLE.renumbered(labels, MYOPS_VALUES)


def values_of_segments(names: dict[int, str], path: str) -> dict[int, int]:
    """Segment number -> EMIDEC value of a DICOM SEG's segments, by this module's segment names (LV cavity,
    myocardium, scar, MVO; in any case), as the panel reads a segmentation; other segments (an RV) are not read.
    One segment named otherwise is the myocardium (drawn in another tool). The numbers are the SEG writer's: a SEG
    whose first segment was the myocardium and second the cavity had been read with them swapped."""
    if known := LABEL_TABLE.values_of_labels(names):
        return known
    if len(names) == 1:
        return {next(iter(names)): 2}
    raise InputError(f"--myocardium-mask {path}: a segmentation of {len(names)} segments ({segment_labels(names)}) "
                     f"and none is called {', '.join(repr(spec.name) for spec in LABEL_TABLE.segments)}: name the "
                     "myocardium segment 'myocardium', or give a label map with EMIDEC values (1 cavity, 2 "
                     "myocardium, 3 scar, 4 MVO)")


def segment(loaded: LoadedImage, stack: np.ndarray, spacing: tuple, options,
            progress: Progress) -> tuple[np.ndarray, list, list[str], np.ndarray | None]:
    """Labels, the provenance of the networks that made them (none for the reader's mask), what to tell the
    reader of them (the scar blobs the clean-up left out) and the right ventricle where the reader's labels hold
    it."""
    if options.myocardium_mask:
        labels, notes, rv = readers_labels(options.myocardium_mask, loaded.volume)
        return labels, [], notes, rv
    check_field_of_view(stack, spacing)
    from ..models.runtime import load_named_model, select_device

    device = select_device(options.device)
    # --weights replaces the first stage (the reader's own segmenter); the refiner is found as any model is
    # (CARDIOQUANT_WEIGHTS_LGE_SCAR_REFINER, bundled, cache).
    segmenter, _, segmenter_info = load_named_model(network.MODEL_NAME, options.weights, device)
    refiner, _, refiner_info = load_named_model(network.REFINER_NAME, None, device)
    imaged = imaged_slices(stack)
    labels = np.zeros(stack.shape, np.uint8)
    # Which end of the stack is the apex, from the scan's orientation where it has one (else the network tells).
    apex_first = apex_end(loaded)
    labels[imaged] = network.predict(segmenter, network.normalise_stack(stack[imaged]), device, progress,
                                     pixel_mm=(spacing[1], spacing[0]), refiner=refiner, apex_first=apex_first)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    dropped = network.small_scar_blobs_ml(labels, voxel_ml, options.min_scar_ml)
    labels = network.drop_small_scar(labels, voxel_ml, options.min_scar_ml)
    told = [dropped_scar_warning(dropped, options.min_scar_ml)] if dropped else []
    return labels, [segmenter_info, refiner_info], told, None


def dropped_scar_warning(volumes_ml: list[float], min_ml: float) -> str:
    """What the clean-up of the network's scar left out, for the reader: on a MyoPS validation case (Case3003) it
    dropped two true foci, 2.5 mL in all, and the case read scar-free; in normal hearts it drops the network's
    specks."""
    return (f"{len(volumes_ml)} scar blob(s) the network found under {min_ml:g} mL ({sum(volumes_ml):.1f} mL in all, the "
            f"largest {volumes_ml[0]:.1f} mL) counted as myocardium: small true foci, or the network's specks in a "
            "normal heart; to keep them set --min-scar-ml 0 (panel: Smallest scar blob) and review")


def apex_end(loaded: LoadedImage) -> bool | None:
    """True when the stack's slices run from the apex to the base, False when from the base, by the scan's
    orientation; None without one (`stated_orientation`): the image then tells (aha, network)."""
    stated = stated_orientation(loaded)
    return aha.stack_runs_apex_first(stated) if stated is not None else None


def stated_orientation(loaded: LoadedImage) -> np.ndarray | None:
    """The scan's direction cosines (LPS) when they state its orientation: a DICOM series' (even when axial), or any
    oblique ones (a short-axis stack is oblique to every body axis). Axis-aligned directions in a NIfTI or NRRD file
    are as often a converter's default as a real axial, sagittal or coronal stack (research short-axis NIfTIs often
    carry their pixel sizes only), and say nothing; nor does a 2D image."""
    image = loaded.volume
    if image.GetDimension() != 3:
        return None
    matrix = geometry.direction_matrix(image)
    if "image_orientation" in loaded.dicom:
        return matrix
    return None if np.allclose(np.abs(matrix), np.round(np.abs(matrix)), atol=1e-3) else matrix


def imaged_slices(stack: np.ndarray) -> np.ndarray:
    """Which slices hold an image: a constant slice is a position no slice was acquired at (a gap the reader left
    empty, or a volume padded to a grid). The network reads the others, each between its imaged neighbours."""
    imaged = np.ptp(stack.reshape(len(stack), -1), axis=1) > 0
    if not imaged.any():
        raise InputError("every slice of this stack is blank (one value throughout): give the LGE images.")
    return imaged


LONG_AXIS_RATIO = 2.5  # median cavity aspect ratio: short-axis LVs read 1.0-1.3 (MyoPS labels), long-axis 2.5-4


def cavity_aspect_ratio(labels: np.ndarray) -> float | None:
    """Median over slices of the LV cavity's aspect ratio (long / short axis of its pixel spread)."""
    ratios = []
    for plane in labels:
        rows, cols = np.nonzero(plane == 1)
        if rows.size > 30:
            eigen = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])))
            ratios.append(np.sqrt(eigen[-1] / max(eigen[0], 1e-6)))
    return float(np.median(ratios)) if ratios else None


# Short-axis stacks lie 2-29 degrees from the LV's usual long axis (MyoPS's 30); an axial, sagittal or coronal stack
# (a whole-heart 3D LGE is often acquired so) lies 54.7 degrees from it whatever the patient, long-axis views near 90.
MAX_SHORT_AXIS_TILT_DEG = 45.0


def check_slice_plane(loaded: LoadedImage, drawn_by_reader: bool) -> list[str]:
    """By the scan's orientation, whether its slices are short-axis: refused (before any network runs) when they lie
    more than MAX_SHORT_AXIS_TILT_DEG from the LV's long axis; with the reader's own myocardium, %LGE stands and a
    warning says the AHA segments do not. Only a stated orientation is judged (`stated_orientation`)."""
    stated = stated_orientation(loaded)
    if stated is None:
        return []
    tilt = aha.degrees_from_long_axis(stated)
    if tilt <= MAX_SHORT_AXIS_TILT_DEG:
        return []
    plane = f"its slices lie {tilt:.0f} degrees from the LV's long axis (an axial, sagittal, coronal or long-axis stack)"
    if not drawn_by_reader:
        raise InputError(f"not a short-axis stack: {plane}; the networks and the AHA segments need short-axis slices: "
                         "give the short-axis series, or reformat this one to short axis (Slicer: Reformat).")
    return [f"{plane}: the AHA segments and transmurality assume short-axis slices and do not hold here; the %LGE does"]


def check_short_axis(labels: np.ndarray, drawn_by_reader: bool) -> list[str]:
    """A short-axis LV is a ring around a round cavity; a long-axis view shows an elongated one. Only a cavity the
    reader drew says which view this is (refused); an elongated cavity from the network says as often that the
    network failed on a real short-axis stack (4 of 30 MyoPS stacks): a warning then, never a refusal."""
    ratio = cavity_aspect_ratio(labels)
    if ratio is None or ratio <= LONG_AXIS_RATIO:
        return []
    if drawn_by_reader:
        raise InputError(f"the LV cavity in the given mask is elongated (aspect ratio {ratio:.1f}): this looks like a "
                         "long-axis view; give the short-axis stack.")
    return [f"the LV cavity found is elongated (aspect ratio {ratio:.1f}; a short-axis LV is round): the automatic "
            "segmentation failed on this stack, or it is a long-axis view; review the segmentation, or give "
            "--myocardium-mask"]


# The network reads each slice between its neighbours (2.5D); alone, a slice is read with itself as neighbours.
# On EMIDEC's 112 validation slices (`make bench`, "slices read alone"): myocardium Dice 0.77 read alone vs 0.83 in
# their stacks, scar pooled Dice 0.53 vs 0.61.
ONE_SLICE_WARNING = ("one slice: the network reads each slice with the slices above and below it, and reads a slice "
                     "alone less well (EMIDEC validation slices: myocardium Dice 0.77 alone, 0.83 in their stacks; "
                     "scar 0.53, 0.61); give the whole short-axis stack, or review the segmentation")


def run(loaded: LoadedImage, options, progress: Progress) -> ModuleResult:
    check_options(options)
    warnings = check_input(loaded) + check_slice_plane(loaded, drawn_by_reader=bool(options.myocardium_mask))
    stack, spacing, assumed = stack_of(loaded)
    if assumed:
        warnings.append(spacing_warning(spacing, loaded))
    labels, models, told, rv = segment(loaded, stack, spacing, options, progress.sub(0.0, 0.6))
    warnings += told
    if models and imaged_slices(stack).sum() == 1:  # a stack's blank positions are not read (imaged_slices)
        warnings.append(ONE_SLICE_WARNING)
    return quantify_labels(loaded, stack, spacing, assumed, labels, models, options, warnings, progress, rv)


def requantify(loaded: LoadedImage, labels: np.ndarray, options) -> ModuleResult:
    """Figures of a segmentation exactly as the reader left it (after Segment Editor edits): cavity, myocardium,
    scar and MVO are taken as drawn, nothing is re-thresholded. This is what the panel recomputes after every edit."""
    warnings = check_input(loaded) + check_slice_plane(loaded, drawn_by_reader=True)
    stack, spacing, assumed = stack_of(loaded)
    as_drawn = replace(options, method="model", myocardium_mask=None)
    return quantify_labels(loaded, stack, spacing, assumed, labels.reshape(stack.shape).astype(np.uint8), [],
                           as_drawn, warnings, Progress())


def edited_result(loaded: LoadedImage, label_map: np.ndarray, run_document: dict,
                  rv_insertion_point: str | None = None) -> ModuleResult:
    """The results of the segmentation as the reader left it, for Export: quantified as drawn (requantify) with
    the run's RV insertion and septum direction, or the insertion point the reader has moved since, and a warning
    that the figures come from the reader's edits."""
    settings = run_document["settings"]  # what the run found and used: its n, septum and insertion
    # The run's mask files (the reader's myocardium, a remote ROI) may be gone with the run's folder: the edited
    # segmentation is the myocardium now, and the remote region is found again in it.
    options = replace(ScarSettings.from_json(run_document.get("options")), n_sd=settings["n_sd"],
                      septum_direction=settings["septum_direction"],
                      rv_insertion=None if rv_insertion_point else settings["rv_insertion_deg"],
                      rv_insertion_point=rv_insertion_point, myocardium_mask=None, remote_mask=None)
    result = requantify(loaded, label_map, options)
    result.options = options.to_json()
    result.warnings.append("edited by the reader after the automatic run: the figures are recomputed from the edited "
                           "segmentation")
    return result


_INSERTION_SOURCE = {  # (basis, the scan has an orientation) -> the JSON's rv_insertion.source
    (aha.FROM_IMAGE, True): "automatic (the RV's side from the scan's orientation, its edge from the RV blood against "
                            "the septum)",
    (aha.FROM_IMAGE, False): "automatic (RV blood against the septum)",
    (aha.FROM_ORIENTATION, True): "automatic (the scan's orientation alone: no RV blood found against the septum)",
    (aha.ASSUMED, False): "default (no RV found: conventional display assumed)",
}


def rv_insertion(loaded: LoadedImage, stack, spacing, cavity, myocardium, options, warnings: list[str],
                 rv: np.ndarray | None = None) -> dict:
    """The anterior RV insertion and the septum direction: the reader's point or angle, else the edge of the RV the
    reader's labels hold (`rv`) against the septum, else estimated from the image (helped by the scan's orientation
    when it has one), else the conventional display's 60 degrees (with a warning). Also where to show it
    (`marker_ras`, on the epicardium of a mid slice)."""
    image, stated = loaded.volume, stated_orientation(loaded)
    prior = aha.orientation_prior(stated) if stated is not None else None
    apex_first = apex_end(loaded)
    direction = options.septum_direction or (prior[1] if prior else aha.DEFAULT_DIRECTION)
    if options.rv_insertion_point:
        point = markups.swap_lps_ras(markups.parse_point(str(options.rv_insertion_point), "--rv-insertion-point"))
        index = image.TransformPhysicalPointToContinuousIndex(point[:image.GetDimension()])
        angle = aha.angle_of_point(index[1], index[0], round(index[2]) if len(index) == 3 else 0, cavity, myocardium)
        source, basis = "reader's point", "reader"
    elif options.rv_insertion is not None:
        angle, source, basis = float(options.rv_insertion) % 360.0, "reader's angle", "reader"
    elif rv is not None and (from_rv := aha.insertion_of_rv_label(rv, cavity, myocardium, (spacing[1], spacing[0]),
                                                                  direction, apex_first)) is not None:
        angle, source, basis = from_rv, "the reader's RV label (its edge against the septum)", "reader"
    else:
        angle, basis = aha.automatic_rv_insertion(stack, cavity, myocardium, (spacing[1], spacing[0]), direction,
                                                  rv_side_deg=prior[0] if prior else None, apex_first=apex_first)
        source = _INSERTION_SOURCE[basis, prior is not None]
        if basis == aha.FROM_ORIENTATION:
            warnings.append("the RV insertion is where the scan's orientation puts it (no RV blood found against the "
                            "septum to place it): check it on a mid slice, and place the insertion point to correct "
                            "the AHA segments")
        elif basis == aha.ASSUMED:
            warnings.append("the RV insertion could not be found from the image: 60 degrees (conventional display) "
                            "assumed; place the insertion point to correct the AHA segments")
    row, col, k = aha.insertion_marker(angle, cavity, myocardium, apex_first)
    marker = list(image.TransformContinuousIndexToPhysicalPoint((col, row, k)[:image.GetDimension()]))
    return {"angle_deg": angle, "source": source, "basis": basis, "septum_direction": direction,
            "marker_ras": markups.swap_lps_ras(marker + [0.0] * (3 - len(marker)))}


def default_method(labels: np.ndarray, models: list) -> str:
    """--method auto: the scar the network found or the reader drew ("model"); n-SD for a reader's myocardium with
    no scar drawn. On the EMIDEC validation split the networks' scar gives %LGE r 0.95 against the experts, n-SD
    (5 SD, automatic remote) -0.22 (`make bench`), hence the network's scar first."""
    return "model" if models or (labels >= 3).any() else "nsd"


def quantify_labels(loaded, stack, spacing, assumed, labels, models, options, warnings, progress,
                    rv: np.ndarray | None = None) -> ModuleResult:
    myocardium = labels >= 2
    cavity = labels == 1
    if not myocardium.any():
        raise InputError("no LV myocardium found: check that this is a short-axis LGE stack through the LV, or give "
                         "--myocardium-mask.")
    warnings += check_short_axis(labels, drawn_by_reader=not models)
    progress.update(0.7, "thresholds")
    remote = None
    if options.remote_mask:
        remote_mask = read_one_structure(options.remote_mask, loaded.volume).reshape(stack.shape)
        remote = quantify.remote_from_mask(stack, remote_mask & myocardium)
    else:  # remote statistics also define the gray zone, whatever the method
        remote = quantify.automatic_remote(stack, myocardium, cavity)
    method = options.method if options.method != "auto" else default_method(labels, models)
    if method == "nsd":
        result = quantify.n_sd(stack, myocardium, remote, options.n_sd)
    elif method == "fwhm":
        result = quantify.fwhm(stack, myocardium, remote)
    else:
        if not models and not (labels >= 3).any() and options.myocardium_mask:
            warnings.append("method 'model' with a myocardium mask that holds no scar label: scar is empty")
        result = quantify.from_model(labels, stack, remote)
    figures = quantify.figures(result, myocardium, spacing)
    scar_total = result.scar | result.mvo
    insertion = rv_insertion(loaded, stack, spacing, cavity, myocardium, options, warnings, rv)
    apex_first = apex_end(loaded)
    segments = aha.segment_map(cavity, myocardium, insertion["angle_deg"], insertion["septum_direction"], apex_first)
    per_segment = aha.per_segment(segments, myocardium, scar_total, spacing)
    transmural = aha.transmurality(segments, myocardium, scar_total, cavity)
    for number, values in per_segment.items():
        values["transmurality_mean_percent"] = transmural[number]["mean"]
        values["transmurality_max_percent"] = transmural[number]["max"]
    if len(aha.slice_rings(cavity, myocardium, apex_first)) < 3:
        warnings.append("fewer than 3 slices with myocardium: AHA segments cover only the rings present")
    out_labels = np.where(cavity, 1, 0) + np.where(myocardium, 2, 0)
    out_labels[result.scar] = 3
    out_labels[result.mvo] = 4
    out_labels = out_labels.astype(np.uint8)
    progress.update(1.0, "done")
    summary = {**{k: v for k, v in figures.items()}, "method": result.method,
               "threshold": result.threshold, "remote": vars(result.remote) if result.remote else None,
               "aha_segments": per_segment, "territories": aha.territories(per_segment), "rv_insertion": insertion,
               "spacing_mm": list(spacing), "spacing_assumed": assumed}
    settings = {"method": method, "n_sd": options.n_sd, "rv_insertion_deg": insertion["angle_deg"],
                "rv_insertion_source": insertion["source"],
                "septum_direction": insertion["septum_direction"], "gray_zone": figures["gray_zone_definition"],
                "myocardium_source": "user mask" if not models else "network",
                "min_scar_component_ml": options.min_scar_ml if models else None}  # checked in segment()
    label_image = sitk.GetImageFromArray(out_labels if loaded.volume.GetDimension() == 3 else out_labels[0])
    label_image.CopyInformation(loaded.volume)
    rows = [{"segment": int(n), "name": v["name"], "myocardium_ml": v["myocardium_ml"], "scar_ml": v["scar_ml"],
             "lge_percent": v["lge_percent"], "transmurality_mean_percent": v["transmurality_mean_percent"]}
            for n, v in per_segment.items()]

    def report(path, warnings):
        from .report import draw_report

        draw_report(path, stack, out_labels, summary, warnings)

    return ModuleResult(module="scar", summary=summary, label_image=label_image, label_table=LABEL_TABLE,
                        table_rows=rows, settings=settings, models=models, warnings=warnings,
                        report=report)


def sample_input() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data" / "lge_phantom.nrrd"


def summary_line(result: ModuleResult) -> str:
    s = result.summary
    return (f"LGE {s['lge_percent']:.1f}% (scar {s['scar_ml']:.1f} mL + MVO {s['mvo_ml']:.1f} mL of "
            f"{s['myocardium_ml']:.1f} mL myocardium) [{s['method']}]; HCM >= 15%: {s['hcm_high_risk']}")


def sample_options() -> dict:
    """The bundled synthetic stack comes with the reader's LV mask (the network is trained on real EMIDEC
    images and is not meant for synthetic rings)."""
    return {"myocardium_mask": str(sample_input().with_name("lge_phantom_lv.nrrd"))}
