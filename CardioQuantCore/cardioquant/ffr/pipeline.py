"""CTFFR pipeline: coronary lumen -> vmtk centerlines -> tree and stenoses -> 0D hyperemic model -> FFR.

`cardioquant ffr INPUT [--lumen-mask M | --seeds S | --centerlines C.vtp] [--ostium x,y,z] [--aortic-pressure mmHg]
                 [--murray-exponent m] [--cardiac-output L/min] [--hyperemia-factor f] [--left-share s] [--side left|right]`
INPUT is the CTA, or directly a .vtp of vmtk-style centerlines (then the imaging steps are skipped). Lumen sources,
one per run: the user's lumen mask, seed points (ostium then distal ends), or by default the project's network,
which finds the left and right trees where they join the aorta; each tree gets its own inlet and flow share.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import budget, geometry, tissue
from ..errors import InputError
from ..imageio import LoadedImage, check_hounsfield, read_image, read_one_structure
from ..labels import ANATOMICAL_STRUCTURE, LabelTable, SegmentSpec
from ..markups import parse_point
from ..progress import Progress
from ..results import ModuleResult
from . import centerlines as cl
from .model import merge_results, solve_tree
from .physics import BoundaryConditions
from .settings import SETTINGS, FFRSettings  # noqa: F401  (SETTINGS: the Pipeline contract)
from .tree import Path as Centerline

TITLE = "CT-derived fractional flow reserve (CTFFR)"
ALLOW_2D = False
LABEL_TABLE = LabelTable([SegmentSpec(1, "coronary lumen", (0.9, 0.2, 0.2), ANATOMICAL_STRUCTURE,
                                      ("SCT", "41801008", "Coronary artery"), None, "coronary artery lumen"),
                         SegmentSpec(2, "aorta", (0.85, 0.5, 0.5), ANATOMICAL_STRUCTURE,
                                     ("SCT", "15825003", "Aorta"), None, "ascending aorta and root")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    FFRSettings.add_arguments(parser.add_argument_group("CT-FFR"))


def read_input(path: str, series: str | None = None) -> LoadedImage:
    """A .vtp is accepted as input on its own (no image); anything else is read as the CTA."""
    if str(path).lower().endswith(".vtp"):
        if not Path(path).is_file():
            raise InputError(f"input not found: {path}")
        return LoadedImage(image=None, path=str(path), format="vtp")
    return read_image(path, allow_2d=ALLOW_2D, series=series)


def boundary_conditions(options) -> BoundaryConditions:
    """The boundary conditions of the settings (their ranges are checked by FFRSettings.check)."""
    return BoundaryConditions(options.aortic_pressure, options.cardiac_output, options.hyperemia_factor,
                              options.left_share, options.murray_exponent, options.venous_pressure)


def _check_contrast(loaded: LoadedImage, lumen: np.ndarray) -> None:
    """The vessel lumen holds iodine (the scan itself was checked once by check_input, in get_trees)."""
    hu = sitk.GetArrayViewFromImage(loaded.volume)
    if lumen.any() and np.median(hu[lumen]) < 150:
        raise InputError(f"the vessel lumen reads {np.median(hu[lumen]):.0f} HU: this is not a contrast CTA "
                         "(iodine lumen expected above 150 HU).")


@dataclass
class Trees:
    """What the imaging steps hand to the flow model: centerline paths per coronary tree (side -> paths)."""
    paths: dict
    labels: np.ndarray | None   # label map on the CTA grid (1 lumen, 2 aorta) or None without imaging
    source: str
    details: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def get_trees(loaded: LoadedImage, options, progress: Progress) -> Trees:
    if loaded.format == "vtp":
        return Trees({options.side: cl.read_vtp(loaded.path)}, None, "centerlines file (input)")
    if options.centerlines:
        return Trees({options.side: cl.read_vtp(options.centerlines)}, None, "centerlines file (--centerlines)")
    checked = check_input(loaded)  # once, before any imaging work: its warnings go with the trees
    if options.lumen_mask:
        lumen = read_one_structure(options.lumen_mask, loaded.volume, called=(LABEL_TABLE.by_value(1).name,
                                                                             "coronary_arteries"))
        mask_image = geometry.image_from_array(lumen.astype(np.uint8), loaded.volume)
        _check_contrast(loaded, lumen)
        ostium = list(parse_point(options.ostium, "--ostium")) if options.ostium else None
        progress.update(0.2, "centerlines")
        paths = cl.from_lumen_mask(mask_image, ostium)
        return Trees({options.side: _named(paths, options.side)}, lumen.astype(np.uint8), "lumen mask + vmtk",
                     warnings=checked)
    if options.seeds:
        from .seeds import lumen_from_seeds, parse_seeds

        seeds = parse_seeds(options.seeds)
        progress.update(0.1, "lumen from seeds")
        mask_image, details = lumen_from_seeds(loaded.volume, seeds)
        progress.update(0.3, "centerlines")
        paths = cl.from_lumen_mask(mask_image, seeds[0], seeds[1:])
        return Trees({options.side: _named(paths, options.side)}, sitk.GetArrayFromImage(mask_image),
                     "seed points (minimal paths + half-maximum lumen) + vmtk", details, checked)
    trees = _trees_from_network(loaded, options, progress)
    trees.warnings[:0] = checked
    return trees


# Peak memory of the automatic path grows with the network's 0.5 mm grid: about 1 GB (libraries, the scan) plus
# 60 bytes per grid voxel (a 205 x 205 x 128 mm CTA, 43 million voxels, peaked at 3.2 GB in `make bench`; a whole
# 512 x 512 x 141 chest CT, 360 million, passed 18.5 GB before the heart was found first).
BASE_GB, BYTES_PER_GRID_VOXEL = 1.0, 60.0
HEART_MARGIN_MM = 15.0  # the coronaries run on the heart's surface; the region is grown by this much
# A heart-only reconstruction (no lungs around the heart to find it by) is 150-250 mm across; a scan wider than
# this in which no heart was found is not one (an abdominal CT, a limb): it is refused before the network runs.
HEART_ONLY_MAX_FOV_MM = 260.0


def network_region(image: sitk.Image, memory_limit_gb: float) -> tuple[sitk.Image, tuple[slice, ...]]:
    """The part of the CTA the lumen network reads, and where it lies in the scan (k, j, i slices): the heart
    region found as for calcium scoring (lungs, spine, sternum) grown by HEART_MARGIN_MM, so that a chest CT is not
    segmented whole; the whole scan where no heart is told apart (a heart-only reconstruction). InputError, before
    the network runs, when the heart's blood reads unenhanced (at most tissue.UNENHANCED_BLOOD_MAX_HU), when no
    heart is found in a field of view wider than a heart-only reconstruction, or when the
    region's 0.5 mm grid would need more than `memory_limit_gb`."""
    from ..calcium import anatomy
    from . import lumen_network

    try:
        heart = anatomy.find_heart(image, on_scan_grid=False)
    except InputError:  # no lungs around it: a heart-only field of view, read whole
        box = None
    else:
        if heart.blood_hu <= tissue.UNENHANCED_BLOOD_MAX_HU:  # refused before the network's minutes, not after
            raise InputError(f"the blood in the heart reads {heart.blood_hu:.0f} HU: this is not a contrast CTA (iodine-"
                             "enhanced blood reads 200-600 HU). CT-FFR needs a coronary CTA; or give --lumen-mask, "
                             "--seeds or --centerlines.")
        found_on = heart.grid if heart.grid is not None else image  # the grid its masks are on
        box = budget.box_around(geometry.image_from_array(heart.heart_region.astype(np.uint8), found_on), image,
                                HEART_MARGIN_MM)
    whole = box is None
    box = box or budget.Box((0, 0, 0), tuple(image.GetSize()))
    size_mm = box.size_mm(image)
    if whole and min(size_mm[:2]) > HEART_ONLY_MAX_FOV_MM:
        raise InputError(f"no heart in the field of view ({box.describe(image)}: wider than a heart-only "
                         "reconstruction, and no heart found between lungs): CT-FFR needs a coronary CTA of the heart; "
                         "crop it to the heart, or give --lumen-mask, --seeds or --centerlines.")
    voxels = float(np.prod([np.ceil(mm / lumen_network.GRID_MM) for mm in size_mm]))
    needed_gb = BASE_GB + BYTES_PER_GRID_VOXEL * voxels / 1e9
    if needed_gb > memory_limit_gb:
        where = "the whole scan (no heart found between lungs)" if whole else "the heart region"
        raise InputError(f"the coronary network would read {where}, {box.describe(image)}, needing about "
                         f"{needed_gb:.0f} GB (--memory-limit-gb {memory_limit_gb:g}): crop the CTA to the heart, "
                         "raise --memory-limit-gb, or give --lumen-mask, --seeds or --centerlines.")
    if whole:
        return image, box.slices_kji()
    return sitk.RegionOfInterest(image, box.size, box.index), box.slices_kji()


def _trees_from_network(loaded: LoadedImage, options, progress: Progress) -> Trees:
    from ..models.runtime import load_named_model, select_device
    from . import lumen_network

    # The network learnt CTAs in one orientation (its manifest's): every step reads the scan turned to it (the same
    # voxels, not interpolated) and the label map goes back to the file's own grid at the end.
    as_stored = loaded.volume
    loaded = replace(loaded, image=geometry.turned_to(as_stored, lumen_network.ORIENTATION))
    region, box = network_region(loaded.volume, budget.limit_gb(options))
    device = select_device(options.device)
    network, entry, _ = load_named_model(lumen_network.MODEL_NAME, options.weights, device)
    found = lumen_network.predict(region, network, device, tuple(entry.input["patch_size"]), progress.sub(0.0, 0.5))
    lumen, aorta = (np.zeros(sitk.GetArrayViewFromImage(loaded.volume).shape, np.bool_) for _ in range(2))
    lumen[box], aorta[box] = found
    _check_contrast(loaded, aorta)  # whatever the network calls aorta must hold iodine
    trees, left_out, aorta = lumen_network.split_trees(lumen, aorta, loaded.volume)
    labels = aorta.astype(np.uint8) * 2
    for tree in trees:
        tree_lumen = sitk.GetArrayViewFromImage(tree.mask) > 0
        _check_contrast(loaded, tree_lumen)
        labels[tree_lumen] = 1
    paths, untraced = traced_trees(trees, progress)
    details = {"trees": {t.side: {"ostium_ras": [round(float(v), 2) for v in t.ostium_ras],
                                  "lumen_ml": round(t.volume_ml, 3)} for t in trees},
               "lumen_left_out": left_out}
    warnings = [f"not modelled: {reason}" for reason in untraced]
    warnings += _left_out_warning(left_out, sum(tree.volume_ml for tree in trees))
    labels = sitk.GetArrayFromImage(geometry.turned_back(geometry.image_from_array(labels, loaded.volume), as_stored))
    return Trees(paths, labels, f"network {entry.name} {entry.version} + vmtk", details, warnings)


def traced_trees(trees, progress: Progress) -> tuple[dict, list[str]]:
    """(paths per side, why each tree that vmtk could not trace was left out). A tree that cannot be traced (vmtk
    stopping short of every outlet, on a lumen that is no coronary's) leaves the other tree to be modelled, with a
    warning; with none traced, InputError naming both."""
    paths, untraced = {}, []
    for n, tree in enumerate(trees):
        progress.update(0.5 + 0.1 * n, f"centerlines ({tree.side} tree)")
        try:
            paths[tree.side] = _named(cl.from_lumen_mask(tree.mask, tree.ostium_ras), tree.side)
        except InputError as exc:
            where = ", ".join(f"{v:.0f}" for v in tree.ostium_ras)
            untraced.append(f"the {tree.side} tree ({tree.volume_ml:.1f} mL of lumen from an ostium at RAS {where} "
                            f"mm): {exc}")
    if not paths:
        raise InputError("; ".join(untraced) + ". This may not be a coronary CTA in the arterial phase; give "
                                               "--lumen-mask, --seeds or --centerlines")
    return paths, untraced


# On the held-out generated CTAs the lumen the network finds beyond the trees is 0.01-0.14 mL, under a tenth of
# what the trees hold (2-3 mL); on the real non-gated chest CT resampled to 1 mm slices it was 24 mL in 835 pieces,
# 20 times the trees': most of what the network took for coronary lumen was elsewhere.
LEFT_OUT_WARNING = (2.0, 5.0)  # mL left out, and times the modelled trees' volume


def _left_out_warning(left_out: dict, modelled_ml: float) -> list[str]:
    """A warning when much more lumen-like volume joins no aortic root than the modelled trees hold."""
    volume = left_out["volume_ml"]
    if volume < LEFT_OUT_WARNING[0] or volume < LEFT_OUT_WARNING[1] * modelled_ml:
        return []
    return [f"the network found {volume:.1f} mL of coronary-lumen-like voxels in {left_out['pieces']} pieces joined to "
            f"no aortic root, {volume / max(modelled_ml, 1e-6):.0f} times the {modelled_ml:.1f} mL of the trees "
            "modelled: this may not be an ECG-gated coronary CTA in the arterial phase, or the segmentation failed; "
            "review the lumen before reading the FFR"]


def _named(paths: list, side: str) -> list:
    """Image-derived paths named by tree and length rank (left_1 is the longest path of the left tree)."""
    order = sorted(range(len(paths)), key=lambda n: -paths[n].arc_length()[-1])
    names = {index: f"{side}_{rank + 1}" for rank, index in enumerate(order)}
    return [Centerline(names[n], p.points, p.radii) for n, p in enumerate(paths)]


# A coronary CTA is reconstructed with thin slices (SCCT: 1 mm or less, 0.5-0.75 mm usual; 1.25 mm on older
# scanners). Thicker ones are a chest CT or a thick reconstruction: the coronary lumen, 1.5-4 mm across, is blurred
# over a slice and its radius, which enters resistance to the fourth power, is not measured. On the real 2.5 mm
# contrast chest CT here the automatic path, with the memory to run, put a "right ostium" 100 mm to the right of the
# midline and a distal FFR of 0.32 on it, with no warning.
MAX_SLICE_MM = 1.5
THIN_SLICE_MM = 1.0


def check_input(loaded: LoadedImage) -> list[str]:
    """A coronary CT angiogram in Hounsfield units with thin slices (a centerline file has no image to check); the
    warning for slices between THIN_SLICE_MM and MAX_SLICE_MM."""
    if loaded.image is None:
        return []
    if (loaded.modality or "CT").upper() != "CT":
        raise InputError(f"CT-FFR needs a coronary CT angiogram; this series is {loaded.modality}.")
    check_hounsfield(loaded.image, "CT-FFR", air_in_view=False)  # first: an MR series is not a CTA of thick slices
    return _check_slice_thickness(loaded)


def _check_slice_thickness(loaded: LoadedImage) -> list[str]:
    """InputError for slices over MAX_SLICE_MM; a warning for slices over THIN_SLICE_MM."""
    thickness = loaded.slice_thickness_mm
    if thickness > MAX_SLICE_MM:
        raise InputError(f"slices {thickness:.3g} mm thick: CT-FFR needs a coronary CTA reconstructed with thin slices "
                         f"(1 mm or less; 0.5-0.75 mm is usual), as the coronary lumen, 1.5-4 mm across, is not "
                         "measured on thicker ones; give the thin-slice series, or --centerlines.")
    if thickness > THIN_SLICE_MM:
        return [f"slices {thickness:.3g} mm thick, over the 1 mm a coronary CTA is reconstructed with: lumen radii, "
                "and so the FFR, are less certain"]
    return []


def check_options(settings: FFRSettings) -> None:
    settings.check()
    if settings.ostium:
        parse_point(settings.ostium, "--ostium")


def run(loaded: LoadedImage, options, progress: Progress) -> ModuleResult:
    check_options(options)
    bc = boundary_conditions(options)
    trees = get_trees(loaded, options, progress)
    warnings = trees.warnings
    progress.update(0.8, "hemodynamics")
    solved = {side: solve_tree(paths, bc, side=side, min_diameter_stenosis=options.min_stenosis)
              for side, paths in trees.paths.items()}
    result = merge_results(list(solved.values()))
    vessels = {}
    for path, ffr, distance in zip(result.paths, result.ffr, result.distance_mm, strict=True):
        vessels[path.name] = {"distal_ffr": float(ffr[-1]), "min_ffr": float(np.nanmin(ffr)),
                              "length_mm": float(distance[-1]), "ischaemic": bool(ffr[-1] <= 0.80),
                              "points": [[round(float(d), 2), round(float(f), 4)] for d, f in zip(distance, ffr, strict=True)]}
    progress.update(1.0, "done")
    sides = list(solved)
    summary = {"vessels": vessels, "lesions": result.lesions,
               "boundary_conditions": {**asdict(bc), "coronary_resistance_rest": bc.coronary_resistance_rest(),
                                       "tree_resistance_hyperemic": {s: bc.tree_resistance(s) for s in sides},
                                       "side": "+".join(sides), "units": "CGS (dyn s/cm^5); pressures mmHg"},
               "inlet_flow_ml_s": {s: r.inlet_flow_ml_s for s, r in solved.items()},
               "outlet_flows_ml_s": {s: r.outlet_flow_ml_s for s, r in solved.items()},
               "source": trees.source}
    if trees.details:
        summary["imaging"] = trees.details
    settings = {"source": trees.source, "min_stenosis_percent": options.min_stenosis, "element_length_mm": 5.0,
                "stenosis_model": "Young-Tsai (Kv, Kt=1.52) in lesions, integrated Poiseuille elsewhere",
                "blood": {"density_g_cm3": 1.06, "viscosity_poise": 0.04}}
    rows = [{"vessel": name, "distal_ffr": v["distal_ffr"], "min_ffr": v["min_ffr"], "length_mm": v["length_mm"],
             "ischaemic": "yes" if v["ischaemic"] else "no"} for name, v in vessels.items()]
    label_image = None
    if trees.labels is not None:
        label_image = sitk.GetImageFromArray(trees.labels.astype(np.uint8))
        label_image.CopyInformation(loaded.volume)

    def report(path, warnings):
        from .report import draw_report

        draw_report(path, result, summary, warnings)

    def centerlines_file(path):
        cl.write_vtp(result.paths, path, {"FFR": result.ffr,
                                          "Pressure_mmHg": [f * bc.aortic_pressure_mmhg for f in result.ffr]})

    def surface_file(path):
        lumen = sitk.Cast(label_image == 1, sitk.sitkUInt8)
        cl.write_polydata(cl.surface_with_values(lumen, result.paths, {"FFR": result.ffr}), path)

    extra = {"ffr_centerlines.vtp": centerlines_file}
    if label_image is not None:
        extra["ffr_surface.vtp"] = surface_file
    return ModuleResult(module="ffr", summary=summary, label_image=label_image, label_table=LABEL_TABLE,
                        table_rows=rows, settings=settings, warnings=warnings, report=report, extra_outputs=extra)


def sample_input() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data" / "coronary_centerlines.vtp"


def sample_options() -> dict:
    return {}


def summary_line(result: ModuleResult) -> str:
    vessels = result.summary["vessels"]
    worst = min(vessels.items(), key=lambda item: item[1]["distal_ffr"])
    lesions = result.summary["lesions"]
    return (f"{len(vessels)} vessels, lowest distal FFR {worst[1]['distal_ffr']:.2f} ({worst[0]}); "
            f"{len(lesions)} lesion(s)" + (f", worst {max(les['area_stenosis_percent'] for les in lesions):.0f}% area"
                                          if lesions else ""))
