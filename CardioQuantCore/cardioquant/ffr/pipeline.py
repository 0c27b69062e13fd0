"""CTFFR pipeline: centerlines (given, or from a lumen mask) -> tree and stenoses -> 0D hyperemic model -> FFR.

`cardioquant ffr INPUT [--lumen-mask M] [--centerlines C.vtp] [--ostium x,y,z] [--aortic-pressure mmHg]
                 [--murray-exponent m] [--cardiac-output L/min] [--hyperemia-factor f] [--left-share s] [--side left|right]`
INPUT is the CTA, or directly a .vtp of vmtk-style centerlines (then the imaging steps are skipped).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..imageio import LoadedImage, read_image, read_mask
from ..labels import ANATOMICAL_STRUCTURE, LabelTable, SegmentSpec
from ..progress import Progress
from ..results import ModuleResult
from . import centerlines as cl
from .model import solve_tree
from .physics import BoundaryConditions

TITLE = "CT-derived fractional flow reserve (CTFFR)"
ALLOW_2D = False
LABEL_TABLE = LabelTable([SegmentSpec(1, "coronary lumen", (0.9, 0.2, 0.2), ANATOMICAL_STRUCTURE,
                                      ("SCT", "41801008", "Coronary artery"), None, "coronary artery lumen")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bc = BoundaryConditions()
    group = parser.add_argument_group("CT-FFR")
    group.add_argument("--lumen-mask", help="coronary lumen segmentation (one tree from one ostium)")
    group.add_argument("--centerlines", help="vmtk-style centerlines .vtp (MaximumInscribedSphereRadius in mm)")
    group.add_argument("--ostium", help="inlet point x,y,z (RAS mm); default: the widest end of the lumen")
    group.add_argument("--side", choices=("left", "right"), default="left", help="coronary tree [left]")
    group.add_argument("--aortic-pressure", type=float, default=bc.aortic_pressure_mmhg,
                       help=f"mean aortic pressure, mmHg [{bc.aortic_pressure_mmhg:g}]")
    group.add_argument("--cardiac-output", type=float, default=bc.cardiac_output_l_min,
                       help=f"cardiac output, L/min [{bc.cardiac_output_l_min:g}]")
    group.add_argument("--hyperemia-factor", type=float, default=bc.hyperemia_factor,
                       help=f"hyperemic / resting microvascular resistance [{bc.hyperemia_factor:g}]")
    group.add_argument("--left-share", type=float, default=bc.left_share, help=f"left share of coronary flow [{bc.left_share:g}]")
    group.add_argument("--murray-exponent", type=float, default=bc.murray_exponent,
                       help=f"outlet flow split exponent m [{bc.murray_exponent:g}]")
    group.add_argument("--venous-pressure", type=float, default=bc.venous_pressure_mmhg, help="mmHg [0]")
    group.add_argument("--min-stenosis", type=float, default=20.0, help="lesions: minimum diameter stenosis %% [20]")


def read_input(path: str) -> LoadedImage:
    """A .vtp is accepted as input on its own (no image); anything else is read as the CTA."""
    if str(path).lower().endswith(".vtp"):
        if not Path(path).is_file():
            raise InputError(f"input not found: {path}")
        return LoadedImage(image=None, path=str(path), format="vtp")
    return read_image(path)


def boundary_conditions(options) -> BoundaryConditions:
    bc = BoundaryConditions(options.aortic_pressure, options.cardiac_output, options.hyperemia_factor,
                            options.left_share, options.murray_exponent, options.venous_pressure)
    if not 40 <= bc.aortic_pressure_mmhg <= 200:
        raise InputError("--aortic-pressure must be a mean arterial pressure in mmHg (40-200)")
    if not 0 < bc.hyperemia_factor <= 1 or not 0 < bc.left_share < 1 or bc.cardiac_output_l_min <= 0:
        raise InputError("boundary-condition settings out of range (hyperemia factor 0-1, left share 0-1, CO > 0)")
    return bc


def _check_contrast(loaded: LoadedImage, lumen: np.ndarray) -> None:
    if loaded.image is None:
        return
    hu = sitk.GetArrayViewFromImage(loaded.image)
    if (loaded.modality or "CT").upper() != "CT":
        raise InputError(f"CT-FFR needs a coronary CT angiogram; this series is {loaded.modality}.")
    if lumen.any() and np.median(hu[lumen]) < 150:
        raise InputError(f"the lumen reads {np.median(hu[lumen]):.0f} HU: this is not a contrast CTA (iodine lumen "
                         "expected above 150 HU).")


def get_paths(loaded: LoadedImage, options, progress: Progress):
    """(paths, lumen mask array or None, source)."""
    if loaded.format == "vtp":
        return cl.read_vtp(loaded.path), None, "centerlines file (input)"
    if options.centerlines:
        return cl.read_vtp(options.centerlines), None, "centerlines file (--centerlines)"
    if options.lumen_mask:
        mask_image = read_mask(options.lumen_mask, loaded.image)
        lumen = sitk.GetArrayFromImage(mask_image) > 0
        _check_contrast(loaded, lumen)
        ostium = [float(v) for v in options.ostium.split(",")] if options.ostium else None
        progress.update(0.2, "centerlines")
        return cl.from_lumen_mask(sitk.Cast(mask_image > 0, sitk.sitkUInt8), ostium), lumen, "lumen mask + vmtk"
    raise InputError("automatic coronary lumen segmentation is not available in this version: give --lumen-mask "
                     "(a lumen segmentation) or --centerlines (a vmtk .vtp), or pass the .vtp as INPUT.")


def run(loaded: LoadedImage, options, progress: Progress) -> ModuleResult:
    bc = boundary_conditions(options)
    paths, lumen, source = get_paths(loaded, options, progress)
    progress.update(0.6, "hemodynamics")
    result = solve_tree(paths, bc, side=options.side, min_diameter_stenosis=options.min_stenosis)
    vessels = {}
    for path, ffr, distance in zip(result.paths, result.ffr, result.distance_mm, strict=True):
        vessels[path.name] = {"distal_ffr": float(ffr[-1]), "min_ffr": float(np.nanmin(ffr)),
                              "length_mm": float(distance[-1]), "ischaemic": bool(ffr[-1] <= 0.80),
                              "points": [[round(float(d), 2), round(float(f), 4)] for d, f in zip(distance, ffr, strict=True)]}
    progress.update(1.0, "done")
    summary = {"vessels": vessels, "lesions": result.lesions,
               "boundary_conditions": {**asdict(bc), "coronary_resistance_rest": bc.coronary_resistance_rest(),
                                       "tree_resistance_hyperemic": bc.tree_resistance(options.side),
                                       "side": options.side, "units": "CGS (dyn s/cm^5); pressures mmHg"},
               "inlet_flow_ml_s": result.inlet_flow_ml_s, "outlet_flows_ml_s": result.outlet_flow_ml_s, "source": source}
    settings = {"source": source, "min_stenosis_percent": options.min_stenosis, "element_length_mm": 5.0,
                "stenosis_model": "Young-Tsai (Kv, Kt=1.52) in lesions, integrated Poiseuille elsewhere",
                "blood": {"density_g_cm3": 1.06, "viscosity_poise": 0.04}}
    rows = [{"vessel": name, "distal_ffr": v["distal_ffr"], "min_ffr": v["min_ffr"], "length_mm": v["length_mm"],
             "ischaemic": "yes" if v["ischaemic"] else "no"} for name, v in vessels.items()]
    label_image = None
    if lumen is not None:
        label_image = sitk.GetImageFromArray(lumen.astype(np.uint8))
        label_image.CopyInformation(loaded.image)

    def report(path):
        from .report import draw_report

        draw_report(path, result, summary)

    def centerlines_file(path):
        cl.write_vtp(result.paths, path, {"FFR": result.ffr,
                                          "Pressure_mmHg": [f * bc.aortic_pressure_mmhg for f in result.ffr]})

    return ModuleResult(module="ffr", summary=summary, label_image=label_image, label_table=LABEL_TABLE,
                        table_rows=rows, settings=settings, report=report,
                        extra_outputs={"ffr_centerlines.vtp": centerlines_file})


def sample_input() -> Path:
    return Path(__file__).resolve().parents[1] / "sample_data" / "coronary_centerlines.vtp"


def summary_line(result: ModuleResult) -> str:
    vessels = result.summary["vessels"]
    worst = min(vessels.items(), key=lambda item: item[1]["distal_ffr"])
    lesions = result.summary["lesions"]
    return (f"{len(vessels)} vessels, lowest distal FFR {worst[1]['distal_ffr']:.2f} ({worst[0]}); "
            f"{len(lesions)} lesion(s)" + (f", worst {max(les['area_stenosis_percent'] for les in lesions):.0f}% area"
                                          if lesions else ""))
