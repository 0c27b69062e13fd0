"""One-page BMD report: sagittal view with levels and ROIs, per-vertebra table, patient category."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.colors import ListedColormap

from .. import report as page
from .morphometry import OUTLINE_TOLERANCE_MM
from .pipeline import category_caveat


def draw_report(path, hu, spacing, labels, summary, warnings=()) -> None:
    from .pipeline import BODY_VALUE, ROI_VALUE

    patient = summary["patient"]
    # The source without its level rule, which is written out in full beside the figures (it overran the page).
    rule = (summary.get("level_naming") or {}).get("rule")
    source = summary["source"].removesuffix(f" ({rule})") if rule else summary["source"]
    figure = page.new_page("Vertebral bone mineral density",
                           f"calibration: {summary['calibration']['method']} - vertebrae: {source}")
    ax = figure.add_axes([0.05, 0.45, 0.42, 0.47])
    # The sagittal slice through the bodies' mean column, from per-column counts (np.nonzero on a whole chest CT
    # took a second).
    is_body = np.zeros(max(int(labels.max()), max(ROI_VALUE.values())) + 1, bool)
    is_body[[*BODY_VALUE.values(), *ROI_VALUE.values()]] = True
    per_column = is_body[labels].sum(axis=(0, 1))
    i = (int(np.round(per_column @ np.arange(per_column.size) / per_column.sum())) if per_column.any()
         else hu.shape[2] // 2)
    sagittal = hu[:, :, i]
    overlay = np.where(np.isin(labels[:, :, i], list(ROI_VALUE.values())), 2,
                       np.where(np.isin(labels[:, :, i], list(BODY_VALUE.values())), 1, 0))
    ax.imshow(sagittal, cmap="gray", vmin=-250, vmax=800, origin="lower", aspect=spacing[2] / spacing[1])
    ax.imshow(overlay, cmap=ListedColormap([(0, 0, 0, 0), (1.0, 0.6, 0.2, 0.35), (0.2, 0.5, 1.0, 0.7)]), vmin=0, vmax=2,
              origin="lower", aspect=spacing[2] / spacing[1], interpolation="nearest")
    for level in summary["vertebrae"]:
        ks, js = np.nonzero(labels[:, :, i] == BODY_VALUE[level])
        if ks.size:
            ax.text(js.min() - 3, ks.mean(), level, color="yellow", fontsize=8, ha="right", va="center")
    ax.set_title("sagittal, bodies (orange) and trabecular ROIs (blue)", fontsize=8)
    ax.axis("off")
    if patient["bmd_mg_cm3"] is None:
        figure.text(0.52, 0.88, "Patient BMD: not determined", fontsize=13, weight="bold", va="top")
        figure.text(0.52, 0.84, textwrap.fill(patient.get("reason", ""), 60), fontsize=10, va="top")
    else:
        figure.text(0.52, 0.88, f"Patient BMD: {patient['bmd_mg_cm3']:.1f} mg/cm3", fontsize=13, weight="bold",
                    va="top")
        undetermined = "" if patient.get("level_determined", True) else " (level not determined)"
        figure.text(0.52, 0.84, f"levels {', '.join(patient['levels'])}{undetermined}", fontsize=11, va="top")
        figure.text(0.52, 0.815, f"ACR category: {patient['acr_category']}", fontsize=11, va="top")
        if category_caveat(patient):  # not from named lumbar bodies (the warning says which)
            figure.text(0.52, 0.792, "defined on L1-L2: read the category with care", fontsize=8, color="darkred",
                        va="top")
    if "pickhardt" in patient:
        flags = patient["pickhardt"]
        figure.text(0.52, 0.77, textwrap.fill(f"L1 {flags['l1_hu']:.0f} HU (Pickhardt: <=160 sensitive, <=110 specific "
                                              "for osteoporosis)", 60), fontsize=8, va="top")
    if summary["contrast_enhanced"]:
        figure.text(0.52, 0.745, "Contrast-enhanced scan: BMD biased upwards", fontsize=9, color="darkred", va="top")
    if rule:
        figure.text(0.52, 0.72, textwrap.fill(f"Levels: {rule}", 70), fontsize=7.5, va="top")
    table_ax = figure.add_axes([0.05, 0.12, 0.9, 0.3])
    rows = [[level, f"{v['trabecular_hu']:.1f}", f"{v['bmd_mg_cm3']:.1f}", f"{v['roi_volume_ml']:.2f}",
             "part (cut)" if v.get("cut_by_field_of_view") else "whole", _genant_heights(v), _plausible(v)]
            for level, v in summary["vertebrae"].items()]
    page.draw_table(table_ax, rows, ["Level", "Trabecular HU", "BMD (mg/cm3)", "ROI (mL)", "Body in view",
                                     "A/M/P (mm)", "Plausible"])
    refs = ", ".join(f"{t} {r['measured_hu']:.0f} HU{_counted(r)}" for t, r in summary["calibration"]["references"].items())
    page.footer(figure, [f"References: {refs or 'phantom'}; kVp {summary['kvp']:g}",
                         "ACR QCT: >120 normal, 80-120 osteopenia, <80 osteoporosis (mg/cm3). Nominal tissue HU and "
                         "HA slopes are literature-typical, unverified settings.",
                         "A/M/P: Genant's body heights along the spine; * read between the end plates the scan shows, "
                         f"where the body's outline was more than {OUTLINE_TOLERANCE_MM:g} mm off them."])
    page.save_page(figure, path, warnings)


def _genant_heights(vertebra: dict) -> str:
    """Genant's anterior / middle / posterior heights of a body, each read between the end plates on the scan marked
    '*' (the others are the outline's), or a dash when they could not be read."""
    heights = vertebra.get("body_heights_mm")
    on_scan = vertebra.get("body_heights_read_on_scan") or ()
    return "/".join(f"{heights[part]:.0f}" + ("*" if part in on_scan else "")
                    for part in ("anterior", "middle", "posterior")) if heights else "-"


def _plausible(vertebra: dict) -> str:
    """The table's verdict on a vertebra: a possible fracture by its kind, so that the reader reviews it."""
    if vertebra.get("possible_fracture"):
        return f"{vertebra.get('possible_fracture_kind') or 'possible'} fracture?"
    return "yes" if vertebra.get("plausible", True) else "doubtful"


def _counted(reference: dict) -> str:
    """How a reference counted in the calibration line, when not fully: left out, or its weight."""
    weight = reference.get("weight", 1.0)
    return " (left out)" if not reference.get("used", True) else "" if weight >= 0.95 else f" (weight {weight:.2f})"
