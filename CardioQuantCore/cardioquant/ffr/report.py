"""One-page CT-FFR report: the tree coloured by FFR (two projections), FFR against distance, lesion table."""

from __future__ import annotations

from .. import report as page


def draw_report(path, result, summary, warnings=()) -> None:
    import matplotlib as mpl

    figure = page.new_page("CT-derived fractional flow reserve", f"source: {summary['source']}")
    cmap, norm = mpl.colormaps["RdYlGn"], mpl.colors.Normalize(0.6, 1.0)
    for column, (a, b, label) in enumerate(((0, 2, "coronal (R-L / I-S)"), (1, 2, "sagittal (A-P / I-S)"))):
        ax = figure.add_axes([0.05 + column * 0.3, 0.55, 0.27, 0.37])
        for p, ffr in zip(result.paths, result.ffr, strict=True):
            ax.scatter(p.points[:, a], p.points[:, b], c=ffr, cmap=cmap, norm=norm, s=4 + 6 * p.radii)
            ax.annotate(p.name, p.points[-1, [a, b]], fontsize=7)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=6)
    colourbar = figure.add_axes([0.66, 0.57, 0.015, 0.33])
    figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=colourbar).set_label("FFR", fontsize=8)
    ax = figure.add_axes([0.1, 0.3, 0.85, 0.2])
    for p, ffr, distance in zip(result.paths, result.ffr, result.distance_mm, strict=True):
        ax.plot(distance, ffr, label=f"{p.name} (distal {ffr[-1]:.2f})")
    ax.axhline(0.8, color="red", lw=0.8, ls="--")
    ax.set_xlabel("distance from the ostium (mm)", fontsize=8)
    ax.set_ylabel("FFR", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    rows = [[les["vessel"], f"{les['location_mm']:.0f}", f"{les['area_stenosis_percent']:.0f}%",
             f"{les['diameter_stenosis_percent']:.0f}%", f"{les['length_mm']:.1f}", f"{les['delta_ffr']:.3f}"]
            for les in summary["lesions"]] or [["-", "-", "-", "-", "-", "-"]]
    page.draw_table(figure.add_axes([0.05, 0.08, 0.9, 0.17]), rows,
                    ["Vessel", "Location (mm)", "Area stenosis", "Diameter stenosis", "Length (mm)", "Delta FFR"])
    bc = summary["boundary_conditions"]
    page.footer(figure, [f"Boundary conditions: Pa {bc['aortic_pressure_mmhg']:g} mmHg, CO {bc['cardiac_output_l_min']:g} "
                         f"L/min, hyperemia x{bc['hyperemia_factor']:g}, left/right flow share {bc['left_share']:g}/"
                         f"{1 - bc['left_share']:g} ({bc['side']} solved), Murray m "
                         f"{bc['murray_exponent']:g}. FFR <= 0.80 suggests ischaemia."])
    page.save_page(figure, path, warnings)
