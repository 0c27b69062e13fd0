"""One-page calcium report: lesion thumbnails coloured by artery, per-artery table, total, risk, settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap

from .. import report as page


def _colour(value: int):
    from .pipeline import LABEL_TABLE

    return LABEL_TABLE.by_value(value).color


def draw_report(path, loaded, artery_labels, result, summary, settings, models, warnings=()) -> None:
    hu = loaded.array()
    spacing = loaded.image.GetSpacing()
    # The file's own name only: folder names often carry the patient's name.
    figure = page.new_page("Coronary artery calcium", f"{Path(loaded.path.rstrip('/')).name} - mode: "
                                                      f"{summary['mode']} - assignment: {summary['assignment']}")
    _draw_thumbnails(figure, hu, artery_labels, result, spacing)
    table_ax = figure.add_axes([0.05, 0.28, 0.9, 0.22])
    rows = []
    for name, values in summary["arteries"].items():
        if values.get("scored_with"):  # the automatic path's left main: its calcium is in that artery's row
            rows.append([name] + [f"with {values['scored_with']}"] * 4)
            continue
        rows.append([name, f"{values['agatston']:.1f}", f"{values['volume_mm3']:.1f}",
                     "-" if values["mass_mg"] is None else f"{values['mass_mg']:.2f}", values["lesions"]])
    total = summary["total"]
    rows.append(["Total", f"{total['agatston']:.1f}", f"{total['volume_mm3']:.1f}",
                 "-" if total["mass_mg"] is None else f"{total['mass_mg']:.2f}", len(summary["lesions"])])
    page.draw_table(table_ax, rows, ["Artery", "Agatston" if summary["mode"] == "noncontrast" else "Agatston-eq.",
                                     "Volume (mm3)", "Mass (mg)", "Lesions"])
    figure.text(0.05, 0.26, f"Risk category: {summary['risk']['classic']}    CAC-DRS: {summary['risk']['cac_drs']}",
                fontsize=12, weight="bold", va="top")
    settings_text = (f"threshold {settings['boundaries_hu'][0]:.0f} HU ({summary['threshold']['method']}), kVp "
                     f"{summary['kvp']:g}, min area {settings['min_area_pixels']} px, connectivity "
                     f"{settings['connectivity']}, increment factor {settings['increment_factor']:.3f}")
    figure.text(0.05, 0.22, "Method: " + summary["method"], fontsize=7.5, va="top", wrap=True)
    lumen = summary["threshold"].get("lumen")
    if lumen:  # CTA: what the threshold was measured on (an aortic ROI, the reader's mask, or the heart's blood)
        settings_text += f"; lumen {lumen['mean_hu']:.0f} +- {lumen['sd_hu']:.0f} HU from the {lumen['source']}"
    figure.text(0.05, 0.19, "Settings: " + settings_text, fontsize=7.5, va="top", wrap=True)
    heart = summary.get("heart")
    scan = summary.get("scan_type") or {}
    heart_text = (f"Heart search region {heart['volume_ml']:.0f} mL ({heart['method']}), outlined above; "
                  f"great vessels found above the heart: {len(heart.get('great_vessels', []))}" if heart
                  else "No heart search region (semi-automatic)")
    flagged = sum(1 for lesion in summary["lesions"] if lesion.get("review"))
    figure.text(0.05, 0.16, f"Scan type: {summary['mode']} ({scan.get('decided_by', '')})", fontsize=7.5, va="top")
    figure.text(0.05, 0.14, heart_text, fontsize=7.5, va="top")
    figure.text(0.05, 0.12, f"Lesions flagged for review (artery assignment uncertain): {flagged}", fontsize=7.5,
                va="top")
    noise = summary["threshold"].get("noise")
    if noise and noise.get("set_aside"):
        figure.text(0.05, 0.10, f"Noisy scan: {noise['set_aside']} candidate(s) under the noise floor of "
                                f"{noise['floor_hu']:.0f} HU (blood {noise['blood_hu']:.0f} HU + {noise['floor_sd']:g} x "
                                f"{noise['noise_sd_hu']:.0f} HU noise SD over 1 mm2)", fontsize=7.5, va="top",
                    color="darkred")
        figure.text(0.05, 0.085, "were not scored: they could be noise; they are in the 'not coronary' segment for "
                                 "review", fontsize=7.5, va="top", color="darkred")
    if heart:
        _draw_heart_region(figure, hu, artery_labels, spacing)
    model_text = "; ".join(f"{m['name']} {m['version']} ({m.get('note') or 'trained on ' + m['training_data'][:80]})"
                           for m in models) or "none"
    page.footer(figure, [f"Model: {model_text}"])
    page.save_page(figure, path, warnings)


def _draw_heart_region(figure, hu, labels, spacing):
    """The slice through the middle of the searched region, the region outlined: what was searched."""
    from .pipeline import HEART_REGION

    region = (labels == HEART_REGION) | ((labels >= 1) & (labels <= 4)) | (labels == 8)
    slices = np.nonzero(region.any(axis=(1, 2)))[0]
    if not slices.size:
        return
    k = int(slices[slices.size // 2])
    ax = figure.add_axes([0.66, 0.262, 0.29, 0.105])  # the band under the artery table
    ax.imshow(hu[k], cmap="gray", vmin=-300, vmax=600, aspect=spacing[1] / spacing[0])
    ax.contour(region[k], levels=[0.5], colors=[_colour(HEART_REGION)], linewidths=0.8)
    ax.set_title(f"heart search region (slice {k})", fontsize=6.5, pad=2)
    ax.axis("off")


def _draw_thumbnails(figure, hu, artery_labels, result, spacing, n=6):
    """The n highest-scoring lesions, each on its largest slice: every scored voxel coloured by artery, the titled
    lesion outlined (neighbouring lesions of a calcified bifurcation share a thumbnail)."""
    lesions = sorted(result.lesions, key=lambda les: -les.agatston)[:n]
    half = [max(8, int(round(20.0 / s))) for s in spacing[:2]]  # 40 mm field of view per thumbnail
    colours = ListedColormap([(0, 0, 0, 0)] + [(*_colour(v), 0.65) for v in range(1, 6)])
    voxels = lesion_voxels(lesions, result.scored_mask, artery_labels)
    for index in range(n):
        ax = figure.add_axes([0.05 + (index % 3) * 0.31, 0.72 - (index // 3) * 0.2, 0.27, 0.18])
        ax.axis("off")
        if index >= len(lesions):
            if index == 0:
                ax.text(0.5, 0.5, "no coronary calcium found", ha="center", va="center", fontsize=11)
            continue
        lesion = lesions[index]
        kk, jj, ii = voxels[lesion.id]
        k = int(np.bincount(kk).argmax())
        i, j = (int(round(c)) for c in lesion.centroid_ijk[:2])
        j0, j1 = max(j - half[1], 0), min(j + half[1], hu.shape[1])
        i0, i1 = max(i - half[0], 0), min(i + half[0], hu.shape[2])
        ax.imshow(hu[k, j0:j1, i0:i1], cmap="gray", vmin=-200, vmax=800, aspect=spacing[1] / spacing[0])
        ax.imshow(np.where(result.scored_mask[k, j0:j1, i0:i1], artery_labels[k, j0:j1, i0:i1], 0), cmap=colours,
                  vmin=0, vmax=5, interpolation="nearest", aspect=spacing[1] / spacing[0])
        own = np.zeros((j1 - j0, i1 - i0), bool)
        here = (kk == k) & (jj >= j0) & (jj < j1) & (ii >= i0) & (ii < i1)
        own[jj[here] - j0, ii[here] - i0] = True
        if own.any():
            ax.contour(own, levels=[0.5], colors="yellow", linewidths=0.9)
        flag = " - REVIEW" if getattr(lesion, "review", None) else ""
        ax.set_title(f"#{lesion.id} {lesion.artery}: {lesion.agatston:.1f} (slice {k}){flag}", fontsize=8,
                     color="darkred" if flag else "black")


def lesion_voxels(lesions, scored_mask, artery_labels) -> dict:
    """Lesion id -> the (k, j, i) indices of its voxels: the 26-connected group of its artery's scored voxels (as
    scoring groups a lesion) whose centre is the lesion's. Labelled inside the artery's bounding box: a chest CT's
    whole grid would cost hundreds of MB per artery."""
    from scipy import ndimage

    voxels = {}
    for value in {lesion.label for lesion in lesions}:
        mask = scored_mask & (artery_labels == value)
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        start = np.array([axis.start for axis in box])
        groups, count = ndimage.label(mask[box], structure=np.ones((3, 3, 3), bool))
        centres = np.array(ndimage.center_of_mass(groups > 0, groups, range(1, count + 1))).reshape(-1, 3) + start
        for lesion in (les for les in lesions if les.label == value):
            nearest = int(np.argmin(np.linalg.norm(centres - np.array(lesion.centroid_ijk[::-1]), axis=1))) + 1
            voxels[lesion.id] = tuple(axis + offset for axis, offset in zip(np.nonzero(groups == nearest), start,
                                                                            strict=True))
    return voxels
