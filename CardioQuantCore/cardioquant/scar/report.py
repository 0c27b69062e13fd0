"""One-page scar report: mid-ventricular slice with overlays, AHA bull's-eye of %LGE, figures."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap

from .. import report as page

METHOD_NAMES = {"model": "scar as segmented (the network's, or the reader's labels)",
                "nsd": "n-SD: signal above the remote myocardium's mean + n SD",
                "fwhm": "FWHM: signal above half the scar's maximum"}
NOT_IMAGED = (0.85, 0.85, 0.85)  # a segment with no imaged myocardium (e.g. the apex of a short stack)


def bullseye(ax, values: dict, title: str = "%LGE per AHA segment") -> None:
    """Standard 17-segment bull's-eye: rings basal (outer) to apex (centre), segment 1 at the top."""
    import matplotlib as mpl

    cmap, norm = mpl.colormaps["inferno"], mpl.colors.Normalize(0, 100)
    ax.set_aspect("equal")
    ax.axis("off")
    rings = [(1, 6, 1.0, 0.75), (7, 6, 0.75, 0.5), (13, 4, 0.5, 0.25)]
    for first, count, outer, inner in rings:
        width = 360 / count
        # The anterior segment (1, 7, 13) is centred at the top; the septal ones follow counter-clockwise (to the
        # viewer's left), as in the AHA bull's-eye.
        for n in range(count):
            segment = first + n
            theta1 = 90 - width / 2 + n * width
            value = values.get(str(segment))
            colour = cmap(norm(value)) if value is not None else NOT_IMAGED
            ax.add_patch(mpl.patches.Wedge((0, 0), outer, theta1, theta1 + width, width=outer - inner,
                                           facecolor=colour, edgecolor="white"))
            mid = np.radians(theta1 + width / 2)
            r = (outer + inner) / 2
            ax.text(r * np.cos(mid), r * np.sin(mid), f"{segment}\n{'' if value is None else f'{value:.0f}%'}",
                    ha="center", va="center", fontsize=6.5, color=legible_on(colour))
    value = values.get("17")
    colour = cmap(norm(value)) if value is not None else NOT_IMAGED
    ax.add_patch(mpl.patches.Circle((0, 0), 0.25, facecolor=colour, edgecolor="white"))
    ax.text(0, 0, f"17\n{'' if value is None else f'{value:.0f}%'}", ha="center", va="center", fontsize=6.5,
            color=legible_on(colour))
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(title, fontsize=9)
    bar = ax.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, orientation="horizontal",
                             fraction=0.05, pad=0.02, shrink=0.7)
    bar.set_label("%LGE of the segment's myocardium (grey: not imaged)", fontsize=7)
    bar.ax.tick_params(labelsize=7)


def legible_on(background) -> str:
    """Black or white text, whichever reads on `background` (RGB(A), 0-1): on the colour map's dark end a 0 %
    segment is near black, and black text on it was invisible."""
    red, green, blue = background[:3]
    return "white" if 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.5 else "black"


def around_the_heart(labels: np.ndarray, margin_share: float = 0.6, least_pixels: int = 48) -> tuple[slice, slice]:
    """The rows and columns of a slice to show: the labelled pixels' box (LV cavity and myocardium) grown by
    `margin_share` of its larger side on each side, at least `least_pixels` across, within the image; the whole
    slice when nothing is labelled. A whole MyoPS field of view shows the LV at a tenth of its width, too small
    to judge the scar's edges on."""
    rows, cols = np.nonzero(labels)
    if rows.size == 0:
        return slice(0, labels.shape[0]), slice(0, labels.shape[1])
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    half = max(int(round(side * (0.5 + margin_share))), least_pixels // 2)
    window = []
    for centre, size in ((rows.min() + rows.max()) // 2, labels.shape[0]), ((cols.min() + cols.max()) // 2, labels.shape[1]):
        window.append(slice(max(int(centre) - half, 0), min(int(centre) + half + 1, size)))
    return window[0], window[1]


def draw_report(path, stack, labels, summary, warnings=()) -> None:
    figure = page.new_page("Myocardial scar (LGE)", f"method: {METHOD_NAMES.get(summary['method'], summary['method'])}"
                           + (f" - threshold {summary['threshold']:.1f}" if summary["threshold"] is not None else ""))
    with_myo = [k for k in range(labels.shape[0]) if (labels[k] >= 2).any()]
    k = with_myo[len(with_myo) // 2] if with_myo else 0
    ax = figure.add_axes([0.05, 0.52, 0.42, 0.38])
    rows, cols = around_the_heart(labels[k])
    ax.imshow(stack[k][rows, cols], cmap="gray")
    ax.imshow(labels[k][rows, cols], cmap=ListedColormap([(0, 0, 0, 0), (1, 0.3, 0.3, 0.25), (0.9, 0.7, 0.5, 0.35), (1, 1, 0.2, 0.6),
                                              (0.2, 0.3, 1, 0.7)]), vmin=0, vmax=4, interpolation="nearest")
    ax.set_title(f"slice {k}: LV cavity (red), myocardium (tan), scar (yellow), MVO (blue)", fontsize=8)
    ax.axis("off")
    bullseye(figure.add_axes([0.52, 0.52, 0.43, 0.38]),
             {n: v["lge_percent"] for n, v in summary["aha_segments"].items()})
    lines = [f"LV myocardium: {summary['myocardium_ml']:.1f} mL ({summary['myocardium_mass_g']:.1f} g)",
             f"Scar: {summary['scar_ml']:.1f} mL, MVO: {summary['mvo_ml']:.1f} mL, scar mass {summary['scar_mass_g']:.1f} g",
             f"LGE: {summary['lge_percent']:.1f}% of LV myocardium" + ("  -  >= 15%: in HCM, a sudden-death risk marker"
                                                                    if summary["hcm_high_risk"] else ""),
             f"Gray zone: {summary['gray_zone_ml']:.1f} mL ({summary['gray_zone_definition']})"]
    lines += [f"{name} territory: {'-' if t['lge_percent'] is None else f'{t['lge_percent']:.1f}%'}"
              for name, t in summary["territories"].items()]
    for n, line in enumerate(lines):
        figure.text(0.05, 0.47 - n * 0.03, line, fontsize=10 if n < 3 else 8.5, va="top")
    page.footer(figure, ["Volumes assume the pixel spacing shown in the JSON." if summary["spacing_assumed"] else ""])
    page.save_page(figure, path, warnings)
